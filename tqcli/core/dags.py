"""DAGs: a TOML file of named tasks and their dependencies, enqueued as one.

The file is checked whole before anything is written (unknown keys,
unknown dependency names, cycles, bad values), then the DAG and every task
are inserted in one transaction. A DAG's state is derived from its tasks:
`completed` when all completed; `failed` when any failed or is blocked and
none can still run; `cancelled` when it was cancelled (or its remaining
tasks were); else `running` once any task started, `pending` before.
A task deleted by `dlq purge` or `prune` leaves a tombstone that counts as
the state it was deleted in, so its DAG keeps its state. Submitting and
cancelling also run inside a caller's transaction: `submit_dag`,
`cancel_dag` (see "Changes that compose" in docs/design.md).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

from tqcli.core import encryption
from tqcli.core.context import Context, retrying
from tqcli.core.spec import TaskSpec, spec_from_mapping
from tqcli.core.submission import check_backends, insert_specs
from tqcli.core.task import ALL_STATES, Task
from tqcli.errors import Conflict, Interrupted, InvalidInput, NotFound
from tqcli.security.audit import Journal
from tqcli.store.base import Tx
from tqcli.units import check_name, format_time

_TOP_KEYS = {"name", "defaults", "tasks"}


@dataclass
class DagPlan:
    """A checked DAG file: its name and its tasks in an order that respects dependencies."""

    name: str
    specs: dict[str, TaskSpec]
    depends_on: dict[str, list[str]]
    order: list[str]
    source: str = "DAG file"
    encrypted: frozenset[str] = frozenset()  # the tasks to store encrypted (`encrypt = true`)


def find_cycle(graph: Mapping[str, Sequence[str]]) -> list[str] | None:
    """A dependency cycle as a path (`a -> b -> a` is [a, b, a]), or None.

    Depth-first with an explicit stack, so a chain of any length fits.
    """
    colour: dict[str, int] = {}  # 1 on the current path, 2 done
    for start in graph:
        if start in colour:
            continue
        colour[start] = 1
        path = [start]
        pending = [iter(graph.get(start, ()))]
        while pending:
            for dep in pending[-1]:
                seen = colour.get(dep)
                if seen == 1:
                    return path[path.index(dep):] + [dep]
                if seen is None:
                    colour[dep] = 1
                    path.append(dep)
                    pending.append(iter(graph.get(dep, ())))
                    break
            else:
                colour[path.pop()] = 2
                pending.pop()
    return None


def topological_order(graph: Mapping[str, Sequence[str]]) -> list[str]:
    """Every node after the nodes it depends on, otherwise in the given order (`graph` has no cycle)."""
    placed: dict[str, None] = {}
    for start in graph:
        if start in placed:
            continue
        entered = {start}
        pending = [(start, iter(graph[start]))]
        while pending:
            node, deps = pending[-1]
            for dep in deps:
                if dep not in placed and dep not in entered:
                    entered.add(dep)
                    pending.append((dep, iter(graph[dep])))
                    break
            else:
                pending.pop()
                placed[node] = None
    return list(placed)


def parse_dag(data: Mapping[str, Any], source: str) -> DagPlan:
    """Check a DAG document (as read from TOML); InvalidInput names what is wrong."""
    unknown = sorted(set(data) - _TOP_KEYS)
    if unknown:
        raise InvalidInput(f"{source}: unknown key {unknown[0]!r}; a DAG file has name, [defaults] and [tasks.NAME]")
    name = data.get("name", Path(source).stem)
    if not isinstance(name, str) or not name.strip() or len(name) > 200 or "\x00" in name:
        raise InvalidInput(f"{source}: name must be a non-empty string of at most 200 characters, without a NUL character")
    defaults = data.get("defaults", {})
    if not isinstance(defaults, dict):
        raise InvalidInput(f"{source}: [defaults] must be a table")
    defaults = dict(defaults)
    encrypt_all = _encrypt_flag(defaults.pop("encrypt", False), f"{source}: [defaults]")
    for key in ("depends_on", "name", "idempotency_key"):
        if key in defaults:
            raise InvalidInput(f"{source}: [defaults] cannot set {key}: it differs per task")
    _check_defaults(defaults, source)
    tasks = data.get("tasks")
    if not isinstance(tasks, dict) or not tasks:
        raise InvalidInput(f"{source}: no tasks: add tables like [tasks.extract] with a target")
    specs: dict[str, TaskSpec] = {}
    graph: dict[str, list[str]] = {}
    encrypted: set[str] = set()
    for task_name, table in tasks.items():
        where = f"{source}: task {task_name!r}"
        try:
            check_name(task_name, what="task")
        except InvalidInput as exc:
            raise InvalidInput(f"{source}: {exc.message}") from None
        if not isinstance(table, dict):
            raise InvalidInput(f"{where}: must be a table like [tasks.{task_name}]")
        fields = dict(table)
        if "name" in fields:
            raise InvalidInput(f"{where}: the table's key is the task's name; remove 'name'")
        if _encrypt_flag(fields.pop("encrypt", encrypt_all), where):
            encrypted.add(task_name)
        deps = fields.pop("depends_on", [])
        if isinstance(deps, str):
            deps = [deps]
        if not isinstance(deps, list) or not all(isinstance(dep, str) for dep in deps):
            raise InvalidInput(f"{where}: depends_on must list task names of this DAG")
        try:
            specs[task_name] = spec_from_mapping({**fields, "name": task_name}, defaults=defaults)
        except InvalidInput as exc:
            raise InvalidInput(f"{where}: {exc.message}") from None
        graph[task_name] = list(dict.fromkeys(deps))
    for task_name, deps in graph.items():
        for dep in deps:
            if dep not in graph:
                raise InvalidInput(f"{source}: task {task_name!r} depends on unknown task {dep!r}; the tasks are: {', '.join(graph)}")
    cycle = find_cycle(graph)
    if cycle:
        raise InvalidInput(f"{source}: dependency cycle {' -> '.join(cycle)}")
    return DagPlan(name, specs, graph, topological_order(graph), source, frozenset(encrypted))


def _encrypt_flag(value: Any, where: str) -> bool:
    """A DAG file's `encrypt`: true or false."""
    if not isinstance(value, bool):
        raise InvalidInput(f"{where}: invalid encrypt {value!r}: use true or false")
    return value


def _check_defaults(defaults: Mapping[str, Any], source: str) -> None:
    """Refuse a bad key or value in `[defaults]` there, not in the first task that inherits it."""
    for key, value in defaults.items():
        # Each value alone, beside a target every backend accepts: a task may still override the others.
        if key == "target":
            probe = {"backend": "any", "target": value}
        elif key in ("cwd", "env"):  # shell options: checked on a shell task
            probe = {"backend": "shell", "target": "true", key: value}
        else:
            probe = {"target": "tqcli.dag:defaults", key: value}
        try:
            spec_from_mapping(probe)
        except InvalidInput as exc:
            raise InvalidInput(f"{source}: [defaults]: {exc.message}") from None


def load_dag_file(path: str | Path) -> DagPlan:
    """Read and check a DAG file; a missing file or malformed TOML is invalid input."""
    import tomllib

    try:
        with open(path, "rb") as handle:
            data = tomllib.load(handle)
    except OSError as exc:
        raise InvalidInput(f"cannot read DAG file {path}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise InvalidInput(f"malformed TOML in {path}: {exc}") from None
    except UnicodeDecodeError:
        raise InvalidInput(f"cannot read DAG file {path}: it is not UTF-8 text") from None
    return parse_dag(data, str(path))


def dag_state(counts: Mapping[str, int], cancelled: bool) -> str:
    """A DAG's state from its tasks' counts per state (see module docs)."""
    total = sum(counts.values())
    if total and counts.get("completed", 0) == total:
        return "completed"
    live = counts.get("pending", 0) + counts.get("running", 0)
    if cancelled and not counts.get("running", 0):
        return "cancelled"
    if not live:
        if counts.get("failed", 0) or counts.get("blocked", 0):
            return "failed"
        return "cancelled"
    started = total - counts.get("pending", 0) - counts.get("blocked", 0)
    return "running" if started else "pending"


@dataclass
class PurgedTask:
    """A DAG task deleted by `dlq purge` or `prune`: its tombstone keeps its id, name and last state."""

    id: int
    name: str
    state: str
    purged_at: int

    def to_json(self) -> dict[str, Any]:
        """What the DAG's JSON shows for it: `{"id": 7, "state": null, "purged": true}`."""
        return {"id": self.id, "state": None, "purged": True}


@dataclass
class Dag:
    """A submitted DAG and (when loaded) its tasks by name, and its purged tasks by name."""

    id: int
    name: str
    state: str
    created_at: int
    submitted_by: str
    counts: dict[str, int]
    tasks: dict[str, Task] = field(default_factory=dict)
    purged: dict[str, PurgedTask] = field(default_factory=dict)

    def to_json(self, *, with_tasks: bool = True) -> dict[str, Any]:
        """The DAG object: id, name, state and its tasks by name (purged ones too), in id order."""
        data: dict[str, Any] = {
            "id": self.id,
            "name": self.name,
            "state": self.state,
            "created_at": format_time(self.created_at),
            "submitted_by": self.submitted_by,
            "counts": {state.value: self.counts.get(state.value, 0) for state in ALL_STATES},
        }
        if with_tasks:
            entries = sorted([*self.tasks.items(), *self.purged.items()], key=lambda item: item[1].id)
            data["tasks"] = {name: task.to_json() for name, task in entries}
        return data


class DagService:
    """`dag submit|run|status|list|cancel`."""

    def __init__(self, ctx: Context) -> None:
        self._ctx = ctx

    @retrying
    def submit(self, plan: DagPlan) -> int:
        """Enqueue the whole DAG in one transaction; its id."""
        _check_backends(plan)  # before the write transaction: finding the installed backends reads the filesystem
        with self._ctx.change() as (tx, journal):
            return submit_dag(self._ctx, tx, journal, plan)

    def get(self, dag_id: int) -> Dag:
        """The DAG with its tasks (each with its dependencies)."""
        with self._ctx.read() as tx:
            dag = _load(tx, dag_id)
            _authorize_dag(self._ctx, tx, dag, "read", f"read DAG {dag_id}")
            encryption.reveal(self._ctx, tx, list(dag.tasks.values()))
            return dag

    def list(self, limit: int = 100) -> list[Dag]:
        """The newest `limit` DAGs with their states, newest first."""
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
            raise InvalidInput(f"invalid limit {limit!r} (--limit): give 1 or more, how many of the newest DAGs to list")
        with self._ctx.read() as tx:
            visible = self._ctx.authorize_any(tx, "read", "list DAGs").tenants("read")
            rows = tx.dag_rows(limit)
            if visible is not None:  # a tenant-scoped reader sees the DAGs whose tasks are all of its tenants
                rows = [row for row in rows if _tenants_of(tx, row.id) <= visible]
            counts = _counts(tx, [row.id for row in rows])
        return [
            Dag(row.id, row.name, dag_state(counts[row.id], bool(row.cancelled)), row.created_at, row.submitted_by, counts[row.id])
            for row in rows
        ]

    @retrying
    def cancel(self, dag_id: int) -> list[int]:
        """Cancel every unfinished task of the DAG (running ones are stopped by their workers)."""
        with self._ctx.change() as (tx, journal):  # read and cancel in one transaction: workers go on meanwhile
            return cancel_dag(self._ctx, tx, journal, dag_id)

    def run(
        self,
        plan: DagPlan,
        *,
        concurrency: int = 1,
        log: Any = lambda text: None,
        backends: Any = None,
        handle_signals: bool = False,
        on_submit: Any = lambda dag_id: None,
    ) -> Dag:
        """Submit the DAG and run its tasks here until none can run any more; the finished DAG.

        With `handle_signals` (main thread only), SIGINT or SIGTERM stops the
        run at once and cancels the DAG, then raises Interrupted. `on_submit`
        is called with the new DAG's id before anything runs.
        """
        import signal

        from tqcli.core.worker import Worker
        from tqcli.core.worker_run import WorkerOptions

        options = WorkerOptions(dag_id=0, concurrency=concurrency, poll=0.2)  # checked before anything is submitted
        dag_id = self.submit(plan)
        on_submit(dag_id)
        options.dag_id, options.worker_id = dag_id, f"dag-run-{dag_id}"
        worker = Worker(self._ctx, options, backends=backends, log=log)
        interrupted: list[int] = []

        def interrupt(signum: int, frame: Any) -> None:
            interrupted.append(signum)
            worker.stop(immediately=True)

        previous = {signum: signal.signal(signum, interrupt) for signum in (signal.SIGINT, signal.SIGTERM)} if handle_signals else {}
        try:
            worker.run()
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)
        if interrupted:
            try:
                self.cancel(dag_id)
            except Conflict:
                pass  # it finished meanwhile
            raise Interrupted(f"interrupted: DAG {dag_id} cancelled ('tqcli dag status {dag_id}' shows how far it got)")
        return self.get(dag_id)

    def wait(self, dag_id: int, *, timeout: float | None = None, interval: float = 0.2) -> Dag:
        """Block until the DAG is completed, failed or cancelled; WaitTimeout after `timeout` seconds."""
        import time

        from tqcli.errors import WaitTimeout

        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            dag = self.get(dag_id)
            if dag.state in ("completed", "failed", "cancelled"):
                return dag
            if deadline is not None and time.monotonic() >= deadline:
                raise WaitTimeout(f"DAG {dag_id} is still {dag.state} after {timeout:g} s; it goes on (check with 'tqcli dag status {dag_id}')")
            time.sleep(interval)


def _ordered(plan: DagPlan) -> tuple[list[TaskSpec], list[str]]:
    """The plan's specs in dependency order, and where each comes from (for errors)."""
    return [plan.specs[name] for name in plan.order], [f"{plan.source}: task {name!r}" for name in plan.order]


def _check_backends(plan: DagPlan) -> None:
    ordered, where = _ordered(plan)
    check_backends(ordered, where=where)


def submit_dag(ctx: Context, tx: Tx, journal: Journal, plan: DagPlan) -> int:
    """`DagService.submit` inside the caller's transaction; the new DAG's id."""
    _check_backends(plan)
    ordered, where = _ordered(plan)
    position = {name: index for index, name in enumerate(plan.order)}
    internal = [[position[dep] for dep in plan.depends_on[name]] for name in plan.order]
    now = ctx.clock.now()
    dag_id = tx.insert_dag(plan.name, now, ctx.actor)
    journal.add("dag.submit", None, None, dag_id=dag_id, name=plan.name, tasks=len(ordered))
    # A task whose idempotency key is held for the same work counts as done: its holder stands in for it.
    insert_specs(ctx, tx, journal, ordered, dag_id=dag_id, internal_deps=internal, where=where,
                 encrypt=[name in plan.encrypted for name in plan.order])
    return dag_id


def cancel_dag(ctx: Context, tx: Tx, journal: Journal, dag_id: int) -> list[int]:
    """`DagService.cancel` inside the caller's transaction; the tasks cancelled or flagged."""
    from tqcli.core.queue import cancel_tasks

    tx.lock_tasks([task.id for task in _load(tx, dag_id).tasks.values()])
    dag = _load(tx, dag_id)  # as it is under the lock: a task may have finished meanwhile
    _authorize_dag(ctx, tx, dag, "operate", f"cancel DAG {dag_id}")
    if dag.state in ("completed", "failed", "cancelled"):
        raise Conflict(f"DAG {dag_id} is already {dag.state}; nothing to cancel")
    open_ids = [task.id for task in dag.tasks.values() if not task.state.terminal]
    tx.mark_dag_cancelled(dag_id)
    journal.add("dag.cancel", None, None, dag_id=dag_id, name=dag.name)
    return cancel_tasks(ctx, tx, journal, open_ids, cascade=False, reason=f"DAG {dag_id} cancelled") if open_ids else []


def _authorize_dag(ctx: Context, tx: Tx, dag: Dag, permission: str, action: str) -> None:
    """Check `permission` on every tenant the DAG's tasks belong to."""
    access = ctx.access(tx)
    for tenant in sorted({task.tenant for task in dag.tasks.values()}) or [None]:
        ctx.authorize(tx, permission, action, tenant=tenant, access=access)


def _tenants_of(tx: Tx, dag_id: int) -> set[str]:
    rows = tx.list_task_rows(queue=None, tenant=None, state=None, limit=None, dag_id=dag_id)
    return {row.tenant for row in rows}


def _counts(tx: Tx, dag_ids: Sequence[int]) -> dict[int, dict[str, int]]:
    counts: dict[int, dict[str, int]] = {dag_id: {} for dag_id in dag_ids}
    if dag_ids:
        for dag_id, state, count in tx.dag_task_states(list(dag_ids)):
            counts[dag_id][state] = count
    return counts


def _load(tx: Tx, dag_id: int) -> Dag:
    row = tx.dag_row(dag_id)
    if row is None:
        raise NotFound(f"DAG {dag_id} does not exist: 'tqcli dag list' shows them")
    counts = _counts(tx, [dag_id])[dag_id]
    tasks = [Task.from_row(r) for r in tx.list_task_rows(queue=None, tenant=None, state=None, limit=None, dag_id=dag_id)]
    deps = tx.dependencies_of([task.id for task in tasks])
    for task in tasks:
        task.depends_on = deps[task.id]
    ordered = {task.name: task for task in sorted(tasks, key=lambda t: t.id)}
    purged = {name: PurgedTask(task_id, name, state, at) for task_id, name, state, at in tx.purged_dag_tasks(dag_id)}
    return Dag(row.id, row.name, dag_state(counts, bool(row.cancelled)), row.created_at, row.submitted_by, counts, ordered, purged)


def junit_xml(dag: Dag) -> str:
    """A JUnit XML report of a DAG: one test case per task; failures and skips marked."""
    from xml.etree import ElementTree as ET

    failures = sum(1 for task in dag.tasks.values() if task.state.value == "failed")
    skipped = sum(1 for task in dag.tasks.values() if task.state.value in ("blocked", "cancelled", "pending", "running"))
    durations = {
        name: max(0.0, ((task.finished_at or task.started_at or 0) - (task.started_at or 0)) / 1e6)
        for name, task in dag.tasks.items()
    }
    suites = ET.Element("testsuites", name="tqcli", tests=str(len(dag.tasks)), failures=str(failures), errors="0", skipped=str(skipped))
    suite = ET.SubElement(
        suites, "testsuite", name=dag.name, tests=str(len(dag.tasks)), failures=str(failures), errors="0",
        skipped=str(skipped), time=f"{sum(durations.values()):.3f}", timestamp=(format_time(dag.created_at) or "")[:19],
    )
    for name, task in dag.tasks.items():
        case = ET.SubElement(suite, "testcase", name=name, classname=f"tqcli.dag.{dag.name}", time=f"{durations[name]:.3f}")
        state = task.state.value
        if state == "failed":
            error = task.error or "failed"
            failure = ET.SubElement(case, "failure", message=error.splitlines()[0], type="TaskFailed")
            failure.text = f"task {task.id} failed after {task.attempts} attempt(s):\n{error}"
        elif state != "completed":
            ET.SubElement(case, "skipped", message=f"task {task.id} is {state}" + (f": {task.error}" if task.error else ""))
        if task.result is not None:
            ET.SubElement(case, "system-out").text = task.result
    return ET.tostring(suites, encoding="unicode", xml_declaration=True) + "\n"
