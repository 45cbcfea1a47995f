"""`tqcli logs`: what a task's attempt printed, or following it live."""

import sys
import time
from typing import Annotated, Any, Optional

import typer

from tqcli.cli import render
from tqcli.cli.manage import wait_notice
from tqcli.errors import WorkFailed


def logs(
    ctx: typer.Context,
    task_id: Annotated[int, typer.Argument(metavar="ID", help="The task.", show_default=False)],
    attempt: Annotated[Optional[int], typer.Option("--attempt", metavar="N", help="Attempt N, counted from 1 over all its runs in the order 'status ID' lists them (a replayed task's attempts go on counting) [default: the latest].", show_default=False)] = None,
    follow: Annotated[bool, typer.Option("--follow", "-f", help="Print output as it arrives, across retries, until the task is finished; exit 0 completed, 1 failed or cancelled.")] = False,
    tail: Annotated[Optional[int], typer.Option("--tail", metavar="N", help="Only the last N lines (of both streams together).", show_default=False)] = None,
    json_output: Annotated[bool, typer.Option("--json", help="Print one JSON document: task, attempt, output, dropped_bytes, running, and chunks (each with its stream) (with --follow: once the task is finished).")] = False,
) -> None:
    """Print what an attempt of a task printed: stdout to stdout, stderr to stderr, in the order the worker read them.

    Workers keep the last 1 MiB per attempt (output_limit in the config file)
    and say how much was dropped before it.

      tqcli logs 42 --follow
    """
    from tqcli.cli import state

    queue_obj = state(ctx).queue(read_only=True)
    if not follow:
        found = queue_obj.output.read(task_id, attempt=attempt, tail=tail)
        if json_output:
            render.emit_json(found.to_json())
        else:
            _print(found.chunks)
            if found.running:
                _note(f"(task {task_id} is still running: 'tqcli logs --follow {task_id}' shows the rest)")
        return
    notice = wait_notice(queue_obj)

    def pause(seconds: float) -> None:
        notice()  # says once when no worker is alive to run it
        time.sleep(seconds)

    last: Any = None
    for part in queue_obj.output.follow(task_id, attempt=attempt, tail=tail, sleep=pause):
        if not json_output:
            if last is not None and part.attempt != last.attempt:
                _note(f"-- attempt {part.attempt} --")
            _print(part.chunks)
        last = part
    if json_output and last is not None:
        render.emit_json(queue_obj.output.read(task_id, attempt=last.attempt, tail=tail).to_json())
    _exit_for(queue_obj.get(task_id))


def _print(chunks: Any) -> None:
    """Each chunk to its stream, flushed (into a pipe too); where bytes were dropped before a chunk, stderr says so first."""
    for chunk in chunks:
        if chunk.dropped:
            _note(f"({chunk.dropped:,} bytes dropped before this)")
        out = sys.stderr if chunk.stream == "stderr" else sys.stdout
        out.write(chunk.text)
        out.flush()


def _note(text: str) -> None:
    sys.stdout.flush()
    sys.stderr.write(text + "\n")
    sys.stderr.flush()


def _exit_for(task: Any) -> None:
    """Exit as `submit --wait` does: 0 completed, 1 failed, cancelled or blocked."""
    if task.state.value == "completed":
        return
    if task.state.value == "blocked":
        raise WorkFailed(f"task {task.id} is {task.waiting or 'blocked'}")
    detail = f": {task.error.splitlines()[0]}" if task.error else ""
    raise WorkFailed(f"task {task.id} {task.state.value}{detail}")
