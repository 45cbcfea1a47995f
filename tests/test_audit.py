"""The audit chain: canonical hashing, appends inside the change, and what verify detects."""

import hashlib
import sqlite3

import pytest

from tests.stores import psql

from tqcli.security.audit import GENESIS_HASH, entry_hash
from tqcli.security.checkpoint import Checkpoint
from tqcli.security.verify import verify_rows


def fill(queue, count):
    return [queue.submit("app.jobs:step", payload={"n": n}) for n in range(count)]


def rows(queue):
    with queue._ctx.read() as tx:
        return list(tx.iter_audit())


def test_length_prefixes_make_the_encoding_unambiguous():
    a = entry_hash(1, "t", "ab", "c", None, None, "{}", None, GENESIS_HASH)
    b = entry_hash(1, "t", "a", "bc", None, None, "{}", None, GENESIS_HASH)
    assert a != b


KEY_LENGTHS = [1, 32, 64, 65, 200]
LINKED = [b"", b"tqcli-audit-v1\n1:1", "é ü 日本".encode() * 40]


@pytest.mark.parametrize("key_length", KEY_LENGTHS)
@pytest.mark.parametrize("data", LINKED)
def test_keyed_links_are_hmac_sha256(key_length, data):
    import hmac
    import os

    from tqcli.security.audit import link_hasher

    key = os.urandom(key_length)
    assert link_hasher(key)(data) == hmac.digest(key, data, "sha256").hex()
    assert link_hasher(None)(data) == hashlib.sha256(data).hexdigest()


def test_a_few_entries_are_linked_without_loading_openssl_and_alike():
    # A fresh process, where nothing loaded OpenSSL: CPython's own SHA-256 links a few entries.
    import hmac
    import json
    import os
    import subprocess
    import sys

    keys = [os.urandom(length) for length in KEY_LENGTHS]
    script = (
        "import json, sys; from tqcli.security.audit import link_hasher; keys, data = json.loads(sys.stdin.read()); "
        "data = [bytes.fromhex(d) for d in data]; "
        "links = [[link_hasher(bytes.fromhex(k), 3)(d) for d in data] for k in keys] + [[link_hasher(None, 3)(d) for d in data]]; "
        "print(json.dumps({'links': links, 'openssl': '_hashlib' in sys.modules}))"
    )
    given = json.dumps([[key.hex() for key in keys], [data.hex() for data in LINKED]])
    out = json.loads(subprocess.run([sys.executable, "-c", script], input=given, capture_output=True, text=True, check=True).stdout)
    assert out["openssl"] is False
    assert out["links"] == [[hmac.digest(key, data, "sha256").hex() for data in LINKED] for key in keys] + [
        [hashlib.sha256(data).hexdigest() for data in LINKED]
    ]


def test_null_and_empty_text_hash_differently():
    assert entry_hash(1, "t", "a", "b", None, None, "{}", None, GENESIS_HASH) != entry_hash(1, "t", "a", "b", None, "", "{}", None, GENESIS_HASH)


def test_every_submit_appends_one_linked_entry(queue):
    fill(queue, 3)
    entries = rows(queue)
    assert [row[0] for row in entries] == [1, 2, 3]
    assert entries[0][8] == GENESIS_HASH
    assert entries[1][8] == entries[0][9] and entries[2][8] == entries[1][9]
    assert {row[3] for row in entries} == {"task.submit"}
    report = queue.audit.verify()
    assert report.intact and report.count == 3 and report.head_hash == entries[-1][9]


def test_a_failed_change_leaves_no_audit_entry(queue):
    fill(queue, 1)
    with pytest.raises(Exception):
        queue.submit("app.jobs:step", depends_on=[999])
    assert len(rows(queue)) == 1


def tamper(queue, sql):
    """Change the audit table behind tqcli's back: with the sqlite3 module, or with psql as an operator would."""
    if queue.path is None:
        psql(queue.location, sql)
        return
    conn = sqlite3.connect(queue.path)
    conn.executescript(sql)
    conn.close()


@pytest.mark.parametrize(
    "sql, kind, seq",
    [
        ("UPDATE audit SET actor = 'mallory' WHERE seq = 3", "changed", 3),
        ("UPDATE audit SET details = '{}' WHERE seq = 1", "changed", 1),
        ("DELETE FROM audit WHERE seq = 3", "removed", 3),
        ("DELETE FROM audit WHERE seq IN (2, 3, 4)", "removed", 2),
        ("UPDATE audit SET seq = -1 WHERE seq = 3; UPDATE audit SET seq = 3 WHERE seq = 4; UPDATE audit SET seq = 4 WHERE seq = -1", "reordered", 3),
        ("DELETE FROM audit WHERE seq = 2; UPDATE audit SET seq = seq - 1 WHERE seq > 2", "removed", 2),
    ],
)
def test_verify_names_the_first_bad_entry_and_what_happened(queue, sql, kind, seq):
    fill(queue, 6)
    tamper(queue, sql)
    report = queue.audit.verify()
    assert not report.intact
    assert (report.kind, report.bad_seq) == (kind, seq), report.problem
    assert f"{seq}" in report.problem


def test_an_edit_with_a_recomputed_hash_breaks_the_next_link(queue):
    fill(queue, 4)
    entries = rows(queue)
    seq, ts, actor, action, task_id, tenant, details, key_id, prev = entries[1][:9]
    forged = entry_hash(seq, ts, "mallory", action, task_id, tenant, details, key_id, prev)
    tamper(queue, f"UPDATE audit SET actor = 'mallory', hash = '{forged}' WHERE seq = 2")
    report = queue.audit.verify()
    assert (report.kind, report.bad_seq) == ("changed", 2)


def test_an_entry_inserted_with_renumbering_is_found(queue):
    fill(queue, 4)
    entries = rows(queue)
    prev = entries[1][9]
    forged = entry_hash(3, entries[2][1], "mallory", "task.cancel", 1, "default", "{}", None, prev)
    tamper(
        queue,
        "UPDATE audit SET seq = seq + 100 WHERE seq >= 3; UPDATE audit SET seq = seq - 99 WHERE seq >= 103;"
        f"INSERT INTO audit VALUES (3, '{entries[2][1]}', 'mallory', 'task.cancel', 1, 'default', '{{}}', NULL, '{prev}', '{forged}');",
    )
    report = queue.audit.verify()
    assert (report.kind, report.bad_seq) == ("inserted", 3), report.problem


def test_truncating_the_tail_is_only_caught_with_a_checkpoint(queue):
    fill(queue, 5)
    checkpoint = queue.audit.checkpoint()
    tamper(queue, "DELETE FROM audit WHERE seq >= 4")
    assert queue.audit.verify().intact
    report = queue.audit.verify(checkpoint)
    assert report.kind == "truncated" and "checkpoint names entry 5" in report.problem


def test_a_rewritten_history_does_not_match_the_checkpoint(queue):
    fill(queue, 3)
    checkpoint = queue.audit.checkpoint()
    tamper(queue, "DELETE FROM audit")
    fill(queue, 4)  # a fresh chain, internally consistent
    assert queue.audit.verify().intact
    report = queue.audit.verify(checkpoint)
    assert (report.kind, report.bad_seq) == ("rewritten", 3)


def test_a_checkpoint_of_another_database_is_rejected(queue):
    fill(queue, 1)
    checkpoint = queue.audit.checkpoint()
    other = Checkpoint("not-this-db", checkpoint.seq, checkpoint.hash, checkpoint.time)
    report = queue.audit.verify(other)
    assert not report.intact and "belongs to database not-this-db" in report.problem


def test_a_key_id_written_into_an_entry_is_tampering(queue):
    fill(queue, 3)
    tamper(queue, "UPDATE audit SET key_id = 'k1' WHERE seq = 2")
    report = queue.audit.verify()
    assert not report.intact and report.kind == "changed" and report.bad_seq == 2 and "names key 'k1'" in report.problem


def test_verify_streams_rows_instead_of_loading_them(queue):
    fill(queue, 3)

    def once():
        yield from rows(queue)

    assert verify_rows(once()).count == 3


def test_audit_log_filters_and_keeps_chain_order(queue):
    ids = fill(queue, 5)
    queue.cancel(ids[2])
    entries = queue.audit.entries(limit=3)
    assert [e.seq for e in entries] == [4, 5, 6]
    assert [e.action for e in queue.audit.entries(action="task.cancel")] == ["task.cancel"]
    assert [e.task_id for e in queue.audit.entries(task_id=ids[2])] == [ids[2], ids[2]]
    assert queue.audit.entries(actor="nobody-else") == []


@pytest.mark.sqlite_only  # PostgreSQL's columns are typed: a text column cannot hold 42
def test_a_field_of_another_type_is_reported_not_crashed_on(queue):
    fill(queue, 3)
    tamper(queue, "UPDATE audit SET details = 42, ts = 7 WHERE seq = 2")
    report = queue.audit.verify()
    assert (report.kind, report.bad_seq) == ("changed", 2)


@pytest.mark.parametrize("sql", [None, "UPDATE audit SET actor = 'mallory' WHERE seq = 9", "DELETE FROM audit WHERE seq = 12"])
def test_verification_split_between_processes_agrees_with_the_ordered_walk(queue, monkeypatch, sql):
    from tqcli.security import audit_log

    monkeypatch.setattr(audit_log, "PARALLEL_FROM", 1)
    fill(queue, 20)
    if sql:
        tamper(queue, sql)
    split = queue.audit.verify(processes=3)
    ordered = verify_rows(rows(queue))
    assert (split.intact, split.kind, split.bad_seq, split.count, split.head_hash) == (ordered.intact, ordered.kind, ordered.bad_seq, ordered.count, ordered.head_hash)
    assert split.intact == (sql is None)


ENTRIES = [
    (1, "2026-01-01T00:00:00.000000Z", '"alice"', "task.submit", 7, "default", '{"queue":"default"}', None, GENESIS_HASH),
    (2, "2026-01-01T00:00:00.000000Z", '"alice"', "task.submit", None, None, "{}", "audit-0123abcd", "f" * 64),
    (3, "2026-01-01T00:00:00.000000Z", '"zoë"', "task.submit", 8, "équipe", '{"target":"日本"}', None, "e" * 64),
    (12345678901, "t", "a", "b", 10**12, "", "", "", ""),
]


@pytest.mark.parametrize("entry", ENTRIES)
def test_the_link_encoding_is_the_length_prefixed_fields_whether_its_parts_were_seen_before(entry):
    from tqcli.security.audit import _TAG, length_prefixed, link_bytes

    expected = length_prefixed(_TAG, entry)
    assert link_bytes(*entry) == expected  # parts encoded now
    assert link_bytes(*entry) == expected  # parts looked up
    other = (entry[0] + 1, *entry[1:4], 99, *entry[5:])
    assert link_bytes(*other) == length_prefixed(_TAG, other)  # shared parts, other seq and task


def test_the_remembered_parts_stay_bounded():
    from tqcli.security import audit

    for n in range(audit._PARTS_KEPT * 2):
        audit.link_bytes(n, f"ts-{n}", "a", "b", n, f"tenant-{n}", "{}", None, GENESIS_HASH)
    assert len(audit._HEADS) <= audit._PARTS_KEPT and len(audit._TAILS) <= audit._PARTS_KEPT
