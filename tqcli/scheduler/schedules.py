"""Cron schedules kept in the database, and firing the ones that are due.

Every worker run (and every poll of a long-running worker) calls
`fire_due`. A fire time is enqueued exactly once however many workers look
at the same moment: the fire's unique key (schedule, fire time) is inserted
in the same transaction as its task. Without `catchup` only the latest
missed fire is enqueued; with it, all of them (the latest 100 at most).
A resumed schedule starts afresh: the fires it missed while paused are
not made up. Each change of `ScheduleService` also runs inside a caller's
transaction: `add_schedule`, `edit_schedule`, `pause_schedule`,
`resume_schedule`, `remove_schedule`, `run_schedule` (see "Changes that
compose" in docs/design.md). `create_schedule`, `change_schedule` and
`set_schedule_paused` are their changes without the audit entry, for
`apply`, which audits all it changes as one `settings.apply`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Mapping

from tqcli.core.context import Context, retrying
from tqcli.core.spec import TaskSpec, spec_from_mapping
from tqcli.core.submission import check_backends, insert_specs
from tqcli.errors import Conflict, InvalidInput, LimitReached, NotFound, StorageError, TqcliError
from tqcli.security.audit import Journal
from tqcli.store.base import ScheduleRow, Tx
from tqcli.tenancy.limits import admit
from tqcli.units import US_PER_SECOND, check_name, format_time

CATCHUP_LIMIT = 100
# Fire records older than this are dropped: by then no worker can still be about to enqueue them.
FIRE_MEMORY = 7 * 86400 * US_PER_SECOND
# Submit keys a schedule may not carry: the name is the schedule's, and these would clash between fires.
NOT_FOR_SCHEDULES = {"name": "tasks are named after their schedule", "at": "a fixed time fires only once",
                      "depends_on": "each fire is a fresh task", "idempotency_key": "every fire would repeat the key"}


@dataclass
class Schedule:
    """A cron schedule and the submit options of the tasks it enqueues."""

    name: str
    cron: str
    tz: str
    catchup: bool
    paused: bool
    spec: dict[str, Any]
    created_at: int
    created_by: str
    next_fire_at: int | None
    last_fire_at: int | None

    @classmethod
    def from_row(cls, row: ScheduleRow) -> "Schedule":
        """Build from the store's row."""
        name, cron, tz, catchup, paused, spec, created_at, created_by, next_fire_at, last_fire_at = row
        return cls(name, cron, tz, bool(catchup), bool(paused), json.loads(spec), created_at, created_by, next_fire_at, last_fire_at)

    def to_json(self) -> dict[str, Any]:
        """The schedule object of `schedule list --json`."""
        return {
            "name": self.name,
            "cron": self.cron,
            "tz": self.tz,
            "paused": self.paused,
            "next": None if self.paused else format_time(self.next_fire_at),
            "catchup": self.catchup,
            "last_fire": format_time(self.last_fire_at),
            "target": self.spec.get("target"),
            "backend": self.spec.get("backend", "simple"),
            "queue": self.spec.get("queue", "default"),
            "spec": self.spec,
            "created_at": format_time(self.created_at),
            "created_by": self.created_by,
        }


def _cron(expression: str, zone: str) -> Any:
    from tqcli.scheduler.cron import CronSchedule  # croniter loads only when a schedule needs it

    return CronSchedule(expression, zone)


class ScheduleService:
    """`schedule add|list|next|pause|resume|remove|run|edit`."""

    def __init__(self, ctx: Context) -> None:
        self._ctx = ctx

    @retrying
    def add(self, name: str, *, cron: str, tz: str = "UTC", catchup: bool = False, options: Mapping[str, Any]) -> Schedule:
        """Create a schedule; `options` are submit keys (target, payload, queue, ...)."""
        _check_add(name, cron, tz, options)  # before the write transaction, which then finds croniter loaded
        with self._ctx.change() as (tx, journal):
            return add_schedule(self._ctx, tx, journal, name, cron=cron, tz=tz, catchup=catchup, options=options)

    def get(self, name: str) -> Schedule:
        """One schedule; NotFound when there is none of that name."""
        with self._ctx.read() as tx:
            self._ctx.authorize_any(tx, "read", "read schedules")
            return _schedule(tx, name)

    def list(self) -> list[Schedule]:
        """Every schedule, by name."""
        with self._ctx.read() as tx:
            self._ctx.authorize_any(tx, "read", "list schedules")
            return [Schedule.from_row(row) for row in tx.schedule_rows()]

    def next(self, name: str, count: int = 5) -> list[int]:
        """The next `count` fire times after now (whether or not it is paused)."""
        if not 1 <= count <= 10_000:
            raise InvalidInput(f"invalid count {count}: use 1 to 10000")
        schedule = self.get(name)
        return _cron(schedule.cron, schedule.tz).next_after(self._ctx.clock.now(), count)

    @retrying
    def pause(self, name: str) -> bool:
        """Stop firing until resumed; False (and nothing audited) when it was already paused."""
        with self._ctx.change() as (tx, journal):
            return pause_schedule(self._ctx, tx, journal, name)

    @retrying
    def resume(self, name: str) -> bool:
        """Fire again, from the next fire time after now (missed fires are not made up); False when it was not paused."""
        with self._ctx.change() as (tx, journal):
            return resume_schedule(self._ctx, tx, journal, name)

    @retrying
    def run(self, name: str) -> int:
        """Enqueue one task from the schedule's spec now, paused or not; the id of the new task.

        Audited as `schedule.fire` with `manual: true`. The cron fire times
        are left as they are: a worker still fires the ones that are due.
        """
        with self._ctx.change() as (tx, journal):
            return run_schedule(self._ctx, tx, journal, name)

    @retrying
    def edit(
        self, name: str, *, cron: str | None = None, tz: str | None = None, options: Mapping[str, Any] | None = None
    ) -> tuple[Schedule, dict[str, dict[str, Any]]]:
        """Change a schedule's expression, zone or submit options; the schedule and `{FIELD: {"from", "to"}}` of what changed.

        Nothing changed (an empty dict): nothing is written or audited. A new
        expression or zone fires from now on: times that were due under the
        old one are not caught up. Otherwise its due times stay due and fire
        with the new options.
        """
        _check_edit(cron, tz, options)
        with self._ctx.change() as (tx, journal):
            return edit_schedule(self._ctx, tx, journal, name, cron=cron, tz=tz, options=options)

    @retrying
    def remove(self, name: str) -> None:
        """Delete a schedule (the tasks it enqueued stay)."""
        with self._ctx.change() as (tx, journal):
            remove_schedule(self._ctx, tx, journal, name)


def _schedule(tx: Tx, name: str) -> Schedule:
    row = tx.schedule_row(name)
    if row is None:
        raise NotFound(f"schedule {name!r} does not exist: 'tqcli schedule list' shows them")
    return Schedule.from_row(row)


def _refuse_unschedulable(options: Mapping[str, Any]) -> None:
    for key, why in NOT_FOR_SCHEDULES.items():
        if key in options:
            raise InvalidInput(f"a schedule cannot set {key}: {why}")


def _check_add(name: str, cron: str, tz: str, options: Mapping[str, Any]) -> tuple[TaskSpec, Any]:
    """The spec of the schedule's tasks and its cron expression, once every value is checked."""
    check_name(name, what="schedule")
    _refuse_unschedulable(options)
    spec = spec_from_mapping({**options, "name": name})
    check_backends([spec])
    return spec, _cron(cron, tz)


def add_schedule(
    ctx: Context, tx: Tx, journal: Journal, name: str, *, cron: str, tz: str = "UTC", catchup: bool = False, options: Mapping[str, Any]
) -> Schedule:
    """`ScheduleService.add` inside the caller's transaction; the new schedule."""
    schedule, spec = create_schedule(ctx, tx, name, cron=cron, tz=tz, catchup=catchup, options=options)
    journal.add("schedule.add", None, spec.tenant, schedule=name, cron=cron, tz=tz, catchup=catchup, target=spec.target)
    return schedule


def create_schedule(
    ctx: Context, tx: Tx, name: str, *, cron: str, tz: str = "UTC", catchup: bool = False, options: Mapping[str, Any]
) -> tuple[Schedule, TaskSpec]:
    """`add_schedule` without its audit entry: the new schedule and the spec of its tasks."""
    ctx.authorize(tx, "operate", f"add schedule {name}")
    spec, schedule = _check_add(name, cron, tz, options)
    now = ctx.clock.now()
    stored = json.dumps(dict(options), sort_keys=True, separators=(",", ":"))
    next_fire = schedule.next_after(now, 1)[0]
    if tx.schedule_row(name) is not None:
        raise Conflict(f"schedule {name!r} already exists: 'tqcli schedule remove {name}' first, or pick another name")
    tx.insert_schedule((name, cron, tz, int(catchup), 0, stored, now, ctx.actor, next_fire, None))
    return _schedule(tx, name), spec


def pause_schedule(ctx: Context, tx: Tx, journal: Journal, name: str) -> bool:
    """`ScheduleService.pause` inside the caller's transaction; False when it was already paused."""
    return _set_paused(ctx, tx, journal, name, True)


def resume_schedule(ctx: Context, tx: Tx, journal: Journal, name: str) -> bool:
    """`ScheduleService.resume` inside the caller's transaction; False when it was not paused."""
    return _set_paused(ctx, tx, journal, name, False)


def _set_paused(ctx: Context, tx: Tx, journal: Journal, name: str, paused: bool) -> bool:
    if not set_schedule_paused(ctx, tx, name, paused):
        return False
    journal.add("schedule.pause" if paused else "schedule.resume", None, None, schedule=name)
    return True


def set_schedule_paused(ctx: Context, tx: Tx, name: str, paused: bool) -> bool:
    """`pause_schedule` or `resume_schedule` without the audit entry; False when it already was."""
    ctx.authorize(tx, "operate", f"{'pause' if paused else 'resume'} schedule {name}")
    now = ctx.clock.now()
    row = tx.schedule_row(name)
    if row is None:
        raise NotFound(f"schedule {name!r} does not exist: 'tqcli schedule list' shows them")
    if bool(row.paused) == paused:
        return False
    if paused:
        tx.update_schedule(name, paused=1)
    else:
        tx.update_schedule(name, paused=0, next_fire_at=_cron(row.cron, row.tz).next_after(now, 1)[0])
    return True


def run_schedule(ctx: Context, tx: Tx, journal: Journal, name: str) -> int:
    """`ScheduleService.run` inside the caller's transaction; the id of the new task."""
    ctx.authorize(tx, "operate", f"run schedule {name}")
    schedule = _schedule(tx, name)
    spec = spec_from_mapping({**schedule.spec, "name": name})
    check_backends([spec])
    (result,) = insert_specs(ctx, tx, journal, [spec])
    journal.add("schedule.fire", result.id, spec.tenant, schedule=name, manual=True)
    return result.id


def _check_edit(cron: str | None, tz: str | None, options: Mapping[str, Any] | None) -> None:
    _refuse_unschedulable(options or {})
    if cron is None and tz is None and not options:
        raise InvalidInput("nothing to change: give --cron, --tz, --target or a submit option (see 'tqcli schedule edit --help')")


def edit_schedule(
    ctx: Context,
    tx: Tx,
    journal: Journal,
    name: str,
    *,
    cron: str | None = None,
    tz: str | None = None,
    options: Mapping[str, Any] | None = None,
) -> tuple[Schedule, dict[str, dict[str, Any]]]:
    """`ScheduleService.edit` inside the caller's transaction; the schedule as it now is and what changed."""
    options = dict(options or {})
    _check_edit(cron, tz, options)
    schedule, changes = change_schedule(ctx, tx, name, cron=cron, tz=tz, options=options)
    if changes:
        journal.add("schedule.edit", None, schedule.spec.get("tenant") or "default", schedule=name, **changes)
    return schedule, changes


def change_schedule(
    ctx: Context,
    tx: Tx,
    name: str,
    *,
    cron: str | None = None,
    tz: str | None = None,
    catchup: bool | None = None,
    options: Mapping[str, Any] | None = None,
    replace: bool = False,
) -> tuple[Schedule, dict[str, dict[str, Any]]]:
    """`edit_schedule` without its audit entry, which may also set `catchup`; the schedule and what changed.

    With `replace`, `options` are all of its submit options (a key they
    leave out goes back to its default) rather than those to change.
    """
    ctx.authorize(tx, "operate", f"edit schedule {name}")
    options = dict(options or {})
    _refuse_unschedulable(options)
    now = ctx.clock.now()
    current = _schedule(tx, name)
    new_cron = current.cron if cron is None else cron
    new_tz = current.tz if tz is None else tz
    expression = _cron(new_cron, new_tz)  # an invalid or never-firing one is refused before anything changes
    before = spec_from_mapping({**current.spec, "name": name})
    after = spec_from_mapping({**({} if replace else current.spec), **options, "name": name})
    check_backends([after])
    changes: dict[str, dict[str, Any]] = {}
    for field, old, new in (("cron", current.cron, new_cron), ("tz", current.tz, new_tz)):
        if old != new:
            changes[field] = {"from": old, "to": new}
    if catchup is not None and current.catchup != catchup:
        changes["catchup"] = {"from": current.catchup, "to": catchup}
    stored = {key: value for key, value in current.spec.items() if key in options} if replace else dict(current.spec)
    for key in dict.fromkeys([*options, *(current.spec if replace else ())]):
        old, new = getattr(before, key), getattr(after, key)
        if old != new:  # compared as the tasks get them: --timeout 300 and 5m are the same
            changes[key] = {"from": old, "to": new}
            if key in options:
                stored[key] = options[key]
            else:
                stored.pop(key, None)
    if not changes:
        return current, {}
    columns: dict[str, Any] = {"cron": new_cron, "tz": new_tz, "spec": json.dumps(stored, sort_keys=True, separators=(",", ":"))}
    if catchup is not None:
        columns["catchup"] = int(catchup)
    if "cron" in changes or "tz" in changes:
        columns["next_fire_at"] = expression.next_after(now, 1)[0]
    tx.update_schedule(name, **columns)
    return _schedule(tx, name), changes


def remove_schedule(ctx: Context, tx: Tx, journal: Journal, name: str) -> None:
    """`ScheduleService.remove` inside the caller's transaction."""
    ctx.authorize(tx, "operate", f"remove schedule {name}")
    if tx.schedule_row(name) is None:
        raise NotFound(f"schedule {name!r} does not exist: 'tqcli schedule list' shows them")
    tx.delete_schedule(name)
    journal.add("schedule.remove", None, None, schedule=name)


def fire_due(ctx: Context, log: Any = lambda text: None, reported: set[tuple[str, str]] | None = None) -> int:
    """Enqueue the due fire times of every active schedule; returns how many tasks were enqueued.

    One schedule's error never stops the others: it is logged and audited
    (`schedule.error`) once per `reported` set (a worker keeps one per run),
    and that schedule is tried again on the next poll. Storage errors are
    the worker's to handle and propagate.
    """
    now = ctx.clock.now()
    with ctx.read() as tx:
        if ctx.access(tx).tenants("operate") is not None:
            return 0  # schedules are shared: only the workers of global operators (or of an open database) fire them
        due = tx.due_schedules(now)
    reported = set() if reported is None else reported
    enqueued = 0
    for row in due:
        try:
            enqueued += _fire(ctx, Schedule.from_row(row), now, log)
        except StorageError:
            raise
        except Exception as exc:  # one broken schedule must not stop the worker or the others
            text = exc.message if isinstance(exc, TqcliError) else f"{type(exc).__name__}: {exc}"
            name = row.name
            if (name, text) in reported:
                continue
            reported.add((name, text))
            log(f"warning: schedule {name!r} failed to fire ({text}); the other schedules go on")
            with ctx.change() as (tx, journal):
                journal.add("schedule.error", None, None, schedule=name, error=text[:500])
    return enqueued


def _fire(ctx: Context, schedule: Schedule, now: int, log: Any) -> int:
    """Enqueue one schedule's due fire times (exactly once each, whatever other workers do)."""
    enqueued = 0
    try:
        cron = _cron(schedule.cron, schedule.tz)
        spec = spec_from_mapping({**schedule.spec, "name": schedule.name})
    except InvalidInput as exc:  # its zone vanished from tzdata, say: pause it, visibly, rather than warn forever
        with ctx.change() as (tx, journal):
            tx.update_schedule(schedule.name, paused=1)
            journal.add("schedule.pause", None, None, schedule=schedule.name, reason=f"cannot fire: {exc.message}")
        log(f"warning: schedule {schedule.name!r} cannot fire ({exc.message}); paused it")
        return 0
    limit = CATCHUP_LIMIT if schedule.catchup else 1
    fires = cron.latest_between(schedule.next_fire_at - 1, now, limit)  # type: ignore[operator]
    next_fire = cron.next_after(now, 1)[0]
    with ctx.change() as (tx, journal):
        row = tx.schedule_row(schedule.name)
        if row is None or row.paused or row.next_fire_at != schedule.next_fire_at or json.loads(row.spec) != schedule.spec:
            return 0  # removed, paused, fired or edited meanwhile: the next poll sees it as it is now
        for fire_at in fires:
            if not tx.record_fire(schedule.name, fire_at, now):
                continue  # another worker enqueued this fire time
            try:
                admit(tx, [(spec.queue, spec.tenant)])  # writes nothing, so a refusal leaves the transaction usable
            except LimitReached as exc:  # the fire counts (it is recorded) and is skipped, not tried again forever
                journal.add("schedule.skip", None, spec.tenant, schedule=schedule.name, fire_at=format_time(fire_at), reason=exc.message)
                log(f"warning: schedule {schedule.name!r} skipped its fire of {format_time(fire_at)}: {exc.message.split(';')[0]}")
                continue
            (result,) = insert_specs(ctx, tx, journal, [spec])
            tx.set_fire_task(schedule.name, fire_at, result.id)
            journal.add("schedule.fire", result.id, spec.tenant, schedule=schedule.name, fire_at=format_time(fire_at))
            enqueued += 1
        last = max([fire for fire in fires] + ([row.last_fire_at] if row.last_fire_at is not None else []), default=None)
        tx.update_schedule(schedule.name, next_fire_at=next_fire, last_fire_at=last)
        tx.forget_fires(schedule.name, before=now - FIRE_MEMORY)
    return enqueued
