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
    """The identity to act as; raises PermissionDenied (audited, with the real user as actor) when `requested` is not allowed."""
    if not requested or requested == real_user:
        return real_user
    ctx.actor = real_user
    with ctx.read() as tx:
        access = ctx.access(tx)
        if access.open or access.global_admin:
            return requested
        raise PermissionDenied(
            f"user {real_user} may not act as {requested!r} (TQCLI_USER): only a global admin may, "
            "once roles are granted; unset TQCLI_USER",
            audit={"action": "act as another user", "requested": requested, "needs": ["admin"], "tenant": None},
        )
