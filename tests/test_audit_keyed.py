"""The keyed audit chain and signed checkpoints: HMAC links, the key they need, and the tamper cases A1-A13 they catch.

Each case runs on both stores, through the library and the real CLI; the
tampering is done behind tqcli's back (sqlite3 / psql), by someone who can
edit the database but holds no key.
"""

from __future__ import annotations

import base64
import hmac
import json
import shutil
import subprocess
from dataclasses import replace
from pathlib import Path

import pytest

import tqcli
from tests.stores import raw_sql, table_dump
from tqcli.config import Config
from tqcli.errors import KeyProblem, PermissionDenied
from tqcli.security.audit import GENESIS_HASH, append_problem, entry_hash, link_bytes
from tqcli.security.checkpoint import Checkpoint, read_checkpoint, read_public_key, sign_checkpoint, write_checkpoint, write_public_key
from tqcli.security.keys import KeyRing, new_key_ring, write_key_file
from tqcli.security.verify import verify_rows


@pytest.fixture
def ring(tmp_path: Path) -> KeyRing:
    """A key file made as `tqcli keys init` makes one (mode 0600)."""
    made = new_key_ring(tmp_path / "keys" / "keys.toml")
    write_key_file(made)
    return made


def other_ring(tmp_path: Path, name: str = "other.toml") -> KeyRing:
    """Another `keys init`'s key file: other audit and signing keys."""
    made = new_key_ring(tmp_path / "keys" / name)
    write_key_file(made)
    return made


def open_with(db_location, key_file: Path, clock=None):
    """The library on `db_location` with `key_file` as its key file (one that may not exist: no keys)."""
    return tqcli.open(db_location, clock=clock, config=Config(db_location, key_file=key_file))


@pytest.fixture
def keyed(db_location, ring, clock):
    """A library queue holding the key file."""
    with open_with(db_location, ring.path, clock) as queue:
        yield queue


@pytest.fixture
def keyless(db_location, tmp_path, clock):
    """A library queue on the same database without any key file."""
    with open_with(db_location, tmp_path / "no-such-keys.toml", clock) as queue:
        yield queue


def fill(queue, count, tenant=None):
    options = {"tenant": tenant} if tenant else {}
    return [queue.submit("app.jobs:step", payload={"n": n}, **options) for n in range(count)]


def rows(queue):
    with queue._ctx.store.read() as tx:
        return list(tx.iter_audit())


def tamper(queue, sql, params=()):
    raw_sql(queue.location, sql, params)


def rewrite_plain(queue, first, *, keep_key_id=False, change=None):
    """Recompute every link from entry `first` on with plain SHA-256, as someone without the key would."""
    entries = rows(queue)
    prev = entries[first - 2][9] if first > 1 else GENESIS_HASH
    for row in entries[first - 1:]:
        seq, ts, actor, action, task_id, tenant, details, key_id = row[:8]
        if change and seq == first:
            actor = change
        key_id = key_id if keep_key_id else None
        digest = entry_hash(seq, ts, actor, action, task_id, tenant, details, key_id, prev)
        tamper(queue, "UPDATE audit SET actor = ?, key_id = ?, prev_hash = ?, hash = ? WHERE seq = ?", (actor, key_id, prev, digest, seq))
        prev = digest


# -- HMAC links -------------------------------------------------------------


def test_with_a_key_file_every_entry_is_an_hmac_link_naming_the_key(keyed, ring):
    fill(keyed, 3)
    key = ring.primary_audit
    for row in rows(keyed):
        assert row[7] == key.id
        assert row[9] == hmac.digest(key.key, link_bytes(*row[:9]), "sha256").hex()
        assert row[9] != entry_hash(*row[:9])  # not the plain SHA-256 link
    report = keyed.audit.verify()  # A1
    assert report.intact and report.count == 3 and report.head_hash == rows(keyed)[-1][9]


def test_a_plain_chain_turns_keyed_from_the_first_append_with_a_key(keyless, keyed, ring):
    fill(keyless, 2)
    fill(keyed, 2)
    assert [row[7] for row in rows(keyed)] == [None, None, ring.primary_audit.id, ring.primary_audit.id]
    assert keyed.audit.verify().intact


def test_json_key_order_on_read_does_not_matter(keyed):  # A13
    keyed.submit("app.jobs:step", payload={"b": 1, "a": 2})
    (entry,) = keyed.audit.entries()
    assert json.loads(json.dumps(entry.to_json(), sort_keys=True))["details"] == entry.to_json()["details"]
    assert keyed.audit.verify().intact


# -- appending needs the key ------------------------------------------------


def test_a_change_on_a_keyed_chain_without_the_key_is_exit_8_and_changes_nothing(keyed, keyless, db_location):
    ids = fill(keyed, 2)
    before = table_dump(db_location)
    with pytest.raises(KeyProblem) as raised:
        keyless.submit("app.jobs:step")
    assert "the audit chain is keyed (key audit-" in raised.value.message and "--key-file" in raised.value.message
    with pytest.raises(KeyProblem):
        keyless.cancel(ids[0])
    assert table_dump(db_location) == before


def test_a_key_file_of_another_keys_init_appends_under_its_own_key(keyed, db_location, tmp_path):
    fill(keyed, 1)
    stranger = other_ring(tmp_path)
    with open_with(db_location, stranger.path) as queue:
        queue.submit("app.jobs:step")
    assert [row[7] for row in rows(keyed)] == [keyed._ctx.keys.primary_audit.id, stranger.primary_audit.id]
    with pytest.raises(KeyProblem) as raised:  # either file alone cannot verify both
        keyed.audit.verify()
    assert stranger.primary_audit.id in raised.value.message


def test_append_problem_says_why_a_process_could_not_append(keyed, keyless, ring):
    with keyless._ctx.store.read() as tx:
        assert append_problem(tx, None) is None  # an empty chain
    fill(keyless, 1)
    with keyless._ctx.store.read() as tx:
        assert append_problem(tx, None) is None  # a plain chain
    fill(keyed, 1)
    with keyless._ctx.store.read() as tx:
        problem = append_problem(tx, None)
        assert problem is not None and ring.primary_audit.id in problem and "--key-file" in problem
        assert append_problem(tx, ring) is None
        workers_copy = ring.replaced(audit=(ring.primary_audit.demoted(),))
        assert append_problem(tx, workers_copy) is None  # the head's own key is enough
    assert len(rows(keyless)) == 2  # it wrote nothing


# -- verify ------------------------------------------------------------------


def test_verify_of_a_keyed_chain_without_the_key_is_exit_8_naming_it(keyed, keyless, ring, tmp_path, db_location):  # A11
    fill(keyed, 3)
    with pytest.raises(KeyProblem) as raised:
        keyless.audit.verify()
    assert ring.primary_audit.id in raised.value.message and "cannot verify audit entry 1" in raised.value.message
    with open_with(db_location, other_ring(tmp_path).path) as queue, pytest.raises(KeyProblem) as wrong:
        queue.audit.verify()
    assert ring.primary_audit.id in wrong.value.message and "does not hold it" in wrong.value.message


def test_an_entry_naming_a_key_the_ring_lacks_is_exit_8(keyed):  # A11
    fill(keyed, 3)
    tamper(keyed, "UPDATE audit SET key_id = 'audit-00000000' WHERE seq = 2")
    with pytest.raises(KeyProblem) as raised:
        keyed.audit.verify()
    assert "audit-00000000" in raised.value.message and "entry 2" in raised.value.message


@pytest.mark.parametrize(
    "sql, seq",
    [
        ("UPDATE audit SET actor = 'mallory' WHERE seq = 3", 3),
        ("UPDATE audit SET details = '{}' WHERE seq = 1", 1),  # A12: the genesis entry
        ("UPDATE audit SET ts = '2020-01-01T00:00:00.000000Z' WHERE seq = 5", 5),
        ("UPDATE audit SET tenant = 'other' WHERE seq = 2", 2),
    ],
)
def test_an_edited_keyed_entry_is_named(keyed, sql, seq):  # A2
    fill(keyed, 5)
    tamper(keyed, sql)
    report = keyed.audit.verify()
    assert (report.intact, report.kind, report.bad_seq) == (False, "changed", seq), report.problem


@pytest.mark.parametrize(
    "sql, kind, seq",
    [
        ("DELETE FROM audit WHERE seq = 3", "removed", 3),  # A3
        ("UPDATE audit SET seq = -1 WHERE seq = 3; UPDATE audit SET seq = 3 WHERE seq = 4; UPDATE audit SET seq = 4 WHERE seq = -1", "reordered", 3),  # A4
    ],
)
def test_removed_and_reordered_keyed_entries_are_named(keyed, sql, kind, seq):
    fill(keyed, 6)
    tamper(keyed, sql)
    report = keyed.audit.verify()
    assert (report.kind, report.bad_seq) == (kind, seq), report.problem


def test_an_edit_recomputed_with_plain_sha256_is_a_downgrade(keyed):  # A5
    fill(keyed, 6)
    rewrite_plain(keyed, 3, change="mallory")
    report = keyed.audit.verify()
    assert (report.kind, report.bad_seq) == ("changed", 3)
    assert "plain SHA-256 link after keyed entries" in report.problem


def test_an_edit_recomputed_with_sha256_under_the_key_id_does_not_match(keyed):  # A5
    fill(keyed, 6)
    rewrite_plain(keyed, 3, keep_key_id=True, change="mallory")
    report = keyed.audit.verify()
    assert (report.kind, report.bad_seq) == ("changed", 3) and "does not match its contents" in report.problem


@pytest.mark.parametrize("key_id", [None, "same"])
def test_a_forged_insert_without_the_key_is_found(keyed, key_id):  # A6
    fill(keyed, 5)
    entries = rows(keyed)
    prev = entries[1][9]
    forged_key = entries[2][7] if key_id == "same" else None
    forged = entry_hash(3, entries[2][1], "mallory", "task.cancel", 1, "default", "{}", forged_key, prev)
    tamper(keyed, "UPDATE audit SET seq = seq + 100 WHERE seq >= 3; UPDATE audit SET seq = seq - 99 WHERE seq >= 103")
    tamper(keyed, "INSERT INTO audit VALUES (3, ?, 'mallory', 'task.cancel', 1, 'default', '{}', ?, ?, ?)", (entries[2][1], forged_key, prev, forged))
    report = keyed.audit.verify()
    assert (report.kind, report.bad_seq) == ("inserted", 3), report.problem


def test_a_chain_rewritten_as_plain_from_its_first_entry_is_caught_by_a_checkpoint(keyed, keyless):
    fill(keyed, 4)
    saved = keyed.audit.checkpoint()
    rewrite_plain(keyed, 1, change="mallory")
    assert keyed.audit.verify().intact  # a wholly plain chain says nothing of the key it once had...
    report = keyed.audit.verify(saved)
    assert (report.kind, report.bad_seq) == ("rewritten", saved.seq)  # ...its checkpoint does


def test_ordered_walk_and_fast_pass_agree_on_a_keyed_chain(keyed, ring):
    fill(keyed, 4)
    assert verify_rows(rows(keyed), ring=ring).count == 4
    tamper(keyed, "UPDATE audit SET actor = 'mallory' WHERE seq = 2")
    assert verify_rows(rows(keyed), ring=ring).bad_seq == 2


# -- checkpoints ------------------------------------------------------------


def test_checkpoint_is_signed_and_appends_its_own_entry_after_the_head(keyed, ring):
    fill(keyed, 3)
    saved = keyed.audit.checkpoint()
    assert (saved.seq, saved.key_id) == (3, ring.signing_id) and saved.signature
    (entry,) = keyed.audit.entries(action="audit.checkpoint")
    assert entry.seq == 4 and entry.key_id == ring.primary_audit.id
    assert json.loads(entry.details) == {"seq": 3, "hash": saved.hash, "signed": True}
    report = keyed.audit.verify(saved)
    assert report.intact and report.checkpoint_seq == 3 and report.checkpoint_key_id == ring.signing_id
    assert report.to_json()["checkpoint_signed_by"] == ring.signing_id


def test_a_checkpoint_of_a_keyed_chain_needs_the_key_to_append(keyed, keyless, db_location):
    fill(keyed, 1)
    before = table_dump(db_location)
    with pytest.raises(KeyProblem):
        keyless.audit.checkpoint()
    assert table_dump(db_location) == before


def test_a_truncated_tail_is_caught_by_a_signed_checkpoint(keyed):  # A7
    fill(keyed, 5)
    saved = keyed.audit.checkpoint()
    tamper(keyed, "DELETE FROM audit WHERE seq >= 4")
    assert keyed.audit.verify().intact
    report = keyed.audit.verify(saved)
    assert (report.kind, report.bad_seq) == ("truncated", 4) and "checkpoint names entry 5" in report.problem


def edited(saved: Checkpoint, **changes) -> Checkpoint:
    return replace(saved, **changes)


@pytest.mark.parametrize(
    "forge",
    [
        lambda saved, other: edited(saved, seq=saved.seq - 1),
        lambda saved, other: edited(saved, hash="f" * 64),
        lambda saved, other: edited(saved, time="2020-01-01T00:00:00.000000Z"),
        lambda saved, other: sign_checkpoint(edited(saved, seq=1), other.signing_private, other.signing_id),
        lambda saved, other: sign_checkpoint(edited(saved, seq=1), other.signing_private, saved.key_id),
        lambda saved, other: edited(saved, signature=None),
        lambda saved, other: edited(saved, signature="not base64!"),
    ],
    ids=["seq", "hash", "time", "re-signed", "re-signed-claiming-our-key", "signature-stripped", "garbage-signature"],
)
def test_an_edited_or_re_signed_checkpoint_is_forged(keyed, tmp_path, forge):  # A10
    fill(keyed, 3)
    saved = keyed.audit.checkpoint()
    report = keyed.audit.verify(forge(saved, other_ring(tmp_path)))
    assert not report.intact and report.kind == "forged checkpoint", report.problem


def test_a_signed_checkpoint_needs_a_public_key(keyed, db_location, ring, tmp_path):
    fill(keyed, 2)
    saved = keyed.audit.checkpoint()
    no_signing = ring.replaced(path=tmp_path / "keys" / "audit-only.toml", signing_id=None, signing_private=None, signing_public=None)
    write_key_file(no_signing)
    with open_with(db_location, no_signing.path) as queue:
        with pytest.raises(KeyProblem) as raised:
            queue.audit.verify(saved)
        assert "--public-key" in raised.value.message
        assert queue.audit.verify(saved, public_key=ring.signing_public).intact
        unsigned = Checkpoint(saved.db_id, saved.seq, saved.hash, saved.time)
        assert queue.audit.verify(unsigned).intact  # an unsigned checkpoint still checks seq and hash
        asked = queue.audit.verify(unsigned, public_key=ring.signing_public)
        assert asked.kind == "forged checkpoint" and "not signed" in asked.problem


def test_public_key_file_round_trip_and_openssl_reads_it(ring, tmp_path):
    path = tmp_path / "signing.pub"
    write_public_key(path, ring.signing_public)
    assert read_public_key(path) == ring.signing_public
    assert ring.signing_id in path.read_text()
    if shutil.which("openssl"):
        done = subprocess.run(["openssl", "pkey", "-pubin", "-in", str(path), "-noout", "-text"], capture_output=True, text=True)
        assert done.returncode == 0 and "ED25519" in done.stdout.upper()


def test_checkpoint_files_keep_the_key_id_and_signature(keyed, tmp_path):
    fill(keyed, 1)
    path = tmp_path / "head.json"
    saved = keyed.audit.checkpoint(path)
    assert read_checkpoint(path) == saved
    write_checkpoint(saved, path)
    assert json.loads(path.read_text())["key_id"] == saved.key_id


# -- the parallel pass ------------------------------------------------------


@pytest.fixture
def helper_argv(monkeypatch):
    """The command lines of verify's helper processes (PARALLEL_FROM lowered so 20 entries are split)."""
    from tqcli.security import audit_log

    monkeypatch.setattr(audit_log, "PARALLEL_FROM", 1)
    seen: list[list[str]] = []
    real = subprocess.Popen

    class Recording(real):  # type: ignore[misc, valid-type]
        def __init__(self, args, *rest, **options):
            seen.append([str(arg) for arg in args])
            super().__init__(args, *rest, **options)

    monkeypatch.setattr(subprocess, "Popen", Recording)
    return seen


@pytest.mark.parametrize(
    "damage",
    [None, "UPDATE audit SET actor = 'mallory' WHERE seq = 15", "plain-from-11", "DELETE FROM audit WHERE seq = 12"],
)
def test_verification_split_between_processes_checks_hmac_links_with_the_key_off_the_command_line(keyed, ring, helper_argv, damage, monkeypatch):
    from tqcli.security import audit_log

    fill(keyed, 20)
    if damage is None:  # an intact chain is passed by the helpers alone, never by the ordered walk
        monkeypatch.setattr(audit_log, "verify_rows", lambda *args: pytest.fail("the split pass found a doubt in an intact chain"))
    if damage == "plain-from-11":
        rewrite_plain(keyed, 11)  # a consistent plain stretch right where the second helper's starts
    elif damage:
        tamper(keyed, damage)
    split = keyed.audit.verify(processes=2)
    ordered = verify_rows(rows(keyed), ring=ring)
    assert (split.intact, split.kind, split.bad_seq, split.count) == (ordered.intact, ordered.kind, ordered.bad_seq, ordered.count)
    assert split.intact == (damage is None)
    assert helper_argv or (damage or "").startswith("DELETE"), "no helper process was started"  # a gap in seq skips the fast pass
    secret = ring.primary_audit.key
    for argv in helper_argv:
        assert argv[1:] == ["-m", "tqcli.security.verify"]
        line = " ".join(argv)
        assert base64.b64encode(secret).decode() not in line and secret.hex() not in line and str(keyed.location) not in line


# -- who may read and verify ------------------------------------------------


def grant(queue, *grants):
    with queue._ctx.store.write() as tx:
        for user, role, tenant in grants:
            tx.add_grant(user, role, tenant)


def test_audit_operations_need_the_auditor_or_admin_role(keyed):
    fill(keyed, 2, tenant="acme")
    fill(keyed, 2, tenant="beta")
    grant(keyed, ("boss", "admin", ""), ("audi", "auditor", "acme"), ("vic", "viewer", ""), ("glob", "auditor", ""))
    keyed._ctx.actor = "audi"
    assert {entry.tenant for entry in keyed.audit.entries()} == {"acme"}
    assert len(keyed.audit.entries(limit=0)) == 2
    for operation in (keyed.audit.verify, keyed.audit.checkpoint):  # the whole chain: a global grant only
        with pytest.raises(PermissionDenied):
            operation()
    keyed._ctx.actor = "vic"
    with pytest.raises(PermissionDenied) as denied:
        keyed.audit.entries()
    assert "read the audit log" in denied.value.message
    keyed._ctx.actor = "glob"
    assert {"acme", "beta"} <= {entry.tenant for entry in keyed.audit.entries(limit=0)}
    assert keyed.audit.verify().intact
    assert keyed.audit.checkpoint().signature
