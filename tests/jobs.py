"""Task functions for the tests, run by real workers through the simple backend."""

import os
import signal
import time
from pathlib import Path


def noop():
    return None


def add(a, b):
    return a + b


def boom(message="boom"):
    raise ValueError(message)


def sleepy(seconds=30.0, marker=None):
    if marker:  # written whole, then renamed: a test that sees the file can read the pid
        Path(f"{marker}.tmp").write_text(str(os.getpid()))
        os.replace(f"{marker}.tmp", marker)
    time.sleep(seconds)
    return "slept"


def record(path, value, seconds=0.0):
    """Append `value` to a file (lets tests count how often a task ran), then take `seconds`."""
    with open(path, "a") as handle:
        handle.write(f"{value}\n")
    time.sleep(seconds)
    return value


def kill_my_worker():
    """A poison pill: kill the worker process running us (our executor's parent)."""
    os.kill(os.getppid(), signal.SIGKILL)
    time.sleep(5)


def not_json():
    return {1, 2}


def flaky(marker):
    """Fails on its first attempt, succeeds afterwards (the marker file remembers)."""
    if not os.path.exists(marker):
        Path(marker).write_text("failed once")
        raise RuntimeError("first attempt fails")
    return "second time lucky"


def poison(ledger):
    """Records the run, then kills the worker running it: every time."""
    with open(ledger, "a") as handle:
        handle.write("ran\n")
    kill_my_worker()


def exclusive(lock, ledger, seconds=4.0, c_call=False):
    """Run while holding an exclusive lock on `lock`; write `overlap` to the ledger if another run holds it.

    With `c_call`, spend the time in one long C call (no Python signal
    handler can run meanwhile) instead of sleeping.
    """
    import fcntl

    handle = open(lock, "a")  # noqa: SIM115 - held for the whole run
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        with open(ledger, "a") as out:
            out.write("overlap\n")
        raise RuntimeError("another run holds the lock") from None
    with open(ledger, "a") as out:
        out.write(f"start {os.getpid()}\n")
    if c_call:
        sum(range(int(seconds * 10**8)))
    else:
        time.sleep(seconds)
    with open(ledger, "a") as out:
        out.write("end\n")
    return "done"


def deep_result(depth=10_000):
    """A result nested too deep for the JSON encoder."""
    value = []
    for _ in range(depth):
        value = [value]
    return value


def close_stdout():
    """Close the process's stdout, as a careless task might."""
    import sys

    sys.stdout.close()
    return "closed"


def say(text="hello"):
    print(text)
    return text



def start_daemon(pid_file):
    """Start a daemon in a session of its own that outlives this call, as a careless task might."""
    import subprocess

    subprocess.Popen(
        ["sh", "-c", f"echo $$ > {pid_file}; exec sleep 300"], start_new_session=True,
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 5
    while not os.path.exists(pid_file) and time.monotonic() < deadline:
        time.sleep(0.01)
    return "started"


def close_descriptors():
    """Close file descriptors 1 and 2 themselves, not just sys.stdout."""
    os.close(1)
    os.close(2)
    return "closed"


def print_both(text="hello"):
    import sys

    print(text)
    print(text, file=sys.stderr)
    return text


def tally_and_fail(ledger):
    """Notes in `ledger` that an attempt started, then fails at once: lets tests count the attempts that ran."""
    with open(ledger, "a") as handle:
        handle.write("ran\n")
    raise RuntimeError("the service is down")
