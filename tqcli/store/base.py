"""The store contract: typed rows and the Protocols the core programs against.

Two stores implement it: `sqlite.SqliteStore` (one file, one host) and
`postgres.PostgresStore` (one database, many hosts). The core imports only
this module, never `sqlite3` or `psycopg`. What a method promises holds on
both; where a promise needs a lock on PostgreSQL, the method takes it
(SQLite's write transaction already holds the whole database):

- `allocate_task_ids`, `next_claim_number`: numbers no other transaction gets;
- `append_audit`: extends the one chain from its current head, with no
  other transaction appending in between;
- `claim_tasks`: no task is claimed by two transactions;
- `lock_tasks`, `lock_breakers`: the rows a read-then-write depends on stay
  as read until commit (a no-op on SQLite).

Rows are NamedTuples: positional like the tuples they replace, named for
readers. `limit: int | None` means "at most that many", None "all".
"""

# Annotations are evaluated here: `typing.NamedTuple` turns string annotations into
# ForwardRefs, compiling each one, which costs every command 0.7 ms of start-up.

from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Mapping, NamedTuple, Protocol, Sequence


class TaskRow(NamedTuple):
    """A task as stored (the field order of `tqcli.core.task.Task`)."""

    id: int
    name: str
    queue: str
    tenant: str
    backend: str
    target: str
    payload: str
    priority: int
    state: str
    attempts: int
    max_retries: int
    backoff: float
    timeout: float | None
    run_at: int
    dag_id: int | None
    service: str
    idempotency_key: str | None
    encrypted: int
    result: str | None
    error: str | None
    created_at: int
    started_at: int | None
    finished_at: int | None
    submitted_by: str
    waiting_deps: int
    cancel_requested: int
    run: int
    restarted_from: int | None
    expires_at: int | None
    cwd: str | None
    env: str | None


class ClaimRow(NamedTuple):
    """What a worker needs to run a claimed task (see `tqcli.core.dispatcher.Claim`)."""

    id: int
    name: str
    queue: str
    tenant: str
    backend: str
    target: str
    payload: str
    attempts: int
    max_retries: int
    backoff: float
    timeout: float | None
    service: str
    encrypted: int
    dag_id: int | None
    claim: int
    error: str | None
    started_at: int
    worker: str
    priority: int
    run_at: int
    run: int
    cwd: str | None
    env: str | None


class PickRow(NamedTuple):
    """A ready task a claim has picked and is about to judge (see `DispatchStore.pick_tasks`)."""

    id: int
    queue: str
    tenant: str
    service: str
    error: str | None
    run_at: int


class BreakerRow(NamedTuple):
    """One circuit breaker."""

    key: str
    state: str
    failures: int
    failure_threshold: int | None
    recovery_timeout: float | None
    opened_at: int | None
    retry_at: int | None
    trial_task: int | None
    updated_at: int


class ScheduleRow(NamedTuple):
    """One cron schedule."""

    name: str
    cron: str
    tz: str
    catchup: int
    paused: int
    spec: str
    created_at: int
    created_by: str
    next_fire_at: int | None
    last_fire_at: int | None


class AuditRow(NamedTuple):
    """One audit entry, as linked (see `tqcli.security.audit.link_bytes`)."""

    seq: int
    ts: str
    actor: str
    action: str
    task_id: int | None
    tenant: str | None
    details: str
    key_id: str | None
    prev_hash: str
    hash: str


class WorkerRow(NamedTuple):
    """One worker run in the registry."""

    run_id: str
    id: str
    host: str
    pid: int
    holder: str | None
    alive_for: float
    started_at: int
    heartbeat_at: int
    stopped_at: int | None


class AttemptRow(NamedTuple):
    """One ended (or running) attempt of a task."""

    run: int
    attempt: int
    started_at: int
    finished_at: int | None
    outcome: str | None
    error: str | None
    worker: str
    traceback: str | None


class OutputChunkRow(NamedTuple):
    """One chunk of what an attempt printed (see `tqcli.store.output_sql`)."""

    byte_offset: int
    size: int
    stream: str
    text: str


class DagRow(NamedTuple):
    """One DAG."""

    id: int
    name: str
    created_at: int
    submitted_by: str
    cancelled: int


class QueueRow(NamedTuple):
    """One queue's settings (0 is no limit)."""

    name: str
    max_length: int
    max_running: int
    paused: int
    encrypt: int


class TenantRow(NamedTuple):
    """One tenant's settings (0 is no limit), and its rate bucket as last written."""

    name: str
    max_pending: int
    max_running: int
    rate_count: int | None
    rate_period: float | None
    weight: float
    tokens: float | None
    refilled_at: int | None


def columns(row_type: type) -> str:
    """The SELECT list of a row type: its fields, in order."""
    return ", ".join(row_type._fields)  # type: ignore[attr-defined]


Token = tuple[int, int]  # (task id, claim number): a claimed attempt's fencing token
# Makes the rows to append from the chain's head `(seq, hash, key_id)` (None: an empty chain).
AuditLink = Callable[[tuple[int, str, str | None] | None], list[tuple[Any, ...]]]


class TaskStore(Protocol):
    """Tasks, their dependencies and attempts."""

    def allocate_task_ids(self, count: int) -> list[int]:
        """`count` new task ids, ascending, that no other transaction gets."""
    def insert_tasks(self, rows: Iterable[tuple[Any, ...]]) -> None:
        """Insert task rows in the column order of `tasks_sql.INSERT_COLUMNS`."""
    def insert_dependencies(self, pairs: Sequence[tuple[int, int]]) -> None:
        """Record `(task_id, depends_on)` edges, marking the depended-on tasks."""
    def find_idempotency_keys(self, tenant: str, keys: Sequence[str]) -> dict[str, tuple[int, str, str, str, str]]:
        """`(id, backend, target, payload, state)` of the task holding each key within one tenant."""
    def task_states(self, ids: Sequence[int]) -> dict[int, str]:
        """The state of each existing task among `ids`."""
    def task_rows(self, ids: Sequence[int]) -> list[TaskRow]:
        """The existing tasks among `ids`."""
    def list_task_rows(
        self,
        *,
        queue: str | None,
        tenant: str | None,
        state: str | None,
        limit: int | None,
        dag_id: int | None = None,
        tenants: Sequence[str] | None = None,
    ) -> list[TaskRow]:
        """The newest `limit` tasks matching the filters (`tenants`: only those), newest first."""
    def task_ids_in_state(self, state: str, *, queue: str | None, tenant: str | None, tenants: Sequence[str] | None = None) -> list[int]:
        """The ids, ascending, of every task in `state` matching the filters (`tenants`: only those)."""
    def count_by_queue_and_state(
        self, *, queue: str | None, tenant: str | None, tenants: Sequence[str] | None = None
    ) -> list[tuple[str, str, int]]:
        """`(queue, state, count)` for every queue and state that has tasks (of `tenants` only, when given)."""
    def dependencies_of(self, ids: Sequence[int]) -> dict[int, list[int]]:
        """The ids each task among `ids` depends on, ascending."""
    def dependency_states(self, task_id: int) -> list[tuple[int, str]]:
        """`(id, state)` of every task that `task_id` depends on."""
    def dependents_of(self, ids: Sequence[int]) -> list[tuple[int, str, str]]:
        """`(id, state, tenant)` of every task depending directly on any of `ids`."""
    def attempt_rows(self, task_id: int) -> list[AttemptRow]:
        """A task's attempts in order."""
    def set_states(self, ids: Sequence[int], state: str, *, finished_at: int | None = None, error: str | None = None) -> None:
        """Move tasks to `state`; `finished_at`/`error` are set when given."""
    def request_cancel(self, task_id: int, note: str) -> None:
        """Flag a running task so the worker running it stops it."""
    def replay_tasks(self, ids: Sequence[int], *, now: int) -> None:
        """Failed tasks back to pending for a new run."""
    def edit_failed_tasks(self, ids: Sequence[int], changes: Mapping[str, Any]) -> None:
        """Set the same columns (payload, priority, max_retries, queue) on the failed tasks among `ids`, before a replay."""
    def delete_tasks(self, ids: Sequence[int], *, now: int) -> None:
        """Delete tasks with their attempts and edges (DAG tasks leave a tombstone)."""
    def set_priority(self, task_id: int, priority: int) -> None:
        """Change a task's priority."""
    def task_state(self, task_id: int) -> str | None:
        """The state of one task, or None if it does not exist."""


class DispatchStore(Protocol):
    """Claims, leases and the fenced writes of an attempt."""

    def next_claim_number(self) -> int:
        """A claim number no other claim gets (`use_claim_number` records it where needed)."""
    def use_claim_number(self, number: int) -> None:
        """Record that `number` was handed out, so it is never handed out again."""
    def claim_tasks(
        self, *, count: int, now: int, claim_number: int, lease_until: int, worker: str, holder: str | None = None, **filters: Any
    ) -> list[ClaimRow]:
        """Claim the best `count` ready tasks matching `filters`; no task is claimed twice."""
    def pick_tasks(self, *, count: int, now: int, **filters: Any) -> list[PickRow]:
        """The best `count` ready tasks matching `filters`, best first; on PostgreSQL they stay locked, and other claims skip them."""
    def claim_picked(
        self, ids: Sequence[int], *, now: int, claim_number: int, lease_until: int, worker: str, holder: str | None = None
    ) -> list[ClaimRow]:
        """Claim these picked tasks (those still pending); their rows."""
    def record_attempts(self, rows: Sequence[tuple[Any, ...]]) -> None:
        """Ended attempts, each recorded once (keyed by task id and claim)."""
    def complete_task(self, task_id: int, claim: int, *, now: int, result: str) -> bool | None:
        """running -> completed if the token holds: whether it has dependents; None if not held."""
    def holding(self, tokens: Sequence[Token]) -> dict[Token, bool]:
        """For the tokens that still hold their task: whether it has dependents now."""
    def complete_tasks(self, rows: Sequence[tuple[str, int, int, int]]) -> None:
        """Complete many held tasks: `(result, now, task_id, claim)` each."""
    def retry_task(self, task_id: int, claim: int, *, error: str, run_at: int) -> bool:
        """running -> pending later, if the token holds and no cancel waits."""
    def pending_cancel_note(self, task_id: int, claim: int) -> str | None:
        """The note of a cancel requested while the token holds the task."""
    def end_task(self, task_id: int, claim: int, *, state: str, now: int, error: str) -> bool:
        """running -> failed or cancelled, if the token holds."""
    def release_task(self, task_id: int, claim: int) -> bool:
        """running -> pending without counting the attempt, if the token holds."""
    def release_dependents(self, task_id: int) -> None:
        """One fewer unfinished dependency for every task depending on `task_id`."""
    def renew_leases(self, tokens: Sequence[Token], lease_until: int) -> int:
        """Extend the leases these tokens still hold; how many."""
    def held_tokens(self, tokens: Sequence[Token]) -> dict[Token, bool]:
        """For the tokens that still hold their task: whether a cancel was requested."""
    def expired_tasks(self, now: int, limit: int) -> list[tuple[int, str]]:
        """`(id, tenant)` of up to `limit` pending tasks past their expiry."""
    def running_leases(self) -> list[tuple[Any, ...]]:
        """Claim rows of every running task, then cancel_requested, lease_until, holder."""
    def claimed_row(self, task_id: int, claim: int) -> ClaimRow | None:
        """The claim row of a task while the token holds it."""
    def running_tokens(self, worker: str) -> list[Token]:
        """The tokens of every task `worker` runs now (to read back a commit whose outcome is unknown)."""
    def running_attempt(self, task_id: int) -> tuple[int, int, int, str] | None:
        """`(run, attempt, started_at, worker)` of the attempt running now."""
    def explain_claim(self, **filters: Any) -> list[str]:
        """The store's plan for the claim's pick, one line per step (the benchmark shows it)."""


class BreakerStore(Protocol):
    """Circuit breakers and shared settings."""

    def breaker_row(self, key: str) -> BreakerRow | None:
        """The breaker of one service key."""
    def breaker_rows(self) -> list[BreakerRow]:
        """Every breaker, by key."""
    def tripped_breakers(self) -> list[tuple[str, str, int | None, int | None]]:
        """`(key, state, retry_at, trial_task)` of every breaker that is not closed."""
    def noted_breakers(self) -> list[tuple[str, str, int | None, int | None]]:
        """`(key, state, retry_at, trial_task)` of every breaker that is not closed or has counted failures."""
    def unclean_breakers(self) -> list[str]:
        """Keys of circuits that are not closed or have counted failures."""
    def save_breaker(
        self, key: str, *, state: str, failures: int, opened_at: int | None, retry_at: int | None, trial_task: int | None, now: int
    ) -> None:
        """Insert or update a breaker's state, keeping its thresholds."""
    def configure_breaker(self, key: str, *, failure_threshold: int | None, recovery_timeout: float | None, now: int) -> None:
        """Set a breaker's own thresholds (None keeps the current value)."""
    def clear_breaker_settings(self, key: str, *, failure_threshold: bool, recovery_timeout: bool) -> None:
        """Take away a circuit's own threshold and/or recovery timeout: it follows the defaults again."""
    def reschedule_open_breakers(self, key: str | None, recovery_timeout: float) -> None:
        """Open circuits retry `recovery_timeout` after they opened."""
    def service_has_tasks(self, key: str, *, recent: int) -> bool:
        """Whether an unfinished task, or one of the newest `recent`, has service `key`."""
    def setting(self, key: str) -> str | None:
        """A shared setting's value, if set."""
    def set_setting(self, key: str, value: str) -> None:
        """Set a shared setting."""


class ScheduleStore(Protocol):
    """Cron schedules, their fires, and DAGs."""

    def schedule_row(self, name: str) -> ScheduleRow | None:
        """One schedule."""
    def schedule_rows(self) -> list[ScheduleRow]:
        """Every schedule, by name."""
    def due_schedules(self, now: int) -> list[ScheduleRow]:
        """Active schedules whose next fire time has come."""
    def insert_schedule(self, row: Sequence[Any]) -> None:
        """Add a schedule given in `ScheduleRow` order."""
    def update_schedule(self, name: str, **columns: Any) -> None:
        """Set some columns of one schedule."""
    def delete_schedule(self, name: str) -> None:
        """Remove a schedule and its fire records."""
    def record_fire(self, name: str, fire_at: int, now: int) -> bool:
        """Claim one fire time; False when another worker already did."""
    def forget_fires(self, name: str, before: int) -> None:
        """Drop the fire records of `name` older than `before`."""
    def set_fire_task(self, name: str, fire_at: int, task_id: int) -> None:
        """Remember which task a fire enqueued."""
    def insert_dag(self, name: str, now: int, submitted_by: str) -> int:
        """Create a DAG row; its id."""
    def dag_row(self, dag_id: int) -> DagRow | None:
        """One DAG."""
    def dag_rows(self, limit: int | None) -> list[DagRow]:
        """The newest `limit` DAGs, newest first."""
    def dag_task_states(self, dag_ids: Sequence[int]) -> list[tuple[int, str, int]]:
        """`(dag_id, state, count)` for the tasks of these DAGs, purged ones included."""
    def purged_dag_tasks(self, dag_id: int) -> list[tuple[int, str, str, int]]:
        """`(id, name, state, purged_at)` of the DAG's purged tasks."""
    def mark_dag_cancelled(self, dag_id: int) -> None:
        """Flag a DAG as cancelled."""


class AuditStore(Protocol):
    """The audit chain, metadata and role grants."""

    def append_audit(self, link: AuditLink) -> None:
        """Append `link(head)`'s rows to the chain (head `(seq, hash, key_id)`), with no other append in between."""
    def audit_head(self) -> tuple[int, str, str | None] | None:
        """`(seq, hash, key_id)` of the newest entry."""
    def iter_audit(self, first: int | None = None, last: int | None = None) -> Iterator[tuple[Any, ...]]:
        """Entries in stored order, streamed."""
    def audit_bounds(self) -> tuple[int, int, int]:
        """`(count, lowest seq, highest seq)`."""
    def audit_row(self, seq: int) -> AuditRow | None:
        """The entry with sequence number `seq`."""
    def audit_entries(
        self, *, task_id: int | None, actor: str | None, action: str | None, since: str | None, limit: int | None,
        tenants: Sequence[str] | None = None,
    ) -> list[AuditRow]:
        """The newest `limit` entries matching the filters (of `tenants` only, unless None), in chain order."""
    def audit_has_action(self, action: str) -> bool:
        """Whether any entry has this action."""
    def meta_value(self, key: str) -> str | None:
        """A value from the meta table (for example `db_id`)."""
    def count_grants(self) -> int:
        """How many role grants exist."""
    def is_global_admin(self, user: str) -> bool:
        """Whether `user` is admin without a tenant restriction."""
    def grants_of(self, user: str) -> tuple[list[tuple[str, str]], bool]:
        """`user`'s `(role, tenant)` grants, and whether any grant exists."""
    def role_rows(self) -> list[tuple[str, str, str]]:
        """Every grant as `(user, role, tenant)`, ordered."""
    def lock_roles(self) -> None:
        """Hold the grants still until commit (PostgreSQL; a no-op on SQLite)."""
    def add_grant(self, user: str, role: str, tenant: str) -> bool:
        """Add a grant; False when it existed."""
    def remove_grant(self, user: str, role: str, tenant: str) -> bool:
        """Remove a grant; False when it did not exist."""
    def global_admins(self) -> list[str]:
        """Users holding admin without a tenant."""


class MaintenanceStore(Protocol):
    """The worker registry, task edits, retention and completion."""

    def register_worker(self, row: Sequence[Any]) -> None:
        """Add one worker run (`WorkerRow` order)."""
    def worker_heartbeat(self, run_id: str, now: int, *, stopped: bool = False) -> None:
        """Record that a worker run is alive (or stopped) at `now`."""
    def worker_rows(self, since: int) -> list[WorkerRow]:
        """Worker runs with a heartbeat at or after `since`, newest first."""
    def latest_heartbeat(self) -> int | None:
        """The newest heartbeat of a worker that has not stopped."""
    def running_by_worker(self) -> list[tuple[str | None, str | None, int]]:
        """`(worker, holder, task id)` of every running task."""
    def forget_workers(self, before: int) -> None:
        """Drop worker runs whose last heartbeat is older than `before`."""
    def edit_task(self, task_id: int, changes: Mapping[str, Any]) -> bool:
        """Set columns of a pending or blocked task; False when it is in neither state."""
    def prunable_tasks(self, states: Sequence[str], finished_by: int, after: tuple[int, int], limit: int) -> list[tuple[int, int, str]]:
        """`(finished_at, id, tenant)` of finished tasks past a cursor that nothing unfinished needs."""
    def finished_after(self, after: tuple[int, int], limit: int) -> list[tuple[int, int, str, str, str]]:
        """`(finished_at, id, queue, tenant, state)` of finished tasks past a `(finished_at, id)` cursor, in that order."""
    def known_names(self, kind: str, prefix: str, limit: int) -> list[tuple[str, str | None]]:
        """Names of `kind` starting with `prefix`, for shell completion."""


class TenancyStore(Protocol):
    """Queue and tenant settings, the counts their limits are judged by, and the tenants' turns."""

    def queue_rows(self, names: Sequence[str] | None = None) -> list[QueueRow]:
        """The queues that have settings (those among `names`, if given), by name."""
    def tenant_rows(self, names: Sequence[str] | None = None) -> list[TenantRow]:
        """The tenants that have settings (those among `names`, if given), by name."""
    def claim_limits(self) -> tuple[list[QueueRow], list[TenantRow]]:
        """The queues (paused, or with a max-running) and the tenants (with a max-running or a rate) a claim must judge."""
    def save_queue(self, row: QueueRow) -> None:
        """Insert or replace a queue's settings."""
    def save_tenant(self, row: TenantRow) -> None:
        """Insert or replace a tenant's settings (its bucket included)."""
    def delete_queue(self, name: str) -> None:
        """Forget a queue's settings (its tasks stay)."""
    def delete_tenant(self, name: str) -> None:
        """Forget a tenant's settings and turn (its tasks stay)."""
    def save_tokens(self, tenant: str, tokens: float, refilled_at: int) -> None:
        """Write a tenant's rate bucket after a claim took from it."""
    def lock_limits(self, queues: Sequence[str], tenants: Sequence[str]) -> None:
        """Lock these queues' and tenants' settings until commit, queues then tenants, each in name order.

        Every transaction that judges a limit by counting tasks takes these
        first, so two of them cannot both count below the limit and both pass it.
        """
    def running_counts(self) -> list[tuple[str, str, int]]:
        """`(queue, tenant, count)` of running tasks."""
    def count_by_tenant_and_state(self) -> list[tuple[str, str, int]]:
        """`(tenant, state, count)` for every tenant and state that has tasks."""
    def unfinished_in_queue(self, queue: str) -> int:
        """How many of a queue's tasks are pending, blocked or running."""
    def waiting_in_tenant(self, tenant: str) -> int:
        """How many of a tenant's tasks are pending or blocked."""
    def level_start(self, below: int | None) -> list[tuple[int, str, str]]:
        """`(priority, tenant, queue)` of the first two pairs with such a task at the highest level below `below` (None: any)."""
    def work_at_level(self, priority: int) -> list[tuple[str, str, int | None, float | None]]:
        """`(tenant, queue, pass, weight)` of every tenant and queue with such a task at `priority`, by tenant and queue."""
    def pick_shares(self, shares: Sequence[tuple[str, str, int]], *, priority: int, now: int, **filters: Any) -> list[PickRow]:
        """For each `(tenant, queue, count)`: its oldest `count` ready tasks at `priority`; locked and skipped as `pick_tasks`'s."""
    def add_tenants(self, tenants: Sequence[str]) -> None:
        """Give each new tenant among `tenants` its turn: the lowest pass there is."""
    def turns_in_order(self, after: tuple[int, str] | None, limit: int) -> list[tuple[str, int, float | None]]:
        """`(tenant, pass, weight)` of the next `limit` tenants after `(pass, tenant)` `after`, lowest pass first."""
    def turns_of(self, tenants: Sequence[str]) -> list[tuple[str, int, float | None]]:
        """`(tenant, pass, weight)` of each of `tenants` that has a turn."""
    def queues_at_level(self, priority: int, tenants: Sequence[str]) -> list[tuple[str, str]]:
        """`(tenant, queue)` of every queue where one of `tenants` has such a task at `priority`."""
    def max_pass(self) -> int:
        """The highest pass of any tenant (0 when none has one)."""
    def bump_passes(self, tenants: Sequence[str], to: int) -> None:
        """Move these tenants' turns back to at least `to`."""
    def advance_passes(self, passes: Sequence[tuple[str, int, int]]) -> None:
        """For each `(tenant, start, spent)`: its pass becomes max(its pass, start) + spent, in tenant order."""


class LockStore(Protocol):
    """Row locks for read-then-write sequences (no-ops on SQLite)."""

    def lock_tasks(self, ids: Sequence[int], *, shared: bool = False) -> None:
        """Lock these task rows until commit (shared: others may read-lock them too), in id order."""
    def lock_breakers(self, keys: Sequence[str]) -> None:
        """Lock these circuits until commit, existing or not, in key order."""
    def lock_idempotency_keys(self, tenant: str, keys: Sequence[str]) -> None:
        """Lock these idempotency keys of one tenant until commit, taken or not."""


class OutputStore(Protocol):
    """What attempts printed, in chunks by byte offset (`tqcli logs`)."""

    def insert_output(self, rows: Sequence[tuple[int, int, int, int, str, str]]) -> None:
        """Store chunks `(task_id, claim, byte_offset, size, stream, text)`; a chunk already stored is left as it is."""
    def trim_output(self, cuts: Sequence[tuple[int, int, int]]) -> None:
        """For each `(task_id, claim, offset)`, delete that attempt's chunks that begin before `offset`."""
    def output_claims(self, task_id: int) -> list[int]:
        """The claims of a task's attempts in order: the ended ones, then the running one."""
    def output_chunks(self, task_id: int, claim: int, from_offset: int = 0) -> list[OutputChunkRow]:
        """One attempt's chunks that begin at or after `from_offset`, in order."""
    def output_extent(self, task_id: int, claim: int) -> tuple[int, int]:
        """`(end, kept)` of one attempt's output: the offset after its last chunk, and the bytes its chunks stand for."""


class KeysStore(Protocol):
    """The sealed values of encrypted tasks, for the keys commands (see `tqcli.security.crypto`)."""

    def sealed_value_counts(self, prefix: str, id_chars: int) -> dict[str, int]:
        """How many stored values name each data key: values starting with `prefix`, the key id the `id_chars` characters after it."""
    def audit_key_counts(self) -> dict[str, int]:
        """How many audit entries each audit key links."""
    def has_encrypted_pending(self) -> bool:
        """Whether any pending task is encrypted."""
    def encrypted_task_ids(self, after: int, limit: int) -> list[int]:
        """The ids of up to `limit` encrypted tasks with an id above `after`, ascending."""
    def sealed_values(self, ids: Sequence[int]) -> list[tuple[int, str, str | None, str | None, str | None]]:
        """`(id, payload, result, error, env)` of these tasks, by id."""
    def sealed_attempt_values(self, ids: Sequence[int]) -> list[tuple[int, int, str | None, str | None]]:
        """`(task_id, claim, error, traceback)` of every attempt of these tasks."""
    def rewrite_sealed_values(self, rows: Sequence[tuple[int, str, str | None, str | None, str | None]]) -> None:
        """Store `(id, payload, result, error, env)` for each task (its values sealed anew)."""
    def rewrite_sealed_attempts(self, rows: Sequence[tuple[int, int, str | None, str | None]]) -> None:
        """Store `(task_id, claim, error, traceback)` for each attempt (its values sealed anew)."""
    def sealed_output_counts(self, prefix: str, id_chars: int) -> dict[str, int]:
        """How many output chunks of encrypted tasks name each data key (as `sealed_value_counts` counts values)."""
    def sealed_output_chunks(
        self, last: int, after: tuple[int, int, int], prefix: str, current: str, limit: int
    ) -> list[tuple[int, int, int, str]]:
        """Up to `limit` `(task_id, claim, byte_offset, text)` of encrypted tasks' chunks past `after` up to task `last`, sealed but not under `current`."""
    def rewrite_sealed_output(self, rows: Sequence[tuple[int, int, int, str]]) -> None:
        """Store `(task_id, claim, byte_offset, text)` for each output chunk (its text sealed anew)."""


class MetricsStore(Protocol):
    """The counters that never go down, and the bounded reads `tqcli metrics` takes its gauges from."""

    def counter_deltas(self) -> dict[tuple[str, str], float]:
        """What this transaction adds to counters so far, by `(metric, canonical labels JSON)`: add to it in place."""
    def add_counters(self, deltas: Mapping[tuple[str, str], float]) -> None:
        """Add to counters keyed by `(metric, canonical labels JSON)`; written by `flush_counters`."""
    def flush_counters(self) -> None:
        """Write what `add_counters` gathered in this transaction, in key order (called just before commit)."""
    def raise_counter(self, metric: str, labels: str, value: float) -> None:
        """Set a counter to `value` unless it is higher already."""
    def counter_rows(self) -> list[tuple[str, str, float]]:
        """Every stored counter: `(metric, labels JSON, value)`, by metric and labels."""
    def task_counts(self) -> list[tuple[str, str, str, int]]:
        """`(queue, state, tenant, count)` of every combination that has tasks (from an index alone)."""
    def oldest_ready(self, now: int) -> list[tuple[str, int]]:
        """`(queue, run_at)` of each queue's longest-waiting ready task due by `now`."""
    def audit_max_seq(self) -> int:
        """The highest audit seq, 0 when the chain is empty."""
    def worker_host(self, worker: str) -> str | None:
        """The host of the newest worker run named `worker`, if known."""


# -- API tokens (tqcli.store.tokens_sql, tqcli.security.tokens) ------------------------

class TokenRow(NamedTuple):
    """An API token as stored: its hash only, times in microseconds."""

    id: int
    user_name: str
    name: str | None
    hash: str
    created_at: int
    expires_at: int | None
    last_used_at: int | None
    revoked_at: int | None


class TokenStore(Protocol):
    """The API tokens of `tqcli serve` (`tqcli token ...`)."""

    def insert_token(self, user: str, name: str | None, hash_for: Callable[[int], str], now: int, expires_at: int | None) -> int:
        """Store a new token of `user` (hash `hash_for(id)`); its id, one no other token ever had."""
    def token_row(self, token_id: int) -> TokenRow | None:
        """One token, or None."""
    def token_rows(self) -> list[TokenRow]:
        """Every token, by id."""
    def revoke_token(self, token_id: int, now: int) -> bool:
        """Mark a token revoked at `now`; False when it was already revoked (or does not exist)."""
    def set_token_expiry(self, token_id: int, expires_at: int | None) -> bool:
        """Set a live token's expiry; False when it is revoked or does not exist."""
    def touch_token(self, token_id: int, now: int, before: int) -> None:
        """Record a use at `now` unless one was recorded after `before`."""

# -- end of API tokens -----------------------------------------------------------------


class Tx(
    TaskStore, DispatchStore, BreakerStore, ScheduleStore, AuditStore, MaintenanceStore, TenancyStore, LockStore, KeysStore,
    MetricsStore, OutputStore, TokenStore, Protocol,
):
    """The queries of one transaction."""


class Store(Protocol):
    """One tqcli database: transactions, wake-ups, a second connection."""

    location: str  # the file path or the URL, as `open` takes it
    path: Path | None  # the local file (None on PostgreSQL)
    read_only: bool
    busy_timeout: float

    def write(self) -> AbstractContextManager[Tx]:
        """One short write transaction: all of it lands or none."""
    def read(self) -> AbstractContextManager[Tx]:
        """A read transaction with one consistent snapshot."""
    def errors(self) -> AbstractContextManager[None]:
        """Turn driver errors raised inside into tqcli errors."""
    def server_time(self) -> int:
        """The clock every host sharing this database goes by, in microseconds (PostgreSQL: the server's)."""
    def listen(self, wake: Callable[[], None]) -> Callable[[], None]:
        """Call `wake()` when a change may have made tasks ready; returns the stopper."""
    def reopen(self) -> "Store":
        """A second, independent connection to the same database."""
    def close(self) -> None:
        """Close the connection."""
