"""Who is acting: the process's login name, or another identity where allowed.

An identity other than the real user (`TQCLI_USER`, or `actor=` in the
library) is accepted while the database runs open (no role granted) or
when the real user is a global admin; otherwise it is refused (exit 4) and
the refusal is audited with the real user as actor.
"""

from __future__ import annotations

from tqcli.core.context import Context
from tqcli.errors import PermissionDenied


def resolve_actor(ctx: Context, real_user: str, requested: str | None) -> str:
    """The identity to act as; raises PermissionDenied when `requested` is not allowed."""
    if not requested or requested == real_user:
        return real_user
    with ctx.read() as tx:
        allowed = tx.count_grants() == 0 or tx.is_global_admin(real_user)
    if allowed:
        return requested
    ctx.actor = real_user
    with ctx.change() as (_, journal):
        journal.add("access.denied", None, None, action="act-as", requested=requested)
    raise PermissionDenied(
        f"user {real_user} may not act as {requested!r} (TQCLI_USER): only a global admin may, "
        "once roles are granted; unset TQCLI_USER"
    )
