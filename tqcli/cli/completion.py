"""Values for shell completion, chosen by parameter name, so options added later complete too.

`--backend` offers the installed backends, `--state` the task states, and
`--queue`, `--tenant`, `--service`, schedule NAME, breaker KEY and DAG_ID
arguments offer what the database holds: the one named by the `--db`
already typed, else TQCLI_DB, the config file or the default, as every
command resolves it. The database is opened for reading alone and never
created; whatever goes wrong (no database, a bad config, a locked file),
completion offers no values and prints nothing.
"""

from __future__ import annotations

from typing import Any, Callable

from typer._click.shell_completion import CompletionItem

Complete = Callable[[Any, Any, str], list[CompletionItem]]


def backend_names(ctx: Any, param: Any, incomplete: str) -> list[CompletionItem]:
    """The backends of the tqcli.backends entry-point group."""
    try:
        from tqcli.backends.plugins import discover

        found = discover()
    except Exception:
        return []
    return [CompletionItem(name, help=f"from {info.distribution}") for name, info in sorted(found.items()) if name.startswith(incomplete)]


def state_names(ctx: Any, param: Any, incomplete: str) -> list[CompletionItem]:
    """The task states the command takes: the finished ones for `prune`, all six elsewhere."""
    from tqcli.core.lifecycle import PRUNABLE_STATES
    from tqcli.core.task import ALL_STATES

    names = PRUNABLE_STATES if ctx.info_name == "prune" else [state.value for state in ALL_STATES]
    return [CompletionItem(name) for name in names if name.startswith(incomplete)]


def from_database(kind: str) -> Complete:
    """A completion that offers the names of `kind` (tqcli.core.names.KINDS) found in the database."""

    def complete(ctx: Any, param: Any, incomplete: str) -> list[CompletionItem]:
        try:
            from tqcli.config import load_config
            from tqcli.core.names import known_names

            root = ctx.find_root().params
            config = load_config(db_flag=root.get("db"), config_flag=root.get("config"))
            return [CompletionItem(value, help=about) for value, about in known_names(config.db, kind, incomplete)]
        except Exception:  # completion never fails loudly: no values is the answer
            return []

    return complete


# By option flag, wherever the option is declared.
OPTIONS: dict[str, Complete] = {
    "--backend": backend_names,
    "--state": state_names,
    "--queue": from_database("queue"),
    "--to-queue": from_database("queue"),
    "--tenant": from_database("tenant"),
    "--service": from_database("service"),
}

# By (group, argument name); a group of None matches any.
ARGUMENTS: dict[tuple[str | None, str], Complete] = {
    (None, "dag_id"): from_database("dag"),
    ("schedule", "name"): from_database("schedule"),
    ("breaker", "key"): from_database("service"),
    ("queue", "name"): from_database("queue"),
    ("tenant", "name"): from_database("tenant"),
}

# Commands whose argument names something new, which completion cannot know.
CREATING = frozenset({("schedule", "add")})


def completion_for(param: Any, path: tuple[str, ...]) -> Complete | None:
    """The completion of a parameter of the command at `path` (its group names, then its own), if any."""
    if param.param_type_name == "option":
        return next((OPTIONS[flag] for flag in param.opts if flag in OPTIONS), None)
    if param.param_type_name != "argument" or tuple(path[-2:]) in CREATING:
        return None
    group = path[-2] if len(path) >= 2 else None
    return ARGUMENTS.get((group, param.name)) or ARGUMENTS.get((None, param.name))
