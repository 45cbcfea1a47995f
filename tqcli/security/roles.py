"""Role grants: `role grant`, `role revoke`, `role list`, and the rules that keep one global admin.

A database runs open until its first grant, which must make a global
admin (one without `--tenant`); from then on the last global admin cannot
be revoked. Grants are read and changed under the store's roles lock, so
two admins revoking each other at once cannot leave none.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from tqcli.core.context import Context, retrying
from tqcli.errors import Conflict, InvalidInput
from tqcli.security.audit import Journal
from tqcli.security.rbac import ROLES, Access, Grant
from tqcli.store.base import Tx
from tqcli.units import check_name

_USER_NAME = re.compile(r"[^\s\x00-\x1f\x7f]{1,256}")


def check_user(user: str) -> str:
    """`user` if it is a login name (1-256 characters, no spaces or control characters); InvalidInput otherwise."""
    if not isinstance(user, str) or not _USER_NAME.fullmatch(user):
        raise InvalidInput(f"invalid user {user!r}: give a login name (1-256 characters, no spaces), as 'id -un' prints it")
    return user


@dataclass(frozen=True)
class RoleGrant:
    """One grant as `role list` shows it: tenant None when global."""

    user: str
    role: str
    tenant: str | None

    def to_json(self) -> dict[str, Any]:
        """The grant as in `role list --json`."""
        return {"user": self.user, "role": self.role, "tenant": self.tenant}


def check_grant(user: str, role: str, tenant: str | None) -> Grant:
    """The grant as stored (tenant "" when global), once user, role and tenant are valid (InvalidInput otherwise)."""
    check_user(user)
    if role not in ROLES:
        raise InvalidInput(f"invalid role {role!r}: use one of {', '.join(ROLES)}")
    if tenant is not None:
        check_name(tenant, what="tenant")
    return Grant(user, role, tenant or "")


class RoleService:
    """`role grant|revoke|list`."""

    def __init__(self, ctx: Context) -> None:
        self._ctx = ctx

    def list(self) -> list[RoleGrant]:
        """Every grant, by user, role and tenant (global first)."""
        with self._ctx.read() as tx:
            self._ctx.authorize(tx, "audit", "list roles")
            return [RoleGrant(user, role, tenant or None) for user, role, tenant in tx.role_rows()]

    def mine(self) -> Access:
        """The acting user's own grants and what they allow (no role needed: everyone may read their own)."""
        with self._ctx.read() as tx:
            return self._ctx.access(tx)

    @retrying
    def grant(self, user: str, role: str, *, tenant: str | None = None) -> bool:
        """Grant `role` to `user` (on `tenant` only, when given); False when it was already granted."""
        wanted = check_grant(user, role, tenant)
        with self._ctx.change() as (tx, journal):
            return grant_role(self._ctx, tx, journal, wanted)

    @retrying
    def revoke(self, user: str, role: str, *, tenant: str | None = None) -> bool:
        """Take `role` (on `tenant`) from `user`; False when it was not granted. Conflict for the last global admin."""
        wanted = check_grant(user, role, tenant)
        with self._ctx.change() as (tx, journal):
            return revoke_role(self._ctx, tx, journal, wanted)


def grant_role(ctx: Context, tx: Tx, journal: Journal, grant: Grant) -> bool:
    """`RoleService.grant` inside the caller's transaction; False when it existed."""
    ctx.authorize(tx, "admin", f"grant role {grant.role} to {grant.user}")
    tx.lock_roles()
    if tx.count_grants() == 0 and (grant.role != "admin" or grant.tenant):
        raise InvalidInput(
            "the first grant must make a global admin, or no one could grant or revoke roles: "
            f"run 'tqcli role grant {ctx.actor} admin' first (without --tenant)"
        )
    if not tx.add_grant(grant.user, grant.role, grant.tenant):
        return False
    journal.add("role.grant", None, grant.tenant or None, user=grant.user, role=grant.role)
    return True


def revoke_role(ctx: Context, tx: Tx, journal: Journal, grant: Grant) -> bool:
    """`RoleService.revoke` inside the caller's transaction; False when it was not granted."""
    ctx.authorize(tx, "admin", f"revoke role {grant.role} from {grant.user}")
    tx.lock_roles()
    if grant.role == "admin" and not grant.tenant and tx.global_admins() == [grant.user]:
        raise Conflict(
            f"{grant.user} is the last global admin, and without one no one could manage roles: "
            f"grant admin to another user first ('tqcli role grant USER admin'); nothing was changed"
        )
    if not tx.remove_grant(grant.user, grant.role, grant.tenant):
        return False
    journal.add("role.revoke", None, grant.tenant or None, user=grant.user, role=grant.role)
    return True


def replace_grants(ctx: Context, tx: Tx, wanted: list[Grant], *, prune: bool, source: str) -> dict[str, list[dict[str, Any]]]:
    """Make the grants include `wanted` (and, with `prune`, only those), for `apply`; `{"added": [...], "removed": [...]}` of what changed.

    InvalidInput when the result would hold grants but no global admin
    (the caller's transaction then rolls everything back).
    """
    tx.lock_roles()
    current = {Grant(*row) for row in tx.role_rows()}
    added = [grant for grant in sorted(set(wanted)) if grant not in current]
    removed = sorted(current - set(wanted)) if prune else []
    for grant in added:
        tx.add_grant(grant.user, grant.role, grant.tenant)
    for grant in removed:
        tx.remove_grant(grant.user, grant.role, grant.tenant)
    if (added or removed) and tx.count_grants() and not tx.global_admins():
        raise InvalidInput(
            f"{source}: [[roles]]: this would leave roles granted but no global admin, so no one could manage them: "
            "declare a [[roles]] entry with role = \"admin\" and no tenant; nothing was changed"
        )
    shown = {
        "added": [RoleGrant(g.user, g.role, g.tenant or None).to_json() for g in added],
        "removed": [RoleGrant(g.user, g.role, g.tenant or None).to_json() for g in removed],
    }
    return {key: value for key, value in shown.items() if value}
