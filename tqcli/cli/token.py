"""API token commands: create, list, revoke (for `tqcli serve`)."""

from typing import Annotated, Optional

import typer

from tqcli.cli import command_group, render, state
from tqcli.errors import InvalidInput

app = command_group(
    "API tokens for 'tqcli serve': a client sends 'Authorization: Bearer TOKEN' and acts as the token's user "
    "for roles and in the audit log. Only a hash is stored. Managing tokens needs the admin role "
    "(anyone while the database runs open)."
)


@app.command("create")
def create(
    ctx: typer.Context,
    user: Annotated[str, typer.Argument(metavar="USER", help="The login name the token acts as, as 'id -un' prints it.", show_default=False)],
    expires: Annotated[Optional[str], typer.Option(metavar="DUR", help="Expire after DUR (30d, 12h, ...; default: never, until revoked).")] = None,
    name: Annotated[Optional[str], typer.Option(metavar="LABEL", help="A label saying what the token is for (shown by 'token list').")] = None,
    json_output: Annotated[bool, typer.Option("--json", help="Print the token's JSON object with the token itself under \"token\".")] = False,
) -> None:
    """Create a token acting as USER and print it once on stdout (only its hash is kept: store it now)."""
    from tqcli.units import parse_duration

    seconds = None
    if expires is not None:
        seconds = parse_duration(expires, what="--expires")
        if seconds <= 0:
            raise InvalidInput(f"invalid --expires {expires!r}: a token must live longer than 0 s; give a duration such as 30d or 12h")
    from tqcli.security.tokens import describe_expiry

    info, text = state(ctx).queue(create=True).tokens.create(user, expires=seconds, name=name)
    if json_output:
        render.emit_json({**info.to_json(), "token": text})
    else:
        print(text)
    label = f" ({info.name})" if info.name else ""
    render.message(
        f"created token {info.id}{label} for {info.user}, expires {describe_expiry(info)}; "
        f"it is shown only this once: 'tqcli token revoke {info.id}' ends it"
    )


@app.command("list")
def list_tokens(ctx: typer.Context, json_output: Annotated[bool, typer.Option("--json", help="Print a JSON array.")] = False) -> None:
    """Show every token (never its text): id, user, label, when created, when it expires, when last used, whether revoked."""
    queue = state(ctx).queue(read_only=True)
    tokens = queue.tokens.list()
    if json_output:
        render.emit_json([token.to_json() for token in tokens])
        return
    if not tokens:
        render.message("no token: 'tqcli token create USER' makes one")
        return
    now = queue.clock.now()

    def state_of(token) -> str:  # type: ignore[no-untyped-def]
        if token.revoked_at is not None:
            return "revoked"
        return "active" if token.active(now) else "expired"

    render.table(
        ["ID", "USER", "NAME", "CREATED", "EXPIRES", "LAST USED", "STATE"],
        [
            (t.id, t.user, t.name or "", render.when(t.created_at), render.when(t.expires_at) or "never",
             render.when(t.last_used_at) or "never", state_of(t))
            for t in tokens
        ],
    )


@app.command("revoke")
def revoke(
    ctx: typer.Context,
    token_id: Annotated[int, typer.Argument(metavar="ID", help="The token's id, as 'token list' shows it.", show_default=False)],
) -> None:
    """Revoke a token at once: requests carrying it get 401 from then on. Revoking a revoked token changes nothing."""
    info, changed = state(ctx).queue().tokens.revoke(token_id)
    label = f" ({info.name})" if info.name else ""
    if changed:
        render.message(f"revoked token {info.id}{label} of {info.user}")
    else:
        render.message(f"nothing changed: token {info.id}{label} of {info.user} was already revoked")
