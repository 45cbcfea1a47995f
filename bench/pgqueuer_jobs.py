"""The benchmark's no-op and 10 ms jobs for PgQueuer, on the database BENCH_PG_URL names; run, a drain worker.

Run in bench/.env-pg (never the project's environment) as
`python pgqueuer_jobs.py`: what `pgq run pgqueuer_jobs:factory --mode drain
--log-level WARNING` does, through PgQueuer's own `supervisor.run` on
uvloop as `pgq run` runs it. `pgq run` itself fails in pgqueuer 1.6.0 with
the typer it installs (its --log-level parser hands the level as a str
where an enum is expected: "AttributeError: 'str' object has no attribute
'name'", with or without the option).

Each job does what benchjobs.noop and benchjobs.nap do for tqcli: it waits
at benchjobs.barrier once per process and stamps its key in BENCH_STAMPS.
PgQueuer runs all the jobs of a dequeued batch at once (asyncio tasks); to
run one job at a time per process, as one tqcli worker and one
procrastinate worker do, the handlers take a per-process lock around the
work. Dequeueing (batch size 10, LISTEN/NOTIFY, polling) stays PgQueuer's
default.
"""

import asyncio
import os
import time
from contextlib import asynccontextmanager

import benchjobs

NAP = 0.01


@asynccontextmanager
async def factory():
    """A PgQueuer on one asyncpg connection, with the two entrypoints."""
    import asyncpg
    from pgqueuer import PgQueuer
    from pgqueuer.db import AsyncpgDriver

    connection = await asyncpg.connect(os.environ["BENCH_PG_URL"])
    pgq = PgQueuer(AsyncpgDriver(connection))
    one_at_a_time = asyncio.Lock()

    @pgq.entrypoint("noop")
    async def noop(job) -> None:
        async with one_at_a_time:
            benchjobs.noop(int(job.payload))

    @pgq.entrypoint("nap")
    async def nap(job) -> None:
        async with one_at_a_time:
            benchjobs.barrier()
            started = time.monotonic_ns()
            await asyncio.sleep(NAP)
            benchjobs.record(int(job.payload), started)

    try:
        yield pgq
    finally:
        await connection.close()


def main() -> None:
    import uvloop
    from pgqueuer.adapters.cli import supervisor
    from pgqueuer.core import logconfig
    from pgqueuer.domain import types

    logconfig.setup_fancy_logger(logconfig.LogLevel.WARNING)
    uvloop.run(supervisor.run(factory, mode=types.QueueExecutionMode.drain))


if __name__ == "__main__":
    main()
