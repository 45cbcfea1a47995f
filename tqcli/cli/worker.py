"""Execution commands: worker, workers, run, plugins."""

import os
import sys
from typing import Annotated, Any, List, Optional

import typer

from tqcli.cli import render, state
from tqcli.cli.tasks import (
    BackendOpt, BackoffOpt, CwdOpt, EnvOpt, IdempotencyOpt, MaxRetriesOpt, NameOpt, PayloadFileOpt, PayloadOpt, PriorityOpt,
    QueueOpt, ServiceOpt, TargetArg, TenantOpt, TimeoutOpt, spec_options,
)
from tqcli.errors import Interrupted, InvalidInput, WorkFailed


def _seconds(text: Optional[str], what: str, default: float) -> float:
    from tqcli.units import parse_duration

    return default if text is None else parse_duration(text, what=what)


def worker(
    ctx: typer.Context,
    once: Annotated[bool, typer.Option("--once", help="Run until no task is ready and none of its own runs, then exit (for cron).")] = False,
    queue: Annotated[Optional[List[str]], typer.Option("--queue", metavar="Q", help="Only claim from queue Q; repeat for several [default: all].")] = None,
    tenant: Annotated[Optional[List[str]], typer.Option("--tenant", metavar="T", help="Only claim tenant T's tasks; repeat for several [default: all].")] = None,
    concurrency: Annotated[Optional[int], typer.Option(metavar="N", help="Tasks run at the same time [default: 1, or worker.concurrency in the config file].")] = None,
    max_tasks: Annotated[Optional[int], typer.Option(metavar="N", help="Stop after claiming N tasks.")] = None,
    lease: Annotated[Optional[str], typer.Option(metavar="DUR", help="How long a claim holds without renewal; renewed while the task runs. A task whose worker died is taken over at once when the worker is known to be gone, else when its lease runs out [default: 60s].")] = None,
    poll: Annotated[Optional[str], typer.Option(metavar="DUR", help="How often an idle worker looks for work [default: 1s].")] = None,
    worker_id: Annotated[Optional[str], typer.Option("--id", metavar="NAME", help="Name in the audit log and status [default: HOST:PID].")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", help="Print only errors about the worker itself (storage, the database), never a task's failure or the summary.")] = False,
    metrics_file: Annotated[Optional[str], typer.Option("--metrics-file", metavar="PATH", help="Rewrite PATH atomically with 'tqcli metrics' output when the worker stops, and every minute while it runs (for node_exporter's textfile collector).")] = None,
) -> None:
    """Claim and run ready tasks, best first, until stopped (SIGTERM/SIGINT) or, with --once, until none is ready.

    On SIGTERM or Ctrl-C it stops claiming, lets running tasks finish within a
    grace period (worker.grace in the config file, default 30s), returns the
    rest to pending without counting an attempt, and exits 0. A second signal
    stops at once. With --once it prints a one-line summary on stderr only
    when it did something, so a crontab line mails only news. It never
    creates a database (a mistyped --db is exit 3). Crontab example:

      * * * * * tqcli --db /srv/jobs.db worker --once
    """
    app_state = state(ctx)
    if metrics_file is not None:
        _check_metrics_file(metrics_file)
    queue_obj = app_state.queue()
    log = _worker_log(quiet)
    defaults = queue_obj.config.worker
    runner = queue_obj.worker(
        once=once,
        queues=tuple(queue or ()),
        tenants=tuple(tenant or ()),
        concurrency=concurrency if concurrency is not None else defaults.concurrency,
        max_tasks=max_tasks,
        lease=_seconds(lease, "--lease", defaults.lease),
        poll=_seconds(poll, "--poll", defaults.poll),
        grace=defaults.grace,
        worker_id=worker_id,
        log=log,
        metrics_file=metrics_file,
    )
    if once and not quiet:
        from tqcli.cli import progress

        with progress.drain(queue_obj, queues=tuple(queue or ()), tenants=tuple(tenant or ())):
            report = runner.run(handle_signals=True)
    else:
        report = runner.run(handle_signals=True)
    if not quiet and (report.did_something or not once):
        render.message(report.summary())


def _check_metrics_file(path: str) -> None:
    """Refuse (exit 2) a --metrics-file that could never be written, before the worker claims anything."""
    from pathlib import Path

    target = Path(path)
    if not path.strip() or target.is_dir():
        raise InvalidInput(f"invalid --metrics-file {path!r}: give a file name, e.g. --metrics-file /var/lib/node_exporter/textfile/tqcli.prom")
    if not target.parent.is_dir():
        raise InvalidInput(f"invalid --metrics-file {path}: folder {target.parent} does not exist (create it first)")


def _worker_log(quiet: bool) -> Any:
    """The worker's message printer: each text at most once per run; with `quiet`, only trouble of the worker itself."""
    seen: set[str] = set()

    def log(text: str) -> None:
        if text in seen:
            return
        if quiet and not text.startswith(("warning: could not", "warning: database", "warning: a worker slot", "error:")):
            return
        seen.add(text)
        render.message(text)

    return log


def run(
    ctx: typer.Context,
    target: TargetArg = None,
    task_id: Annotated[Optional[int], typer.Option("--id", metavar="ID", help="Run this existing pending task instead of submitting one.")] = None,
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
    service: ServiceOpt = None,
    idempotency_key: IdempotencyOpt = None,
    cwd: CwdOpt = None,
    env: EnvOpt = None,
    json_output: Annotated[bool, typer.Option("--json", help="Print the finished task object (shell output is then not streamed).")] = False,
) -> None:
    """Submit a task and run it now in this process, retrying per its policy; exit 0 completed, 1 failed.

    A shell command's output streams as it runs; a function's result is printed
    as JSON. The task and its attempts are recorded like any other. Ctrl-C
    stops it: a task this command submitted is then cancelled, one given with
    --id goes back to pending.

      tqcli run --backend shell 'make backup' --timeout 30m --max-retries 2
    """
    options = spec_options(
        backend=backend, payload=payload, payload_file=payload_file, name=name, queue=queue, tenant=tenant,
        priority=priority, max_retries=max_retries, backoff=backoff, timeout=timeout, delay=None, at=None,
        depends_on=None, service=service, idempotency_key=idempotency_key, cwd=cwd, env=env,
    )
    submitted = False
    spec = None
    if task_id is not None:
        if target is not None or options:
            raise InvalidInput("--id runs an existing task: give no TARGET or submit options with it")
        queue_obj = state(ctx).queue()
    else:
        if target is None:
            raise InvalidInput("missing TARGET (or --id ID); see 'tqcli run --help'")
        from tqcli.core.spec import spec_from_mapping

        spec = spec_from_mapping({"target": target, **options})
        if spec.cwd is not None and not os.path.isdir(spec.cwd):  # it runs here: say so now, not after every retry
            raise InvalidInput(f"invalid --cwd {cwd}: {spec.cwd} is not a directory on this host")
        queue_obj = state(ctx).queue(create=True)

    def on_submit(result: Any) -> None:
        nonlocal task_id, submitted
        task_id, submitted = result.id, result.created
        if submitted:
            render.message(f"task {task_id} submitted; running it here")
        else:
            render.message(f"task {task_id} already has idempotency key {idempotency_key!r}; nothing was submitted")

    def stream(chunk: bytes, stream: int = 1) -> None:
        out = sys.stderr if stream == 2 else sys.stdout
        out.buffer.write(chunk)
        out.flush()

    def retrying(attempt: int, error: str, delay: float) -> None:
        first = error.splitlines()[0] if error else "failed"
        render.message(f"attempt {attempt} failed: {first}; retrying in {delay:.3g} s")

    try:
        ended = queue_obj.run_now(
            task_id, spec=spec, on_submit=on_submit, on_output=None if json_output else stream, on_retry=retrying,
            cancel_on_interrupt=spec is not None,
        )
        if ended is None:  # the idempotency key's task already exists
            existing = queue_obj.get(task_id)
            if existing.state.terminal:  # it ran before: report it instead of running it again
                _report_run(existing, json_output)
                return
            queue_obj.run_now(task_id, on_output=None if json_output else stream, on_retry=retrying)
    except KeyboardInterrupt:
        if submitted:
            raise Interrupted(f"interrupted: task {task_id} cancelled") from None
        raise Interrupted(f"interrupted: task {task_id} is pending again (a worker will run it; 'tqcli cancel {task_id}' stops that)") from None
    _report_run(queue_obj.get(task_id), json_output)


def _report_run(task: Any, json_output: bool) -> None:
    """Print how a task run by `run` ended; exit 1 unless it completed."""
    if json_output:
        render.emit_json(task.to_json())
    elif task.backend != "shell" and task.state.value == "completed":
        render.emit_json(task.result_value)
    if task.state.value != "completed":
        first = task.error.splitlines()[0] if task.error else "no error text"
        raise WorkFailed(f"task {task.id} {task.state.value} after {task.attempts} attempt(s): {first}")


def plugins(
    json_output: Annotated[bool, typer.Option("--json", help="Print a JSON array.")] = False,
) -> None:
    """List the installed backends (entry-point group tqcli.backends), where each comes from, and whether it loads."""
    from tqcli.backends.executor import error_text
    from tqcli.backends.plugins import discover, load_backend

    found = []
    for info in sorted(discover().values(), key=lambda item: item.name):
        try:
            load_backend(info.name)
            status = "ok"
        except Exception as exc:
            status = f"fails to load: {error_text(exc)}"
        found.append({"name": info.name, "entry_point": info.value, "distribution": info.distribution, "status": status})
    if json_output:
        render.emit_json(found)
        return
    render.table(["BACKEND", "ENTRY POINT", "DISTRIBUTION", "STATUS"], [tuple(item.values()) for item in found])


def workers(
    ctx: typer.Context,
    json_output: Annotated[bool, typer.Option("--json", help="Print a JSON array.")] = False,
) -> None:
    """List the workers seen in the last 24 hours: host, pid, heartbeat, running tasks, and whether each is alive.

    A worker is alive until it stops, or until its heartbeat is older than
    its lease (a killed worker stops sending them).
    """
    queue_obj = state(ctx).queue(read_only=True)
    found = queue_obj.workers()
    if json_output:
        render.emit_json([info.to_json() for info in found])
        return
    if not found:
        render.message("no worker was seen in the last 24 hours; start one with 'tqcli worker'")
        return
    rows = [
        (info.id, info.host, info.pid, "yes" if info.alive else "no", render.when(info.started_at),
         render.when(info.heartbeat_at), " ".join(map(str, info.running)) or "-")
        for info in found
    ]
    render.table(["WORKER", "HOST", "PID", "ALIVE", "STARTED", "HEARTBEAT", "RUNNING"], rows)
