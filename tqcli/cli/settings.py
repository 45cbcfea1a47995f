"""Declarative settings: apply a TOML file of queues, tenants, schedules, breakers and roles, export one."""

import sys
from typing import Annotated, Any

import typer

from tqcli.cli import render, state

KINDS = {"queues": "queue", "tenants": "tenant", "schedules": "schedule", "breakers": "breaker"}


def apply(
    ctx: typer.Context,
    file: Annotated[str, typer.Argument(metavar="FILE.toml|-", help="The settings file, or - to read it from stdin.", show_default=False)],
    prune: Annotated[bool, typer.Option("--prune", help="Also remove what FILE does not declare: queues' and tenants' settings, schedules, the breaker defaults, and role grants when FILE has [[roles]].")] = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Say what would change; change nothing.")] = False,
) -> None:
    """Make the queues, tenants, schedules, breakers and roles what a TOML file declares, in one audited transaction.

    A declared table is the whole truth about its object: a key it leaves out
    takes its default. Everything is checked before anything is written; an
    apply that changes nothing is not audited, and one that would leave role
    grants without a global admin is refused. Admins only. 'tqcli export'
    prints the file of what is stored.

      tqcli apply --prune --dry-run settings.toml

      tqcli apply --prune settings.toml

      tqcli export | tqcli --db other.db apply -
    """
    from tqcli.cli.tasks import read_input_file
    from tqcli.tenancy.declarative import load_settings

    source = "<stdin>" if file == "-" else file
    settings = load_settings(read_input_file(file, what="settings file"), source)
    report = state(ctx).queue(create=not dry_run).settings.apply(settings, prune=prune, dry_run=dry_run)
    if not report.changed:
        render.message(f"nothing {'would change' if dry_run else 'changed'}: the database already declares what {source} does")
        return
    for line in summary_lines(report.diff):
        render.message(line)
    counts = [f"{len(report.diff[section])} {KINDS[section]}{'s' if len(report.diff[section]) != 1 else ''}"
              for section in KINDS if section in report.diff]
    if "breaker_defaults" in report.diff:
        counts.append("the breaker defaults")
    grants = sum(len(report.diff.get("roles", {}).get(key, [])) for key in ("added", "removed"))
    if grants:
        counts.append(f"{grants} role grant{'s' if grants != 1 else ''}")
    if dry_run:
        render.message(f"dry run of {source}: would change {', '.join(counts)}; nothing was changed")
    else:
        render.message(f"applied {source}: changed {', '.join(counts)}")


def export(
    ctx: typer.Context,
    json_output: Annotated[bool, typer.Option("--json", help="Print the same document as JSON.")] = False,
) -> None:
    """Print the queues, tenants, schedules, breakers and roles as the TOML file 'tqcli apply' takes.

    Only what differs from the defaults is written, so 'tqcli export | tqcli apply -' changes nothing.
    """
    settings = state(ctx).queue(read_only=True).settings
    if json_output:
        render.emit_json(settings.export())
        return
    text = settings.export_toml()
    if not text:
        render.message("nothing to export: every queue, tenant and breaker has the default settings, and there is no schedule")
    sys.stdout.write(text)


def summary_lines(diff: dict[str, Any]) -> list[str]:
    """One line per object the apply changed: `queue etl: max_length 0 -> 10000`, `schedule nightly: added`."""
    lines = []
    for verb, key in (("granted", "added"), ("revoked", "removed")):
        for grant in diff.get("roles", {}).get(key, []):
            lines.append(f"role {grant['role']} {verb} {'to' if key == 'added' else 'from'} {grant['user']}" + (f" on tenant {grant['tenant']}" if grant["tenant"] else ""))
    for section, kind in (*KINDS.items(), ("breaker_defaults", None)):
        changes = diff.get(section)
        if not changes:
            continue
        objects = {None: changes} if kind is None else changes
        for name, change in objects.items():
            what = "breaker defaults" if kind is None else f"{kind} {name}"
            if isinstance(change, str):
                lines.append(f"{what}: {change}")
                continue
            inherit = "default" if section == "breakers" else "none"
            fields = ", ".join(
                f"{field} {_shown(field, values['from'], inherit)} -> {_shown(field, values['to'], inherit)}" for field, values in change.items()
            )
            lines.append(f"{what}: {fields}")
    return lines


def _shown(field: str, value: Any, none: str) -> str:
    import json

    from tqcli.units import format_duration, parse_duration

    if value is None:
        return none
    if isinstance(value, bool):
        return "true" if value else "false"
    if field == "recovery_timeout":
        text = format_duration(value)
        return text if parse_duration(text) == value else f"{value:g}s"
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, (dict, list)):
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    text = str(value)
    return json.dumps(text, ensure_ascii=False) if isinstance(value, str) and (not text or any(c.isspace() for c in text)) else text
