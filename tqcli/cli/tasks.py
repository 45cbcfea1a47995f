"""Task commands: submit, status, cancel, bump."""


import sys
from collections.abc import Sequence
from typing import Annotated, Any, List, Optional

import typer

from tqcli.cli import render
from tqcli.errors import Interrupted, InvalidInput



def read_input_file(path: str, *, what: str) -> str:
    """The text of a file named on the command line (`-` is stdin); missing is exit 2."""
    if path == "-":
        return sys.stdin.read()
    try:
        with open(path, encoding="utf-8") as handle:
            return handle.read()
    except OSError as exc:
        raise InvalidInput(f"cannot read {what} {path}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise InvalidInput(f"cannot read {what} {path}: it is not UTF-8 text") from None


def spec_options(
    *,
    backend: str | None,
    payload: str | None,
    payload_file: str | None,
    name: str | None,
    queue: str | None,
    tenant: str | None,
    priority: int | None,
    max_retries: int | None,
    backoff: str | None,
    timeout: str | None,
    delay: str | None,
    at: str | None,
    depends_on: list[int] | None,
    service: str | None,
    idempotency_key: str | None,
    expires: str | None = None,
    cwd: str | None = None,
    env: list[str] | None = None,
) -> dict[str, Any]:
    """The submit options that were given, as TaskSpec keys (payload parsed, `--env` pairs as a dict)."""
    from tqcli.core.spec import parse_payload

    if payload is not None and payload_file is not None:
        raise InvalidInput("use either --payload or --payload-file, not both")
    if delay is not None and at is not None:
        raise InvalidInput("use either --delay or --at, not both")
    options: dict[str, Any] = {}
    if payload is not None:
        options["payload"] = parse_payload(payload, what="--payload")
    if payload_file is not None:
        options["payload"] = parse_payload(read_input_file(payload_file, what="payload file"), what=f"payload file {payload_file}")
    given = {
        "backend": backend, "name": name, "queue": queue, "tenant": tenant, "priority": priority,
        "max_retries": max_retries, "backoff": backoff, "timeout": timeout, "delay": delay, "at": at,
        "service": service, "idempotency_key": idempotency_key, "expires": expires, "cwd": cwd,
    }
    options.update({key: value for key, value in given.items() if value is not None})
    if depends_on:
        options["depends_on"] = list(depends_on)
    if env:
        options["env"] = env_pairs(env)
    return options


def env_pairs(pairs: list[str]) -> dict[str, str]:
    """`--env NAME=VALUE` options as a dict (a repeated name: the last one wins)."""
    env: dict[str, str] = {}
    for pair in pairs:
        name, equals, value = pair.partition("=")
        if not equals or not name:
            raise InvalidInput(f"invalid --env {pair!r}: use NAME=VALUE")
        env[name] = value
    return env


# How many lines of a bulk file are checked between two calls of its progress callback.
BULK_PROGRESS_LINES = 256


class LineLabels(Sequence[str]):
    """`FILE line N` for each task of a bulk file, made only when an error names one."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.numbers: list[int] = []

    def __len__(self) -> int:
        return len(self.numbers)

    def __getitem__(self, index: Any) -> Any:
        if isinstance(index, slice):
            return [self.label(number) for number in self.numbers[index]]
        return self.label(self.numbers[index])

    def label(self, number: int) -> str:
        """The label of line `number`."""
        return f"{self.source} line {number}"


def _bulk_specs(
    path: str, defaults: dict[str, Any], encrypt: bool = False, progress: Any = None
) -> tuple[list[Any], LineLabels, list[bool]]:
    """The specs of a bulk file, their labels, and whether each is to be encrypted (its line's `encrypt`, else `encrypt`).

    `progress(lines checked, lines in all, what)` is called every
    BULK_PROGRESS_LINES lines and at the end.
    """
    from tqcli.core.spec import parse_json, spec_from_object

    text = read_input_file(path, what="bulk file")
    specs, flags = [], []
    where = LineLabels("stdin" if path == "-" else path)
    lines = text.splitlines()
    for start in range(0, len(lines), BULK_PROGRESS_LINES):
        if progress is not None and start:
            progress(start, len(lines), "lines read and checked")
        for number, line in enumerate(lines[start:start + BULK_PROGRESS_LINES], start=start + 1):
            if not line.strip():
                continue
            try:
                spec, wanted = spec_from_object(parse_json(line, what="this line"), defaults=defaults, encrypt=encrypt)
            except InvalidInput as exc:
                raise InvalidInput(f"{where.label(number)}: {exc.message}; nothing was submitted") from None
            specs.append(spec)
            flags.append(wanted)
            where.numbers.append(number)
    if not specs:
        raise InvalidInput(f"bulk file {path} holds no tasks; nothing was submitted")
    if progress is not None:
        progress(len(lines), len(lines), "lines read and checked")
    return specs, where, flags


def unchanged(option: Any, note: str = "[default: unchanged]") -> Any:
    """A shared option whose help says `note` instead of its submit default (for `edit`, `restart`, `schedule edit`)."""
    import copy
    import re
    from typing import get_args

    base, info = get_args(option)
    info = copy.copy(info)
    info.help = re.sub(r"\[default: [^\]]*\]", note, info.help or "")
    if note not in info.help:
        info.help = f"{info.help} {note}".strip()
    return Annotated[base, info]


# The submit options, shared by `submit`, `run` and `schedule add`.
TargetArg = Annotated[Optional[str], typer.Argument(metavar="TARGET", help="What to run: package.module:function (simple backend) or a command line (shell).", show_default=False)]
BackendOpt = Annotated[Optional[str], typer.Option(metavar="NAME", help="Execution backend [default: simple].", show_default=False)]
PayloadOpt = Annotated[Optional[str], typer.Option(metavar="JSON", help="Payload: a JSON object passed to the backend [default: {}].")]
PayloadFileOpt = Annotated[Optional[str], typer.Option(metavar="FILE|-", help="Read the payload from a file, or - for stdin.")]
NameOpt = Annotated[Optional[str], typer.Option(metavar="N", help="Task name [default: the target].")]
QueueOpt = Annotated[Optional[str], typer.Option(metavar="Q", help="Queue name [default: default].")]
TenantOpt = Annotated[Optional[str], typer.Option(metavar="T", help="Tenant name [default: default].")]
PriorityOpt = Annotated[Optional[int], typer.Option(metavar="P", help="-100..100, higher runs first [default: 0].")]
MaxRetriesOpt = Annotated[Optional[int], typer.Option(metavar="N", help="Retries after the first attempt; 0 = one attempt only [default: 3].")]
BackoffOpt = Annotated[Optional[str], typer.Option(metavar="DUR", help="Base of the exponential backoff between attempts, in seconds or a duration (30s, 2m): delay = backoff * 2^(attempt-1), at most 1h [default: 5].")]
TimeoutOpt = Annotated[Optional[str], typer.Option(metavar="DUR", help="How long one attempt may run, e.g. 30s, 5m [default: none].")]
DelayOpt = Annotated[Optional[str], typer.Option(metavar="DUR", help="Run no earlier than this long from now, e.g. 10m.")]
AtOpt = Annotated[Optional[str], typer.Option(metavar="TIME", help="Run no earlier than this ISO 8601 time (without offset: local time).")]
DependsOnOpt = Annotated[Optional[List[int]], typer.Option(metavar="ID", help="Run only after task ID completed; repeat for several.")]
ServiceOpt = Annotated[Optional[str], typer.Option(metavar="KEY", help="Circuit-breaker key [default: BACKEND:TARGET].")]
IdempotencyOpt = Annotated[Optional[str], typer.Option(metavar="K", help="Submit once per tenant: a repeat of the same work prints the existing id; other work under the key is exit 6.")]
ExpiresOpt = Annotated[Optional[str], typer.Option(metavar="DUR", help="Cancel the task (reason: expired) if it is still pending DUR after its run time.")]
CwdOpt = Annotated[Optional[str], typer.Option(metavar="DIR", help="Shell tasks: run in DIR (. is this directory) [default: the worker's].")]
EnvOpt = Annotated[Optional[List[str]], typer.Option(metavar="NAME=VALUE", help="Shell tasks: set an environment variable; repeat for several [default: the worker's environment].")]
EncryptOpt = Annotated[bool, typer.Option("--encrypt", help="Store its payload, env, result and errors encrypted (needs the key file's data key; 'tqcli keys init'). A queue set with --encrypt encrypts every task.")]


def submit(
    ctx: typer.Context,
    target: TargetArg = None,
    backend: BackendOpt = None,
    payload: PayloadOpt = None,
    payload_file: PayloadFileOpt = None,
    name: NameOpt = None,
    queue: QueueOpt = None,
    tenant: TenantOpt = None,
    priority: PriorityOpt = None,
    max_retries: MaxRetriesOpt = None,
    backoff: BackoffOpt = None,
    timeout: TimeoutOpt = None,
    delay: DelayOpt = None,
    at: AtOpt = None,
    depends_on: DependsOnOpt = None,
    service: ServiceOpt = None,
    idempotency_key: IdempotencyOpt = None,
    expires: ExpiresOpt = None,
    cwd: CwdOpt = None,
    env: EnvOpt = None,
    encrypt: EncryptOpt = False,
    from_file: Annotated[Optional[str], typer.Option(metavar="FILE|-", help="Bulk submit: one JSON object per line with the keys above (target, payload, priority, ...); all or nothing. Options given here are defaults for every line.")] = None,
    wait: Annotated[bool, typer.Option("--wait", help="Block until a worker finishes the task: exit 0 completed, 1 failed or cancelled, 124 on --wait-timeout.")] = False,
    wait_timeout: Annotated[Optional[str], typer.Option(metavar="DUR", help="Give up waiting after DUR (the task goes on).")] = None,
    json_output: Annotated[bool, typer.Option("--json", help="Print the task object (bulk: a list of them) instead of the id; with --wait, once it finished.")] = False,
) -> None:
    """Submit a task; print its id.

    Examples:

      tqcli submit myapp.jobs:resize --payload '{"path": "a.png"}'

      tqcli submit --backend shell 'pg_dump app > /backup/app.sql' --timeout 1h

      tqcli submit --from-file tasks.jsonl
    """
    from tqcli.core.spec import spec_from_mapping

    options = spec_options(
        backend=backend, payload=payload, payload_file=payload_file, name=name, queue=queue, tenant=tenant,
        priority=priority, max_retries=max_retries, backoff=backoff, timeout=timeout, delay=delay, at=at,
        depends_on=depends_on, service=service, idempotency_key=idempotency_key, expires=expires, cwd=cwd, env=env,
    )
    from tqcli.cli import state

    if from_file is not None:
        if wait:
            raise InvalidInput("--wait works with one task, not with --from-file")
        if target is not None:
            raise InvalidInput("give either a TARGET or --from-file, not both")
        if payload_file == "-" and from_file == "-":
            raise InvalidInput("only one of --payload-file and --from-file can read stdin")
        from tqcli.cli import progress
        from tqcli.nogc import paused_gc

        source = "stdin" if from_file == "-" else from_file
        with paused_gc(), progress.bar(f"reading {source}", json_output=json_output) as shown:
            specs, where, flags = _bulk_specs(from_file, options, encrypt, progress=shown.update)
            queue_obj = state(ctx).queue(create=True)
            # One transaction, all or nothing: a pulse until it commits, not a count.
            shown.update(0, None, f"writing {len(specs)} tasks (one transaction)", now=True)
            results = queue_obj.submit_specs(specs, where=where, encrypt=flags)
        if json_output:
            render.emit_json([queue_obj.get(result.id).to_json() for result in results])
        else:
            sys.stdout.write("".join(f"{result.id}\n" for result in results))
        return
    if target is None:
        raise InvalidInput("missing TARGET: what to run (module:function, or a command with --backend shell); see 'tqcli submit --help'")
    if wait_timeout is not None and not wait:
        raise InvalidInput("--wait-timeout needs --wait")
    seconds = _wait_seconds(wait_timeout)
    spec = spec_from_mapping({"target": target, **options})
    queue_obj = state(ctx).queue(create=True)
    result = queue_obj.submit_specs([spec], encrypt=encrypt)[0]
    if not result.created:
        render.message(f"task {result.id} already has idempotency key {spec.idempotency_key!r}; nothing was submitted")
    if not json_output:
        sys.stdout.write(f"{result.id}\n")
        sys.stdout.flush()
    if wait:
        from tqcli.cli.manage import wait_notice
        from tqcli.errors import WaitTimeout

        try:
            finished = queue_obj.wait(result.id, timeout=seconds, on_poll=wait_notice(queue_obj))
        except WaitTimeout:
            if json_output:  # the script still learns which task goes on
                render.emit_json(queue_obj.get(result.id).to_json())
            raise
        except KeyboardInterrupt:
            raise Interrupted(f"interrupted: task {result.id} goes on; 'tqcli status {result.id}' follows it") from None
        finished = queue_obj.get(result.id)
        if json_output:
            render.emit_json(finished.to_json())
        exit_for(finished)
    elif json_output:
        render.emit_json(queue_obj.get(result.id).to_json())


def _wait_seconds(text: str | None) -> float | None:
    if text is None:
        return None
    from tqcli.units import parse_duration

    return parse_duration(text, what="--wait-timeout")


FAILURE_TAIL_LINES = 20


def show_failure(task: Any, *, headline: bool = True) -> None:
    """On stderr: why a task did not complete, with the tail of its output or its traceback, so a CI log explains itself.

    Without `headline` only the tail is shown (the `error:` line that follows says the rest).
    """
    if task.state.value == "completed":
        return
    if task.state.value == "blocked":
        if headline:
            render.message(f"task {task.id} is {task.waiting or 'blocked'}")
        return
    lines = (task.error or "").splitlines()
    if headline:
        render.message(f"task {task.id} {task.state.value}" + (f": {lines[0]}" if lines else ""))
    last = next((a for a in reversed(task.history or []) if a.traceback), None)
    extra = last.traceback.splitlines() if last is not None else lines[1:]
    if extra:
        what = "traceback" if last is not None else "output"
        render.message(f"  last {min(len(extra), FAILURE_TAIL_LINES)} lines of its {what}:")
        for line in extra[-FAILURE_TAIL_LINES:]:
            render.message(f"  | {line}")


def exit_for(task: Any, *, others: int = 0) -> None:
    """Exit 1 unless the task (loaded with its history) completed; `others` more unfinished tasks are counted in the error."""
    from tqcli.errors import WorkFailed

    if task.state.value == "completed":
        return
    show_failure(task, headline=False)
    more = f" (and {others} more did not complete)" if others else ""
    if task.state.value == "blocked":
        raise WorkFailed(f"task {task.id} is {task.waiting or 'blocked'}{more}")
    detail = f": {task.error.splitlines()[0]}" if task.error else ""
    raise WorkFailed(f"task {task.id} {task.state.value}{detail}{more}")


def _show_task(task: Any) -> None:
    from tqcli.security.crypto import ENCRYPTED, is_sealed
    from tqcli.units import format_duration, format_time

    attempts = f"{task.attempts} of {task.max_retries + 1}"
    pairs = [
        ("task", task.id),
        ("name", task.name),
        ("state", task.state.value),
        ("waiting", _waiting_text(task)),
        ("queue", task.queue),
        ("tenant", task.tenant),
        ("backend", task.backend),
        ("target", task.target),
        ("payload", task.payload),
        ("priority", task.priority),
        ("attempts", attempts),
        ("backoff", format_duration(task.backoff)),
        ("timeout", format_duration(task.timeout) if task.timeout else None),
        ("depends on", ", ".join(map(str, task.depends_on)) or None),
        ("dag", task.dag_id),
        ("service", task.service),
        ("idempotency key", task.idempotency_key),
        ("restarted from", task.restarted_from),
        ("cwd", task.cwd),
        ("env", ENCRYPTED if is_sealed(task.env) else " ".join(f"{name}={value}" for name, value in task.env_value.items()) or None),
        ("expires", format_time(task.expires_at)),
        ("submitted by", task.submitted_by),
        ("created", format_time(task.created_at)),
        ("run at", format_time(task.run_at)),
        ("started", format_time(task.started_at)),
        ("finished", format_time(task.finished_at)),
        ("result", task.result),
        ("error", task.error),
    ]
    render.fields([(label, value) for label, value in pairs if value is not None or label in ("state",)])
    if task.history:
        sys.stdout.write("\n")
        replays = {replay.run: replay for replay in task.replays}
        run = 1
        for number, attempts in _runs(task.history):
            if number != run or number in replays:
                replay = replays.get(number)
                note = f"replayed {replay.at} by {replay.by}" if replay else "replayed"
                sys.stdout.write(f"-- run {number}: {note}\n")
            run = number
            rows = [
                (a.attempt, render.when(a.started_at), render.when(a.finished_at), a.outcome or "running", a.worker, a.error)
                for a in attempts
            ]
            render.table(["ATTEMPT", "STARTED", "FINISHED", "OUTCOME", "WORKER", "ERROR"], rows, title="history" if number == 1 else None)
        last = task.history[-1]
        if last.traceback:
            sys.stdout.write(f"\ntraceback of attempt {last.attempt}:\n{last.traceback.rstrip()}\n")
    if task.waiting_detail and task.waiting_detail.get("reset"):
        detail = task.waiting_detail
        when = f"its trial is due at {detail['trial_at']}" if detail.get("trial_at") else f"its trial task {detail.get('trial_task')} is running"
        render.message(f"circuit {detail['service']} is {detail['state']}: {when}; '{detail['reset']}' closes it now")


def _waiting_text(task: Any) -> str | None:
    """Why a task waits, with what a queue's or tenant's limit says about it (`tenant rate: ... the next may start at ...`)."""
    from tqcli.tenancy.limits import HELD_BACK, describe_hold

    if task.waiting in HELD_BACK and task.waiting_detail:
        return f"{task.waiting}: {describe_hold(task.waiting, task.waiting_detail)}"
    return task.waiting


def _runs(history: Any) -> list[tuple[int, list[Any]]]:
    """The attempts grouped by run, in order."""
    runs: list[tuple[int, list[Any]]] = []
    for attempt in history:
        if not runs or runs[-1][0] != attempt.run:
            runs.append((attempt.run, []))
        runs[-1][1].append(attempt)
    return runs


def _limit_lines(summary: Any) -> list[str]:
    """One line per queue or tenant with a limit: each count beside its limit, and whether it is full or paused."""
    from tqcli.cli.tenancy import count_of

    lines = []
    for q in summary.queue_limits:
        parts = [f"{count_of(q.unfinished, q.max_length)} unfinished"] if q.max_length else []
        parts += [f"{count_of(q.running, q.max_running)} running"] if q.max_running else []
        flags = [flag for flag, on in (("paused", q.paused), ("full", q.max_length and q.unfinished >= q.max_length),
                                       ("at max-running", q.max_running and q.running >= q.max_running)) if on]
        lines.append(f"queue {q.name}: " + ", ".join(parts + flags))
    for t in summary.tenant_limits:
        parts = [f"{count_of(t.pending, t.max_pending)} pending"] if t.max_pending else []
        parts += [f"{count_of(t.running, t.max_running)} running"] if t.max_running else []
        parts += [f"rate {t.rate} ({int(t.tokens or 0)} may start now)"] if t.rate else []
        flags = [flag for flag, on in (("full", t.max_pending and t.pending >= t.max_pending),
                                       ("at max-running", t.max_running and t.running >= t.max_running)) if on]
        lines.append(f"tenant {t.name}: " + ", ".join(parts + flags))
    return lines


def _show_summary(summary: Any) -> None:
    from tqcli.core.task import ALL_STATES

    states = [s.value for s in ALL_STATES]
    rows = [(queue, *(counts[s] for s in states)) for queue, counts in summary.queues.items()]
    rows.append(("all", *(summary.counts[s] for s in states)))
    render.table(["QUEUE", *(s.upper() for s in states)], rows)
    sys.stdout.write("\n")
    limits = _limit_lines(summary)
    if limits:
        sys.stdout.write("limits:\n" + "".join(f"  {line}\n" for line in limits) + "\n")
    if summary.access_open:
        sys.stdout.write("access: open (no role granted; 'tqcli role grant USER admin' starts checking)\n\n")
    if not summary.tasks:
        sys.stdout.write("no tasks\n")
        return
    task_rows = [
        (t.id, t.state.value, t.queue, t.tenant, t.priority, t.attempts, render.when(t.created_at), t.name)
        for t in summary.tasks
    ]
    render.table(["ID", "STATE", "QUEUE", "TENANT", "PRIO", "ATTEMPTS", "CREATED", "NAME"], task_rows)


def status(
    ctx: typer.Context,
    task_id: Annotated[Optional[int], typer.Argument(metavar="[ID]", help="Show one task: its attempts and why it waits.", show_default=False)] = None,
    queue: Annotated[Optional[str], typer.Option(metavar="Q", help="Only this queue.")] = None,
    tenant: Annotated[Optional[str], typer.Option(metavar="T", help="Only this tenant.")] = None,
    state_filter: Annotated[Optional[str], typer.Option("--state", metavar="S", help="List only tasks in state S (pending, running, completed, failed, cancelled, blocked).")] = None,
    limit: Annotated[int, typer.Option(metavar="N", help="How many of the newest tasks to list; 0 for all of them.")] = 20,
    json_output: Annotated[bool, typer.Option("--json", help="Print one JSON document.")] = False,
    watch: Annotated[bool, typer.Option("--watch", help="Redraw every second until Ctrl-C.")] = False,
) -> None:
    """Show counts per queue and state and the newest tasks, or one task in detail.

    With --watch on a terminal: a live view (tasks per queue with a
    sparkline of completions per minute, running tasks with their worker,
    the newest failures), redrawn every second until Ctrl-C, which exits 0;
    it waits for a database that does not exist yet. Into a pipe it prints
    the plain status once a second; with --json, one JSON document per line.
    """
    from tqcli.cli import state

    def draw(queue_obj: Any) -> None:
        if task_id is not None:
            _show_task(queue_obj.get(task_id))
        else:
            _show_summary(queue_obj.status(queue=queue, tenant=tenant, state=state_filter, limit=limit))

    def document(queue_obj: Any) -> Any:
        if task_id is not None:
            return queue_obj.get(task_id).to_json()
        return queue_obj.status(queue=queue, tenant=tenant, state=state_filter, limit=limit).to_json()

    if not watch:
        queue_obj = state(ctx).queue(read_only=True)
        if json_output:
            render.emit_json(document(queue_obj))
        else:
            draw(queue_obj)
        return
    from tqcli.cli.watch import shown_location, watch as watch_status
    from tqcli.config import load_config

    app_state = state(ctx)
    where = shown_location(load_config(db_flag=app_state.db, config_flag=app_state.config_path).db)
    watch_status(
        lambda: app_state.queue(read_only=True), where, draw, document,
        json_output=json_output, queue=queue, tenant=tenant, one_task=task_id is not None,
    )


def cancel(
    ctx: typer.Context,
    task_ids: Annotated[Optional[List[int]], typer.Argument(metavar="[ID]...", help="Tasks to cancel.", show_default=False)] = None,
    cascade: Annotated[bool, typer.Option("--cascade", help="Also cancel every task that depends on them, transitively.")] = False,
    reason: Annotated[Optional[str], typer.Option(metavar="TEXT", help="Why; kept in the task's error and the audit log.")] = None,
    every: Annotated[bool, typer.Option("--all", help="Cancel every unfinished task that matches --queue/--tenant/--state (needs --yes or --dry-run); prints their ids.")] = False,
    queue: Annotated[Optional[str], typer.Option(metavar="Q", help="With --all: only this queue.")] = None,
    tenant: Annotated[Optional[str], typer.Option(metavar="T", help="With --all: only this tenant.")] = None,
    states: Annotated[Optional[List[str]], typer.Option("--state", metavar="S", help="With --all: only tasks in state S (pending, blocked, running); repeat for several [default: all three].")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="With --all: print the ids it would cancel; change nothing.")] = False,
    yes: Annotated[bool, typer.Option("--yes", help="Confirm --all.")] = False,
) -> None:
    """Cancel tasks; a running task is stopped by its worker. Without --cascade, dependents become blocked.

    With --all, cancels every unfinished task that matches, in batches, and
    prints their ids, one per line (nothing when none matches).

      tqcli cancel --all --queue etl --state pending --yes
    """
    from tqcli.cli import state

    if every:
        if task_ids:
            raise InvalidInput("give the task IDs to cancel or --all, not both")
        if cascade:
            raise InvalidInput("--cascade works with task IDs, not with --all: cancel the dependents with a second --all that matches them, or by id with --cascade")
        _cancel_all(ctx, queue=queue, tenant=tenant, states=states, reason=reason, dry_run=dry_run, yes=yes)
        return
    if queue is not None or tenant is not None or states or dry_run or yes:
        raise InvalidInput("--queue, --tenant, --state, --dry-run and --yes go with --all: add --all (they cannot be combined with IDs)")
    if not task_ids:
        raise InvalidInput("nothing to cancel: give the task IDs, or --all with --yes for every unfinished task")
    queue_obj = state(ctx).queue()
    affected = queue_obj.cancel(*task_ids, cascade=cascade, reason=reason)
    for task_id in affected:
        task = queue_obj.tasks.get(task_id, detail=False)
        if task.state.value == "running":
            render.message(f"task {task_id} is running: its worker will stop it and record it cancelled")
        else:
            render.message(f"cancelled task {task_id}")


def _cancel_all(
    ctx: typer.Context, *, queue: str | None, tenant: str | None, states: list[str] | None, reason: str | None, dry_run: bool, yes: bool
) -> None:
    """`cancel --all`: the ids on stdout as each batch commits, so every id printed was cancelled."""
    from tqcli.cli import state
    from tqcli.core.queue import CANCELLABLE_STATES

    service = state(ctx).queue(read_only=dry_run).tasks
    options = {"queue": queue, "tenant": tenant, "states": states or CANCELLABLE_STATES, "reason": reason}
    if dry_run:
        ids = service.cancel_all(**options, dry_run=True)
        sys.stdout.write("".join(f"{task_id}\n" for task_id in ids))
        if ids:
            render.message(f"would cancel {len(ids)} task(s)")
        return

    def printed(batch: list[int], matched: int) -> None:
        sys.stdout.write("".join(f"{task_id}\n" for task_id in batch))
        sys.stdout.flush()

    ids = service.cancel_all(**options, confirmed=yes, on_batch=printed)
    if ids:
        render.message(f"cancelled {len(ids)} task(s); running ones are stopped by their workers")


def bump(
    ctx: typer.Context,
    task_id: Annotated[int, typer.Argument(metavar="ID", help="A pending or blocked task.", show_default=False)],
    priority: Annotated[Optional[int], typer.Option(metavar="P", help="New priority, -100..100.")] = None,
    by: Annotated[Optional[int], typer.Option(metavar="N", help="Raise (or, negative, lower) the priority by N.")] = None,
) -> None:
    """Change the priority of a pending or blocked task."""
    from tqcli.cli import state

    old, new = state(ctx).queue().bump(task_id, priority=priority, by=by)
    render.message(f"task {task_id}: priority {old} -> {new}")

