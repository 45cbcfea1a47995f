"""Encryption at rest of a task's values: AES-256-GCM under a subkey per task.

A stored value reads `tqe1:<data key id>:<base64 of nonce || ciphertext>`.
Its subkey is derived with HKDF-SHA256 from the data key, with info binding
the database id and the task id, so no key nears AES-GCM's limit on random
nonces however many values a database holds. The associated data binds the
database id, the task id and the field (`FIELDS`: "payload", "result", ...), so a
ciphertext copied into another row, field or database does not decrypt.

The key id in the clear tells "this process lacks that key" (UnknownDataKey,
exit 8; a worker leaves the task pending) apart from "it does not decrypt"
(DoesNotDecrypt: tampered or moved; the attempt fails without retry).

Only `cryptography`'s primitives are used, imported on first use: a plain
`tqcli submit` never loads them.
"""

from __future__ import annotations

import binascii
import os
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from tqcli.errors import KeyProblem

if TYPE_CHECKING:
    from tqcli.security.keys import KeyRing

VERSION = "tqe1"
PREFIX = VERSION + ":"
KEY_ID_CHARS = 13  # `data-` and eight hex digits (see tqcli.security.keys.key_id)
NONCE_BYTES = 12
ENCRYPTED = "<encrypted>"  # what a reader who may not decrypt sees instead of a value
DOES_NOT_DECRYPT = "ciphertext does not decrypt"
# The fields a task's values are bound to; "error" is the task's and its attempts' (one text, stored in both).
# An output chunk's field names its place too, `output:CLAIM:OFFSET`, so a chunk moved to another attempt or offset does not decrypt.
FIELDS = frozenset({"payload", "result", "error", "env", "traceback", "output"})
_CACHED_SUBKEYS = 4096


class UnknownDataKey(KeyProblem):
    """A value is sealed under a data key this key file does not hold."""

    def __init__(self, message: str, key_id: str) -> None:
        super().__init__(message)
        self.key_id = key_id


class DoesNotDecrypt(KeyProblem):
    """A value does not decrypt under its key: it was tampered with, or copied from another task, field or database."""


def is_sealed(text: Any) -> bool:
    """Whether a stored value is a ciphertext of this module."""
    return isinstance(text, str) and text.startswith(PREFIX)


def sealed_key_id(text: str) -> str | None:
    """The data key id a stored value names, or None for a value that is not sealed."""
    if not is_sealed(text):
        return None
    return text[len(PREFIX):].partition(":")[0]


def redacted(text: str | None, limit: int = 500) -> str | None:
    """What an audit entry may hold of a stored text: its head, or `<encrypted>` for a ciphertext (the chain never holds an encrypted task's text)."""
    if text is None:
        return None
    return ENCRYPTED if is_sealed(text) else text[:limit]


def missing_key_file(path: Path | None) -> KeyProblem:
    """The exit-8 error for a command that needs the key file when there is none."""
    where = f"key file {path} does not exist" if path is not None else "no key file is configured"
    return KeyProblem(f"{where}: run 'tqcli keys init' to create one, or give the key file with --key-file or TQCLI_KEY_FILE")


_PRIMITIVES: tuple[Any, Any, Any, type[Exception]] | None = None


def _primitives() -> tuple[Any, Any, Any, type[Exception]]:
    """`cryptography`'s SHA256, HKDF, AESGCM and InvalidTag, imported on first use (a worker opens thousands of tasks a second)."""
    global _PRIMITIVES
    if _PRIMITIVES is None:
        from cryptography.exceptions import InvalidTag
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM
        from cryptography.hazmat.primitives.hashes import SHA256
        from cryptography.hazmat.primitives.kdf.hkdf import HKDF

        _PRIMITIVES = (SHA256, HKDF, AESGCM, InvalidTag)
    return _PRIMITIVES


def _aad(db_id: str, task_id: int, field: str) -> bytes:
    if field.partition(":")[0] not in FIELDS:
        raise ValueError(f"no encrypted field {field!r}")  # a bug in tqcli, not bad input
    return f"tqcli/v1|{db_id}|{task_id}|{field}".encode()


class FieldCipher:
    """Seals and opens the values of one database's encrypted tasks with the data keys of one key ring.

    `reload` (Context.reload_keys) is asked once per key id the ring lacks,
    in case the key file was rotated since it was read. Derived subkeys are
    cached per (key id, task id), so a worker derives once per task for its
    payload and its result. Safe to share between a worker's threads.
    """

    def __init__(self, db_id: str, ring: "KeyRing | None", *, reload: Callable[[], "KeyRing | None"] | None = None) -> None:
        self.db_id = db_id
        self._reload = reload
        self._reloaded: set[str] = set()
        self._aeads: dict[tuple[str, int], Any] = {}
        self._lock = threading.Lock()
        self._use(ring)

    def _use(self, ring: "KeyRing | None") -> None:
        self._ring = ring
        self._primary = ring.primary_data if ring is not None else None
        self._keys = {key.id: key.key for key in ring.data} if ring is not None else {}

    @property
    def ring(self) -> "KeyRing | None":
        """The key ring in use (None: no key file)."""
        return self._ring

    @property
    def can_seal(self) -> bool:
        """Whether there is a primary data key to encrypt new values under."""
        return self._primary is not None

    @property
    def has_data_keys(self) -> bool:
        """Whether this process holds any data key at all."""
        return bool(self._keys)

    def _key(self, key_id: str) -> bytes | None:
        """Data key `key_id`, reading the key file again once when the ring lacks it."""
        key = self._keys.get(key_id)
        if key is None and self._reload is not None and key_id not in self._reloaded:
            with self._lock:
                if key_id not in self._reloaded:
                    self._reloaded.add(key_id)
                    self._use(self._reload())
            key = self._keys.get(key_id)
        return key

    def _aead(self, key_id: str, key: bytes, task_id: int) -> Any:
        cached = self._aeads.get((key_id, task_id))
        if cached is not None:
            return cached
        sha256, hkdf, aesgcm, _ = _primitives()
        info = f"tqcli/v1 task key|{self.db_id}|{task_id}".encode()
        aead = aesgcm(hkdf(algorithm=sha256(), length=32, salt=None, info=info).derive(key))
        if len(self._aeads) >= _CACHED_SUBKEYS:
            self._aeads.clear()
        self._aeads[(key_id, task_id)] = aead
        return aead

    def seal(self, task_id: int, field: str, text: str) -> str:
        """`text` encrypted under the primary data key for `field` of task `task_id`; KeyProblem without one."""
        ring, primary = self._ring, self._primary
        if primary is None:
            if ring is None:
                raise missing_key_file(None)
            raise KeyProblem(f"key file {ring.path} holds no data key to encrypt with: run 'tqcli keys rotate' to add one")
        nonce = os.urandom(NONCE_BYTES)
        sealed = self._aead(primary.id, primary.key, task_id).encrypt(nonce, text.encode("utf-8", "surrogatepass"), _aad(self.db_id, task_id, field))
        return f"{PREFIX}{primary.id}:{binascii.b2a_base64(nonce + sealed, newline=False).decode('ascii')}"

    def seal_optional(self, task_id: int, field: str, text: str | None) -> str | None:
        """`seal`, passing None through."""
        return None if text is None else self.seal(task_id, field, text)

    def open(self, task_id: int, field: str, stored: str) -> str:
        """The clear text of `field` of task `task_id`.

        UnknownDataKey when the ring lacks the value's key (after one reload),
        DoesNotDecrypt when the value is malformed or does not authenticate.
        """
        if not is_sealed(stored):
            raise DoesNotDecrypt(f"the {field} of task {task_id} is not a tqcli ciphertext: {DOES_NOT_DECRYPT}")
        key_id, colon, body = stored[len(PREFIX):].partition(":")
        if not colon:
            raise DoesNotDecrypt(f"the {field} of task {task_id}: {DOES_NOT_DECRYPT}")
        key = self._key(key_id)
        if key is None:
            where = f"key file {self._ring.path}" if self._ring is not None else "this process (no key file)"
            raise UnknownDataKey(
                f"the {field} of task {task_id} is encrypted under data key {key_id}, which {where} does not hold: "
                "copy the current key file here ('tqcli keys export --for-worker FILE' on the host that rotated it)",
                key_id,
            )
        invalid_tag = _primitives()[3]
        try:
            raw = binascii.a2b_base64(body, strict_mode=True)
            if len(raw) <= NONCE_BYTES:
                raise ValueError("too short")
            clear = self._aead(key_id, key, task_id).decrypt(raw[:NONCE_BYTES], raw[NONCE_BYTES:], _aad(self.db_id, task_id, field))
            return clear.decode("utf-8", "surrogatepass")
        except (invalid_tag, ValueError, binascii.Error, UnicodeDecodeError):
            raise DoesNotDecrypt(f"the {field} of task {task_id}: {DOES_NOT_DECRYPT}") from None

    def open_optional(self, task_id: int, field: str, stored: str | None) -> str | None:
        """`open` for a value that may be absent or, as tqcli's own notes (`worker lost`), stored in clear."""
        if stored is None or not is_sealed(stored):
            return stored
        return self.open(task_id, field, stored)

    def reseal(self, task_id: int, field: str, stored: str | None) -> str | None:
        """`stored` under the primary data key: unchanged when it already is (or is not sealed), else opened and sealed again."""
        if stored is None or not is_sealed(stored):
            return stored
        primary = self._primary
        if primary is not None and sealed_key_id(stored) == primary.id:
            return stored
        return self.seal(task_id, field, self.open(task_id, field, stored))
