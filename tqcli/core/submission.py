"""Submitting tasks: single, bulk and idempotent, all in one transaction.

Kept apart from the rest of the task operations because `tqcli submit` is
the hottest start-up path: this module imports only what a submit needs.
"""

from __future__ import annotations

import json
from typing import Any, Sequence

from tqcli.backends.plugins import backend_names, missing_backends
from tqcli.core.chaining import STOPPING_STATES
from tqcli.core.context import Context, retrying
from tqcli.core.spec import TaskSpec
from tqcli.errors import Conflict, InvalidInput, LimitReached, NotFound, PermissionDenied
from tqcli.observability import counters
from tqcli.security.audit import Journal, encode_details
from tqcli.store.base import Tx
from tqcli.tenancy.limits import admit
from tqcli.units import US_PER_SECOND


class SubmitResult:
    """The id of a submitted task, and whether this call created it (False: idempotency key hit)."""

    __slots__ = ("id", "created")

    def __init__(self, id: int, created: bool) -> None:  # noqa: A002 - the task's id
        self.id = id
        self.created = created

    def __repr__(self) -> str:
        return f"SubmitResult(id={self.id}, created={self.created})"


def check_backends(specs: Sequence[TaskSpec], *, where: Sequence[str] | None = None) -> None:
    """Refuse specs naming a backend that is not installed, listing those that are."""
    if not missing_backends({spec.backend for spec in specs}):
        return
    available = backend_names()
    for index, spec in enumerate(specs):
        if spec.backend not in available:
            prefix = f"{where[index]}: " if where else ""
            raise InvalidInput(
                f"{prefix}unknown backend {spec.backend!r}; available: {', '.join(available) or 'none'}"
            )


@retrying
def submit_specs(
    ctx: Context,
    specs: Sequence[TaskSpec],
    *,
    dag_id: int | None = None,
    where: Sequence[str] | None = None,
    encrypt: bool | Sequence[bool] = False,
) -> list[SubmitResult]:
    """Enqueue all of `specs` in one transaction, or none of them; `encrypt` (for all, or per spec) stores them encrypted."""
    check_backends(specs, where=where)
    with ctx.change() as (tx, journal):
        return insert_specs(ctx, tx, journal, specs, dag_id=dag_id, where=where, encrypt=encrypt)


def authorize_submit(ctx: Context, tx: Tx, specs: Sequence[TaskSpec]) -> None:
    """Check that the actor may submit to every tenant `specs` name (one read of its grants)."""
    access = None
    for tenant in sorted({spec.tenant for spec in specs}):
        try:
            access = ctx.authorize(tx, "submit", f"submit tasks to tenant {tenant}", tenant=tenant, access=access)
        except PermissionDenied as denial:
            counters.mark_refused(denial, counters.PERMISSION, *counters.first_of(specs, tenant=tenant))
            raise


def insert_specs(
    ctx: Context,
    tx: Tx,
    journal: Journal,
    specs: Sequence[TaskSpec],
    *,
    dag_id: int | None = None,
    where: Sequence[str] | None = None,
    internal_deps: Sequence[Sequence[int]] | None = None,
    restarted_from: int | None = None,
    encrypt: bool | Sequence[bool] = False,
) -> list[SubmitResult]:
    """Insert `specs` inside the caller's transaction; `internal_deps[i]` lists earlier specs task i needs.

    A task is stored encrypted when `encrypt` asks (True for all, or one
    flag per spec) or its queue encrypts: its payload and env are sealed
    under its new id, and without a data key the whole call is KeyProblem
    (exit 8), before anything is written.

    A spec whose idempotency key is held in its tenant by a task of the same
    backend, target and payload yields that task (not created); held by
    other work, the whole call is a Conflict (exit 6). New tasks that would
    pass a queue's max-length or a tenant's max-pending make the whole call
    LimitReached (exit 5), before anything is written.
    """
    authorize_submit(ctx, tx, specs)
    now = ctx.clock.now()
    existing = _existing_keys(tx, specs)
    asked = [encrypt] * len(specs) if isinstance(encrypt, bool) else list(encrypt)
    encrypting = {row.name for row in tx.queue_rows(sorted({spec.queue for spec in specs})) if row.encrypt}
    opener = _Opener(ctx, tx)
    dep_ids = sorted({dep for spec in specs for dep in spec.depends_on})
    # Locked (shared) first: a dependency completing meanwhile waits for this commit and then sees the new edge.
    tx.lock_tasks(dep_ids, shared=True)
    dep_states = tx.task_states(dep_ids) if dep_ids else {}
    for index, spec in enumerate(specs):
        for dep in spec.depends_on:
            if dep not in dep_states:
                prefix = f"{where[index]}: " if where else ""
                raise NotFound(f"{prefix}task {dep} (named in depends_on) does not exist")
    fresh_ids = iter(tx.allocate_task_ids(_new_tasks(specs, existing)))
    results: list[SubmitResult] = []
    held_states: dict[int, str] = {}  # tasks that already held a key given here: what a dependent must wait for
    given_here: dict[tuple[str, str], int] = {}  # key -> the index of the first spec of this call that gives it
    rows, edges = [], []
    actor = ctx.actor
    details: dict[tuple[str, str, str, int, bool], str] = {}  # bulk submits repeat the same few
    entries: list[tuple[str, int | None, str | None, str]] = []  # the journal's, in task order
    for index, spec in enumerate(specs):
        if spec.idempotency_key is not None:
            key = (spec.tenant, spec.idempotency_key)
            prefix = f"{where[index]}: " if where else ""
            holder = existing.get(key)
            if holder is not None:
                holder_id, backend, target, payload, holder_state = holder
                differs = _differences(spec, backend, target, opener.payload(holder_id, payload))
                if differs:
                    raise Conflict(
                        f"{prefix}idempotency key {spec.idempotency_key} is held by task {holder_id}, whose {' and '.join(differs)} "
                        f"{'differs' if len(differs) == 1 else 'differ'}: use another key for other work (nothing was submitted)"
                    )
                results.append(SubmitResult(holder_id, False))
                held_states[holder_id] = holder_state
                continue
            first = given_here.get(key)
            if first is not None:
                earlier = specs[first]
                if _differences(spec, earlier.backend, earlier.target, earlier.payload_json):
                    raise Conflict(
                        f"{prefix}idempotency key {spec.idempotency_key} is also given to "
                        f"{where[first] if where else 'an earlier task of this submit'}, for other work "
                        "(nothing was submitted): give each task its own key"
                    )
                results.append(SubmitResult(results[first].id, False))
                continue
            given_here[key] = index
        task_id = next(fresh_ids)
        state, waiting, deps = "pending", 0, []
        if spec.depends_on or internal_deps is not None:
            deps = sorted(set(spec.depends_on))
            states = [dep_states[dep] for dep in deps]
            if internal_deps is not None:
                internal = [results[i].id for i in internal_deps[index]]
                deps += internal
                states += [held_states.get(dep, "pending") for dep in internal]
            state = "blocked" if any(s in STOPPING_STATES for s in states) else "pending"
            waiting = sum(1 for s in states if s != "completed")
        run_at = now
        if spec.delay:
            run_at = now + int(spec.delay * US_PER_SECOND)
        elif spec.at is not None:
            run_at = spec.at
        expires_at = None if spec.expires is None else run_at + int(spec.expires * US_PER_SECOND)
        payload, env = spec.payload_json, None if spec.env is None else json.dumps(spec.env, sort_keys=True)
        sealed = asked[index] or spec.queue in encrypting
        if sealed:
            cipher = opener.sealing(f"task {task_id} is to be encrypted ({'--encrypt' if asked[index] else f'queue {spec.queue} encrypts'}) and")
            payload, env = cipher.seal(task_id, "payload", payload), cipher.seal_optional(task_id, "env", env)
        rows.append((
            task_id, spec.display_name, spec.queue, spec.tenant, spec.backend, spec.target,
            payload, spec.priority, state, spec.max_retries, float(spec.backoff),
            spec.timeout, run_at, waiting, dag_id, spec.service_key, spec.idempotency_key, now, actor,
            restarted_from, expires_at, spec.cwd, env, int(sealed),
        ))
        if deps:
            edges += [(task_id, dep) for dep in deps]
        summary = (spec.queue, spec.backend, spec.target, spec.priority, sealed)
        text = details.get(summary)
        if text is None:  # restarted_from is the same for the whole call
            entry: dict[str, Any] = {"queue": spec.queue, "backend": spec.backend, "target": spec.target, "priority": spec.priority}
            if restarted_from is not None:
                entry["restarted_from"] = restarted_from
            if sealed:
                entry["encrypted"] = True
            text = details[summary] = encode_details(entry)
        entries.append(("task.submit", task_id, spec.tenant, text))
        results.append(SubmitResult(task_id, True))
    if rows:
        try:
            admit(tx, [(row[2], row[3]) for row in rows])  # (queue, tenant) of each new task
        except LimitReached as refused:
            _mark_limit(refused, specs)
            raise
        tx.add_tenants(sorted({row[3] for row in rows}))  # a new tenant gets its turn (see tqcli.core.picking)
        tx.insert_tasks(rows)
    if edges:
        tx.insert_dependencies(edges)
    journal.add_texts(entries)
    return results


def _mark_limit(refused: LimitReached, specs: Sequence[TaskSpec]) -> None:
    """Note which limit refused the submit, for its counter."""
    if refused.kind == "queue":
        counters.mark_refused(refused, counters.QUEUE_LIMIT, *counters.first_of(specs, queue=refused.name))
    else:
        counters.mark_refused(refused, counters.TENANT_QUOTA, *counters.first_of(specs, tenant=refused.name))


class _Opener:
    """The cipher a submit needs, made only when a task is encrypted (a plain submit never reads the key file)."""

    __slots__ = ("_ctx", "_tx", "_cipher")

    def __init__(self, ctx: Context, tx: Tx) -> None:
        self._ctx, self._tx, self._cipher = ctx, tx, None

    def sealing(self, what: str) -> Any:
        """The cipher to seal new values with; KeyProblem saying `what` needed it when there is no data key."""
        if self._cipher is None:
            from tqcli.core.encryption import sealing_cipher

            self._cipher = sealing_cipher(self._ctx, self._tx, what)
        return self._cipher

    def payload(self, task_id: int, stored: str) -> str:
        """The clear payload of the task holding an idempotency key (opened when it is encrypted)."""
        from tqcli.security.crypto import is_sealed

        if not is_sealed(stored):
            return stored
        return self.sealing(f"comparing with encrypted task {task_id}, which holds the idempotency key,").open(task_id, "payload", stored)


def _differences(spec: TaskSpec, backend: str, target: str, payload: str) -> list[str]:
    """What differs between `spec` and the work holding its idempotency key (payloads compared as JSON values)."""
    differs = [name for name, same in (("backend", backend == spec.backend), ("target", target == spec.target)) if not same]
    if payload != spec.payload_json and json.loads(payload) != spec.payload:
        differs.append("payload")
    return differs


def _new_tasks(specs: Sequence[TaskSpec], existing: dict[tuple[str, str], tuple[Any, ...]]) -> int:
    """How many of `specs` make a task: not those whose idempotency key a task holds, or an earlier spec gives.

    Ids are taken for these alone, so a repeated submit leaves no gap in the
    ids (a sequence on PostgreSQL never gives a number back).
    """
    given: set[tuple[str, str]] = set()
    count = 0
    for spec in specs:
        key = None if spec.idempotency_key is None else (spec.tenant, spec.idempotency_key)
        if key is None or (key not in existing and key not in given):
            count += 1
        if key is not None:
            given.add(key)
    return count


def _existing_keys(tx: Tx, specs: Sequence[TaskSpec]) -> dict[tuple[str, str], tuple[Any, ...]]:
    by_tenant: dict[str, list[str]] = {}
    for spec in specs:
        if spec.idempotency_key is not None:
            by_tenant.setdefault(spec.tenant, []).append(spec.idempotency_key)
    existing: dict[tuple[str, str], tuple[Any, ...]] = {}
    for tenant, keys in sorted(by_tenant.items()):
        tx.lock_idempotency_keys(tenant, keys)  # a concurrent submit with the same key waits, then finds this task
        for key, holder in tx.find_idempotency_keys(tenant, sorted(set(keys))).items():
            existing[(tenant, key)] = holder
    return existing
