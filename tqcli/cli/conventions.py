"""What every command gets once its Click command is built, whoever wrote it.

`apply` walks a built command and its subcommands: a group lists each
command with its whole first paragraph (Click cuts it with '...'), usage
lines write a required argument `ID...` (Typer writes `{ID...}`), and each
parameter gets the shell completion its name calls for (tqcli.cli.completion).
"""

from __future__ import annotations

import re
from typing import Any

from typer import _click

from tqcli.cli.completion import completion_for

_BRACED = re.compile(r"\{([^{}]*)\}")


class HelpFormatter(_click.HelpFormatter):
    """Click's help formatter, with required arguments written `ID...` in usage lines."""

    def write_usage(self, prog: str, args: str = "", prefix: str | None = None) -> None:
        super().write_usage(prog, _BRACED.sub(r"\1", args), prefix)


class Context(_click.Context):
    """Click's context, formatting help with tqcli's HelpFormatter."""

    formatter_class = HelpFormatter


def summary(command: Any) -> str | None:
    """A command's first paragraph on one line: what its group's command list shows."""
    text = (command.help or "").split("\f", 1)[0].strip()
    return " ".join(text.split("\n\n", 1)[0].split()) or None


def apply(command: Any, parents: tuple[str, ...] = ()) -> None:
    """Give `command` and every subcommand tqcli's help format and value completion.

    Subcommands already built get them now; a group that builds its commands
    on demand (tqcli.cli.lazy) gives them to each as it is built.
    """
    path = (*parents, command.name) if command.name else parents
    if hasattr(command, "conventions"):
        command.conventions = lambda sub: apply(sub, path)
    if command.short_help is None:
        command.short_help = summary(command)
    command.context_class = Context
    for param in command.params:
        if getattr(param, "_custom_shell_complete", None) is None:
            complete = completion_for(param, path)
            if complete is not None:
                param._custom_shell_complete = complete  # where Click keeps a shell_complete= callback
    for sub in getattr(command, "commands", {}).values():
        apply(sub, path)
