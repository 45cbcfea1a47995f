"""Running one task now, in this process (`tqcli run`), and waiting for a task (`--wait`)."""

from __future__ import annotations

import os
import socket
import time
from typing import Callable

from tqcli.backends import cgroups
from tqcli.backends.executor import ExecutorProcess
from tqcli.backends.fence import HOLDER, Fence
from tqcli.core import dispatcher, gate, liveness
from tqcli.core.context import Context
from tqcli.core.encryption import WorkerKeys, held_data_keys
from tqcli.core.execution import BackendSet, run_attempt
from tqcli.core.leases import LeaseKeeper
from tqcli.core.output import DEFAULT_OUTPUT_LIMIT, OutputCapture, OutputFlusher
from tqcli.core.queue import cancel_tasks
from tqcli.core.spec import TaskSpec
from tqcli.core.submission import SubmitResult, check_backends, insert_specs
from tqcli.core.task import Task
from tqcli.errors import Conflict, InvalidInput, KeyProblem, NotFound
from tqcli.security.audit import Journal
from tqcli.store.base import Tx
from tqcli.tenancy.limits import HELD_BACK, describe_hold
from tqcli.units import US_PER_SECOND

RUN_LEASE = 60.0
ANY_TIME = 2**62  # `run` starts a task now even if it was delayed


def _why_not_runnable(ctx: Context, task_id: int, backends: BackendSet) -> Exception:
    with ctx.read() as tx:
        rows = tx.task_rows([task_id])
        if not rows:
            return NotFound(f"task {task_id} does not exist")
        task = Task.from_row(rows[0])
        if task.state.value != "pending":
            return Conflict(f"task {task_id} is {task.state.value}; only a pending task can be run")
        task.depends_on = tx.dependencies_of([task_id])[task_id]
        keys = held_data_keys(ctx) if task.encrypted else None
        waiting, circuit = gate.why_waiting(tx, task, ctx.clock.now(), ignore_delay=True, data_keys=keys)
        if waiting == "encryption key missing":
            return KeyProblem(f"task {task_id} is encrypted under data key {circuit['key'] if circuit else '?'}, which this key file lacks: "  # type: ignore[index]
                              "give --key-file the current key file ('tqcli keys export --for-worker FILE')")
        if waiting and waiting.startswith("waiting for"):
            return Conflict(f"task {task_id} is {waiting}; run that first")
        if waiting == "expired":
            return Conflict(f"task {task_id} expired at {circuit['expired_at'] if circuit else '?'}: a worker cancels it instead of running it")
        if waiting == "circuit open" and circuit is not None:
            due = f" (its trial is due at {circuit['trial_at']})" if circuit["trial_at"] else ""
            return Conflict(
                f"task {task_id} stays pending: the circuit of service {task.service!r} is {circuit['state']}{due}; "
                f"a worker runs it once the circuit lets it, '{circuit['reset']}' closes it now, 'tqcli cancel {task_id}' drops the task"
            )
        if waiting in HELD_BACK and circuit is not None:
            return Conflict(f"task {task_id} stays pending: {describe_hold(waiting, circuit)}; a worker runs it once that changes")
    if task.backend not in backends.loaded:
        why = backends.failed.get(task.backend, "it is not installed")
        return InvalidInput(f"backend {task.backend!r} cannot run here: {why}")
    return Conflict(f"task {task_id} cannot be claimed now")


def _authorize_run(ctx: Context, tx: Tx, task_id: int | None) -> None:
    """`run --id`: running a task here needs the submit permission on its tenant (a missing task is judged later)."""
    rows = tx.task_rows([task_id]) if task_id is not None else []
    if rows:
        ctx.authorize(tx, "submit", f"run task {task_id}", tenant=rows[0].tenant)


def run_now(
    ctx: Context,
    task_id: int | None = None,
    *,
    spec: TaskSpec | None = None,
    on_submit: Callable[[SubmitResult], None] = lambda result: None,
    backends: BackendSet | None = None,
    on_output: Callable[..., None] | None = None,
    on_retry: Callable[[int, str, float], None] = lambda attempt, error, delay: None,
    sleep: Callable[[float], None] = time.sleep,
    cancel_on_interrupt: bool = False,
    output_limit: int = DEFAULT_OUTPUT_LIMIT,
) -> str | None:
    """Run a pending task here and now, retrying per its policy; returns how it ended.

    Returns `completed`, `failed` or `cancelled`. With `spec` instead of
    `task_id`, the task is submitted and claimed in one transaction, so no
    worker can take it first; `on_submit` then learns its id (and whether
    an idempotency key found it already there: then nothing runs and this
    returns None). Between attempts the task stays claimed by this run
    while the backoff is waited out. Interrupting (Ctrl-C) ends the running
    attempt and returns the task to pending without counting it, or
    cancels the task with `cancel_on_interrupt`. What the attempts print
    goes to `on_output(chunk, stream)` and is stored as a worker stores it
    (the last `output_limit` bytes per attempt).
    """
    backends = backends or BackendSet.discover()
    if spec is not None:
        check_backends([spec])
    worker = f"run:{socket.gethostname()}:{os.getpid()}"
    fence = Fence(RUN_LEASE)
    holder = liveness.own_name(os.getpid()) or fence.run_id
    executor = ExecutorProcess({HOLDER: holder, **fence.environment(0)}, lambda: cgroups.create(holder, fence.slot_key(0), fence))
    stop: dict[str, str | None] = {"reason": None}
    keeper = LeaseKeeper(
        ctx.store.reopen(), ctx.clock, RUN_LEASE, lambda token, reason: stop.__setitem__("reason", reason), fence=fence,
    )
    capture = OutputCapture(output_limit)
    flusher = OutputFlusher(capture, ctx.store.reopen)
    capture.on_output = flusher.wake

    def printed(chunk: bytes, stream: int, token: object) -> None:
        capture.add(chunk, stream, token)
        if on_output is not None:
            on_output(chunk, stream)

    claimed: dispatcher.Claim | None = None
    with ctx.read() as tx:
        db_id = tx.meta_value("db_id") or ""
    keys = WorkerKeys(ctx, db_id)

    def claim_it(tx: Tx, journal: Journal) -> list[dispatcher.Claim]:
        return dispatcher.claim(
            tx, journal, count=1, now=ctx.clock.now(), worker=worker, lease_seconds=RUN_LEASE,
            backends=backends.names, task_id=task_id, due_by=ANY_TIME, keys=keys,
        )

    try:
        claimed_at = time.monotonic()
        with ctx.change() as (tx, journal):
            if spec is None:
                _authorize_run(ctx, tx, task_id)
            submitted = insert_specs(ctx, tx, journal, [spec])[0] if spec is not None else None
            if submitted is not None:
                task_id = submitted.id
            claims = claim_it(tx, journal) if submitted is None or submitted.created else []
        if submitted is not None:
            on_submit(submitted)
            if not submitted.created:
                return None
        assert task_id is not None
        if not claims:
            raise _why_not_runnable(ctx, task_id, backends)
        claimed = claims[0]
        keeper.hold([claimed.token], fence.slot_key(0), since=claimed_at)
        while True:
            stop["reason"] = None
            capture.track([claimed])
            outcome = run_attempt(claimed, backends.loaded[claimed.backend], executor, lambda: stop["reason"], printed, db_id)
            keeper.drop(claimed.token)
            ended, claimed_at = claimed, time.monotonic()
            with capture.flushing([ended.token], final=True) as output, ctx.change() as (tx, journal):
                output.write(tx)
                became = dispatcher.finish(tx, journal, ended, outcome, now=ctx.clock.now(), worker=worker)
                claims = claim_it(tx, journal) if became == "retry" else []  # in the same transaction: no worker takes it between
            claimed = None
            if became != "retry":
                return became
            if not claims:
                raise _why_not_runnable(ctx, task_id, backends)
            claimed = claims[0]
            keeper.hold([claimed.token], fence.slot_key(0), since=claimed_at)
            delay = max(0.0, (claimed.run_at - ctx.clock.now()) / US_PER_SECOND)  # the retry's backoff, waited out holding the claim
            on_retry(ended.attempt, outcome.error or "", delay)
            sleep(delay)
    except BaseException as exc:
        executor.kill()  # the attempt must be over before anyone else may claim the task
        cancel = cancel_on_interrupt and isinstance(exc, KeyboardInterrupt)
        if task_id is not None and (claimed is not None or cancel):
            with capture.flushing([claimed.token] if claimed else [], final=True) as output, ctx.change() as (tx, journal):
                output.write(tx)
                if claimed is not None:
                    dispatcher.finish(tx, journal, claimed, dispatcher.Outcome("released"), now=ctx.clock.now(), worker=worker)
                if cancel:
                    cancel_tasks(ctx, tx, journal, [task_id], cascade=False, reason="its run was interrupted")
        raise
    finally:
        keeper.close()
        executor.close()
        flusher.close()
        fence.close()
