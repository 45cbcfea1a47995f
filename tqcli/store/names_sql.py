"""Names that exist in a database, found through indexes (for shell completion).

Each lookup takes a connection and a typed prefix and returns at most
`limit` (value, description) pairs. None reads more than a few index pages
per name it returns, however many tasks there are: distinct queues and
tenants are found by jumping from one value to the next along an index
(a skip scan written as a recursive CTE), not by scanning tasks.
"""

from __future__ import annotations

import sqlite3
from typing import Callable

Names = list[tuple[str, str | None]]

# Above every character a name can continue with: `name < prefix || TOP` bounds a prefix range.
_TOP = chr(0x10FFFF)
_MAX_ID = 2**63 - 1


def _queues(conn: sqlite3.Connection, prefix: str, limit: int) -> list[str]:
    """Distinct tasks.queue values starting with `prefix`: one seek of the tasks_counts index (queue, state, tenant) each."""
    sql = """
        WITH RECURSIVE found(value) AS (
            SELECT (SELECT min(queue) FROM tasks WHERE queue >= :low AND queue < :high)
            UNION ALL
            SELECT (SELECT min(queue) FROM tasks WHERE queue >= found.value || char(1) AND queue < :high)
            FROM found WHERE found.value IS NOT NULL
            LIMIT :limit
        )
        SELECT value FROM found WHERE value IS NOT NULL
    """
    return [row[0] for row in conn.execute(sql, {"low": prefix, "high": prefix + _TOP, "limit": limit + 1}).fetchall()]


# Most index seeks one tenant lookup makes: enough for every (queue, state,
# tenant) combination of a large installation; beyond it the answer is partial.
TENANT_STEPS = 20_000


def _tenants(conn: sqlite3.Connection, prefix: str) -> list[str]:
    """Distinct tasks.tenant values starting with `prefix`, by a skip scan of tasks_counts (queue, state, tenant).

    Tenant is the index's third column, so the walk visits each (queue,
    state) pair: within one it jumps to the prefix, steps from tenant to
    tenant while they match, then jumps to the next pair. A step is one
    seek; the key (queue, state, tenant) travels as one string joined by
    char(1), which no name can contain. "After x" is written ">= x || char(1)":
    SQLite seeks straight to that, where "> x" steps over every row equal to x.
    """
    seek = "SELECT queue || char(1) || state || char(1) || tenant FROM tasks WHERE {} ORDER BY queue, state, tenant LIMIT 1"
    # The parts of found.k, written out: a recursive CTE may not read its table in a subquery.
    rest = "substr(k, instr(k, char(1)) + 1)"
    q = "substr(k, 1, instr(k, char(1)) - 1)"
    s = f"substr({rest}, 1, instr({rest}, char(1)) - 1)"
    t = f"substr({rest}, instr({rest}, char(1)) + 1)"
    sql = f"""
        WITH RECURSIVE found(k) AS (
            SELECT ({seek.format("(queue, state, tenant) >= ('', '', :low)")})
            UNION ALL
            SELECT CASE
                WHEN {t} < :low THEN ({seek.format(f"(queue, state, tenant) >= ({q}, {s}, :low)")})
                WHEN {t} >= :high THEN ({seek.format(f"(queue, state, tenant) >= ({q}, {s} || char(1), '')")})
                ELSE ({seek.format(f"(queue, state, tenant) >= ({q}, {s}, {t} || char(1))")})
            END
            FROM found WHERE k IS NOT NULL
            LIMIT {TENANT_STEPS}
        )
        SELECT DISTINCT {t} FROM found WHERE k IS NOT NULL
    """
    rows = conn.execute(sql, {"low": prefix, "high": prefix + _TOP}).fetchall()
    return [row[0] for row in rows if row[0].startswith(prefix)]


def keys_in_range(conn: sqlite3.Connection, table: str, column: str, prefix: str, limit: int) -> list[str]:
    """Values of a table's primary key starting with `prefix`, in order."""
    sql = f"SELECT {column} FROM {table} WHERE {column} >= ? AND {column} < ? ORDER BY {column} LIMIT ?"
    return [row[0] for row in conn.execute(sql, (prefix, prefix + _TOP, limit)).fetchall()]


def merged(*lists: list[str], limit: int) -> Names:
    return [(value, None) for value in sorted(set().union(*lists))[:limit]]


def queue_names(conn: sqlite3.Connection, prefix: str, limit: int) -> Names:
    """Queues that hold tasks or have settings."""
    return merged(_queues(conn, prefix, limit), keys_in_range(conn, "queues", "name", prefix, limit), limit=limit)


def tenant_names(conn: sqlite3.Connection, prefix: str, limit: int) -> Names:
    """Tenants that own tasks or have settings."""
    return merged(_tenants(conn, prefix), keys_in_range(conn, "tenants", "name", prefix, limit), limit=limit)


def schedule_names(conn: sqlite3.Connection, prefix: str, limit: int) -> Names:
    """Schedules, with their cron expression."""
    sql = "SELECT name, cron FROM schedules WHERE name >= ? AND name < ? ORDER BY name LIMIT ?"
    return [(name, cron) for name, cron in conn.execute(sql, (prefix, prefix + _TOP, limit)).fetchall()]


def service_keys(conn: sqlite3.Connection, prefix: str, limit: int) -> Names:
    """Service keys that have a circuit breaker."""
    return [(key, None) for key in keys_in_range(conn, "breakers", "key", prefix, limit)]


def dag_ids(conn: sqlite3.Connection, prefix: str, limit: int) -> Names:
    """DAG ids starting with the typed digits, with their names; the newest when nothing is typed.

    The ids that start with digits P are the ranges P, P0-P9, P00-P99, ...:
    one primary-key range per length, so this never scans the table.
    """
    if not prefix:
        rows = conn.execute("SELECT id, name FROM dags ORDER BY id DESC LIMIT ?", (limit,)).fetchall()
        return [(str(dag_id), name) for dag_id, name in rows]
    if not (prefix.isascii() and prefix.isdigit()) or prefix.startswith("0"):
        return []
    found: Names = []
    start, scale = int(prefix), 1
    while start * scale <= _MAX_ID and len(found) < limit:
        low, high = start * scale, min((start + 1) * scale - 1, _MAX_ID)
        rows = conn.execute("SELECT id, name FROM dags WHERE id BETWEEN ? AND ? ORDER BY id LIMIT ?", (low, high, limit - len(found))).fetchall()
        found.extend((str(dag_id), name) for dag_id, name in rows)
        scale *= 10
    return found


LOOKUPS: dict[str, Callable[[sqlite3.Connection, str, int], Names]] = {
    "queue": queue_names,
    "tenant": tenant_names,
    "schedule": schedule_names,
    "service": service_keys,
    "dag": dag_ids,
}
