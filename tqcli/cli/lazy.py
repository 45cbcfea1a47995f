"""Click commands converted from Typer on demand: a run converts the command it runs, not its siblings.

Typer converts a command to Click by reading its function's signature and
type hints, which costs start-up time per command. The root group
(tqcli.cli.LazyGroup) imports and converts one subcommand; a group's
`LazyTyperGroup` then converts one of its own. Listing (help, completion,
docs/cli.md) still sees every command, in the order Typer would give.
"""

from __future__ import annotations

import copy
from difflib import get_close_matches
from typing import Any, Callable

import typer
from typer import _click
from typer.core import TyperGroup
from typer.main import get_command, get_command_from_info, get_command_name, get_group_from_info
from typer.models import CommandInfo, TyperInfo


class LazyTyperGroup(TyperGroup):
    """A Typer app's group whose commands are converted to Click when first asked for."""

    # Set by lazy_command once Typer has built the group itself.
    pending: dict[str, CommandInfo]
    pretty_exceptions_short: bool
    # Set by tqcli.cli.conventions.apply: what a command converted later gets.
    conventions: Callable[[Any], None] | None = None

    def list_commands(self, ctx: Any) -> list[str]:
        return list(self.pending)

    def get_command(self, ctx: Any, cmd_name: str) -> Any:
        if cmd_name not in self.commands and cmd_name in self.pending:
            command = get_command_from_info(
                self.pending[cmd_name],
                pretty_exceptions_short=self.pretty_exceptions_short,
                rich_markup_mode=self.rich_markup_mode,
            )
            if self.conventions is not None:
                self.conventions(command)
            self.commands[cmd_name] = command
        return self.commands.get(cmd_name)

    def resolve_command(self, ctx: Any, args: list[str]) -> Any:
        # TyperGroup suggests among the commands converted so far; suggest among all of them.
        try:
            return self._click_resolve_command(ctx, args)
        except _click.exceptions.UsageError as exc:
            matches = get_close_matches(args[0], self.list_commands(ctx)) if self.suggest_commands and args else []
            if matches:
                exc.message = f"{exc.message.rstrip('.')}. Did you mean {', '.join(repr(m) for m in matches)}?"
            raise


def lazy_command(app: typer.Typer) -> Any:
    """The Click command of `app`, as typer.main.get_command builds it, but a group converts its commands on demand.

    A single command, and a group with groups inside or completion options, are converted whole as Typer does.
    """
    if app.registered_groups or app._add_completion or not (app.registered_callback or app.info.callback or len(app.registered_commands) > 1):
        return get_command(app)
    hollow = copy.copy(app)  # the group's own settings and callback, without its commands
    hollow.registered_commands = []
    group = get_group_from_info(
        TyperInfo(hollow, cls=LazyTyperGroup),
        pretty_exceptions_short=app.pretty_exceptions_short,
        rich_markup_mode=app.rich_markup_mode,
        suggest_commands=app.suggest_commands,
    )
    group.pending = {}
    for info in app.registered_commands:
        name = info.name or get_command_name(info.callback.__name__)  # as get_command_from_info names it
        group.pending[name] = info
    group.pretty_exceptions_short = app.pretty_exceptions_short
    return group
