"""The task functions the queues run in the benchmark.

`noop` and `nap` take an optional `key`: given one, and BENCH_STAMPS naming a
file, each run appends one line `KEY START_NS END_NS` (CLOCK_MONOTONIC, one
clock for every process on the machine) with a single write(2) on an
O_APPEND descriptor opened once per process, a few microseconds. The drains
read those lines for the span from the first task's start to the last one's
end, and to check that every task ran exactly once, whichever queue ran it.

With BENCH_BARRIER naming an empty folder and BENCH_PARTIES a number N, the
first task a process runs waits until N processes have reached theirs (each
leaves a file there): a drain by N workers is then timed from when all N
run, not while the last of them are still starting (on two cores, four
Python workers take a second or more to start, and the first would drain
much of the queue alone meanwhile).
"""

import os
import time

_stamps = None  # this process's descriptor on BENCH_STAMPS, opened at the first stamp
_arrived = False  # whether this process passed the barrier
BARRIER_TIMEOUT = 20.0  # seconds a process waits for the others before it goes on anyway (the drain reports it)


def barrier():
    """Wait, once per process, until BENCH_PARTIES processes have called this (see above)."""
    global _arrived
    if _arrived:
        return
    _arrived = True
    folder, parties = os.environ.get("BENCH_BARRIER"), int(os.environ.get("BENCH_PARTIES") or 0)
    if not folder:
        return
    open(os.path.join(folder, str(os.getpid())), "w").close()
    deadline = time.monotonic() + BARRIER_TIMEOUT
    while len(os.listdir(folder)) < parties and time.monotonic() < deadline:
        time.sleep(0.001)


def record(key, started):
    """Append `key started now` to BENCH_STAMPS (nothing when it is unset)."""
    global _stamps
    if _stamps is None:
        path = os.environ.get("BENCH_STAMPS")
        if not path:
            return
        _stamps = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)
    os.write(_stamps, f"{key} {started} {time.monotonic_ns()}\n".encode())


def noop(key=None):
    """Does nothing: the benchmark measures the queue, not the work."""
    if key is not None:
        barrier()
        record(key, time.monotonic_ns())


def chatty():
    """Prints one line: what capturing a task's output (`tqcli logs`) costs a task that prints."""
    print("one line of output, as a task that says what it did")


def nap(seconds=0.01, key=None):
    """Sleeps (10 ms by default): a latency-bound task, waiting as on a network call."""
    if key is not None:
        barrier()
    started = time.monotonic_ns()
    time.sleep(seconds)
    if key is not None:
        record(key, started)
