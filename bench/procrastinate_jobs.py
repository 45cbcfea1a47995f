"""The benchmark's no-op and 10 ms jobs for procrastinate, on the database BENCH_PG_URL names.

Imported by procrastinate's own worker, in bench/.env-pg (never the
project's environment): `procrastinate --app=procrastinate_jobs.app worker
--one-shot`. Each job does what benchjobs.noop and benchjobs.nap do for
tqcli: it waits at benchjobs.barrier once per process and stamps its key
in BENCH_STAMPS. A worker runs one job at a time
(procrastinate's default concurrency, 1, as one tqcli worker's); fetching,
polling and LISTEN/NOTIFY are procrastinate's defaults.
"""

import asyncio
import os
import time

import benchjobs
from procrastinate import App, PsycopgConnector

NAP = 0.01

app = App(connector=PsycopgConnector(conninfo=os.environ.get("BENCH_PG_URL", "")))


@app.task(name="noop")
async def noop(key: int) -> None:
    benchjobs.noop(key)  # passes the barrier, stamps


@app.task(name="nap")
async def nap(key: int) -> None:
    benchjobs.barrier()
    started = time.monotonic_ns()
    await asyncio.sleep(NAP)
    benchjobs.record(key, started)
