"""The docs say what the code does: the CLI reference is current and named files exist."""

import importlib.machinery
import importlib.util
import re

import pytest
from typer.main import get_command

from tests.conftest import REPO


def load_script(name):
    loader = importlib.machinery.SourceFileLoader(name.replace("-", "_"), str(REPO / "scripts" / name))
    spec = importlib.util.spec_from_loader(loader.name, loader)
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module


def test_cli_reference_is_current():
    assert (REPO / "docs" / "cli.md").read_text() == load_script("gen-cli-docs").render(), "docs/cli.md is stale: run 'make docs'"


def test_every_command_has_help_text():
    import typer._click as click

    from tqcli.cli import app

    root = get_command(app)
    ctx = click.Context(root)
    for name in root.list_commands(ctx):
        command = root.get_command(ctx, name)
        assert command.get_short_help_str().strip(), name
        if hasattr(command, "list_commands"):
            for sub in command.list_commands(ctx):
                assert command.get_command(ctx, sub).get_short_help_str().strip(), f"{name} {sub}"


@pytest.mark.parametrize("doc", sorted(p.name for p in (REPO / "docs").glob("*.md")) + ["../README.md"])
def test_files_named_in_the_docs_exist(doc):
    text = (REPO / "docs" / doc).read_text()
    for path in re.findall(r"`((?:tqcli|tests|scripts|sample-configs|docs|completions)/[\w./-]+)`", text):
        assert (REPO / path.rstrip("/")).exists(), f"{doc} names {path}, which does not exist"
    for link in re.findall(r"\]\(((?!https?:)[^)#]+)\)", text):
        assert ((REPO / "docs" / doc).parent / link).exists(), f"{doc} links to {link}, which does not exist"


def test_the_state_diagram_draws_the_lifecycle_of_the_spec():
    diagram = (REPO / "docs" / "states.md").read_text().split("```text\n", 1)[1].split("```", 1)[0]
    lines = diagram.splitlines()
    running = next(line for line in lines if "running" in line)
    assert "─" not in running.split("running", 1)[1], "no arrow leaves running sideways: a running task is never blocked"
    assert any(re.search(r"pending ─+ block ─+► blocked", line) for line in lines), "a pending task becomes blocked"
    for label in ("claim", "success", "retry", "release", "worker lost", "unblock", "cancel", "expired", "replay", "out of retries"):
        assert label in diagram, label
