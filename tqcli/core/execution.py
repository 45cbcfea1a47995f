"""Running one claimed attempt, and the worker's execution slots.

Every attempt runs in an executor process (see `tqcli.backends.executor`),
which the worker can end on timeout or cancel, and which never outlives
the worker or its lease (see `tqcli.backends.fence`). A slot is a thread
that feeds one executor; it is supervised: an unexpected exception in it
becomes a failed or released attempt and a `SlotCrashed` notice for the
worker, never a hung worker.

A failure stops its service in the slot at once: the executor gives back
the service's requests waiting behind the failed one (and any sent before
the slot read the failure), and the slot gives back, unsent, its claims of
that service made before the worker recorded the failure. Only claims made
through the circuit breaker after that run, so with one slot no attempt of
a service starts after the failure that opened its circuit.
"""

from __future__ import annotations

import queue
import threading
import time
from typing import TYPE_CHECKING, Any, Callable

from tqcli.backends.base import TaskCancelled, TaskTimeout, enforces_limits
from tqcli.backends.executor import ExecutorDied, ExecutorProcess, error_text
from tqcli.backends.fence import attempt_marker
from tqcli.backends.plugins import backend_names, load_backend
from tqcli.core.dispatcher import WORKER_LOST, Claim, Outcome

if TYPE_CHECKING:
    from tqcli.core.output import OutputCapture


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


def request_of(claim: Claim, db_id: str) -> dict[str, Any]:
    """The executor's request for one claimed attempt of database `db_id`."""
    return {
        "token": claim.token, "id": claim.id, "marker": attempt_marker(db_id, claim.id, claim.claim), "backend": claim.backend,
        "target": claim.target, "payload": claim.payload, "attempt": claim.attempt, "timeout": claim.timeout,
        "cwd": claim.cwd, "env": claim.env, "service": claim.service,
    }


class SlotCrashed:
    """A slot's thread raised: what it held was reported; the worker decides whether to go on."""

    def __init__(self, slot: "Slot", error: BaseException) -> None:
        self.slot = slot
        self.error = error


def run_attempt(
    claim: Claim,
    backend: Any,
    executor: ExecutorProcess,
    stop_reason: Callable[[], str | None],
    on_output: Callable[..., None] | None = None,
    db_id: str = "",
) -> Outcome:
    """Run one attempt in `executor` and say how it ended; never raises for the task's own failures.

    `stop_reason()` returns None while the attempt may go on, `cancel` when
    the task was cancelled, `release` when the worker is shutting down and
    `lost` when another worker took the task over. `on_output(chunk,
    stream, token)` gets what the attempt prints as it arrives.
    """
    request = request_of(claim, db_id)
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
    return outcome_of(reply, stop_reason(), claim)


# A slot keeps up to `window` short tasks in line at its executor, so neither
# the executor nor the database waits for the other; the window is sized so
# the tasks in line take about this long. When the running task outlasts the
# estimate, the executor gives back what waits behind it (see
# tqcli.backends.executor.LINE_PATIENCE).
WINDOW_SECONDS = 0.02
MAX_WINDOW = 128


def outcome_of(reply: dict[str, Any], reason: str | None, claim: Claim | None = None) -> Outcome:
    """How an attempt ended, from the executor's reply; for an encrypted task, with what the task returned or raised sealed.

    Sealed here, as soon as the reply is read, so the clear text never
    reaches the database, the audit chain or the outcome journal. An
    encrypted task's outcome that cannot be sealed is given back.
    """
    if reply.get("ok"):
        outcome = Outcome("completed", result=reply["result"])
    elif reply.get("returned"):
        return Outcome("released")  # given back unstarted, behind a slow task
    elif reply.get("cancelled") or reply.get("skipped"):
        return _stopped(reason)
    else:
        outcome = Outcome("failed", error=reply.get("error") or "failed", final=bool(reply.get("final")), traceback=reply.get("traceback"))
    if claim is not None and claim.encrypted:
        if claim.sealer is None:
            return Outcome("released")
        claim.sealer.seal_outcome(claim, outcome)
    return outcome


class Slot:
    """One unit of a worker's concurrency: a thread feeding one executor process.

    The main thread gives it claims (`give`) and reads one outcome per claim
    from the results queue; `stop` asks for one attempt to stop, whether it
    runs or still waits in line.
    """

    def __init__(
        self, backends: BackendSet, results: "queue.Queue[Any]", *, key: str = "slot", markers: dict[str, str] | None = None,
        lost: Callable[[str], bool] = lambda key: False, db_id: str = "", make_cgroup: Callable[[], Any] | None = None,
        output: "OutputCapture | None" = None,
    ) -> None:
        self._backends = backends
        self._results = results
        self.key = key  # names the slot to the lease keeper and the fence
        self._markers = markers or {}
        self._lost = lost  # whether the fence ended this slot's processes (its lease ran out)
        self._db_id = db_id
        self._make_cgroup = make_cgroup
        self._output = output  # where what the attempts print goes (see tqcli.core.output)
        self._on_output = output.add if output is not None else None
        self._inbox: "queue.Queue[tuple[list[Claim], int] | None]" = queue.Queue()
        self._executor = ExecutorProcess(self._markers, make_cgroup)
        self._thread: threading.Thread | None = None
        self._beat = time.monotonic()  # the thread's last turn of its loop
        self.crashes: list[float] = []  # monotonic times the thread failed
        self._line: dict[tuple[int, int], Claim] = {}  # by token, in the order they were sent
        self._stops: dict[tuple[int, int], str] = {}
        self._skipped: set[tuple[int, int]] = set()
        self.outstanding = 0  # claims given and not yet reported; kept by the main thread
        self._failures_read = 0  # failed outcomes of this slot the main thread has read (and so records)
        self._failures_reported = 0  # failed outcomes this slot's thread has reported
        self._failed_at: dict[str, int] = {}  # service -> number of its latest failure among those reported
        self.average: float | None = None  # seconds per attempt, smoothed

    @property
    def window(self) -> int:
        """How many attempts this slot may hold at once, from how long its attempts take.

        The attempt running now counts with its time so far, so a slot whose
        task turned out slow stops taking more at once.
        """
        seconds = max(self.average or 0.0, self._executor.current_seconds())
        if self.average is None or seconds <= 0:
            return 1
        return max(1, min(MAX_WINDOW, int(WINDOW_SECONDS / seconds)))

    def give(self, claims: list[Claim]) -> None:
        """Queue attempts on this slot; each outcome arrives on the results queue.

        The main thread calls it right after the transaction that made the
        claims, which recorded every outcome it had `collect`ed.
        """
        if self._thread is None:
            self._beat = time.monotonic()
            self._thread = threading.Thread(target=self._supervised, name="tqcli-slot", daemon=True)
            self._thread.start()
        self.outstanding += len(claims)
        if self._output is not None:
            self._output.track(claims)
        self._inbox.put((claims, self._failures_read))

    def collect(self, outcome: Outcome) -> None:
        """The main thread read one of this slot's outcomes: it is no longer outstanding, and it is recorded before the next claim."""
        self.outstanding -= 1
        if outcome.kind == "failed":
            self._failures_read += 1

    def stop(self, token: tuple[int, int], reason: str) -> None:
        """Ask one attempt to stop: `cancel` (task cancelled), `release` (shutdown) or `lost`."""
        self._stops.setdefault(token, reason)

    def release_unstarted(self, token: tuple[int, int]) -> None:
        """Give back one claim unless it is the attempt running now (its result is worth having)."""
        line = list(self._line)
        if not line or line[0] != token:
            self.stop(token, "release")

    def stop_all(self, reason: str, *, waiting_only: bool = False) -> None:
        """Stop every attempt this slot holds (or only those still waiting in line)."""
        line = list(self._line.values())
        for claim in line[1:] if waiting_only else line:
            self.stop(claim.token, reason)

    def _report(self, claim: Claim, outcome: Outcome) -> None:
        self._reports([(claim, outcome)])

    def _reports(self, ended: list[tuple[Claim, Outcome]]) -> None:
        if self._output is not None:  # what they printed is all here: the worker writes it with their endings
            self._output.ending([claim.token for claim, _ in ended])
        for claim, outcome in ended:
            self._stops.pop(claim.token, None)
            self._skipped.discard(claim.token)
            if outcome.kind == "failed":
                self._failures_reported += 1
                self._failed_at[claim.service] = self._failures_reported
        self._results.put([(self, claim, outcome) for claim, outcome in ended])

    def _admit(self, claims: list[Claim], failures_read: int) -> list[Claim]:
        """The claims to send to the executor; the others are reported at once, unstarted.

        Those left out were stopped before they were sent, or were made
        before the worker had read (and so recorded) the latest failure of
        their service in this slot: they never went through its circuit
        breaker as it stands now, and are claimed again through it.
        """
        admitted, dropped = [], []
        for claim in claims:
            if claim.token in self._stops:
                dropped.append((claim, _stopped(self._stops[claim.token])))
            elif self._failed_at.get(claim.service, 0) > failures_read:
                dropped.append((claim, Outcome("released")))
            else:
                admitted.append(claim)
        if dropped:
            self._reports(dropped)
        return admitted

    def _abandon_line(self) -> None:
        """After the executor was ended: what waited in line never started."""
        waiting = list(self._line.values())
        self._line.clear()
        if waiting:
            self._reports([(claim, Outcome("released")) for claim in waiting])

    def healthy(self, silence: float) -> bool:
        """Whether the slot's thread runs and has turned its loop within `silence` seconds (an idle one is healthy)."""
        thread = self._thread
        if thread is None:
            return True
        return thread.is_alive() and (not self._line or time.monotonic() - self._beat < silence)

    def _supervised(self) -> None:
        try:
            self._loop()
        except BaseException as exc:  # a bug or an OS limit (EMFILE): never a hung worker
            self._crashed(exc)

    def _crashed(self, exc: BaseException) -> None:
        """Report everything this slot held (the attempt that ran failed, the rest unstarted) and tell the worker."""
        ran = self._executor.alive and bool(self._executor.outstanding)
        try:
            self._executor.kill()
        except BaseException:  # noqa: S110 - the report below matters more than a clean kill
            pass
        self._executor = ExecutorProcess(self._markers, self._make_cgroup)
        held = list(self._line.values())
        self._line.clear()
        while True:
            try:
                batch = self._inbox.get_nowait()
            except queue.Empty:
                break
            held += batch[0] if batch else []
        error = f"internal error in the worker: {type(exc).__name__}: {exc}"
        reports = [(claim, Outcome("failed", error=error) if ran and n == 0 else Outcome("released")) for n, claim in enumerate(held)]
        self._thread = None
        self.crashes.append(time.monotonic())
        if reports:
            self._reports(reports)
        self._results.put(SlotCrashed(self, exc))

    def _loop(self) -> None:
        executor = self._executor
        while True:
            self._beat = time.monotonic()
            try:
                batch = self._inbox.get(block=not self._line)
            except queue.Empty:
                batch = []
            if batch is None:
                return
            claims = self._admit(*batch) if batch else []
            if claims:
                self._line.update((claim.token, claim) for claim in claims)
                executor.send(*[request_of(claim, self._db_id) for claim in claims])
            if not self._line:
                continue
            waiting = list(self._line.values())
            for claim in waiting[1:]:
                if claim.token in self._stops and claim.token not in self._skipped:
                    self._skipped.add(claim.token)
                    executor.skip(claim.token)
            current = waiting[0]
            backend = self._backends.loaded[current.backend]
            try:
                reply = executor.next_reply(
                    stop_reason=lambda: self._stops.get(current.token),
                    self_enforced=enforces_limits(backend),
                    on_output=self._on_output,
                    wait=_SLOT_TICK,
                )
            except TaskTimeout as exc:
                del self._line[current.token]
                self._report(current, Outcome("failed", error=str(exc)))
                self._abandon_line()
                continue
            except TaskCancelled:
                del self._line[current.token]
                self._report(current, _stopped(self._stops.get(current.token)))
                self._abandon_line()
                continue
            except ExecutorDied as exc:
                del self._line[current.token]
                self._report(current, Outcome("failed", error=WORKER_LOST if self._lost(self.key) else str(exc)))
                self._abandon_line()
                continue
            ended = []
            while reply is not None:  # this reply and any others that already arrived
                claim = self._line.pop(reply["token"])
                if "seconds" in reply:
                    seconds = float(reply["seconds"])
                    self.average = seconds if self.average is None else 0.8 * self.average + 0.2 * seconds
                ended.append((claim, outcome_of(reply, self._stops.get(claim.token), claim)))
                reply = executor.ready_reply(self._on_output) if self._line else None
            if ended:
                self._reports(ended)
                for claim, outcome in ended:  # after _reports: what is sent from now on was checked against these failures
                    if outcome.kind == "failed":
                        executor.acknowledge(claim.token)

    def terminate(self) -> None:
        """End the executor's process group now, whatever it runs (safe from any thread)."""
        self._executor.terminate()

    def close(self) -> None:
        """End the thread, then the executor process (never while the thread may still use it)."""
        thread = self._thread
        if thread is not None:
            self._inbox.put(None)
            thread.join(timeout=5)
            if thread.is_alive():  # stuck with a task: end the executor under it, then it returns
                self._executor.terminate()
                thread.join()
        self._executor.close()


_SLOT_TICK = 0.1  # how often a waiting slot looks for new claims and stop requests
