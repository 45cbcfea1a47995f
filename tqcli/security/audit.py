"""The tamper-evident audit chain: how entries are linked and appended.

Each entry's `hash` is computed over a canonical encoding of its stored
fields and the previous entry's hash (`link_bytes`, the one encoder). The
encoding starts with the tag `tqcli-audit-v1` and a newline, then for each
of seq, ts, actor, action, task_id, tenant, details, key_id and prev_hash:
`-` for NULL, else the UTF-8 byte length in decimal, a colon and the bytes.
Length prefixes make the encoding unambiguous: no two different entries
encode alike.

A plain entry (`key_id` NULL) is linked by SHA-256 of the encoding. Once
an audit key exists, entries are linked by HMAC-SHA256 under it and name
its id in `key_id` (which the encoding covers), so whoever can edit the
database but holds no key cannot recompute the chain. The chain is keyed
from its first keyed entry on: a plain entry after a keyed one is
tampering, and appending to a keyed chain needs its key.

Entries are appended in the same transaction as the change they record,
so both land or neither does. Verification lives in `tqcli.security.verify`.
"""

from __future__ import annotations

import json
import re
import sys
from datetime import datetime, timezone
from functools import lru_cache
from typing import TYPE_CHECKING, Any, Callable, Iterable, Sequence

from tqcli.errors import KeyProblem

if TYPE_CHECKING:
    from tqcli.security.keys import KeyRing
    from tqcli.store.base import Tx

GENESIS_HASH = "0" * 64
_TAG = b"tqcli-audit-v1\n"
_TAG_TEXT = _TAG.decode()
# The shape of `tqcli.security.keys.key_id("audit", ...)`: anything else in key_id was never written by tqcli.
_AUDIT_KEY_ID = re.compile(r"audit-[0-9a-f]{8}")
_SHA256_BLOCK = 64
_IPAD = bytes(byte ^ 0x36 for byte in range(256))
_OPAD = bytes(byte ^ 0x5C for byte in range(256))


def audit_time(us: int) -> str:
    """The audit table's `ts`: ISO 8601 UTC with microseconds, so text order is time order."""
    seconds, micros = divmod(us, 1_000_000)
    return datetime.fromtimestamp(seconds, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%S") + f".{micros:06d}Z"


def length_prefixed(tag: bytes, values: Iterable[Any]) -> bytes:
    """`tag`, then each value as `-` (None) or its UTF-8 byte length, a colon and the bytes."""
    buf = bytearray(tag)
    for value in values:
        if value is None:
            buf += b"-"
        else:
            data = str(value).encode("utf-8", "surrogatepass")
            buf += b"%d:" % len(data)
            buf += data
    return bytes(buf)


def link_bytes(
    seq: int,
    ts: str,
    actor: str,
    action: str,
    task_id: int | None,
    tenant: str | None,
    details: str,
    key_id: str | None,
    prev_hash: str,
) -> bytes:
    """The canonical encoding of one entry: the one place the link format is written down.

    Built as text (one f-string, lengths in characters), which is the exact
    encoding whenever it is ASCII; other text is encoded field by field.
    The parts entries share, `ts actor action` and `tenant details key_id`,
    are encoded once and looked up (a bulk submit or a drain writes
    thousands alike; a verify reads them): about a fifth of the cost.
    """
    head = _HEADS.get((ts, actor, action))
    if head is None:
        head = _remember(_HEADS, (ts, actor, action), f"{len(ts)}:{ts}{len(actor)}:{actor}{len(action)}:{action}")
    tail = _TAILS.get((tenant, details, key_id))
    if tail is None:
        tenant_part = "-" if tenant is None else f"{len(tenant)}:{tenant}"
        key_part = "-" if key_id is None else f"{len(key_id)}:{key_id}"
        tail = _remember(_TAILS, (tenant, details, key_id), f"{tenant_part}{len(details)}:{details}{key_part}")
    number = str(seq)
    task = "-" if task_id is None else f"{len(str(task_id))}:{task_id}"
    text = f"{_TAG_TEXT}{len(number)}:{number}{head}{task}{tail}{len(prev_hash)}:{prev_hash}"
    if text.isascii():  # then every length in characters is also the length in bytes
        return text.encode("ascii")
    return length_prefixed(_TAG, (seq, ts, actor, action, task_id, tenant, details, key_id, prev_hash))


# The shared parts of recent entries' encodings (see `link_bytes`); each emptied when it reaches _PARTS_KEPT.
_HEADS: dict[tuple[Any, ...], str] = {}
_TAILS: dict[tuple[Any, ...], str] = {}
_PARTS_KEPT = 4096


def _remember(parts: dict[tuple[Any, ...], str], key: tuple[Any, ...], text: str) -> str:
    if len(parts) >= _PARTS_KEPT:
        parts.clear()
    parts[key] = text
    return text


# Up to this many entries are linked with CPython's own SHA-256, more with OpenSSL's (see `sha256_for`).
FEW_ENTRIES = 2000


def sha256_for(entries: int) -> Callable[..., Any]:
    """The SHA-256 constructor for hashing about `entries` entries: OpenSSL's once loaded or for many, else CPython's own.

    Loading OpenSSL (`import hashlib`) costs about 2.5 ms, a tenth of a
    `tqcli submit`; its SHA-256 is about 0.6 us faster per short entry,
    which repays the load only past a few thousand entries (a worker loads
    it anyway). Both give the same digests (the tests hold them to each
    other). The standard library's `random` picks its SHA-512 the same way.
    """
    if entries <= FEW_ENTRIES and "hashlib" not in sys.modules:
        return _own_sha256()
    from hashlib import sha256

    return sha256


@lru_cache(maxsize=None)  # found once: a failed import searches sys.path again on every try
def _own_sha256() -> Callable[..., Any]:
    try:
        from _sha2 import sha256  # type: ignore[import-not-found]  # CPython 3.12 and later
    except ImportError:
        try:
            from _sha256 import sha256  # type: ignore[import-not-found,no-redef]  # CPython 3.11
        except ImportError:
            from hashlib import sha256
    return sha256  # type: ignore[no-any-return]


def link_hasher(key: bytes | None, entries: int = FEW_ENTRIES + 1) -> Callable[[bytes], str]:
    """The link function of entries under `key`: HMAC-SHA256 (RFC 2104) in hex, or SHA-256 when `key` is None (plain).

    `entries` says about how many it will link (the choice of `sha256_for`).
    The key's inner and outer SHA-256 states are computed once and copied
    per entry: with OpenSSL 3, `hmac.digest` looks SHA-256 up by name on
    every call and costs about twice as much per short entry, which a
    verify of millions of entries feels. The tests hold it to `hmac.digest`.
    """
    sha256 = sha256_for(entries)
    if key is None:

        def plain_link(data: bytes) -> str:
            return sha256(data).hexdigest()

        return plain_link
    if len(key) > _SHA256_BLOCK:
        key = sha256(key).digest()
    key = key.ljust(_SHA256_BLOCK, b"\0")
    inner = sha256(key.translate(_IPAD))
    outer = sha256(key.translate(_OPAD))

    def keyed_link(data: bytes) -> str:
        state = inner.copy()
        state.update(data)
        result = outer.copy()
        result.update(state.digest())
        return result.hexdigest()

    return keyed_link


def link_digest(data: bytes, key: bytes | None) -> str:
    """The link over an encoded entry: HMAC-SHA256 under `key`, or SHA-256 when the entry is plain (hex)."""
    return link_hasher(key)(data)


def entry_hash(*fields: Any, key: bytes | None = None) -> str:
    """The link of one entry; `fields` in `link_bytes`'s order, `key` the audit key its key_id names."""
    return link_digest(link_bytes(*fields), key)


def is_audit_key_id(value: str) -> bool:
    """Whether `value` has the shape of an audit key's id (`audit-` and eight hex digits)."""
    return _AUDIT_KEY_ID.fullmatch(value) is not None


def audit_key_map(ring: "KeyRing | None") -> dict[str, bytes]:
    """The audit keys of `ring` by id (empty without a ring)."""
    return {} if ring is None else {key.id: key.key for key in ring.audit}


def missing_key(key_id: str, ring: "KeyRing | None", what: str) -> KeyProblem:
    """The KeyProblem of a keyed chain whose key `key_id` this process lacks; `what` says what it blocks."""
    if ring is None:
        where = "no key file holds its key: give --key-file"
    else:
        where = f"key file {ring.path} does not hold it: give the key file that does (--key-file)"
    return KeyProblem(f"{what} (key {key_id}) and {where}, or copy the key file from whoever ran 'tqcli keys init'")


def link_key(head_key_id: str | None, ring: "KeyRing | None") -> tuple[str, bytes] | None:
    """`(key id, key)` new entries are linked with after a head keyed by `head_key_id` (None: plain links).

    The ring's primary audit key when there is one (a plain chain then
    starts its keyed part); else the head's own key. KeyProblem when the
    chain is keyed and `ring` holds neither: a plain entry would break it.
    """
    primary = ring.primary_audit if ring is not None else None
    if primary is not None:
        return primary.id, primary.key
    if head_key_id is None:
        return None
    key = ring.audit_key(head_key_id) if ring is not None else None
    if key is None:
        raise missing_key(head_key_id, ring, "the audit chain is keyed")
    return head_key_id, key


def append_problem(tx: "Tx", keys: "KeyRing | None") -> str | None:
    """Why this process could not append to the chain (it is keyed and `keys` lacks its key), or None; writes nothing."""
    head = tx.audit_head()
    try:
        link_key(head[2] if head else None, keys)
    except KeyProblem as problem:
        return problem.message
    return None


_DETAILS_ENCODER = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


def encode_details(details: dict[str, Any]) -> str:
    """The stored text of an entry's details: compact JSON with sorted keys."""
    return _DETAILS_ENCODER.encode(details)


class Journal:
    """The audit entries of one change, appended when its transaction commits."""

    __slots__ = ("entries",)

    def __init__(self) -> None:
        self.entries: list[tuple[str, int | None, str | None, str]] = []

    def add(self, action: str, task_id: int | None = None, tenant: str | None = None, **details: Any) -> None:
        """Record one entry: a dotted action name, the task and tenant it concerns, details."""
        self.entries.append((action, task_id, tenant, encode_details(details)))

    def add_text(self, action: str, task_id: int | None, tenant: str | None, details: str) -> None:
        """Record one entry whose details are already encoded as `encode_details` would."""
        self.entries.append((action, task_id, tenant, details))

    def add_texts(self, entries: Iterable[tuple[str, int | None, str | None, str]]) -> None:
        """Record `(action, task_id, tenant, details)` entries in order, details encoded as for `add_text` (a bulk change)."""
        self.entries.extend(entries)


def append_entries(
    tx: "Tx",
    actor: str,
    now_us: int,
    entries: Sequence[tuple[str, int | None, str | None, str]],
    keys: "Callable[[], KeyRing | None] | None" = None,
) -> None:
    """Append `entries` to the chain inside the caller's write transaction, linked with `keys()`'s audit key when it has one.

    KeyProblem, raised inside the transaction so the change rolls back,
    when the chain is keyed and `keys()` lacks its key.
    """
    if not entries:
        return
    ts = audit_time(now_us)
    ring = keys() if keys is not None else None  # read before the head is locked: the key file is a file read

    def link(head: tuple[int, str, str | None] | None) -> list[tuple[Any, ...]]:
        seq, prev, head_key_id = head if head else (0, GENESIS_HASH, None)
        chosen = link_key(head_key_id, ring)
        key_id, key = chosen if chosen is not None else (None, None)
        hasher = link_hasher(key, len(entries))
        rows = []
        for action, task_id, tenant, details in entries:
            seq += 1
            digest = hasher(link_bytes(seq, ts, actor, action, task_id, tenant, details, key_id, prev))
            rows.append((seq, ts, actor, action, task_id, tenant, details, key_id, prev, digest))
            prev = digest
        return rows

    tx.append_audit(link)
