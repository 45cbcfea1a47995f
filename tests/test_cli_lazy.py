"""Groups convert their commands from Typer to Click on demand, and look the same as converted whole."""

from __future__ import annotations

import pytest
from typer.main import get_command

from tqcli.cli import COMMANDS, app
from tqcli.cli.conventions import apply
from tqcli.cli.lazy import LazyTyperGroup

pytestmark = pytest.mark.sqlite_only

GROUPS = [name for name, reference in COMMANDS.items() if reference.endswith("app")]


def root_and_context():
    root = get_command(app)
    apply(root)
    return root, root.context_class(root, info_name="tqcli")


def eager(name: str):
    """The group `name` converted whole, as Typer converts it, with tqcli's conventions."""
    import importlib

    module_name, _, attribute = COMMANDS[name].partition(":")
    command = get_command(getattr(importlib.import_module(module_name), attribute))
    command.name = name
    apply(command)
    return command


def test_a_group_converts_only_the_command_asked_for():
    root, ctx = root_and_context()
    group = root.get_command(ctx, "dlq")
    assert isinstance(group, LazyTyperGroup) and group.commands == {}
    listed = group.list_commands(ctx)
    assert listed == list(eager("dlq").commands)
    group.get_command(ctx, "list")
    assert list(group.commands) == ["list"]


@pytest.mark.parametrize("name", GROUPS)
def test_group_help_and_each_commands_help_read_as_when_converted_whole(name):
    root, ctx = root_and_context()
    lazy, whole = root.get_command(ctx, name), eager(name)
    lazy_ctx, whole_ctx = lazy.context_class(lazy, info_name=name, parent=ctx), whole.context_class(whole, info_name=name, parent=ctx)
    assert lazy.get_help(lazy_ctx) == whole.get_help(whole_ctx)
    for sub_name in whole.list_commands(whole_ctx):
        sub, expected = lazy.get_command(lazy_ctx, sub_name), whole.commands[sub_name]
        assert sub.get_help(sub.context_class(sub, info_name=sub_name, parent=lazy_ctx)) == expected.get_help(
            expected.context_class(expected, info_name=sub_name, parent=whole_ctx)
        )
        completions = {param.name: param._custom_shell_complete is not None for param in sub.params}
        assert completions == {param.name: param._custom_shell_complete is not None for param in expected.params}, sub_name


def test_a_typo_in_a_group_is_matched_against_commands_not_yet_converted(cli):
    failed = cli("schedule", "pasue")
    assert failed.code == 2
    assert failed.stderr == "error: No such command 'pasue'. Did you mean 'pause'? (see 'tqcli schedule --help')\n"
