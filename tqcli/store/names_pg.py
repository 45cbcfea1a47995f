"""Names that exist in a PostgreSQL database, for shell completion (see `names_sql` for SQLite's).

Text columns are `COLLATE "C"`, so a prefix is the range [prefix,
prefix || U+10FFFF) of an index. Distinct queues are found by a loose index
scan (a recursive CTE that jumps from one value to the next along
`tasks_counts`); tenants, the third column of that index, by a bounded
DISTINCT over the rows of the prefix range.
"""

from __future__ import annotations

from typing import Any

from tqcli.store import names_sql

Names = list[tuple[str, str | None]]

_TOP = chr(0x10FFFF)
TENANT_ROWS = 200_000  # most task rows one tenant lookup reads; beyond it the answer is partial


def _queues(conn: Any, prefix: str, limit: int) -> list[str]:
    sql = """
        WITH RECURSIVE found(value) AS (
            SELECT (SELECT min(queue) FROM tasks WHERE queue >= %(low)s AND queue < %(high)s)
            UNION ALL
            SELECT (SELECT min(queue) FROM tasks WHERE queue > found.value AND queue < %(high)s)
            FROM found WHERE found.value IS NOT NULL
        )
        SELECT value FROM found WHERE value IS NOT NULL LIMIT %(limit)s
    """
    return [row[0] for row in conn.execute(sql, {"low": prefix, "high": prefix + _TOP, "limit": limit + 1}).fetchall()]


def _tenants(conn: Any, prefix: str, limit: int) -> list[str]:
    sql = (
        "SELECT DISTINCT tenant FROM (SELECT tenant FROM tasks WHERE tenant >= %s AND tenant < %s LIMIT %s) AS t "
        "ORDER BY tenant LIMIT %s"
    )
    return [row[0] for row in conn.execute(sql, (prefix, prefix + _TOP, TENANT_ROWS, limit)).fetchall()]


def lookup(conn: Any, kind: str, prefix: str, limit: int) -> Names:
    """Up to `limit` (value, description) pairs of `kind` starting with `prefix`; `conn` is a `PgConnection`.

    Schedules, services and DAG ids are primary-key ranges, read by SQLite's
    lookups through the connection's `?` translation; queues and tenants
    differ.
    """
    if kind == "queue":
        return names_sql.merged(_queues(conn.raw, prefix, limit), names_sql.keys_in_range(conn, "queues", "name", prefix, limit), limit=limit)
    if kind == "tenant":
        return names_sql.merged(_tenants(conn.raw, prefix, limit), names_sql.keys_in_range(conn, "tenants", "name", prefix, limit), limit=limit)
    return names_sql.LOOKUPS[kind](conn, prefix, limit)
