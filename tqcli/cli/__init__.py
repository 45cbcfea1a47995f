"""The `tqcli` command: the Typer app, global options, and the one place errors become exit codes.

Commands parse their arguments, call the library and render the result;
nothing else. Heavy imports (rich, croniter, cryptography) happen inside the
commands that need them, so `tqcli submit` starts fast.
"""


import atexit
import gc
import os
import sys
from typing import Annotated, Any, Optional

import typer
from typer.core import TyperGroup

from tqcli.errors import TqcliError

# Commands load on first use: Typer builds a command's parameters when it is
# created, so building only the one being run keeps `tqcli submit` fast
# (a group's own commands are converted on demand too: tqcli.cli.lazy).
# Values are "module:attribute", a Typer app or a command function.
COMMANDS = {
    "submit": "tqcli.cli.tasks:submit",
    "status": "tqcli.cli.tasks:status",
    "cancel": "tqcli.cli.tasks:cancel",
    "bump": "tqcli.cli.tasks:bump",
    "wait": "tqcli.cli.manage:wait",
    "logs": "tqcli.cli.logs:logs",
    "restart": "tqcli.cli.manage:restart",
    "edit": "tqcli.cli.manage:edit",
    "prune": "tqcli.cli.manage:prune",
    "run": "tqcli.cli.worker:run",
    "worker": "tqcli.cli.worker:worker",
    "workers": "tqcli.cli.worker:workers",
    "dag": "tqcli.cli.dag:app",
    "schedule": "tqcli.cli.schedule:app",
    "dlq": "tqcli.cli.dlq:app",
    "breaker": "tqcli.cli.breaker:app",
    "queue": "tqcli.cli.tenancy:queue_app",
    "tenant": "tqcli.cli.tenancy:tenant_app",
    "apply": "tqcli.cli.settings:apply",
    "export": "tqcli.cli.settings:export",
    "plugins": "tqcli.cli.worker:plugins",
    "audit": "tqcli.cli.audit:app",
    "role": "tqcli.cli.roles:app",
    "keys": "tqcli.cli.keys:app",
    "migrate": "tqcli.cli.migrate:migrate",
    "metrics": "tqcli.cli.metrics:metrics",
    "serve": "tqcli.cli.serve:serve",
    "token": "tqcli.cli.token:app",
}


CONTEXT_SETTINGS = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


def _load_command(name: str, reference: str) -> Any:
    import importlib

    from tqcli.cli.lazy import lazy_command

    module_name, _, attribute = reference.partition(":")
    target = getattr(importlib.import_module(module_name), attribute)
    if not isinstance(target, typer.Typer):
        single = command_group()
        single.command(name)(target)
        target = single
    command = lazy_command(target)
    command.name = name
    from tqcli.cli.conventions import apply

    apply(command)
    return command


def command_group(help: str | None = None) -> typer.Typer:
    """A Typer app for a group of subcommands, with tqcli's settings."""
    return typer.Typer(
        help=help,
        no_args_is_help=True,
        add_completion=False,
        pretty_exceptions_enable=False,
        rich_markup_mode=None,
        context_settings=CONTEXT_SETTINGS,
    )


class LazyGroup(TyperGroup):
    """The root group: each subcommand is imported and built when it is first asked for."""

    def list_commands(self, ctx: Any) -> list[str]:
        return list(COMMANDS)

    def get_command(self, ctx: Any, cmd_name: str) -> Any:
        if cmd_name not in self.commands and cmd_name in COMMANDS:
            self.commands[cmd_name] = _load_command(cmd_name, COMMANDS[cmd_name])
        return self.commands.get(cmd_name)

    def resolve_command(self, ctx: Any, args: list[str]) -> Any:
        try:
            return self._click_resolve_command(ctx, args)
        except typer._click.exceptions.UsageError as exc:
            from difflib import get_close_matches

            matches = get_close_matches(args[0], list(COMMANDS)) if args else []
            if matches:
                exc.message = f"{exc.message.rstrip('.')}. Did you mean {', '.join(repr(m) for m in matches)}?"
            raise


app = typer.Typer(
    name="tqcli",
    cls=LazyGroup,
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    context_settings=CONTEXT_SETTINGS,
)


class AppState:
    """Global options of one invocation, and the database opened on first use."""

    def __init__(self, db: str | None, config: str | None, key_file: str | None = None) -> None:
        self.db = db
        self.config_path = config
        self.key_file = key_file
        self._queue: Any = None

    def queue(self, *, create: bool = False, read_only: bool = False) -> Any:
        """The `tqcli.Queue` for --db/--config, opened once per invocation.

        Only commands that add work pass `create`: reading or changing a
        database that is not there (a mistyped --db, say) is an error, not a
        new empty file. Commands that only read pass `read_only`: they never
        write, not even a migration (SPEC §2 rule 2).
        """
        if self._queue is None:
            from tqcli.api import open as open_queue
            from tqcli.config import load_config

            config = load_config(db_flag=self.db, config_flag=self.config_path, key_file_flag=self.key_file)
            self._queue = open_queue(config=config, actor=os.environ.get("TQCLI_USER") or None, create=create, read_only=read_only)
        return self._queue

    def close(self) -> None:
        """Close the database if it was opened."""
        if self._queue is not None:
            self._queue.close()
            self._queue = None


def state(ctx: typer.Context) -> AppState:
    """The AppState of the running invocation."""
    root = ctx.find_root()
    return root.obj  # type: ignore[no-any-return]


def _version(value: bool) -> None:
    if value:
        from tqcli import __version__

        sys.stdout.write(f"tqcli {__version__}\n")
        raise typer.Exit()


@app.callback()
def _global_options(
    ctx: typer.Context,
    db: Annotated[Optional[str], typer.Option("--db", metavar="PATH|URL", help="Database file, or a postgresql:// URL (default: TQCLI_DB, the config file, then $XDG_DATA_HOME/tqcli/tqcli.db).")] = None,
    config: Annotated[Optional[str], typer.Option("--config", metavar="PATH", help="Config file (default: TQCLI_CONFIG, ./tqcli.toml, then $XDG_CONFIG_HOME/tqcli/config.toml).")] = None,
    key_file: Annotated[Optional[str], typer.Option("--key-file", metavar="PATH", help="Key file (default: TQCLI_KEY_FILE, key_file in the config file, then $XDG_CONFIG_HOME/tqcli/keys.toml).")] = None,
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")] = False,
) -> None:
    """A task queue in one SQLite file, or one PostgreSQL database for many hosts: submit work, run workers, inspect and audit it.

    Exit codes: 0 ok, 1 the work failed, 2 invalid input, 3 not found, 4 permission denied,
    5 limit reached, 6 conflict, 7 storage error, 8 key problem, 70 internal error (a bug in tqcli), 124 wait timed out, 130 interrupted.
    """
    app_state = AppState(db, config, key_file)
    ctx.obj = app_state
    ctx.call_on_close(app_state.close)


def _fail(message: str, code: int) -> None:
    sys.stderr.write(f"error: {message}\n")
    sys.exit(code)


def _usage_message(exc: Any) -> str:
    text = exc.format_message()
    context = getattr(exc, "ctx", None)
    if context is not None:
        text += f" (see '{context.command_path} --help')"
    return text


INTERNAL_ERROR = 70


def _accept_click_instruction() -> None:
    """Accept Click's spelling of a completion request (`bash_complete`) beside Typer's (`complete_bash`)."""
    shell, _, instruction = os.environ["_TQCLI_COMPLETE"].partition("_")
    if shell in ("bash", "zsh", "fish") and instruction in ("complete", "source"):
        os.environ["_TQCLI_COMPLETE"] = f"{instruction}_{shell}"


def invalid_utf8(args: list[str]) -> str | None:
    """The error for the first argument that is not valid UTF-8 (Python keeps its bytes as surrogates), if any."""
    for position, arg in enumerate(args):
        try:
            arg.encode("utf-8")
        except UnicodeEncodeError:
            shown = repr(os.fsencode(arg))[1:]
            return f"{_argument_name(args, position)} is not valid UTF-8: {shown}; give it in UTF-8"
    return None


def _argument_name(args: list[str], position: int) -> str:
    """How an error names args[position]: `option --name`, `the value of --name`, or `argument 3`."""
    arg = args[position]
    if arg.startswith("--") and "=" in arg:
        return f"option {arg.split('=', 1)[0]}"
    if position and args[position - 1].startswith("-") and _takes_value(args[:position - 1], args[position - 1]):
        return f"the value of {args[position - 1]}"
    return f"argument {position + 1}"


def _takes_value(before: list[str], flag: str) -> bool:
    """Whether option `flag`, typed after the words `before`, takes a value (a flag does not)."""
    from typer import _click
    from typer.main import get_command

    command: Any = get_command(app)
    ctx = _click.Context(command)
    try:
        for word in before:
            sub = command.get_command(ctx, word) if hasattr(command, "list_commands") else None
            if sub is not None:
                command = sub
        for param in command.params:
            if flag in (*param.opts, *param.secondary_opts):
                return not (getattr(param, "is_flag", False) or getattr(param, "count", False))
    except Exception:
        pass
    return False


def _show_traceback(debug: bool) -> None:
    """With TQCLI_DEBUG=1, print the traceback of the exception being handled (the exit code stays SPEC's)."""
    if debug:
        import traceback

        traceback.print_exc(file=sys.stderr)


def _reader_went_away() -> None:
    """The reader of stdout went away (`tqcli logs 7 | head`): not an error of ours, so exit 0 and print no more."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())  # what is still buffered goes nowhere, instead of failing again at exit
    sys.stderr = open(os.devnull, "w")
    sys.exit(0)


def main(argv: list[str] | None = None) -> None:
    """Run tqcli with `argv` (default: sys.argv) and exit with SPEC's exit code."""
    # At exit, Python collects garbage over every object the imports made, which all die
    # with the process anyway: 14 ms, a sixth of a `tqcli submit`. Frozen objects are
    # skipped; what is only reachable through a cycle is not finalized, and nothing of
    # tqcli's needs that (files and connections are closed by `with` and `close`).
    atexit.register(gc.freeze)
    from typer import _click
    from typer.exceptions import Abort
    from typer.main import get_command

    from tqcli.cli.conventions import apply

    debug = os.environ.get("TQCLI_DEBUG") == "1"
    if "_TQCLI_COMPLETE" in os.environ:
        # Shell completion (completions/tqcli.*) asks through this variable.
        from typer._completion_classes import completion_init

        completion_init()
        _accept_click_instruction()
    else:
        problem = invalid_utf8(sys.argv[1:] if argv is None else argv)
        if problem:
            _fail(problem, 2)
    command = get_command(app)
    apply(command)
    try:
        result = command.main(args=argv, prog_name="tqcli", standalone_mode=False)
    except TqcliError as exc:
        _show_traceback(debug)
        _fail(exc.message, exc.exit_code)
    except _click.exceptions.NoArgsIsHelpError as exc:
        # `tqcli` or `tqcli dag` alone asks what there is: help, not an error.
        sys.stdout.write(exc.ctx.get_help() + "\n")
        sys.exit(0)
    except _click.exceptions.UsageError as exc:
        _show_traceback(debug)
        _fail(_usage_message(exc), 2)
    except _click.exceptions.ClickException as exc:
        _show_traceback(debug)
        _fail(exc.format_message(), exc.exit_code)
    except (Abort, KeyboardInterrupt):
        _show_traceback(debug)
        _fail("interrupted", 130)
    except OverflowError:  # an id or count beyond SQLite's 64-bit integers
        _show_traceback(debug)
        _fail("a number is too large: ids, counts and limits go up to 9223372036854775807", 2)
    except BrokenPipeError:
        _reader_went_away()
    except SystemExit as stop:
        if isinstance(stop.__context__, BrokenPipeError):  # Click answers a closed pipe with exit 1 itself
            _reader_went_away()
        raise
    except Exception as exc:  # a bug: say so in one line, never a traceback unless asked
        _show_traceback(debug)
        _fail(f"internal error: {type(exc).__name__}: {exc} (this is a bug in tqcli: please report it with the output of the same command run with TQCLI_DEBUG=1)", INTERNAL_ERROR)
    code = result if isinstance(result, int) else 0
    if code == 130:  # Ctrl-C outside any command's own handling
        _fail("interrupted", 130)
    sys.exit(code)
