"""Field encryption (tqcli.security.crypto): bound to the database, the task and the field; unknown keys told apart from tampering."""

import base64
import subprocess
import sys
from pathlib import Path

import pytest

from tqcli.errors import KeyProblem
from tqcli.security.crypto import (
    DOES_NOT_DECRYPT, KEY_ID_CHARS, PREFIX, DoesNotDecrypt, FieldCipher, UnknownDataKey, is_sealed, sealed_key_id,
)
from tqcli.security.keys import new_key_ring


@pytest.fixture
def ring(tmp_path: Path):
    return new_key_ring(tmp_path / "keys.toml")


def test_a_sealed_value_opens_for_the_same_database_task_and_field(ring):
    cipher = FieldCipher("db-1", ring)
    text = '{"secret": "hunter2", "name": "Zoë \ud800"}'
    sealed = cipher.seal(7, "payload", text)
    assert is_sealed(sealed) and "hunter2" not in sealed
    assert cipher.open(7, "payload", sealed) == text
    assert FieldCipher("db-1", ring).open(7, "payload", sealed) == text  # no state but the keys is needed


def test_the_stored_text_names_its_version_and_data_key(ring):
    sealed = FieldCipher("db-1", ring).seal(1, "result", "42")
    version, key_id, body = sealed.split(":")
    assert f"{version}:" == PREFIX and key_id == ring.primary_data.id and len(key_id) == KEY_ID_CHARS
    assert sealed_key_id(sealed) == key_id and sealed_key_id('{"a": 1}') is None
    assert len(base64.b64decode(body)) == 12 + len("42") + 16  # nonce, ciphertext, tag


def test_each_seal_uses_a_fresh_nonce(ring):
    cipher = FieldCipher("db-1", ring)
    assert cipher.seal(1, "payload", "{}") != cipher.seal(1, "payload", "{}")


@pytest.mark.parametrize(
    "db_id, task_id, field",
    [("db-2", 7, "payload"), ("db-1", 8, "payload"), ("db-1", 7, "result"), ("db-1", 7, "traceback")],
)
def test_a_ciphertext_moved_to_another_database_task_or_field_does_not_decrypt(ring, db_id, task_id, field):
    sealed = FieldCipher("db-1", ring).seal(7, "payload", '{"a": 1}')
    with pytest.raises(DoesNotDecrypt) as caught:
        FieldCipher(db_id, ring).open(task_id, field, sealed)
    assert DOES_NOT_DECRYPT in caught.value.message and caught.value.exit_code == 8


@pytest.mark.parametrize("damage", ["flip", "truncate", "not base64", "no key id"])
def test_a_tampered_ciphertext_does_not_decrypt(ring, damage):
    cipher = FieldCipher("db-1", ring)
    sealed = cipher.seal(3, "payload", '{"a": 1}')
    head, body = sealed.rsplit(":", 1)
    raw = bytearray(base64.b64decode(body))
    if damage == "flip":
        raw[-1] ^= 1
        sealed = f"{head}:{base64.b64encode(bytes(raw)).decode()}"
    elif damage == "truncate":
        sealed = f"{head}:{base64.b64encode(bytes(raw[:10])).decode()}"
    elif damage == "not base64":
        sealed = f"{head}:@@@@"
    else:
        sealed = PREFIX + body
    with pytest.raises(DoesNotDecrypt):
        cipher.open(3, "payload", sealed)


def test_a_value_under_a_key_the_ring_lacks_is_an_unknown_key_after_one_reload(ring):
    sealed = FieldCipher("db-1", ring).seal(1, "payload", "{}")
    other = new_key_ring(ring.path)
    reloads = []

    def reload():
        reloads.append(1)
        return other

    cipher = FieldCipher("db-1", other, reload=reload)
    for _ in range(3):
        with pytest.raises(UnknownDataKey) as caught:
            cipher.open(1, "payload", sealed)
    assert caught.value.key_id == ring.primary_data.id and caught.value.exit_code == 8
    assert str(ring.path) in caught.value.message and "keys export --for-worker" in caught.value.message
    assert reloads == [1]  # the key file is read again once per missing key, not on every value


def test_a_reload_that_brings_the_key_opens_the_value(ring):
    sealed = FieldCipher("db-1", ring).seal(1, "payload", "{}")
    stale = ring.replaced(data=())
    cipher = FieldCipher("db-1", stale, reload=lambda: ring)
    assert not cipher.has_data_keys
    assert cipher.open(1, "payload", sealed) == "{}" and cipher.has_data_keys


def test_reseal_moves_old_values_to_the_primary_key_and_leaves_the_rest(ring):
    old = FieldCipher("db-1", ring)
    sealed = old.seal(5, "error", "ValueError: nope")
    rotated = FieldCipher("db-1", ring.with_new_data_key())
    moved = rotated.reseal(5, "error", sealed)
    assert sealed_key_id(moved) == rotated.ring.primary_data.id != sealed_key_id(sealed)
    assert rotated.open(5, "error", moved) == "ValueError: nope"
    assert rotated.reseal(5, "error", moved) is moved
    assert rotated.reseal(5, "error", None) is None and rotated.reseal(5, "error", "worker lost") == "worker lost"


def test_open_optional_passes_tqcli_notes_in_clear(ring):
    cipher = FieldCipher("db-1", ring)
    assert cipher.open_optional(1, "error", "worker lost") == "worker lost"
    assert cipher.open_optional(1, "error", None) is None
    assert cipher.open_optional(1, "error", cipher.seal(1, "error", "boom")) == "boom"


def test_sealing_needs_a_primary_data_key(ring):
    with pytest.raises(KeyProblem, match="keys init"):
        FieldCipher("db-1", None).seal(1, "payload", "{}")
    with pytest.raises(KeyProblem, match="holds no data key"):
        FieldCipher("db-1", ring.replaced(data=())).seal(1, "payload", "{}")
    assert not FieldCipher("db-1", None).can_seal and FieldCipher("db-1", ring).can_seal


def test_importing_the_module_does_not_import_cryptography():
    code = "import sys, tqcli.security.crypto; print('cryptography' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False"
