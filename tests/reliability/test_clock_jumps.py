"""The wall clock jumping back or forward by hours while tasks run."""

import threading
import time

import pytest

import tqcli
from tests.reliability.helpers import consistency_problems
from tqcli.clock import ManualClock
from tqcli.core import dispatcher


class SteppingClock(ManualClock):
    """A wall clock that runs with real time, plus jumps the test makes."""

    def __init__(self) -> None:
        super().__init__(time.time_ns() // 1000)
        self._origin = time.monotonic()
        self._jump = 0

    def now(self) -> int:
        return self._now + int((time.monotonic() - self._origin) * 1_000_000) + self._jump

    def jump(self, seconds: float) -> None:
        self._jump += int(seconds * 1_000_000)


@pytest.mark.parametrize("jump", [-2 * 3600, 2 * 3600])
def test_clock_jumps_lose_no_lease_and_complete_nothing_twice(tmp_path, jump):
    clock = SteppingClock()
    with tqcli.open(tmp_path / "jumps.db", clock=clock) as queue:
        ids = [queue.submit("tests.jobs:sleepy", payload={"seconds": 1.5}) for _ in range(4)]
        worker = queue.worker(concurrency=2, lease=3, poll=0.1, once=True)
        thread = threading.Thread(target=worker.run)
        thread.start()
        deadline = time.monotonic() + 15
        while queue.status().counts["running"] < 2 and time.monotonic() < deadline:
            time.sleep(0.02)
        clock.jump(jump)  # the wall clock jumps while two tasks run
        for _ in range(10):  # another worker looks for lost leases, on the same clock
            with queue._ctx.change() as (tx, journal):
                assert dispatcher.reclaim_expired(tx, journal, now=clock.now(), worker="other") == []
            time.sleep(0.2)
        thread.join(timeout=60)
        assert not thread.is_alive()
        if jump < 0:
            # Tasks queued before a backward jump now look delayed: they wait for the clock
            # to catch up, and are neither lost nor run twice.
            assert queue.status().counts["pending"] == 2
            clock.jump(-jump)
            queue.drain()
        assert [queue.get(task_id).state.value for task_id in ids] == ["completed"] * 4
        assert all(queue.get(task_id).attempts == 1 for task_id in ids)
        assert queue.audit.entries(action="task.lost") == [] and queue.audit.entries(action="task.stale") == []
        assert consistency_problems(queue.location) == []
        assert queue.audit.verify().intact
