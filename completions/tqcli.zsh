#compdef tqcli

_tqcli_completion() {
  eval $(env _TYPER_COMPLETE_ARGS="${words[1,$CURRENT]}" _TQCLI_COMPLETE=complete_zsh tqcli)
}

compdef _tqcli_completion tqcli
