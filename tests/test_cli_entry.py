"""The entry point's conventions for every command: help text, placeholders, and arguments that are not UTF-8."""

from __future__ import annotations

import subprocess

import pytest
import typer
from typer.main import get_command

from tests.conftest import TQCLI, Cli, table_dump
from tqcli.cli import app, command_group
from tqcli.cli.conventions import apply, summary

# Help, parsing and the entry point: the same on every store.
pytestmark = pytest.mark.sqlite_only


def built_tree():
    """(path, command, context) for every command of the app, contexts chained as Click chains them."""
    root = get_command(app)
    apply(root)
    found = []

    def walk(command, path, ctx):
        found.append((path, command, ctx))
        if hasattr(command, "list_commands"):
            for name in command.list_commands(ctx):
                sub = command.get_command(ctx, name)
                walk(sub, [*path, name], sub.context_class(sub, info_name=name, parent=ctx))

    walk(root, [], root.context_class(root, info_name="tqcli"))
    return found


def test_top_level_help_shows_each_commands_whole_first_line(cli: Cli):
    text = cli.ok("--help", env={"COLUMNS": "80"}).stdout
    listing = text.split("Commands:\n", 1)[1]
    flattened = " ".join(listing.split())
    assert "..." not in listing
    for path, command, _ in built_tree():
        if len(path) == 1:
            assert f"{path[0]} {summary(command)}" in flattened, path


def test_group_help_shows_whole_first_lines_too(cli: Cli):
    listing = cli.ok("dlq", "--help").stdout.split("Commands:\n", 1)[1]
    assert "..." not in listing and "tasks blocked on them are cancelled." in " ".join(listing.split())


def test_usage_lines_write_placeholders_without_braces():
    for path, command, ctx in built_tree():
        usage = command.get_usage(ctx)
        assert "{" not in usage and "}" not in usage, f"tqcli {' '.join(path)}: {usage}"


def test_variadic_arguments_read_id_dots(cli: Cli):
    assert cli.ok("cancel", "--help").stdout.splitlines()[0] == "Usage: tqcli cancel [OPTIONS] [ID]..."  # ids, or --all
    assert cli.ok("schedule", "pause", "--help").stdout.splitlines()[0] == "Usage: tqcli schedule pause [OPTIONS] NAME"
    assert cli.ok("dlq", "replay", "--help").stdout.splitlines()[0] == "Usage: tqcli dlq replay [OPTIONS] [ID]..."


def test_a_command_added_later_gets_the_same_help():
    group = command_group("A group someone adds.")

    @group.command("sweep")
    def sweep(ids: list[int] = typer.Argument(..., metavar="ID...")) -> None:
        """Sweep the tasks given, a first line long enough to be cut by Click's default of forty-five characters.

        Details.
        """

    @group.command("other")
    def other() -> None:
        """Another."""

    command = get_command(group)
    command.name = "extra"
    apply(command)
    ctx = command.context_class(command, info_name="extra")
    assert "forty-five characters." in " ".join(command.get_help(ctx).split())
    sub = command.commands["sweep"]
    assert sub.get_usage(sub.context_class(sub, info_name="sweep", parent=ctx)).endswith("sweep [OPTIONS] ID...")


def run_bytes(cli: Cli, *args: bytes) -> subprocess.CompletedProcess:
    return subprocess.run([TQCLI.encode(), *args], capture_output=True, env=cli.env, cwd=cli.cwd, timeout=60)


@pytest.mark.parametrize(
    ("args", "named"),
    [
        ([b"submit", b"--name", b"bad\xff", b"tests.jobs:noop"], "the value of --name"),
        ([b"submit", b"--name=bad\xff", b"tests.jobs:noop"], "option --name"),
        ([b"submit", b"--backend", b"shell", b"echo \xff"], "argument 4"),
        ([b"submit", b"--json", b"tests.jobs:\xffnoop"], "argument 3"),
        ([b"submit", b"--payload", b'{"a": "\xfe"}', b"tests.jobs:noop"], "the value of --payload"),
        ([b"--db", b"/tmp/\xff.db", b"status"], "the value of --db"),
        ([b"st\xffatus"], "argument 1"),
    ],
)
def test_an_argument_that_is_not_utf8_is_a_usage_error_naming_it(cli: Cli, args: list[bytes], named: str):
    cli.create_db()
    before = table_dump(cli.db)
    done = run_bytes(cli, *args)
    stderr = done.stderr.decode()
    assert done.returncode == 2, stderr
    assert stderr.splitlines() == [line for line in stderr.splitlines() if line.startswith("error: ")] and len(stderr.splitlines()) == 1
    assert stderr.startswith(f"error: {named} is not valid UTF-8: ") and "\\x" in stderr, stderr
    assert "internal error" not in stderr and done.stdout == b""
    assert table_dump(cli.db) == before, "nothing ran"


def test_valid_utf8_arguments_still_work(cli: Cli):
    done = run_bytes(cli, b"submit", b"--name", "caf\u00e9 \u2713".encode(), b"tests.jobs:noop")
    assert done.returncode == 0, done.stderr
    assert cli.task(int(done.stdout))["name"] == "caf\u00e9 \u2713"


def test_the_console_script_imports_the_cli_with_the_collector_paused_and_runs_it_with_the_collector_on():
    import sys

    code = (
        "import gc, sys; from tqcli import entry; sys.argv = ['tqcli', '--version']\n"
        "try:\n    entry.main()\nexcept SystemExit:\n    pass\n"
        "print(gc.isenabled(), gc.get_freeze_count() > 10000)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.splitlines()[-1] == "True True", done.stdout
