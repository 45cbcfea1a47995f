"""Who may do what: SPEC's permission table as data, and the rule that reads it.

A permission is one row of the table ("read", "submit", "change_task",
"operate", "audit", "admin", "decrypt"). A grant is a role, global (tenant
"") or limited to one tenant. A database with no grant at all runs open:
everyone may do everything. This module holds rules only; the one place
they are applied is `Context.authorize` (tqcli.core.context).
"""

from __future__ import annotations

from typing import Iterable, NamedTuple

ROLES = ("admin", "operator", "submitter", "viewer", "auditor")

# Each permission and the roles that hold it (SPEC "Access control").
PERMISSIONS: dict[str, frozenset[str]] = {
    "read": frozenset(ROLES),
    "submit": frozenset({"admin", "operator", "submitter"}),
    "change_task": frozenset({"admin", "operator"}),  # cancel, bump, edit; a submitter's own tasks too
    "operate": frozenset({"admin", "operator"}),
    "audit": frozenset({"admin", "auditor"}),
    "admin": frozenset({"admin"}),
    "decrypt": frozenset({"admin", "operator"}),  # an encrypted value in clear; a submitter's own tasks too
}

# Permissions a submitter holds on the tasks it submitted.
OWNER_PERMISSIONS = frozenset({"change_task", "decrypt"})


class Grant(NamedTuple):
    """One role held by one user, on every tenant (tenant "") or on one."""

    user: str
    role: str
    tenant: str


def roles_for(permission: str) -> list[str]:
    """The roles holding `permission`, in the table's order (for messages)."""
    holders = PERMISSIONS[permission]
    return [role for role in ROLES if role in holders]


class Access:
    """The grants of one user, and what they allow.

    `open` is True when the database has no grant at all. `tenants(...)`
    answers None for "every tenant", else the set of tenants a permission
    covers, so a listing can be limited to them.
    """

    __slots__ = ("user", "open", "grants")

    def __init__(self, user: str, grants: Iterable[tuple[str, str]], *, open: bool) -> None:  # noqa: A002
        self.user = user
        self.open = open
        self.grants = tuple((role, tenant) for role, tenant in grants)

    def allows(self, permission: str, *, tenant: str | None = None, owner: str | None = None) -> bool:
        """Whether the user may use `permission` on an object of `tenant` (None: one of no tenant) submitted by `owner`."""
        if self.open:
            return True
        holders = PERMISSIONS[permission]
        own = owner is not None and owner == self.user and permission in OWNER_PERMISSIONS
        for role, scope in self.grants:
            if scope and scope != tenant:
                continue
            if role in holders or (own and role == "submitter"):
                return True
        return False

    def tenants(self, permission: str) -> frozenset[str] | None:
        """The tenants `permission` covers: None when it covers them all (a global grant, or an open database)."""
        if self.open:
            return None
        holders = PERMISSIONS[permission]
        scoped = set()
        for role, scope in self.grants:
            if role in holders:
                if not scope:
                    return None
                scoped.add(scope)
        return frozenset(scoped)

    @property
    def global_admin(self) -> bool:
        """Whether the user holds admin without a tenant (and may act as another user)."""
        return ("admin", "") in self.grants

    def describe(self) -> str:
        """The user's grants as a message shows them: `viewer, operator on acme`, or `no role`."""
        if not self.grants:
            return "no role"
        return ", ".join(role if not tenant else f"{role} on {tenant}" for role, tenant in self.grants)


def denial_message(access: Access, action: str, permission: str, tenant: str | None) -> str:
    """The `permission denied` text: the user, the action, the roles that would allow it, and what to do."""
    needed = " or ".join(roles_for(permission))
    where = f" for tenant {tenant}" if tenant else " (granted without --tenant)"
    own = ", or submitter for their own tasks" if permission in OWNER_PERMISSIONS else ""
    return (
        f"user {access.user} may not {action}: it needs the {needed} role{where}{own}; "
        f"{access.user} holds {access.describe()}; ask an admin to run 'tqcli role grant {access.user} ROLE'"
    )
