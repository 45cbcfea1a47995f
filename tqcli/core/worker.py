"""The worker loop: reclaim expired leases, claim ready tasks, run them, record outcomes.

The main thread owns the database connection and does all claiming and
finishing: finishing the attempts that just ended and claiming work for
the free slots happen in one short transaction. Slots run attempts on
their own threads (and executor processes); a `LeaseKeeper` renews leases
and watches for cancels on its own connection. No transaction is open
while a task runs.
"""

from __future__ import annotations

import os
import queue
import signal
import socket
import threading
import time
from typing import Any, Callable

from tqcli.backends import cgroups
from tqcli.backends.fence import HOLDER, Fence
from tqcli.clock import ServerClock
from tqcli.core import dispatcher, liveness, picking, workers
from tqcli.core.context import Context
from tqcli.core.encryption import WorkerKeys
from tqcli.core.execution import MAX_WINDOW, BackendSet, Slot, SlotCrashed
from tqcli.core.leases import LeaseKeeper
from tqcli.core.output import DEFAULT_OUTPUT_LIMIT, OutputCapture, OutputFlusher
from tqcli.core.outcome_journal import OutcomeJournal, apply_journals
from tqcli.core.worker_run import WorkerOptions, WorkerReport, claim_tenants
from tqcli.errors import InternalError, PermissionDenied, StorageBusy, StorageConflict, StorageError, StorageFull, StorageLost, TqcliError
from tqcli.security.audit import append_problem
from tqcli.security.crypto import redacted

# A commit that failed for one of these is tried again on the next turn of the loop (the outcomes wait).
_TRY_AGAIN = (StorageBusy, StorageConflict, StorageLost)
_MAX_WAIT = 0.25  # longest sleep between looks at the stop flag
_WAKE = object()  # on the results queue: the store says tasks may have become ready
# What fires due schedules on each poll (tqcli.scheduler.schedules.fire_due): the scheduler
# is a service above core, so the worker is handed it rather than importing it.
FireSchedules = Callable[[Context, Callable[[str], None], set[tuple[str, str]]], int]
ONCE_RECONNECTS = 3  # a `--once` run gives up after this many lost connections in a row (exit 7)
CRASH_WINDOW = 60.0  # a slot that fails twice within this many seconds stops the worker
METRICS_EVERY = 60  # seconds (on the worker's clock) between rewrites of --metrics-file while it runs
# Completions wait for the commit that refills a slot, but never longer than this (see `_commit_due`).
COMMIT_WAIT = 0.02


class Worker:
    """Claims and runs tasks from one database until done (`once`) or stopped.

    A run uses connections of its own, so the Queue it came from stays
    usable from other threads while it runs.
    """

    def __init__(
        self,
        ctx: Context,
        options: WorkerOptions,
        *,
        backends: BackendSet | None = None,
        log: Callable[[str], None] = lambda text: None,
        fire_schedules: FireSchedules | None = None,
        output_limit: int = DEFAULT_OUTPUT_LIMIT,
    ) -> None:
        self._base = ctx
        self._output_limit = output_limit  # bytes of output kept per attempt (0: none)
        self._output = OutputCapture(output_limit)
        self._fire_schedules = fire_schedules
        self._ctx = ctx
        self._options = options
        self._backends = backends
        self._log = log
        self.worker_id = options.worker_id or f"{socket.gethostname()}:{os.getpid()}"
        self._results: queue.Queue[Any] = queue.Queue()
        self._stopping = threading.Event()
        self._stop_deadline: float | None = None
        self._slots: list[Slot] = []
        self._by_token: dict[int, tuple[Slot, dispatcher.Claim]] = {}
        self._finished: list[tuple[Slot, dispatcher.Claim, dispatcher.Outcome]] = []  # ended, not yet recorded
        self._tenants = options.tenants  # what it may claim: its --tenant options as its grants allow, read every poll
        self._denied: PermissionDenied | None = None  # grants revoked while running: the run stops and says so
        self._metrics_due = 0  # when --metrics-file is next rewritten (the worker's clock, microseconds)

    # -- control -----------------------------------------------------------

    def stop(self, *, immediately: bool = False) -> None:
        """Stop claiming; running attempts get the grace period (none if `immediately`).

        Safe to call from a signal handler: it only sets flags, which the
        loop reads at least every `_MAX_WAIT` seconds. A second call stops at once.
        """
        if self._stopping.is_set():
            immediately = True
        self._stopping.set()
        deadline = time.monotonic() + (0.0 if immediately else self._options.grace)
        if self._stop_deadline is None or deadline < self._stop_deadline:
            self._stop_deadline = deadline

    def _stop_slot(self, token: tuple[int, int], reason: str) -> None:
        held = self._by_token.get(token)
        if held is not None:
            held[0].stop(token, reason)

    # -- the loop ----------------------------------------------------------

    def run(self, *, handle_signals: bool = False) -> WorkerReport:
        """Run until no task is ready (`once`), `max_tasks` were claimed, or `stop()`."""
        started = time.monotonic()
        report = WorkerReport(self.worker_id)
        backends = self._backends or BackendSet.discover()
        report.skipped_backends = dict(backends.failed)
        for name, why in backends.failed.items():
            self._log(f"warning: backend {name!r} failed to load ({why}); its tasks stay pending")
        self._ctx = self._base.sibling(self._base.store.reopen())  # never the caller's connection (run may be on a thread of its own)
        try:
            with self._ctx.read() as tx:
                problem = append_problem(tx, self._ctx.keys)  # a keyed chain, and no key here
        except BaseException:
            self._ctx.store.close()
            self._ctx = self._base
            raise
        if problem is not None:
            self._log(f"warning: {problem}; this worker claims nothing")
            self._ctx.store.close()
            self._ctx = self._base
            return report
        fence = Fence(self._options.lease)
        holder = liveness.own_name(os.getpid()) or fence.run_id
        try:
            with self._ctx.change() as (tx, _):
                self._tenants = claim_tenants(self._ctx, tx, self._options.tenants)
                db_id = tx.meta_value("db_id") or ""
                workers.register(
                    tx, fence.run_id, self.worker_id, holder=holder, now=self._ctx.clock.now(),
                    alive_for=max(self._options.lease, 2 * self._options.poll),
                )
        except BaseException:
            fence.close()
            self._ctx.store.close()
            self._ctx = self._base
            raise
        flusher = self._capture_output()
        self._slots = [
            Slot(
                backends, self._results, key=fence.slot_key(n), markers={HOLDER: holder, **fence.environment(n)},
                lost=fence.ended, db_id=db_id, make_cgroup=lambda key=fence.slot_key(n): cgroups.create(holder, key, fence),
                output=self._output,
            )
            for n in range(self._options.concurrency)
        ]
        self._keys = WorkerKeys(self._ctx, db_id, warn=self._log)  # opens encrypted claims, seals their outcomes
        by_key = {slot.key: slot for slot in self._slots}
        silence = max(1.0, self._options.lease / 3)
        self._by_token, self._finished = {}, []
        self._schedule_errors: set[tuple[str, str]] = set()  # each reported once per run
        self._fence, self._holder, self._journal = fence, holder, None
        self._full_since: float | None = None  # when commits started failing for a full disk
        self._retry_at = 0.0  # while the disk is full: when to try the commit again
        self._journal_used = False  # outcomes were saved in the journal: leave it for the next worker
        keeper = LeaseKeeper(
            self._base.store.reopen(), self._base.clock, self._options.lease, self._stop_slot, self._log,
            fence=fence, healthy=lambda key: by_key[key].healthy(silence), heartbeat=fence.run_id,
        )
        previous = self._install_signals() if handle_signals else None
        # Woken when another process makes tasks ready (PostgreSQL's LISTEN); polling stays the fallback.
        stop_listening = (lambda: None) if self._options.once else self._ctx.store.listen(lambda: self._results.put(_WAKE))
        try:
            self._loop(report, backends.names, keeper)
        except BaseException:
            self._abandon()
            raise
        finally:
            stop_listening()
            if previous is not None:
                for signum, handler in previous.items():
                    signal.signal(signum, handler)
            keeper.close()
            for slot in self._slots:
                slot.close()
            flusher.close()
            self._stopped(fence.run_id)
            self._write_metrics()
            fence.close()
            if self._journal is not None and not self._journal_used:
                self._journal.remove()
            self._ctx.store.close()
            self._ctx = self._base
        report.seconds = time.monotonic() - started
        if self._denied is not None:
            raise self._denied
        return report

    def _capture_output(self) -> OutputFlusher:
        """What the attempts print is kept in `_output` and written by a flusher of its own (see tqcli.core.output)."""
        self._output = OutputCapture(self._output_limit)
        flusher = OutputFlusher(self._output, self._base.store.reopen, self._log)
        self._output.on_output = flusher.wake
        return flusher

    def _abandon(self) -> None:
        """The loop failed (a full disk, say): end what runs, record what ended and give the rest back, if the database lets us.

        If it does not, the tasks wait until this process ends, when the next
        worker takes them over at once (see tqcli.core.liveness).
        """
        for slot in self._slots:
            slot.terminate()
        ended = {claim.token: outcome for _, claim, outcome in self._finished}
        held = [claim for _, claim in self._by_token.values()]
        if not held:
            return
        outcomes = [(claim, ended.get(claim.token, dispatcher.Outcome("released"))) for claim in held]
        try:
            with self._ctx.change() as (tx, journal):
                dispatcher.finish_all(tx, journal, outcomes, now=self._ctx.clock.now(), worker=self.worker_id)
        except TqcliError as exc:
            self._log(f"warning: could not record or give back {len(held)} claimed task(s): {exc.message}")

    def _stopped(self, run_id: str) -> None:
        """Mark this run stopped in the registry; a database that refuses only leaves it to age out."""
        try:
            with self._ctx.store.write() as tx:
                tx.worker_heartbeat(run_id, self._ctx.clock.now(), stopped=True)
        except TqcliError:
            pass

    def _install_signals(self) -> dict[int, Any]:
        previous = {}
        for signum in (signal.SIGTERM, signal.SIGINT):
            previous[signum] = signal.signal(signum, lambda *_: self.stop())
        return previous

    def _poll(self, report: WorkerReport) -> None:
        """Record outcomes other workers could not, reclaim expired leases, cancel expired tasks, and fire due schedules."""
        own = self._journal.path if self._journal is not None else None
        for task_id, became in apply_journals(self._ctx, self._ctx.store.path, worker=self.worker_id, own=own):
            self._log(f"task {task_id}: recorded the outcome a worker left when the disk was full ({became})")
        if isinstance(self._base.clock, ServerClock):  # keep agreeing with the other hosts on the time
            self._base.clock.sync(self._ctx.store.server_time)
        self._check_grants()
        now = self._ctx.clock.now()
        with self._ctx.change() as (tx, journal):
            tx.worker_heartbeat(self._fence.run_id, now)
            reclaimed = dispatcher.reclaim_expired(tx, journal, now=now, worker=self.worker_id)
            expired = dispatcher.cancel_expired(tx, journal, now=now)
        for task_id, became in reclaimed:
            self._log(f"task {task_id}: its worker was lost; {became}")
        report.reclaimed += len(reclaimed)
        report.expired += len(expired)
        if self._options.dag_id is None:
            if self._fire_schedules is not None:
                report.fired += self._fire_schedules(self._ctx, self._log, self._schedule_errors)
        if self._options.metrics_file is not None and now >= self._metrics_due:
            self._write_metrics()

    def _write_metrics(self) -> None:
        """Rewrite --metrics-file (atomically) with `tqcli metrics` output; a failure is a warning, never the worker's end."""
        if self._options.metrics_file is None:
            return
        from tqcli.observability.exposition import write_metrics_file

        self._metrics_due = self._ctx.clock.now() + METRICS_EVERY * 1_000_000
        try:
            write_metrics_file(self._ctx, self._options.metrics_file)
        except TqcliError as exc:
            self._log(f"warning: could not write the metrics file: {exc.message}")

    def _check_grants(self) -> None:
        """Read the actor's grants again, so a revoke takes effect within one poll: claim less, or stop."""
        if self._denied is not None:
            return
        try:
            with self._ctx.read() as tx:
                self._tenants = claim_tenants(self._ctx, tx, self._options.tenants)
        except PermissionDenied as denial:
            self._denied = denial
            self._log(f"stopping: {denial.message}")
            self.stop()

    def _loop(self, report: WorkerReport, backend_names: list[str], keeper: LeaseKeeper) -> None:
        options = self._options
        self._poll(report)
        next_poll = time.monotonic() + options.poll
        finished = self._finished
        self._finished_since = 0.0  # when the oldest of `finished` arrived (monotonic)
        dry = False  # the last claim found fewer ready tasks than it asked for
        released_waiting = False
        lost_tries = 0  # commits in a row that lost the connection
        failing: StorageError | None = None  # why the last commit failed, until one succeeds
        while True:
            stopping = self._stopping.is_set()
            if stopping:
                if not released_waiting:  # what waits in line has not started: give it back now
                    for slot in self._slots:
                        slot.stop_all("release", waiting_only=True)
                    released_waiting = True
                    busy = any(slot.outstanding for slot in self._slots)
                    if busy and self._stop_deadline is not None and self._stop_deadline > time.monotonic():
                        self._log(
                            f"stopping: waiting up to {self._stop_deadline - time.monotonic():.0f} s for running tasks to finish "
                            "(then they go back to pending); a second Ctrl-C or SIGTERM stops them now"
                        )
                if self._stop_deadline is not None and time.monotonic() >= self._stop_deadline:
                    for slot in self._slots:
                        slot.stop_all("release")
            if keeper.failure is not None:
                raise InternalError(f"the worker's lease thread failed: {type(keeper.failure).__name__}: {keeper.failure}")
            full = self._full_since is not None
            wants = [] if stopping or full else self._wants(report)
            due = self._commit_due(finished, wants, stopping)
            if (due or (wants and not dry)) and not (full and time.monotonic() < self._retry_at):
                claimed_at = time.monotonic()
                try_again = False
                try:
                    claimed = self._commit(finished, wants, backend_names, report, keeper)
                except _TRY_AGAIN as exc:
                    lost_tries = lost_tries + 1 if isinstance(exc, StorageLost) else 0
                    if options.once and (isinstance(exc, StorageBusy) or lost_tries > ONCE_RECONNECTS):
                        raise
                    self._log(f"warning: {exc.message.split(';')[0]}; trying again")
                    claimed, try_again, failing = [], True, exc  # the results wait in `finished` for the next try
                except StorageFull as exc:
                    self._disk_full(exc, keeper)
                    claimed = []  # the results wait in `finished` while the leases hold
                else:
                    lost_tries, failing = 0, None
                    finished.clear()
                    if self._full_since is not None:
                        self._log(f"the disk has room again: recorded what had waited {time.monotonic() - self._full_since:.1f} s")
                        self._full_since = None
                    if claimed and self._journal is None and self._ctx.store.path is not None:
                        self._journal = OutcomeJournal.create(self._ctx.store.path, self._fence.run_id, self._holder)
                dry = not try_again and sum(len(claims) for _, claims in claimed) < sum(count for _, count in wants)
                for slot, claims in claimed:
                    for claim in claims:
                        self._by_token[claim.token] = (slot, claim)
                    keeper.hold([claim.token for claim in claims], slot.key, since=claimed_at)
                    slot.give(claims)
            running = sum(slot.outstanding for slot in self._slots)
            if running == 0 and finished and failing is not None and self._stop_deadline is not None and time.monotonic() >= self._stop_deadline:
                # Stopping while the database cannot be reached: do not wait for it forever.
                raise StorageError(
                    f"stopped with {len(finished)} finished attempt(s) not recorded ({failing.message.split(';')[0]}); "
                    "their tasks are taken over by another worker when their leases expire"
                )
            if running == 0 and not finished:
                if stopping or (options.max_tasks is not None and report.claimed >= options.max_tasks):
                    return
                if options.once and dry:
                    return
                if options.dag_id is not None and dry and not self._dag_can_run(options.dag_id):
                    return
            if not options.once and time.monotonic() >= next_poll:
                try:
                    self._poll(report)
                except _TRY_AGAIN as exc:
                    self._log(f"warning: {exc.message.split(';')[0]}; trying again")
                next_poll = time.monotonic() + options.poll
                dry = False
            wait = _MAX_WAIT if running else max(0.0, min(_MAX_WAIT, next_poll - time.monotonic()))
            if finished:  # wake when the completions held back are due
                wait = min(wait, max(0.0, self._finished_since + COMMIT_WAIT - time.monotonic()))
            if self._full_since is not None:
                wait = min(_MAX_WAIT, max(0.05, self._retry_at - time.monotonic()))
            batch = self._next_result(wait)
            while batch is not None:
                if batch is _WAKE:
                    dry = False  # look again now rather than at the next poll
                elif isinstance(batch, SlotCrashed):
                    self._slot_crashed(batch)
                else:
                    if not finished:
                        self._finished_since = time.monotonic()
                    for item in batch:
                        finished.append(item)
                        item[0].collect(item[2])  # its slot can take the next claim in the same transaction
                batch = self._next_result(0)

    def _commit_due(self, finished: list[tuple[Slot, dispatcher.Claim, dispatcher.Outcome]], wants: list[tuple[Slot, int]], stopping: bool) -> bool:
        """Whether the attempts that ended are to be recorded now, or may wait for the commit that refills a slot.

        Quick completions wait (up to COMMIT_WAIT seconds, or a window's
        worth), so one transaction records many of them and claims the
        next ones: a transaction has a fixed cost that small commits pay
        over and over. Anything else is recorded at once: a failure (its
        circuit breaker must count it), a slot that wants more work, a
        slot with nothing left to run, or a worker that is stopping.
        """
        if not finished:
            return False
        if wants or stopping or time.monotonic() - self._finished_since >= COMMIT_WAIT or len(finished) >= MAX_WINDOW:
            return True
        if any(slot.outstanding == 0 for slot in self._slots):
            return True
        return any(outcome.kind != "completed" for _, _, outcome in finished)

    def _disk_full(self, exc: StorageFull, keeper: LeaseKeeper) -> None:
        """A commit failed for a full disk: keep the outcomes and try again while the leases hold, then save them and stop."""
        now = time.monotonic()
        waiting = len(self._finished)
        if not waiting and not any(slot.outstanding for slot in self._slots):
            raise exc  # nothing ran that would be lost: say so now, as for any storage error
        if self._full_since is None:
            self._full_since = now
            self._log(
                f"warning: {exc.message.split(';')[0]}; keeping {waiting} finished attempt(s) and trying again "
                "while their leases hold; no new work is claimed meanwhile"
            )
        self._retry_at = now + 0.25
        # While the leases hold (renewals are writes too), but never longer than one lease in all.
        if now < min(keeper.valid_until(), self._full_since + self._options.lease):
            return
        saved = 0
        if self._journal is not None and self._finished:
            try:
                saved = self._journal.write([(claim, outcome) for _, claim, outcome in self._finished], worker=self.worker_id, now=self._ctx.clock.now())
            except OSError:
                saved = 0
            self._journal_used = saved > 0
        kept = {claim.token for _, claim, _ in self._finished[:saved]}
        for token in kept:  # recorded by the next worker: not to be given back now
            self._by_token.pop(token, None)
        self._finished = [item for item in self._finished if item[1].token not in kept]
        parts = [f"disk full: {waiting} finished attempt(s) could not be recorded in {self._ctx.store.path} while their leases held"]
        if saved:
            parts.append(f"{saved} outcome(s) were saved in {self._journal.path.name} and the next worker records them")  # type: ignore[union-attr]
        if waiting - saved:
            parts.append(f"{waiting - saved} could not be saved and run again after their leases expire (as worker lost)")
        raise StorageFull("; ".join(parts) + ": free some space")

    def _slot_crashed(self, crash: SlotCrashed) -> None:
        """A slot's thread failed (what it held is already reported): restart it once, stop on a second failure within a minute."""
        error = crash.error
        text = f"{type(error).__name__}: {error}"
        recent = [when for when in crash.slot.crashes if when > time.monotonic() - CRASH_WINDOW]
        if len(recent) < 2:
            self._log(f"warning: a worker slot failed ({text}); its tasks were recorded or given back, and it starts again")
            return
        why = f"a worker slot failed twice within {CRASH_WINDOW:.0f} s ({text}); the worker stopped, recording or giving back what it held"
        if isinstance(error, StorageError):
            raise StorageError(why)
        raise InternalError(why)

    def _wants(self, report: WorkerReport) -> list[tuple[Slot, int]]:
        """How many claims each slot should get now: refill a window once half of it is done."""
        budget = None if self._options.max_tasks is None else self._options.max_tasks - report.claimed
        wants = []
        for slot in self._slots:
            window = slot.window
            if slot.outstanding > window // 2:
                continue
            count = window - slot.outstanding
            if budget is not None:
                count = min(count, budget)
                budget -= count
            if count > 0:
                wants.append((slot, count))
        return wants

    def _give_back_unstarted(self, tripped: dict[str, int | None]) -> None:
        """Circuits are open or half-open: claims of their services that have not started go back to pending, unrun.

        `tripped` maps each such service to its trial task, which is kept.
        """
        for token, (slot, claim) in self._by_token.items():
            if claim.service in tripped and claim.id != tripped[claim.service]:
                slot.release_unstarted(token)

    def _dag_can_run(self, dag_id: int) -> bool:
        with self._ctx.read() as tx:
            states = {state: count for _, state, count in tx.dag_task_states([dag_id])}
        return bool(states.get("pending") or states.get("running"))

    def _next_result(self, timeout: float) -> Any:
        try:
            return self._results.get(timeout=timeout) if timeout > 0 else self._results.get_nowait()
        except queue.Empty:
            return None

    def _commit(
        self,
        finished: list[tuple[Slot, dispatcher.Claim, dispatcher.Outcome]],
        wants: list[tuple[Slot, int]],
        backend_names: list[str],
        report: WorkerReport,
        keeper: LeaseKeeper,
    ) -> list[tuple[Slot, list[dispatcher.Claim]]]:
        """Record the finished attempts and claim for the slots that want more, in one transaction."""
        now = self._ctx.clock.now()
        claimed: list[tuple[Slot, list[dispatcher.Claim]]] = []
        try:
            endings, tripped = self._record_and_claim(finished, wants, backend_names, now, claimed)
        except StorageLost:
            self._after_lost_commit(finished, report, keeper)
            raise
        keeper.drop_all([claim.token for _, claim, _ in finished])
        for (_, claim, outcome), became in zip(finished, endings):
            self._by_token.pop(claim.token, None)
            report.count(became)
            if became in ("retry", "failed") and outcome.error:
                self._log(f"task {claim.id} attempt {claim.attempt} failed: {redacted(outcome.error.splitlines()[0], 200)}")
            elif became == "stale":
                self._log(f"task {claim.id}: dropped a late result (another worker took the task over)")
        if tripped:
            self._give_back_unstarted(tripped)
        report.claimed += sum(len(claims) for _, claims in claimed)
        return claimed

    def _after_lost_commit(
        self, finished: list[tuple[Slot, dispatcher.Claim, dispatcher.Outcome]], report: WorkerReport, keeper: LeaseKeeper
    ) -> None:
        """The connection was lost during a commit, which may or may not have landed: read its tokens back.

        Finished attempts whose token no longer holds its task were recorded
        by that commit: they leave `finished` (the rest wait for the next
        try). Tasks held by this worker under tokens it never learned were
        claimed by it: they are given back at once rather than waiting for
        their lease to run out. A database still out of reach leaves all of
        it to the next try and, at worst, to the leases.
        """
        try:
            with self._ctx.change() as (tx, journal):
                held = tx.holding([claim.token for _, claim, _ in finished]) if finished else {}
                known = set(self._by_token) | {claim.token for _, claim, _ in finished}
                strays = [row for row in (tx.claimed_row(*token) for token in tx.running_tokens(self.worker_id) if token not in known) if row]
                dispatcher.finish_all(
                    tx, journal, [(dispatcher.Claim(row), dispatcher.Outcome("released")) for row in strays],
                    now=self._ctx.clock.now(), worker=self.worker_id,
                )
        except StorageError:
            return
        landed = [item for item in finished if item[1].token not in held]
        self._output.forget([item[1].token for item in landed])
        for item in landed:
            finished.remove(item)
            keeper.drop(item[1].token)
            self._by_token.pop(item[1].token, None)
            report.count(item[2].kind)
        report.claimed += len(strays)  # claimed by the lost commit, and given back unstarted
        for _ in strays:
            report.count("released")
        if landed or strays:
            self._log(
                f"the database connection was lost during a commit: {len(landed)} finished attempt(s) had been recorded, "
                f"{len(strays)} task(s) it had claimed were given back"
            )

    def _record_and_claim(
        self,
        finished: list[tuple[Slot, dispatcher.Claim, dispatcher.Outcome]],
        wants: list[tuple[Slot, int]],
        backend_names: list[str],
        now: int,
        claimed: list[tuple[Slot, list[dispatcher.Claim]]],
    ) -> tuple[list[str], dict[str, int | None]]:
        """The transaction of `_commit`: finish what ended, then claim for `wants` (appended to `claimed`).

        Also returns the circuits that are open or half-open now, by
        service, with their trial task, when this worker holds claims
        made earlier (see `_give_back_unstarted`).
        """
        options = self._options
        held = self._held_by_slot(finished)
        ending = [claim.token for _, claim, _ in finished]
        with self._output.flushing(ending, final=True) as output, self._ctx.change() as (tx, journal):
            output.write(tx)  # first, while the attempts still hold their tasks: a finished task's output is complete
            endings = dispatcher.finish_all(
                tx, journal, [(claim, outcome) for _, claim, outcome in finished], now=now, worker=self.worker_id,
            )
            # Whoever opened them (this worker or another), claims made before they opened must not start.
            tripped = {key: trial for key, _, _, trial in tx.tripped_breakers()} if held else {}
            turns: list[picking.Picked] = []
            for slot, count in wants:
                claims = dispatcher.claim(
                    tx, journal, count=count, now=now, worker=self.worker_id, lease_seconds=options.lease,
                    queues=options.queues, tenants=self._tenants, backends=backend_names, dag_id=options.dag_id,
                    suspects="alone" if slot.outstanding == 0 else "exclude",
                    holding=held.get(slot, []), turns=turns, keys=self._keys,
                )
                if not claims:
                    break  # nothing more is ready for anyone
                claimed.append((slot, claims))
            picking.charge(tx, turns)  # once for every slot, so the tenants' turns are locked in name order
        return endings, tripped

    def _held_by_slot(self, finished: list[tuple[Slot, dispatcher.Claim, dispatcher.Outcome]]) -> dict[Slot, list[dispatcher.Claim]]:
        """What each slot holds (running or waiting in line), leaving out the attempts that just ended."""
        ending = {claim.token for _, claim, _ in finished}
        held: dict[Slot, list[dispatcher.Claim]] = {}
        for token, (slot, claim) in self._by_token.items():
            if token not in ending:
                held.setdefault(slot, []).append(claim)
        return held
