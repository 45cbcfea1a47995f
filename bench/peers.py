"""Set up, fill and check procrastinate's and PgQueuer's queues for bench/run.py.

Runs in bench/.env-pg, where both are installed:

    peers.py install TOOL URL          # the tool's schema, by its own CLI
    peers.py fill TOOL URL JOB COUNT   # COUNT jobs (noop or nap), keys 0..COUNT-1, in bulk
    peers.py reset TOOL URL            # empty the tool's tables (between drains)
    peers.py left TOOL URL             # JSON: how many jobs are not done
"""

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
BIN = Path(sys.executable).parent


def install(tool: str, url: str) -> None:
    env = dict(os.environ, BENCH_PG_URL=url, PYTHONPATH=str(HERE))
    if tool == "procrastinate":
        command = [str(BIN / "procrastinate"), "--app=procrastinate_jobs.app", "schema", "--apply"]
    else:
        command = [str(BIN / "pgq"), "--pg-dsn", url, "install"]
    subprocess.run(command, env=env, check=True, stdout=subprocess.DEVNULL, cwd=HERE)


async def fill(tool: str, url: str, job: str, count: int) -> None:
    os.environ["BENCH_PG_URL"] = url
    if tool == "procrastinate":
        import procrastinate_jobs as jobs

        task = {"noop": jobs.noop, "nap": jobs.nap}[job]
        async with jobs.app.open_async():
            for start in range(0, count, 10_000):
                await task.batch_defer_async(*({"key": key} for key in range(start, min(count, start + 10_000))))
    else:
        import asyncpg
        from pgqueuer.db import AsyncpgDriver
        from pgqueuer.queries import Queries

        connection = await asyncpg.connect(url)
        queries = Queries(AsyncpgDriver(connection))
        for start in range(0, count, 10_000):
            keys = range(start, min(count, start + 10_000))
            await queries.enqueue([job] * len(keys), [str(key).encode() for key in keys], [0] * len(keys))
        await connection.close()


# The tables each tool's jobs leave rows in; emptied between drains, so every drain starts on empty tables.
TABLES = {
    "procrastinate": ("procrastinate_jobs", "procrastinate_events", "procrastinate_periodic_defers", "procrastinate_workers"),
    "pgqueuer": ("pgqueuer", "pgqueuer_log", "pgqueuer_statistics"),
}


async def reset(tool: str, url: str) -> None:
    import asyncpg

    connection = await asyncpg.connect(url)
    try:
        present = {row[0] for row in await connection.fetch("SELECT tablename FROM pg_tables WHERE schemaname = current_schema()")}
        tables = [name for name in TABLES[tool] if name in present]
        await connection.execute(f"TRUNCATE {', '.join(tables)} RESTART IDENTITY CASCADE")
    finally:
        await connection.close()


async def left(tool: str, url: str) -> dict:
    import asyncpg

    connection = await asyncpg.connect(url)
    try:
        if tool == "procrastinate":
            rows = await connection.fetch("SELECT status::text, count(*) FROM procrastinate_jobs GROUP BY 1")
            states = {row[0]: row[1] for row in rows}
            return {"left": sum(n for state, n in states.items() if state != "succeeded"), "states": states}
        rows = await connection.fetch("SELECT status::text, count(*) FROM pgqueuer GROUP BY 1")
        states = {row[0]: row[1] for row in rows}
        return {"left": sum(states.values()), "states": states}
    finally:
        await connection.close()


def main() -> None:
    what, tool, url, *rest = sys.argv[1:]
    assert tool in ("procrastinate", "pgqueuer"), tool
    if what == "install":
        install(tool, url)
    elif what == "fill":
        asyncio.run(fill(tool, url, rest[0], int(rest[1])))
    elif what == "reset":
        asyncio.run(reset(tool, url))
    elif what == "left":
        print(json.dumps(asyncio.run(left(tool, url))))
    else:
        raise SystemExit(f"unknown command {what}")


if __name__ == "__main__":
    main()
