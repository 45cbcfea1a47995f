"""`python -m tqcli` runs the command-line interface."""

from tqcli.cli import main

main()
