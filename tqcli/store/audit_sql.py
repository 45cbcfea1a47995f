"""Audit-chain and metadata queries (mixed into the store's transaction object)."""

from __future__ import annotations

import sqlite3
from typing import Any, Iterable, Iterator, Sequence

from tqcli.store.base import AuditLink, AuditRow, columns
from tqcli.store.lean_insert import LeanInsert

AUDIT_COLUMNS = columns(AuditRow)
# A chain without an audit key leaves key_id NULL: written so, not bound (see tqcli.store.lean_insert).
_INSERT_AUDIT = LeanInsert("audit", AUDIT_COLUMNS.split(", "), ("key_id",))


class AuditSQL:
    """Queries on the audit table and the meta table."""

    conn: sqlite3.Connection

    def audit_head(self) -> tuple[int, str, str | None] | None:
        """`(seq, hash, key_id)` of the newest entry, or None for an empty chain."""
        return self.conn.execute("SELECT seq, hash, key_id FROM audit ORDER BY seq DESC LIMIT 1").fetchone()

    def append_audit(self, link: AuditLink) -> None:
        """Append the rows `link(head)` makes from the chain's head (`(seq, hash, key_id)`, None when empty).

        The store owns the head: no other transaction appends between the
        read and the insert (on SQLite the write lock already says so).
        """
        self.insert_audit(link(self.audit_head()))

    def insert_audit(self, rows: Iterable[tuple[Any, ...]]) -> None:
        """Append entries given in `AUDIT_COLUMNS` order."""
        _INSERT_AUDIT.run(self.conn, rows)

    def iter_audit(self, first: int | None = None, last: int | None = None) -> Iterator[tuple[Any, ...]]:
        """Entries in stored order (those with seq from `first` to `last`), streamed row by row."""
        if first is None:
            return self.conn.execute(f"SELECT {AUDIT_COLUMNS} FROM audit ORDER BY seq")
        return self.conn.execute(f"SELECT {AUDIT_COLUMNS} FROM audit WHERE seq BETWEEN ? AND ? ORDER BY seq", (first, last))

    def audit_bounds(self) -> tuple[int, int, int]:
        """`(count, lowest seq, highest seq)` of the entries (zeros when there are none)."""
        count, low, high = self.conn.execute("SELECT count(*), min(seq), max(seq) FROM audit").fetchone()
        return count, low or 0, high or 0

    def audit_row(self, seq: int) -> AuditRow | None:
        """The entry with sequence number `seq`, if it exists."""
        row = self.conn.execute(f"SELECT {AUDIT_COLUMNS} FROM audit WHERE seq = ?", (seq,)).fetchone()
        return None if row is None else AuditRow._make(row)

    def audit_entries(
        self,
        *,
        task_id: int | None,
        actor: str | None,
        action: str | None,
        since: str | None,
        limit: int | None,
        tenants: Sequence[str] | None = None,
    ) -> list[AuditRow]:
        """The newest `limit` entries matching the filters (None: all), returned in chain order; `tenants` (None: all) limits them to those tenants' entries."""
        clauses: list[str] = []
        params: list[Any] = []
        for clause, value in (("task_id = ?", task_id), ("actor = ?", actor), ("action = ?", action), ("ts >= ?", since)):
            if value is not None:
                clauses.append(clause)
                params.append(value)
        if tenants is not None:
            names = sorted(tenants)
            clauses.append(f"tenant IN ({', '.join('?' * len(names))})" if names else "1 = 0")
            params.extend(names)
        where = " WHERE " + " AND ".join(clauses) if clauses else ""
        sql = f"SELECT {AUDIT_COLUMNS} FROM audit{where} ORDER BY seq DESC LIMIT ?"
        rows = self.conn.execute(sql, (*params, self.limit_value(limit))).fetchall()  # type: ignore[attr-defined]
        return [AuditRow._make(row) for row in reversed(rows)]

    def audit_has_action(self, action: str) -> bool:
        """Whether any entry has this action (no index covers it: asked only for names this tqcli does not know)."""
        return self.conn.execute("SELECT 1 FROM audit WHERE action = ? LIMIT 1", (action,)).fetchone() is not None

    def meta_value(self, key: str) -> str | None:
        """A value from the meta table (for example the database's `db_id`)."""
        row = self.conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return row[0] if row else None

    def count_grants(self) -> int:
        """How many role grants exist (0 means the database runs open)."""
        return self.conn.execute("SELECT count(*) FROM roles").fetchone()[0]

    def is_global_admin(self, user: str) -> bool:
        """Whether `user` holds the admin role without a tenant restriction."""
        sql = "SELECT 1 FROM roles WHERE user_name = ? AND role = 'admin' AND tenant = ''"
        return self.conn.execute(sql, (user,)).fetchone() is not None

    def grants_of(self, user: str) -> tuple[list[tuple[str, str]], bool]:
        """`user`'s grants as `(role, tenant)` (tenant "" when global), and whether any grant exists at all; one statement."""
        sql = (
            "SELECT role, tenant FROM roles WHERE user_name = ? "
            "UNION ALL SELECT '', '' WHERE EXISTS (SELECT 1 FROM roles) ORDER BY 1, 2"
        )
        rows = self.conn.execute(sql, (user,)).fetchall()
        return [(role, tenant) for role, tenant in rows if role], bool(rows)

    def role_rows(self) -> list[tuple[str, str, str]]:
        """Every grant as `(user, role, tenant)`, by user, role and tenant."""
        return self.conn.execute("SELECT user_name, role, tenant FROM roles ORDER BY user_name, role, tenant").fetchall()

    def lock_roles(self) -> None:
        """Hold the grants still until commit, so two revokes cannot each leave the other's admin last (no-op on SQLite's single writer)."""

    def add_grant(self, user: str, role: str, tenant: str) -> bool:
        """Grant `role` to `user` (on `tenant`, "" for all); False when it was already granted."""
        sql = "INSERT INTO roles (user_name, role, tenant) VALUES (?, ?, ?) ON CONFLICT DO NOTHING"
        return self.conn.execute(sql, (user, role, tenant)).rowcount > 0

    def remove_grant(self, user: str, role: str, tenant: str) -> bool:
        """Take `role` on `tenant` from `user`; False when it was not granted."""
        sql = "DELETE FROM roles WHERE user_name = ? AND role = ? AND tenant = ?"
        return self.conn.execute(sql, (user, role, tenant)).rowcount > 0

    def global_admins(self) -> list[str]:
        """The users holding admin without a tenant, by name."""
        sql = "SELECT user_name FROM roles WHERE role = 'admin' AND tenant = '' ORDER BY user_name"
        return [row[0] for row in self.conn.execute(sql)]
