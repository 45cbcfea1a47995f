"""Shell completions: generated from the app, never stale, and working in a real bash."""

import importlib.machinery
import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO


def generator():
    loader = importlib.machinery.SourceFileLoader("gen_completions", str(REPO / "scripts" / "gen-completions"))
    spec = importlib.util.spec_from_loader("gen_completions", loader)
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_committed_completions_are_current(shell):
    committed = (REPO / "completions" / f"tqcli.{shell}").read_text()
    assert committed == generator().generate(shell), "completions are stale: run 'make completions'"


def complete_in_bash(words: str, cword: int) -> list[str]:
    script = f"""
source {REPO / 'completions' / 'tqcli.bash'}
COMP_WORDS=({words})
COMP_CWORD={cword}
_tqcli_completion tqcli
printf '%s\\n' "${{COMPREPLY[@]}}"
"""
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}")
    done = subprocess.run(["bash", "--norc", "--noprofile", "-c", script], capture_output=True, text=True, env=env, timeout=30, check=True)
    return done.stdout.split()


def test_bash_completes_a_command():
    assert complete_in_bash("tqcli su", 1) == ["submit"]


def test_bash_completes_subcommands_and_options():
    assert complete_in_bash("tqcli audit ver", 2) == ["verify"]
    assert "--priority" in complete_in_bash("tqcli submit --pri", 2)
