"""Key rotation and retirement cover what encrypted tasks printed (`task_output`): counted, resealed in bounded transactions, readable after."""

import json
from pathlib import Path

import pytest

import tqcli
from tests.stores import raw_sql
from tqcli.errors import Conflict
from tqcli.security.crypto import sealed_key_id
from tqcli.security.keys import load_key_file

PRINTED = 80_000  # bytes: five chunks or more (16 KiB at most each)


@pytest.fixture
def secure(db_location, clock, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """A queue whose key file exists (`keys init`)."""
    monkeypatch.setenv("TQCLI_KEY_FILE", str(tmp_path / "keys" / "keys.toml"))
    with tqcli.open(db_location, clock=clock) as opened:
        opened.keys.init()
        yield opened


def chunk_keys(location, task_id: int | None = None) -> list[str]:
    """The data key each stored output chunk (of one task, or of all) names."""
    where, params = ("WHERE task_id = ?", (task_id,)) if task_id is not None else ("", ())
    rows = raw_sql(location, f"SELECT text FROM task_output {where} ORDER BY task_id, claim, byte_offset", params)
    return [sealed_key_id(text) for (text,) in rows]


def data_values(queue) -> dict[str, int]:
    return {key.id: key.values for key in queue.keys.status() if key.kind == "data"}


def printed(queue, task_id: int) -> str:
    return "".join(chunk.text for chunk in queue.output.read(task_id).chunks)


def expected_lines(size: int) -> str:
    return "".join(f"{n:015d}\n" for n in range(size // 16))


def test_reencrypt_reseals_output_chunks_a_batch_at_a_time_and_then_the_old_key_can_go(secure, db_location):
    ids = [secure.submit("tests.printing_jobs:print_bytes", payload={"size": PRINTED}, encrypt=True) for _ in range(2)]
    secure.drain()
    old, new = secure.keys.rotate()
    chunks = len(chunk_keys(db_location))
    assert chunks >= 10 and set(chunk_keys(db_location)) == {old}
    assert data_values(secure) == {old: 4 + chunks, new: 0}  # payload and result of each task, and every chunk
    with pytest.raises(Conflict, match=rf"still protects {4 + chunks} stored values \({chunks} of them output chunks\)"):
        secure.keys.retire(old)

    report = secure.keys.reencrypt(batch=2)
    assert (report.tasks, report.values, report.output_chunks) == (2, 4 + chunks, chunks)
    assert report.batches == 1 + -(-(chunks - 2) // 2)  # the values with the first two chunks, then two chunks a transaction
    assert set(chunk_keys(db_location)) == {new} and data_values(secure) == {old: 0, new: 4 + chunks}
    entries = [json.loads(entry.details) for entry in secure.audit.entries(action="keys.reencrypt")]
    assert len(entries) == report.batches and all(entry["output_chunks"] <= 2 for entry in entries)
    assert sum(entry["output_chunks"] for entry in entries) == chunks and entries[0]["values"] == 6

    secure.keys.retire(old)
    assert [key.id for key in secure.keys.status() if key.kind == "data"] == [new]
    assert all(printed(secure, task_id) == expected_lines(PRINTED) for task_id in ids)
    assert [secure.get(task_id).result_value for task_id in ids] == [PRINTED // 16] * 2


def test_an_interrupted_reencrypt_leaves_output_that_retire_counts_and_a_rerun_finishes_it(secure, db_location):
    task_id = secure.submit("tests.printing_jobs:print_bytes", payload={"size": PRINTED}, encrypt=True)
    secure.drain()
    old, new = secure.keys.rotate()
    chunks = len(chunk_keys(db_location, task_id))

    def crash(done, total, what):
        raise KeyboardInterrupt("killed mid-way")

    with pytest.raises(KeyboardInterrupt):
        secure.keys.reencrypt(batch=1, progress=crash)  # the values and one chunk, then one more chunk
    left = chunks - 2
    assert chunk_keys(db_location, task_id) == [new, new] + [old] * left
    assert data_values(secure) == {old: left, new: 2 + 2}
    # Only output needs the old key now: retiring it would leave `logs` unreadable.
    with pytest.raises(Conflict, match=rf"still protects {left} stored values \({left} of them output chunks\)"):
        secure.keys.retire(old)
    assert printed(secure, task_id) == expected_lines(PRINTED)  # half and half reads whole

    report = secure.keys.reencrypt(batch=1)
    assert (report.tasks, report.values, report.output_chunks, report.batches) == (1, left, left, left)
    secure.keys.retire(old)
    assert printed(secure, task_id) == expected_lines(PRINTED)


def key_file(cli) -> Path:
    return cli.home / "config" / "tqcli" / "keys.toml"


def data_keys(cli) -> dict[str, int]:
    return {key["id"]: key["values"] for key in cli.ok("keys", "status", "--json").json["keys"] if key["kind"] == "data"}


def test_logs_show_an_encrypted_tasks_output_after_rotate_reencrypt_and_retire(cli):
    secret = "hunter2-rotated-5e1d"
    cli.ok("keys", "init")
    task_id = cli.submit("--encrypt", "--backend", "shell", f"echo {secret}; echo {secret}-err >&2")
    clear = cli.submit("--backend", "shell", "echo tqe1:data-0badc0de:not-a-ciphertext")  # a clear task printing what looks sealed
    cli.ok("worker", "--once")
    cli.ok("worker", "--once")
    (old,) = data_keys(cli)
    cli.ok("keys", "rotate")
    chunks = chunk_keys(cli.db, task_id)
    assert len(chunks) >= 2 and set(chunks) == {old}
    values = data_keys(cli)[old]
    assert values > len(chunks) and "data-0badc0de" not in data_keys(cli)

    busy = cli("keys", "retire", old)
    assert busy.code == 6 and busy.error_lines == [busy.stderr.strip()]
    assert f"still protects {values} stored values ({len(chunks)} of them output chunks)" in busy.stderr
    assert "keys rotate --reencrypt" in busy.stderr

    done = cli.ok("keys", "rotate", "--reencrypt")
    newest = next(key["id"] for key in cli.ok("keys", "status", "--json").json["keys"] if key["kind"] == "data" and key["primary"])
    assert f"re-encrypted {values} values of 1 task under {newest} (1 transaction)" in done.stderr
    assert set(chunk_keys(cli.db, task_id)) == {newest}
    assert all(secret not in text for (text,) in raw_sql(cli.db, "SELECT text FROM task_output WHERE task_id = ?", (task_id,)))
    for key_id in [key_id for key_id in data_keys(cli) if key_id != newest]:
        cli.ok("keys", "retire", key_id)
    assert [key.id for key in load_key_file(key_file(cli)).data] == [newest]

    shown = cli.ok("logs", str(task_id))
    assert (shown.stdout, shown.stderr) == (f"{secret}\n", f"{secret}-err\n")
    assert cli.ok("logs", str(clear)).stdout == "tqe1:data-0badc0de:not-a-ciphertext\n"
