"""DAG commands: submit, run, status, list, cancel."""

import os
import sys
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from tqcli.cli import command_group, render, state
from tqcli.errors import Interrupted, InvalidInput, WorkFailed

app = command_group("DAGs: tasks with dependencies, from a TOML file, enqueued as one.")

FileArg = Annotated[str, typer.Argument(metavar="FILE.toml", help="The DAG file (see sample-configs/).", show_default=False)]
DagIdArg = Annotated[int, typer.Argument(metavar="DAG_ID", help="The DAG's id (from 'dag submit' or 'dag list').", show_default=False)]


def _fail_unless_completed(dag: Any) -> None:
    if dag.state != "completed":
        bad = [f"{name} {task.state.value}" for name, task in dag.tasks.items() if task.state.value != "completed"]
        raise WorkFailed(f"DAG {dag.id} ({dag.name}) {dag.state}: {', '.join(bad)}")


@app.command("submit")
def submit(
    ctx: typer.Context,
    path: FileArg,
    json_output: Annotated[bool, typer.Option("--json", help="Print the DAG object instead of its id.")] = False,
    wait: Annotated[bool, typer.Option("--wait", help="Block until the DAG finished: exit 0 completed, 1 otherwise, 124 on --wait-timeout.")] = False,
    wait_timeout: Annotated[Optional[str], typer.Option(metavar="DUR", help="Give up waiting after DUR (the DAG goes on).")] = None,
) -> None:
    """Check a DAG file and enqueue all its tasks in one transaction; print the DAG id."""
    from tqcli.core.dags import load_dag_file
    from tqcli.units import parse_duration

    if wait_timeout is not None and not wait:
        raise InvalidInput("--wait-timeout needs --wait")
    seconds = parse_duration(wait_timeout, what="--wait-timeout") if wait_timeout is not None else None
    plan = load_dag_file(path)
    dags = state(ctx).queue(create=True).dags
    dag_id = dags.submit(plan)
    if not json_output:
        sys.stdout.write(f"{dag_id}\n")
        sys.stdout.flush()
    try:
        dag = dags.wait(dag_id, timeout=seconds) if wait else dags.get(dag_id)
    except KeyboardInterrupt:
        raise Interrupted(f"interrupted: DAG {dag_id} goes on; 'tqcli dag status {dag_id}' follows it") from None
    if json_output:
        render.emit_json(dag.to_json())
    if wait:
        _fail_unless_completed(dag)


@app.command("run")
def run(
    ctx: typer.Context,
    path: FileArg,
    concurrency: Annotated[int, typer.Option(metavar="N", help="Tasks of the DAG run at the same time.")] = 1,
    junit: Annotated[Optional[str], typer.Option(metavar="FILE", help="Write a JUnit XML report (one test case per task) for CI servers.")] = None,
    json_output: Annotated[bool, typer.Option("--json", help="Print the finished DAG as 'dag status --json' does.")] = False,
) -> None:
    """Submit a DAG and run it here now; exit 0 only if every task completed.

    Ctrl-C stops its tasks and cancels the DAG (exit 130).
    """
    from tqcli.core.dags import junit_xml, load_dag_file

    plan = load_dag_file(path)
    if junit is not None:
        _check_writable(junit)
    dags = state(ctx).queue(create=True).dags
    dag = dags.run(
        plan, concurrency=concurrency, log=render.message, handle_signals=True,
        on_submit=lambda dag_id: render.message(f"running DAG {dag_id} {plan.name!r}: {len(plan.order)} tasks"),
    )
    if json_output:
        render.emit_json(dag.to_json())
    else:
        _show(dag)
    if junit is not None:
        try:
            Path(junit).write_text(junit_xml(dag), encoding="utf-8")
        except OSError as exc:
            raise InvalidInput(f"cannot write the JUnit report {junit}: {exc.strerror}; DAG {dag.id} is {dag.state}") from None
        render.message(f"JUnit report written to {junit}")
    _fail_unless_completed(dag)


def _check_writable(report: str) -> None:
    """Refuse a JUnit report path that cannot be written, before the DAG runs."""
    path = Path(report)
    if not report.strip() or path.is_dir():
        raise InvalidInput(f"cannot write the JUnit report {report!r}: give a file name, e.g. --junit report.xml")
    folder = path.resolve().parent
    if not folder.is_dir():
        raise InvalidInput(f"cannot write the JUnit report {report}: its folder does not exist")
    if not os.access(folder, os.W_OK) or (path.exists() and not os.access(path, os.W_OK)):
        raise InvalidInput(f"cannot write the JUnit report {report}: permission denied")


def _show(dag: Any) -> None:
    if render.stdout_is_terminal():
        _draw_tree(dag)  # its root line names the DAG and its state
        return
    render.message(f"DAG {dag.id} {dag.name}: {dag.state}")
    rows = [
        (name, task.id, task.state.value, task.attempts, ", ".join(_names(dag, task.depends_on)) or None, (task.error or "").splitlines()[0] if task.error else None)
        for name, task in dag.tasks.items()
    ]
    render.table(["TASK", "ID", "STATE", "ATTEMPTS", "DEPENDS ON", "ERROR"], rows)


def _names(dag: Any, ids: list[int]) -> list[str]:
    by_id = {task.id: name for name, task in dag.tasks.items()}
    return [by_id.get(task_id, str(task_id)) for task_id in ids]


COLOURS = {"completed": "green", "failed": "red", "blocked": "red", "running": "cyan", "pending": "yellow", "cancelled": "magenta"}


def _draw_tree(dag: Any) -> None:
    from rich.markup import escape
    from rich.tree import Tree

    styled = not render.no_color()
    by_id = {task.id: (name, task) for name, task in dag.tasks.items()}
    children: dict[int, list[int]] = {task.id: [] for task in dag.tasks.values()}
    for task in dag.tasks.values():
        for dep in task.depends_on:
            if dep in children:
                children[dep].append(task.id)

    def label(task_id: int, seen: bool) -> str:
        name, task = by_id[task_id]
        state_text = task.state.value
        if styled:
            state_text = f"[{COLOURS.get(state_text, 'white')}]{state_text}[/]"
        if seen:
            return f"{escape(name)} #{task_id} {state_text} (see above)"
        why = f": {escape(task.error.splitlines()[0][:120])}" if task.error and task.state.value != "completed" else ""
        return f"{escape(name)} #{task_id} {state_text}{why}"

    tree = Tree(f"DAG {dag.id} {escape(dag.name)}: {dag.state}")
    drawn: set[int] = set()

    def add(node: Any, task_id: int) -> None:
        seen = task_id in drawn
        branch = node.add(label(task_id, seen))
        if seen:
            return
        drawn.add(task_id)
        for child in children[task_id]:
            add(branch, child)

    for task in dag.tasks.values():
        if not [dep for dep in task.depends_on if dep in by_id]:
            add(tree, task.id)
    render.console().print(tree)


@app.command("status")
def status(
    ctx: typer.Context,
    dag_id: DagIdArg,
    json_output: Annotated[bool, typer.Option("--json", help="Print the DAG object with its tasks by name.")] = False,
) -> None:
    """Show a DAG's state and its tasks (a tree on a terminal)."""
    dag = state(ctx).queue(read_only=True).dags.get(dag_id)
    if json_output:
        render.emit_json(dag.to_json())
    else:
        _show(dag)


@app.command("list")
def list_dags(
    ctx: typer.Context,
    json_output: Annotated[bool, typer.Option("--json", help="Print a JSON array.")] = False,
) -> None:
    """List the newest DAGs and their states."""
    dags = state(ctx).queue(read_only=True).dags.list()
    if json_output:
        render.emit_json([dag.to_json(with_tasks=False) for dag in dags])
        return
    rows = [(d.id, d.name, d.state, sum(d.counts.values()), d.counts.get("completed", 0), render.when(d.created_at)) for d in dags]
    render.table(["ID", "NAME", "STATE", "TASKS", "COMPLETED", "CREATED"], rows)


@app.command("cancel")
def cancel(ctx: typer.Context, dag_id: DagIdArg) -> None:
    """Cancel every unfinished task of a DAG; running ones are stopped by their workers."""
    affected = state(ctx).queue().dags.cancel(dag_id)
    render.message(f"DAG {dag_id} cancelled ({len(affected)} task(s))")
