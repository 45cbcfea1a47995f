"""Task output (`tqcli logs`) through the library, on both stores: what workers capture, keep, fence, seal and delete."""

from __future__ import annotations

import pytest

import tqcli
from tests.stores import raw_sql
from tqcli.config import login_name
from tqcli.core import dispatcher
from tqcli.core.logs import last_lines
from tqcli.core.output import OutputCapture
from tqcli.errors import InvalidInput, NotFound, PermissionDenied

ME = login_name()


def output_rows(location, task_id: int) -> list[tuple]:
    return raw_sql(location, "SELECT claim, byte_offset, size, stream, text FROM task_output WHERE task_id = ? ORDER BY claim, byte_offset", (task_id,))


def streams(found) -> dict[str, str]:
    joined: dict[str, str] = {"stdout": "", "stderr": ""}
    for chunk in found.chunks:
        joined[chunk.stream] += chunk.text
    return joined


def test_a_functions_prints_its_raw_descriptors_and_its_children_are_kept_by_stream(queue):
    task_id = queue.submit("tests.printing_jobs:both_ways")
    queue.drain()
    found = queue.output.read(task_id)
    assert (found.attempt, found.running, found.dropped_bytes) == (1, False, 0)
    assert streams(found) == {"stdout": "out 0\nout 1\nraw fd 1\nfrom a child\n", "stderr": "err 0\nerr 1\nraw fd 2\n"}
    document = found.to_json()
    assert {key: document[key] for key in ("task", "attempt", "output", "dropped_bytes", "running")} == {
        "task": task_id, "attempt": 1, "output": found.output, "dropped_bytes": 0, "running": False,
    }
    assert document["chunks"] == [{"stream": chunk.stream, "text": chunk.text, "dropped_before": 0} for chunk in found.chunks]


def test_a_shell_tasks_attempts_keep_their_own_output_numbered_across_replays(queue):
    task_id = queue.submit("echo attempt $TQCLI_TASK_ID; echo oops >&2; exit 1", backend="shell", max_retries=1, backoff=0)
    queue.drain()
    queue.dlq.replay([task_id])
    queue.drain()
    history = queue.get(task_id).history
    assert [(a.run, a.attempt) for a in history] == [(1, 1), (1, 2), (2, 1), (2, 2)]
    for number in (1, 2, 3, 4):
        found = queue.output.read(task_id, attempt=number)
        assert streams(found) == {"stdout": f"attempt {task_id}\n", "stderr": "oops\n"}
        assert found.attempt == number
    assert queue.output.read(task_id).attempt == 4
    assert len({row[0] for row in output_rows(queue.location, task_id)}) == 4  # one claim each
    with pytest.raises(NotFound, match="has no attempt 5: it has 4"):
        queue.output.read(task_id, attempt=5)
    with pytest.raises(InvalidInput):
        queue.output.read(task_id, attempt=0)


def test_a_task_that_has_not_run_or_does_not_exist_has_no_output(queue):
    task_id = queue.submit("tests.jobs:noop")
    with pytest.raises(NotFound, match="has not run yet"):
        queue.output.read(task_id)
    with pytest.raises(NotFound, match="does not exist"):
        queue.output.read(task_id + 1)


def test_a_quiet_task_stores_no_output_at_all(queue):
    task_id = queue.submit("tests.jobs:noop")
    shell = queue.submit("true", backend="shell")
    queue.drain()
    assert output_rows(queue.location, task_id) == [] and output_rows(queue.location, shell) == []
    assert queue.output.read(task_id).output == ""


def test_output_past_the_limit_keeps_the_last_bytes_and_counts_what_was_dropped(queue):
    task_id = queue.submit("tests.printing_jobs:print_bytes", payload={"size": 200_000})
    queue.drain(output_limit=50_000)
    found = queue.output.read(task_id)
    printed = "".join(f"{n:015d}\n" for n in range(200_000 // 16))
    kept = found.output
    assert 50_000 - 16 * 1024 < len(kept) <= 50_000
    assert printed.endswith(kept) and found.dropped_bytes == len(printed) - len(kept)
    assert sum(row[2] for row in output_rows(queue.location, task_id)) == len(kept)


def test_a_limit_of_zero_keeps_no_output(queue):
    task_id = queue.submit("echo hi", backend="shell")
    queue.drain(output_limit=0)
    assert output_rows(queue.location, task_id) == []


def test_tail_gives_the_last_lines(queue):
    task_id = queue.submit("printf 'a\\nb\\nc\\nd\\ne'", backend="shell")
    queue.drain()
    assert queue.output.read(task_id, tail=2).output == "d\ne"
    assert queue.output.read(task_id, tail=10).output == queue.output.read(task_id).output
    assert queue.output.read(task_id, tail=0).output == ""


def test_last_lines_cuts_inside_a_chunk_and_keeps_the_streams(queue):
    from tqcli.core.logs import Chunk

    chunks = [Chunk("stdout", "one\ntwo\n"), Chunk("stderr", "three\n"), Chunk("stdout", "four\n")]
    assert [(c.stream, c.text) for c in last_lines(chunks, 3)] == [("stdout", "two\n"), ("stderr", "three\n"), ("stdout", "four\n")]


def test_a_character_split_across_reads_is_kept_whole_and_bad_bytes_are_replaced(queue):
    task_id = queue.submit("tests.printing_jobs:split_character")
    queue.drain()
    assert queue.output.read(task_id).output == "é\ufffd\n"


def test_an_attempt_whose_task_was_taken_over_writes_nothing_into_the_new_one(queue, clock):
    ctx = queue._ctx
    task_id = queue.submit("tests.jobs:noop", backoff=0)

    def claim(worker: str) -> dispatcher.Claim:
        with ctx.change() as (tx, journal):
            (claimed,) = dispatcher.claim(tx, journal, count=1, now=clock.now(), worker=worker, lease_seconds=10, holder=None)
        return claimed

    def flush(capture: OutputCapture) -> None:
        with capture.flushing() as batch, ctx.change() as (tx, _):
            batch.write(tx)

    stale, fresh = OutputCapture(), OutputCapture()
    old = claim("frozen")
    stale.track([old])
    stale.add(b"before the lease ran out\n", 1, old.token)
    flush(stale)
    clock.advance(11)
    with ctx.change() as (tx, journal):
        assert dispatcher.reclaim_expired(tx, journal, now=clock.now(), worker="other") == [(task_id, "retry")]
    new = claim("other")
    fresh.track([new])
    stale.add(b"late, from the frozen worker\n", 1, old.token)
    fresh.add(b"the new attempt\n", 1, new.token)
    flush(stale)
    flush(fresh)
    assert queue.output.read(task_id, attempt=1).output == "before the lease ran out\n"
    assert queue.output.read(task_id, attempt=2).output == "the new attempt\n"
    assert not stale.dirty  # what it could not write is not kept either


def test_a_flush_that_fails_keeps_the_output_for_the_next(queue, clock):
    ctx = queue._ctx
    queue.submit("tests.jobs:noop")
    with ctx.change() as (tx, journal):
        (claimed,) = dispatcher.claim(tx, journal, count=1, now=clock.now(), worker="w", lease_seconds=10)
    capture = OutputCapture()
    capture.track([claimed])
    capture.add(b"kept\n", 1, claimed.token)
    with pytest.raises(RuntimeError):
        with capture.flushing() as batch, ctx.change() as (tx, _):
            batch.write(tx)
            raise RuntimeError("the commit failed")
    assert capture.dirty
    with capture.flushing() as batch, ctx.change() as (tx, _):
        batch.write(tx)
    assert queue.output.read(claimed.id).output == "kept\n"


def test_a_capture_holds_at_most_the_limit_however_much_arrives():
    capture = OutputCapture(limit=1000)

    class Claimed:
        token, encrypted, sealer = (1, 1), 0, None

    capture.track([Claimed()])
    for _ in range(10_000):
        capture.add(b"x" * 999 + b"\n", 1, (1, 1))
    with capture.flushing() as batch:
        (attempt, pieces) = batch.taken[0]
    assert sum(piece[1] for piece in pieces) <= 1000 and attempt.end == 10_000_000


def test_prune_and_purge_delete_the_output_with_the_task(queue, clock):
    done = queue.submit("echo done", backend="shell")
    failed = queue.submit("echo failed; exit 1", backend="shell", max_retries=0)
    queue.drain()
    assert output_rows(queue.location, done) and output_rows(queue.location, failed)
    clock.advance(3600)
    assert queue.prune(older_than=60) == [done]
    assert [task.id for task in queue.dlq.purge([failed], confirmed=True)] == [failed]
    assert raw_sql(queue.location, "SELECT count(*) FROM task_output")[0][0] == 0


def test_following_prints_each_attempt_as_it_arrives_and_ends_with_the_task(queue):
    task_id = queue.submit("echo try $TQCLI_TASK_ID; exit 1", backend="shell", max_retries=1, backoff=0)
    turns = []

    def sleep(seconds: float) -> None:  # a worker runs one attempt between two polls
        turns.append(seconds)
        queue.drain(max_tasks=1)

    parts = list(queue.output.follow(task_id, sleep=sleep))
    assert [(part.attempt, part.output) for part in parts if part.output] == [(1, f"try {task_id}\n"), (2, f"try {task_id}\n")]
    assert queue.get(task_id).state.value == "failed" and len(turns) >= 2


def test_following_a_task_that_finished_without_running_yields_nothing_but_its_attempt_is_not_found(queue):
    task_id = queue.submit("tests.jobs:noop")
    queue.cancel(task_id)
    assert list(queue.output.follow(task_id, sleep=lambda seconds: None)) == []  # the CLI then exits as --wait does
    with pytest.raises(NotFound):
        list(queue.output.follow(task_id, attempt=1, sleep=lambda seconds: None))


def test_a_tenant_scoped_reader_sees_only_its_tenants_output(queue, db_location):
    assert queue.roles.grant(ME, "admin")
    assert queue.roles.grant("ann", "viewer", tenant="acme")
    mine = queue.submit("echo acme", backend="shell", tenant="acme")
    other = queue.submit("echo other", backend="shell", tenant="globex")
    queue.drain()
    with tqcli.open(db_location, actor="ann") as ann:
        assert ann.output.read(mine).output == "acme\n"
        with pytest.raises(PermissionDenied):
            ann.output.read(other)
