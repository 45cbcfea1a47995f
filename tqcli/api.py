"""The public library API: `tqcli.open(db)` gives a `Queue`."""

from __future__ import annotations

import os
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

from tqcli.clock import Clock, ServerClock, SystemClock
from tqcli.config import DEFAULT_OUTPUT_LIMIT, Config, db_location, load_config, login_name
from tqcli.core.context import Context
from tqcli.core.spec import TaskSpec
from tqcli.core.submission import SubmitResult, submit_specs
from tqcli.store import open as open_store

if TYPE_CHECKING:
    from tqcli.core.logs import OutputService
    from tqcli.core.queue import Summary, TaskService
    from tqcli.core.task import Task
    from tqcli.core.worker import Worker
    from tqcli.core.worker_run import WorkerReport
    from tqcli.core.workers import WorkerInfo
    from tqcli.resilience.breakers import BreakerService
    from tqcli.core.dags import DagService
    from tqcli.core.migrate import MigrateReport
    from tqcli.observability.metrics import Metrics
    from tqcli.resilience.dead_letter import DeadLetterQueue
    from tqcli.scheduler.schedules import ScheduleService
    from tqcli.security.audit_log import AuditLog
    from tqcli.security.roles import RoleService
    from tqcli.security.tokens import TokenService
    from tqcli.security.key_service import KeyService
    from tqcli.tenancy.declarative import SettingsService
    from tqcli.tenancy.settings import TenancyService


class Queue:
    """One tqcli database: submit and inspect tasks, read the audit chain.

    The same operations as the CLI, with the same checks and audit entries.
    Use it as a context manager, or call `close()`.
    """

    def __init__(self, ctx: Context, config: Config | None = None) -> None:
        self._ctx = ctx
        self.config = config

    # Services load on first use, so a submit imports only what it needs.

    @cached_property
    def tasks(self) -> "TaskService":
        """Get, list, cancel and bump tasks."""
        from tqcli.core.queue import TaskService

        return TaskService(self._ctx)

    @cached_property
    def output(self) -> "OutputService":
        """What tasks' attempts printed (`logs`): read it once or follow it."""
        from tqcli.core.logs import OutputService

        return OutputService(self._ctx)

    @cached_property
    def audit(self) -> "AuditLog":
        """The audit chain: entries, verify, checkpoint."""
        from tqcli.security.audit_log import AuditLog

        return AuditLog(self._ctx)

    @cached_property
    def keys(self) -> "KeyService":
        """The key file and the encrypted values: init, rotate, re-encrypt, status, export, retire."""
        from tqcli.security.key_service import KeyService

        return KeyService(self._ctx)

    @cached_property
    def roles(self) -> "RoleService":
        """Role grants: grant, revoke, list (`role`)."""
        from tqcli.security.roles import RoleService

        return RoleService(self._ctx)

    @cached_property
    def tokens(self) -> "TokenService":
        """API tokens for `tqcli serve`: create, list, revoke, authenticate."""
        from tqcli.security.tokens import TokenService

        return TokenService(self._ctx)

    @cached_property
    def dlq(self) -> "DeadLetterQueue":
        """The dead-letter queue: list, replay, purge failed tasks."""
        from tqcli.resilience.dead_letter import DeadLetterQueue

        return DeadLetterQueue(self._ctx)

    @cached_property
    def breakers(self) -> "BreakerService":
        """Circuit breakers: list, reset, configure."""
        from tqcli.resilience.breakers import BreakerService

        return BreakerService(self._ctx)

    @cached_property
    def tenancy(self) -> "TenancyService":
        """Queue and tenant limits and weights: list and set (`queue`, `tenant`)."""
        from tqcli.tenancy.settings import TenancyService

        return TenancyService(self._ctx)

    @cached_property
    def settings(self) -> "SettingsService":
        """Declarative settings: apply a settings file, export one (`apply`, `export`)."""
        from tqcli.tenancy.declarative import SettingsService

        return SettingsService(self._ctx)

    @cached_property
    def dags(self) -> "DagService":
        """DAGs: submit, run, status, list, cancel."""
        from tqcli.core.dags import DagService

        return DagService(self._ctx)

    @cached_property
    def schedules(self) -> "ScheduleService":
        """Cron schedules: add, list, next, pause, resume, remove."""
        from tqcli.scheduler.schedules import ScheduleService

        return ScheduleService(self._ctx)

    def fire_schedules(self) -> int:
        """Enqueue due schedule fires now (every worker run does this); how many tasks it enqueued."""
        from tqcli.scheduler.schedules import fire_due

        return fire_due(self._ctx)

    @property
    def path(self) -> Path | None:
        """The database file (None on PostgreSQL, which has no local file)."""
        return self._ctx.store.path

    @property
    def location(self) -> str:
        """Where the database is: its file path, or its PostgreSQL URL."""
        return self._ctx.store.location

    @property
    def actor(self) -> str:
        """The identity recorded in the audit chain for this queue's changes."""
        return self._ctx.actor

    @property
    def clock(self) -> Clock:
        """The clock every operation reads."""
        return self._ctx.clock

    def submit(self, target: str, *, encrypt: bool = False, **options: Any) -> int:
        """Enqueue one task and return its id; options are TaskSpec fields; `encrypt` stores it encrypted."""
        return submit_specs(self._ctx, [TaskSpec(target=target, **options)], encrypt=encrypt)[0].id

    def submit_many(self, specs: Sequence[TaskSpec], *, encrypt: bool | Sequence[bool] = False) -> list[int]:
        """Enqueue all of `specs` in one transaction (all or nothing); their ids in order."""
        return [result.id for result in submit_specs(self._ctx, specs, encrypt=encrypt)]

    def submit_specs(
        self, specs: Sequence[TaskSpec], *, where: Sequence[str] | None = None, encrypt: bool | Sequence[bool] = False,
    ) -> list[SubmitResult]:
        """Like `submit_many`, telling which ids already existed; `where` labels specs in errors; `encrypt` (all, or per spec) stores them encrypted."""
        return submit_specs(self._ctx, specs, where=where, encrypt=encrypt)

    def get(self, task_id: int) -> Task:
        """The task with its attempts (`history`) and why it waits (`waiting`)."""
        return self.tasks.get(task_id)

    def status(self, **filters: Any) -> Summary:
        """Counts per state and queue and the newest tasks (filters: queue, tenant, state, limit)."""
        return self.tasks.summary(**filters)

    def cancel(self, *task_ids: int, cascade: bool = False, reason: str | None = None) -> list[int]:
        """Cancel tasks; with `cascade`, their dependents too."""
        return self.tasks.cancel(task_ids, cascade=cascade, reason=reason)

    def bump(self, task_id: int, *, priority: int | None = None, by: int | None = None) -> tuple[int, int]:
        """Change a pending or blocked task's priority; returns (old, new)."""
        return self.tasks.bump(task_id, priority=priority, by=by)

    def worker(self, **options: Any) -> "Worker":
        """A worker on this database; options are those of `WorkerOptions` (once, concurrency, ...)."""
        from tqcli.core.worker import Worker
        from tqcli.core.worker_run import WorkerOptions

        log = options.pop("log", lambda text: None)
        backends = options.pop("backends", None)
        from tqcli.scheduler.schedules import fire_due

        output_limit = options.pop("output_limit", self.config.output_limit if self.config else DEFAULT_OUTPUT_LIMIT)
        return Worker(self._ctx, WorkerOptions(**options), backends=backends, log=log, fire_schedules=fire_due, output_limit=output_limit)

    def drain(self, **options: Any) -> "WorkerReport":
        """Run a worker until no task is ready (`worker --once`) and report what it did."""
        return self.worker(once=True, **options).run()

    def run_now(self, task_id: int | None = None, **options: Any) -> str | None:
        """Run a pending task in this process now, with retries; returns completed, failed or cancelled.

        `spec=TaskSpec(...)` instead of an id submits the task and claims it
        in one transaction (see `tqcli.core.runner.run_now`).
        """
        from tqcli.core.runner import run_now

        options.setdefault("output_limit", self.config.output_limit if self.config else DEFAULT_OUTPUT_LIMIT)
        return run_now(self._ctx, task_id, **options)

    def wait(self, task_id: int, *, timeout: float | None = None, on_poll: Any = None) -> "Task":
        """Block until the task is terminal or blocked (then `waiting` says why); WaitTimeout after `timeout` seconds.

        `on_poll` is called between looks (the CLI says there when no worker runs).
        """
        from tqcli.core.lifecycle import wait_all

        task = wait_all(self._ctx, [task_id], timeout=timeout, on_poll=on_poll or (lambda: None))[task_id]
        return self.get(task_id) if task.state.value == "blocked" else task

    def wait_all(self, task_ids: Sequence[int], *, timeout: float | None = None, on_poll: Any = None) -> dict[int, Task]:
        """Block until every task is finished or blocked; NotFound before waiting for an unknown id; WaitTimeout after `timeout` s."""
        from tqcli.core.lifecycle import wait_all

        return wait_all(self._ctx, task_ids, timeout=timeout, on_poll=on_poll or (lambda: None))

    def restart(self, task_id: int, **overrides: Any) -> int:
        """Submit a new task with the spec of a finished task (overrides are TaskSpec keys); the new id."""
        from tqcli.core.lifecycle import restart

        return restart(self._ctx, task_id, overrides)

    def edit(self, task_id: int, **changes: Any) -> dict[str, dict[str, Any]]:
        """Change a pending or blocked task (payload, target, priority, max_retries, timeout, delay, at); what changed."""
        from tqcli.core.lifecycle import edit

        return edit(self._ctx, task_id, changes)

    def prune(self, *, older_than: float, states: Sequence[str] = ("completed", "cancelled"), dry_run: bool = False) -> list[int]:
        """Delete tasks in `states` that finished `older_than` seconds ago or earlier; their ids."""
        from tqcli.core.lifecycle import prune

        return prune(self._ctx, older_than=older_than, states=states, dry_run=dry_run)

    def workers(self) -> "list[WorkerInfo]":
        """The worker runs seen in the last 24 hours, with their heartbeats and running tasks."""
        from tqcli.core.workers import list_workers

        return list_workers(self._ctx)

    def no_live_worker(self) -> bool:
        """True when no worker has sent a heartbeat in the last 10 s (so waiting may be in vain)."""
        from tqcli.core.workers import no_recent_heartbeat

        return no_recent_heartbeat(self._ctx)

    def metrics(self) -> "Metrics":
        """What `tqcli metrics` prints: every family and its samples (see `tqcli.observability.metrics`)."""
        from tqcli.observability.metrics import collect

        return collect(self._ctx)

    def migrate_to(self, url: str, *, progress: Any = None) -> "MigrateReport":
        """Copy this whole database into the empty PostgreSQL database at `url` and verify its audit chain there (`migrate --to`).

        `progress(rows copied, rows in all, table)` is called after every batch.
        Conflict while workers are alive here or when the target is not empty;
        any failure leaves the target as it was. Neither database gets an audit entry.
        """
        from tqcli.core.migrate import migrate_to

        return migrate_to(self._ctx, url, progress=progress)

    def close(self) -> None:
        """Close the database connection."""
        self._ctx.store.close()

    def __enter__(self) -> "Queue":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open(  # noqa: A001 - mirrors builtins.open on purpose: tqcli.open(path)
    db: str | os.PathLike[str] | None = None,
    *,
    actor: str | None = None,
    clock: Clock | None = None,
    config: Config | None = None,
    create: bool = True,
    read_only: bool = False,
) -> Queue:
    """Open the database `db`, or the configured one, creating it when missing.

    `actor` acts as another identity, as `TQCLI_USER` does on the command line;
    `clock` replaces the system clock (tests move time with `ManualClock`);
    `create=False` raises NotFound instead of creating a missing database
    (an empty file is no database either); `read_only=True` (implies
    `create=False`) opens it for reading alone: nothing is migrated or written.
    """
    if config is None:
        config = load_config(db_flag=str(db) if db is not None else None)
    elif db is not None:
        config = config.with_db(db_location(str(db)))
    store = open_store(
        config.db, read_only=read_only, create=create, busy_timeout=config.busy_timeout, synchronous=config.synchronous
    )
    real_user = login_name()
    if clock is None:  # on a shared server every host reads the server's clock
        clock = SystemClock() if store.path is not None else ServerClock(store.server_time)
    ctx = Context(store=store, clock=clock, actor=real_user, key_file=config.key_file)
    if actor and actor != real_user:
        from tqcli.security.identity import resolve_actor

        try:
            ctx.actor = resolve_actor(ctx, real_user, actor)
        except BaseException:
            store.close()
            raise
    return Queue(ctx, config)
