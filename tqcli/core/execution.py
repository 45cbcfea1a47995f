"""Running one claimed attempt, and the worker's execution slots.

Every attempt runs in an executor process (see `tqcli.backends.executor`),
which the worker can end on timeout or cancel, and which never outlives
the worker. A slot is a thread that feeds one executor.
"""

from __future__ import annotations

import queue
import threading
from typing import Any, Callable

from tqcli.backends.base import TaskCancelled, TaskTimeout, enforces_limits
from tqcli.backends.executor import ExecutorDied, ExecutorProcess, error_text
from tqcli.backends.plugins import backend_names, load_backend
from tqcli.core.dispatcher import Claim, Outcome


class BackendSet:
    """The backends a worker loaded, and why the others failed to load."""

    def __init__(self, loaded: dict[str, Any], failed: dict[str, str]) -> None:
        self.loaded = loaded
        self.failed = failed

    @classmethod
    def discover(cls, loader: Callable[[str], Any] = load_backend) -> "BackendSet":
        """Load every backend of the entry-point group, keeping the failures aside."""
        loaded: dict[str, Any] = {}
        failed: dict[str, str] = {}
        for name in backend_names():
            try:
                loaded[name] = loader(name)
            except Exception as exc:  # a broken plugin must not stop the others
                failed[name] = error_text(exc)
        return cls(loaded, failed)

    @property
    def names(self) -> list[str]:
        """Names of the loaded backends."""
        return sorted(self.loaded)


def _stopped(reason: str | None) -> Outcome:
    if reason == "cancel":
        return Outcome("cancelled")
    return Outcome("released")


def run_attempt(
    claim: Claim,
    backend: Any,
    executor: ExecutorProcess,
    stop_reason: Callable[[], str | None],
    on_output: Callable[[bytes], None] | None = None,
) -> Outcome:
    """Run one attempt in `executor` and say how it ended; never raises for the task's own failures.

    `stop_reason()` returns None while the attempt may go on, `cancel` when
    the task was cancelled, `release` when the worker is shutting down and
    `lost` when another worker took the task over.
    """
    request = {
        "id": claim.id, "backend": claim.backend, "target": claim.target, "payload": claim.payload,
        "attempt": claim.attempt, "timeout": claim.timeout,
    }
    try:
        reply = executor.run(
            request, timeout=claim.timeout, stop_reason=stop_reason,
            self_enforced=enforces_limits(backend), on_output=on_output,
        )
    except TaskTimeout as exc:
        return Outcome("failed", error=str(exc))
    except TaskCancelled:
        return _stopped(stop_reason())
    except ExecutorDied as exc:
        return Outcome("failed", error=str(exc))
    if reply.get("ok"):
        return Outcome("completed", result=reply["result"])
    if reply.get("cancelled"):
        return _stopped(stop_reason())
    return Outcome("failed", error=reply.get("error") or "failed")


class Slot:
    """One unit of a worker's concurrency: a thread and, when needed, an executor process."""

    def __init__(self, backends: BackendSet, results: "queue.Queue[Any]") -> None:
        self._backends = backends
        self._results = results
        self._inbox: "queue.Queue[Claim | None]" = queue.Queue()
        self._executor = ExecutorProcess()
        self._thread: threading.Thread | None = None
        self.claim: Claim | None = None
        self._stop_reason: str | None = None

    @property
    def idle(self) -> bool:
        """Whether the slot can take a task."""
        return self.claim is None

    def start(self, claim: Claim) -> None:
        """Run `claim` on this slot; its outcome arrives on the results queue."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, name="tqcli-slot", daemon=True)
            self._thread.start()
        self.claim = claim
        self._stop_reason = None
        self._inbox.put(claim)

    def stop(self, reason: str) -> None:
        """Ask the running attempt to stop: `cancel` (task cancelled) or `release` (shutdown)."""
        if self.claim is not None and self._stop_reason is None:
            self._stop_reason = reason

    def done(self) -> None:
        """Mark the slot free after its outcome was recorded."""
        self.claim = None
        self._stop_reason = None

    def _loop(self) -> None:
        while True:
            claim = self._inbox.get()
            if claim is None:
                return
            backend = self._backends.loaded[claim.backend]
            outcome = run_attempt(claim, backend, self._executor, lambda: self._stop_reason)
            self._results.put((self, claim, outcome))

    def close(self) -> None:
        """End the thread and the executor process."""
        if self._thread is not None:
            self._inbox.put(None)
            self._thread.join(timeout=5)
        self._executor.close()
