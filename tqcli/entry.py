"""The `tqcli` console script (and `python -m tqcli`): `tqcli.cli.main`, imported while the garbage collector waits."""

import gc


def main() -> None:
    """Import the command-line interface with the cyclic garbage collector off, freeze what the imports made, and run it.

    The imports make tens of thousands of objects that live as long as the
    process. Collecting among them while they are being made costs a short
    command 3-4 ms, and every later full collection would walk them again;
    frozen (`gc.freeze`), they are never walked. The collector is on again
    before the command runs.
    """
    gc.disable()
    try:
        from tqcli.cli import main as run
    finally:
        gc.freeze()
        gc.enable()
    run()
