"""Circuit-breaker and shared-settings queries (mixed into the store's transaction object)."""

from __future__ import annotations

import sqlite3

from tqcli.store.base import BreakerRow, columns

BREAKER_COLUMNS = columns(BreakerRow)

# No index covers tasks.service (adding one is a migration): these two stay bounded instead.
SERVICE_UNFINISHED_SQL = "SELECT 1 FROM tasks WHERE state IN ('pending', 'blocked', 'running') AND service = ? LIMIT 1"
SERVICE_RECENT_SQL = "SELECT 1 FROM tasks WHERE id > (SELECT coalesce(max(id), 0) FROM tasks) - ? AND service = ? LIMIT 1"


class BreakerSQL:
    """Queries on breakers and settings."""

    conn: sqlite3.Connection

    def breaker_row(self, key: str) -> BreakerRow | None:
        """The breaker of one service key, if it has one."""
        row = self.conn.execute(f"SELECT {BREAKER_COLUMNS} FROM breakers WHERE key = ?", (key,)).fetchone()
        return None if row is None else BreakerRow._make(row)

    def breaker_rows(self) -> list[BreakerRow]:
        """Every breaker, by key."""
        return list(map(BreakerRow._make, self.conn.execute(f"SELECT {BREAKER_COLUMNS} FROM breakers ORDER BY key").fetchall()))

    def tripped_breakers(self) -> list[tuple[str, str, int | None, int | None]]:
        """`(key, state, retry_at, trial_task)` of every breaker that is not closed."""
        return self.conn.execute("SELECT key, state, retry_at, trial_task FROM breakers WHERE state != 'closed'").fetchall()

    def noted_breakers(self) -> list[tuple[str, str, int | None, int | None]]:
        """`(key, state, retry_at, trial_task)` of every breaker that is not closed or has counted failures."""
        return self.conn.execute(
            "SELECT key, state, retry_at, trial_task FROM breakers WHERE state != 'closed' OR failures > 0"
        ).fetchall()

    def unclean_breakers(self) -> list[str]:
        """Keys of circuits that are not closed or have counted failures."""
        return [row[0] for row in self.conn.execute("SELECT key FROM breakers WHERE state != 'closed' OR failures > 0")]

    def save_breaker(
        self,
        key: str,
        *,
        state: str,
        failures: int,
        opened_at: int | None,
        retry_at: int | None,
        trial_task: int | None,
        now: int,
    ) -> None:
        """Insert or update a breaker's state, keeping its configured thresholds."""
        self.conn.execute(
            "INSERT INTO breakers (key, state, failures, opened_at, retry_at, trial_task, updated_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (key) DO UPDATE SET state = excluded.state, "
            "failures = excluded.failures, opened_at = excluded.opened_at, retry_at = excluded.retry_at, "
            "trial_task = excluded.trial_task, updated_at = excluded.updated_at",
            (key, state, failures, opened_at, retry_at, trial_task, now),
        )

    def configure_breaker(self, key: str, *, failure_threshold: int | None, recovery_timeout: float | None, now: int) -> None:
        """Set a breaker's own thresholds (None keeps the current value)."""
        self.conn.execute(
            "INSERT INTO breakers (key, failure_threshold, recovery_timeout, updated_at) VALUES (?, ?, ?, ?) "
            "ON CONFLICT (key) DO UPDATE SET failure_threshold = coalesce(excluded.failure_threshold, breakers.failure_threshold), "
            "recovery_timeout = coalesce(excluded.recovery_timeout, breakers.recovery_timeout), updated_at = excluded.updated_at",
            (key, failure_threshold, recovery_timeout, now),
        )

    def clear_breaker_settings(self, key: str, *, failure_threshold: bool, recovery_timeout: bool) -> None:
        """Take away a circuit's own threshold and/or recovery timeout: it follows the defaults again."""
        sets = [f"{column} = NULL" for column, clear in (("failure_threshold", failure_threshold), ("recovery_timeout", recovery_timeout)) if clear]
        if sets:
            self.conn.execute(f"UPDATE breakers SET {', '.join(sets)} WHERE key = ?", (key,))

    def reschedule_open_breakers(self, key: str | None, recovery_timeout: float) -> None:
        """Open circuits retry `recovery_timeout` after they opened: `key`'s, or (None) those on the default."""
        where = "key = ?" if key is not None else "recovery_timeout IS NULL"
        self.conn.execute(
            f"UPDATE breakers SET retry_at = opened_at + ? WHERE state = 'open' AND opened_at IS NOT NULL AND {where}",
            (int(recovery_timeout * 1_000_000), *((key,) if key is not None else ())),
        )

    def service_has_tasks(self, key: str, *, recent: int) -> bool:
        """Whether an unfinished task, or one of the newest `recent` tasks, has service `key`.

        Bounded: unfinished tasks are found through the `tasks_claim` index
        (state first), the rest by a range of the newest ids; no index covers
        `service`, so older finished tasks are not looked at.
        """
        if self.conn.execute(SERVICE_UNFINISHED_SQL, (key,)).fetchone() is not None:
            return True
        return self.conn.execute(SERVICE_RECENT_SQL, (recent, key)).fetchone() is not None

    def setting(self, key: str) -> str | None:
        """A shared setting's value, if set."""
        row = self.conn.execute("SELECT value FROM settings WHERE key = ?", (key,)).fetchone()
        return row[0] if row else None

    def set_setting(self, key: str, value: str) -> None:
        """Set a shared setting."""
        self.conn.execute(
            "INSERT INTO settings (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            (key, value),
        )
