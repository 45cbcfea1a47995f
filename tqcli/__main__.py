"""`python -m tqcli` runs the command-line interface."""

from tqcli.entry import main

main()
