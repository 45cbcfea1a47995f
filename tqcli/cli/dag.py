"""DAG commands: submit, run, status, list, cancel."""

import os
import sys
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from tqcli.cli import command_group, render, state
from tqcli.errors import Interrupted, InvalidInput, WaitTimeout, WorkFailed

app = command_group("DAGs: tasks with dependencies, from a TOML file, enqueued as one.")

FileArg = Annotated[str, typer.Argument(metavar="FILE.toml", help="The DAG file (see sample-configs/).", show_default=False)]
DagIdArg = Annotated[int, typer.Argument(metavar="DAG_ID", help="The DAG's id (from 'dag submit' or 'dag list').", show_default=False)]


def _fail_unless_completed(dag: Any) -> None:
    if dag.state != "completed":
        bad = [f"{name} {task.state.value}" for name, task in dag.tasks.items() if task.state.value != "completed"]
        bad += [f"{name} purged" for name in dag.purged]
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
    except WaitTimeout:
        if json_output:  # the script still learns which DAG goes on
            render.emit_json(dags.get(dag_id).to_json())
        raise
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
    from contextlib import ExitStack

    from tqcli.cli import progress

    queue_obj = state(ctx).queue(create=True)

    def submitted(dag_id: int) -> None:
        render.message(f"running DAG {dag_id} {plan.name!r}: {len(plan.order)} tasks")
        if not json_output:
            bars.enter_context(progress.dag_states(queue_obj, dag_id))

    with ExitStack() as bars:
        dag = queue_obj.dags.run(plan, concurrency=concurrency, log=render.message, handle_signals=True, on_submit=submitted)
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
    by_id = _names_by_id(dag)
    rows = [
        (name, task.id, task.state.value, task.attempts, ", ".join(by_id.get(dep, str(dep)) for dep in task.depends_on) or None,
         (task.error or "").splitlines()[0] if task.error else None)
        for name, task in dag.tasks.items()
    ]
    rows += [(name, gone.id, "purged", None, None, f"purged while {gone.state}") for name, gone in dag.purged.items()]
    rows.sort(key=lambda row: row[1])
    render.table(["TASK", "ID", "STATE", "ATTEMPTS", "DEPENDS ON", "ERROR"], rows)


def _names_by_id(dag: Any) -> dict[int, str]:
    return {task.id: name for name, task in [*dag.tasks.items(), *dag.purged.items()]}


COLOURS = {"completed": "green", "failed": "red", "blocked": "red", "running": "cyan", "pending": "yellow", "cancelled": "magenta", "purged": "dim"}

# Tree levels drawn before a deeper branch is continued at the top level, at most.
MAX_TREE_DEPTH = 24


def _draw_tree(dag: Any) -> None:
    """Each task under the tasks it depends on, drawn once (then `(see above)`); a branch
    deeper than the terminal allows goes on at the top level, `(after NAME #ID)`."""
    from collections import deque

    from rich.markup import escape
    from rich.tree import Tree

    styled = not render.no_color()
    out = render.console()
    max_depth = max(2, min(MAX_TREE_DEPTH, (out.width - 40) // 4))
    by_id: dict[int, tuple[str, Any]] = {task.id: (name, task) for name, task in dag.tasks.items()}
    children: dict[int, list[int]] = {task_id: [] for task_id in by_id}
    for task in dag.tasks.values():
        for dep in task.depends_on:
            if dep in children:
                children[dep].append(task.id)

    def paint(text: str) -> str:
        return f"[{COLOURS.get(text, 'white')}]{text}[/]" if styled else text

    def label(task_id: int, seen: bool) -> str:
        name, task = by_id[task_id]
        state_text = paint(task.state.value)
        if seen:
            return f"{escape(name)} #{task_id} {state_text} (see above)"
        why = f": {escape(task.error.splitlines()[0][:120])}" if task.error and task.state.value != "completed" else ""
        return f"{escape(name)} #{task_id} {state_text}{why}"

    tree = Tree(f"DAG {dag.id} {escape(dag.name)}: {dag.state}")
    drawn: set[int] = set()
    roots = [task.id for task in dag.tasks.values() if not [dep for dep in task.depends_on if dep in by_id]]
    # Depth-first without recursion: (node to add to, task, its depth, the task whose branch that node is).
    pending: list[tuple[Any, int, int, int | None]] = [(tree, task_id, 1, None) for task_id in reversed(roots)]
    continued: deque[tuple[int, int | None]] = deque()
    while pending or continued:
        if not pending:
            task_id, parent_id = continued.popleft()
            pending.append((tree, task_id, 1, parent_id))
        node, task_id, depth, parent_id = pending.pop()
        seen = task_id in drawn
        if depth > max_depth and not seen:
            node.add(f"{escape(by_id[task_id][0])} #{task_id} … continued below")
            continued.append((task_id, parent_id))
            continue
        text = label(task_id, seen)
        if depth == 1 and parent_id is not None:
            text += f" (after {escape(by_id[parent_id][0])} #{parent_id})"
        branch = node.add(text)
        if seen:
            continue
        drawn.add(task_id)
        pending += [(branch, child, depth + 1, task_id) for child in reversed(children[task_id])]
    for name, gone in dag.purged.items():
        tree.add(f"{escape(name)} #{gone.id} {paint('purged')} (while {gone.state})")
    out.print(tree)


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
    limit: Annotated[int, typer.Option(metavar="N", help="How many of the newest DAGs to list (1 or more).")] = 100,
    json_output: Annotated[bool, typer.Option("--json", help="Print a JSON array.")] = False,
) -> None:
    """List the newest DAGs and their states."""
    dags = state(ctx).queue(read_only=True).dags.list(limit)
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
