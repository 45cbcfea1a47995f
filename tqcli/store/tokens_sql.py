"""API tokens: the `tokens` table (mixed into the store's transaction object).

Only a token's SHA-256 hex is stored (see `tqcli.security.tokens`). Ids are
max(id) + 1, taken under the write lock: SQLite's write transaction holds
the whole database, and on PostgreSQL an advisory lock lets one creator at
a time read the highest id. Rows are never deleted, so no id is reused.
"""

from __future__ import annotations

import sqlite3
from typing import Callable

from tqcli.store.base import TokenRow, columns

# The advisory lock key that serialises token creation on PostgreSQL.
TOKENS_LOCK = 0x7471636C_00000003


class TokenSQL:
    """Writes and reads of `tokens`."""

    conn: sqlite3.Connection

    def insert_token(self, user: str, name: str | None, hash_for: Callable[[int], str], now: int, expires_at: int | None) -> int:
        """Store a new token of `user`; its id. `hash_for(id)` gives the hash to store (the text names the id)."""
        if not isinstance(self.conn, sqlite3.Connection):
            self.conn.execute("SELECT pg_advisory_xact_lock(?)", (TOKENS_LOCK,)).fetchall()
        token_id = int(self.conn.execute("SELECT coalesce(max(id), 0) + 1 FROM tokens").fetchone()[0])
        self.conn.execute(
            "INSERT INTO tokens (id, user_name, name, hash, created_at, expires_at) VALUES (?, ?, ?, ?, ?, ?)",
            (token_id, user, name, hash_for(token_id), now, expires_at),
        )
        return token_id

    def token_row(self, token_id: int) -> TokenRow | None:
        """One token, or None."""
        row = self.conn.execute(f"SELECT {columns(TokenRow)} FROM tokens WHERE id = ?", (token_id,)).fetchone()
        return TokenRow._make(row) if row else None

    def token_rows(self) -> list[TokenRow]:
        """Every token, by id."""
        return list(map(TokenRow._make, self.conn.execute(f"SELECT {columns(TokenRow)} FROM tokens ORDER BY id").fetchall()))

    def revoke_token(self, token_id: int, now: int) -> bool:
        """Mark a token revoked at `now`; False when it was already revoked (or does not exist)."""
        cursor = self.conn.execute("UPDATE tokens SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL", (now, token_id))
        return cursor.rowcount > 0

    def set_token_expiry(self, token_id: int, expires_at: int | None) -> bool:
        """Set a live token's expiry; False when it is revoked or does not exist."""
        cursor = self.conn.execute("UPDATE tokens SET expires_at = ? WHERE id = ? AND revoked_at IS NULL", (expires_at, token_id))
        return cursor.rowcount > 0

    def touch_token(self, token_id: int, now: int, before: int) -> None:
        """Record a use at `now` unless one was recorded after `before` (at most one write a minute)."""
        self.conn.execute(
            "UPDATE tokens SET last_used_at = ? WHERE id = ? AND (last_used_at IS NULL OR last_used_at <= ?)", (now, token_id, before)
        )
