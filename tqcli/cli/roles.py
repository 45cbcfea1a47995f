"""Role commands: grant, revoke, list."""

from typing import Annotated, Optional

import typer

from tqcli.cli import command_group, render, state

app = command_group(
    "Who may do what: grant roles (admin, operator, submitter, viewer, auditor), globally or on one tenant. "
    "A database with no grant runs open; the first grant must make a global admin."
)

_USER = Annotated[str, typer.Argument(metavar="USER", help="Login name, as 'id -un' prints it.", show_default=False)]
_ROLE = Annotated[str, typer.Argument(metavar="ROLE", help="admin, operator, submitter, viewer or auditor.", show_default=False)]
_TENANT = Annotated[Optional[str], typer.Option(metavar="T", help="Only on this tenant's tasks (default: every tenant).")]


def _grant_text(user: str, role: str, tenant: str | None, preposition: str = "to") -> str:
    return f"{role} {preposition} {user}" + (f" on tenant {tenant}" if tenant else " on every tenant")


@app.command("grant")
def grant(ctx: typer.Context, user: _USER, role: _ROLE, tenant: _TENANT = None) -> None:
    """Grant ROLE to USER, on every tenant or (--tenant) on one; granting a role already held changes nothing."""
    changed = state(ctx).queue(create=True).roles.grant(user, role, tenant=tenant)
    render.message(f"granted {_grant_text(user, role, tenant)}" if changed else f"nothing changed: {user} already holds {role}" + (f" on tenant {tenant}" if tenant else ""))


@app.command("revoke")
def revoke(ctx: typer.Context, user: _USER, role: _ROLE, tenant: _TENANT = None) -> None:
    """Take ROLE (on --tenant, or the global grant) from USER; the last global admin cannot be revoked (exit 6)."""
    changed = state(ctx).queue().roles.revoke(user, role, tenant=tenant)
    render.message(f"revoked {_grant_text(user, role, tenant, 'from')}" if changed else f"nothing changed: {user} does not hold {role}" + (f" on tenant {tenant}" if tenant else " globally"))


@app.command("list")
def list_roles(ctx: typer.Context, json_output: Annotated[bool, typer.Option("--json", help="Print a JSON array.")] = False) -> None:
    """Show every grant: user, role and tenant (global when empty)."""
    grants = state(ctx).queue(read_only=True).roles.list()
    if json_output:
        render.emit_json([grant.to_json() for grant in grants])
        return
    if not grants:
        render.message("no role is granted: the database runs open (everyone may do everything); 'tqcli role grant USER admin' starts checking")
        return
    render.table(["USER", "ROLE", "TENANT"], [(g.user, g.role, g.tenant or "(every tenant)") for g in grants])
