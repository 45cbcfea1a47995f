"""The floor of `tqcli submit`'s latency: a bare Typer app whose one command inserts a row into SQLite and prints its rowid.

bench/run.py times `python bare_typer.py submit TARGET` in the same loop as
`tqcli submit TARGET` and `python -c pass`. The database is named by
BARE_TYPER_DB; its table `tasks (id INTEGER PRIMARY KEY, target TEXT)` is
made by the benchmark before timing, in WAL mode. synchronous=NORMAL, as
tqcli commits.
"""

import os
import sqlite3

import typer

app = typer.Typer(add_completion=False)


@app.callback()
def main() -> None:
    """A group, so that the command is called by name like `tqcli submit`."""


@app.command()
def submit(target: str) -> None:
    """Insert one row for TARGET and print its rowid."""
    conn = sqlite3.connect(os.environ["BARE_TYPER_DB"])
    conn.execute("PRAGMA synchronous = NORMAL")
    rowid = conn.execute("INSERT INTO tasks (target) VALUES (?)", (target,)).lastrowid
    conn.commit()
    conn.close()
    print(rowid)


if __name__ == "__main__":
    app()
