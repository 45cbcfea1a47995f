"""Huey's worker loop over N no-op tasks in a SqliteHuey database; prints the seconds it took.

Runs in the benchmark's own environment (bench/.env), where Huey is installed.
Usage: huey_drain.py DB N [normal]  (normal: synchronous=NORMAL like tqcli,
instead of Huey as shipped, which leaves SQLite's default FULL)
"""

import json
import sys
import threading
import time

from huey import SqliteHuey
from huey.consumer import Worker

from benchjobs import noop as noop_function

db, count = sys.argv[1], int(sys.argv[2])
huey = SqliteHuey(filename=db)
if sys.argv[3:] == ["normal"]:
    huey.storage.conn.execute("pragma synchronous = NORMAL")
noop = huey.task()(noop_function)
for _ in range(count):
    noop()
worker = Worker(huey, threading.Event(), default_delay=0.1, max_delay=1.0, backoff=1.15)
started = time.perf_counter()
for _ in range(count):  # each turn of Huey's worker loop dequeues and executes one task
    worker.loop()
elapsed = time.perf_counter() - started
assert huey.pending_count() == 0, "Huey left tasks in its queue"
print(json.dumps({"seconds": elapsed}))
