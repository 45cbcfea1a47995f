"""`status --watch`: the live view in a real terminal (tmux), a JSON document per line into a pipe, and what the view reads."""

import json
import signal
import time

from tests.tmux import needs_tmux, terminal  # noqa: F401 - the fixture
from tqcli.cli.watch import MINUTE, WIDTH, Throughput, frame_lines, sparkline
from tqcli.core.task import Task  # noqa: F401 - rows of the view are Tasks
from tests.test_dispatcher import claim, failed, finish, ok


@needs_tmux
def test_watch_started_before_the_database_waits_shows_a_new_queue_and_exits_0_on_ctrl_c(cli, terminal):
    pane = terminal("status", "--watch")
    pane.wait_for(lambda screen: screen.startswith("waiting for "))
    cli.submit("tests.jobs:noop", "--queue", "fresh-queue")
    screen = pane.wait_for(lambda screen: "fresh-queue" in screen)
    assert "QUEUE" in screen and "waiting for" not in screen
    assert all(len(line) <= WIDTH for line in screen.splitlines())
    pane.keys("C-c")
    assert pane.exit_code() == 0


@needs_tmux
def test_watch_shows_running_tasks_with_their_worker_and_the_newest_failure(cli, terminal, tmp_path):
    marker = tmp_path / "started"
    cli.submit("tests.jobs:boom", "--max-retries", "0", "--payload", '{"message": "it fell over"}')
    cli.ok("worker", "--once")
    running = cli.submit("tests.jobs:sleepy", "--payload", json.dumps({"seconds": 30, "marker": str(marker)}), "--name", "long-one")
    worker = cli.spawn("worker", "--id", "watched-worker", "--poll", "0.2")
    try:
        pane = terminal("status", "--watch")
        screen = pane.wait_for(lambda screen: "watched-worker" in screen and "long-one" in screen)
        assert "ValueError: it fell over" in screen
        row = next(line for line in screen.splitlines() if "long-one" in line)
        assert row.split()[0] == str(running)
        pane.keys("C-c")
        assert pane.exit_code() == 0
    finally:
        worker.send_signal(signal.SIGKILL)
        worker.wait(timeout=20)


def test_watch_json_prints_one_document_per_line_each_second(cli):
    cli.submit("tests.jobs:noop", "--queue", "etl")
    watcher = cli.spawn("status", "--watch", "--json")
    time.sleep(2.5)
    watcher.send_signal(signal.SIGINT)
    out, err = watcher.communicate(timeout=10)
    assert watcher.returncode == 0, err
    documents = [json.loads(line) for line in out.splitlines()]
    assert len(documents) >= 2 and all(doc["queues"]["etl"]["pending"] == 1 for doc in documents)


def test_watch_into_a_pipe_before_the_database_exists_says_so_once_and_creates_nothing(cli):
    watcher = cli.spawn("status", "--watch")
    time.sleep(2.2)
    watcher.send_signal(signal.SIGINT)
    out, err = watcher.communicate(timeout=10)
    assert watcher.returncode == 0 and out == ""
    assert err.count("waiting for") == 1 and "to be created" in err
    if not isinstance(cli.db, str):
        assert not cli.db.exists()


# -- what the view reads ---------------------------------------------------------


def test_throughput_counts_completions_per_minute_and_queue_from_the_window_on(queue, clock):
    def complete(name):
        queue.submit("a:b", queue=name)
        finish(queue, claim(queue)[0], ok())

    complete("old")  # before the window
    clock.advance(11 * 60)
    start = clock.now()
    complete("etl")
    complete("etl")
    clock.advance(60)
    complete("web")
    queue.submit("a:b", max_retries=0, queue="etl")
    finish(queue, claim(queue)[0], failed("no"))  # failures are no completions
    seen = Throughput(start - 5 * MINUTE)
    seen.catch_up(queue, queue=None, tenant=None, now=clock.now())
    assert seen.series("etl", clock.now())[-2:] == [2, 0]
    assert seen.series("web", clock.now())[-1] == 1 and sum(seen.series("old", clock.now())) == 0
    complete("web")
    seen.catch_up(queue, queue=None, tenant=None, now=clock.now())  # only what finished since
    assert seen.series("web", clock.now())[-1] == 2
    clock.advance(10 * 60)
    seen.catch_up(queue, queue=None, tenant=None, now=clock.now())
    assert sum(seen.series("etl", clock.now())) == 0 and not seen.per_minute, "minutes out of the window are forgotten"


def test_finished_after_pages_through_the_finished_tasks_of_one_queue_and_tenant(queue):
    ids = []
    for name, tenant in (("etl", "acme"), ("etl", "beta"), ("web", "acme"), ("etl", "acme")):
        ids.append(queue.submit("a:b", queue=name, tenant=tenant))
        finish(queue, claim(queue)[0], ok())
    rows, cursor = queue.tasks.finished_after((0, 0), queue="etl", tenant="acme", limit=2)
    assert [row[1] for row in rows] == [ids[0]] and cursor[1] == ids[1]
    rows, cursor = queue.tasks.finished_after(cursor, queue="etl", tenant="acme", limit=2)
    assert [row[1] for row in rows] == [ids[3]] and rows[0][2:] == ("etl", "acme", "completed")
    assert queue.tasks.finished_after(cursor, limit=2) == ([], cursor)


def test_the_view_fits_80_columns_whatever_the_names(queue):
    long = "q" * 64
    queue.submit("a:b", queue=long, name="n" * 200)
    summary = queue.status(limit=1)
    task = queue.status(limit=1).tasks[0]
    task.started_at = queue.clock.now() - 90_000_000
    task.error = "E" * 300
    lines = frame_lines(summary, Throughput(queue.clock.now()), [task], {task.id: "w" * 100}, [task], queue.clock.now(), "/" + "d" * 200)
    assert all(len(line) <= WIDTH for line in lines), [line for line in lines if len(line) > WIDTH]
    assert any(line.startswith("q" * 12) for line in lines) and any("1m30s" in line for line in lines)


def test_sparkline_scales_to_the_busiest_minute():
    assert sparkline([0, 1, 2, 4, 8]) == " ▁▂▄█"
    assert sparkline([0, 0]) == "  "
