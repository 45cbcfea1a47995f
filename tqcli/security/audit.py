"""The tamper-evident audit chain: how entries are hashed and appended.

Each entry's `hash` is SHA-256 over a canonical encoding of its stored
fields and the previous entry's hash. The encoding starts with the tag
`tqcli-audit-v1` and a newline, then for each of seq, ts, actor, action,
task_id, tenant, details, key_id and prev_hash: `-` for NULL, else the
UTF-8 byte length in decimal, a colon and the bytes. Length prefixes make
the encoding unambiguous: no two different entries encode alike.

Entries are appended in the same transaction as the change they record,
so both land or neither does. Verification lives in `tqcli.security.verify`.
"""

from __future__ import annotations

import hashlib
import json
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, Callable, Sequence

if TYPE_CHECKING:
    from tqcli.security.keys import KeyRing
    from tqcli.store.base import Tx

GENESIS_HASH = "0" * 64
_TAG = b"tqcli-audit-v1\n"
_TAG_TEXT = _TAG.decode()


def audit_time(us: int) -> str:
    """The audit table's `ts`: ISO 8601 UTC with microseconds, so text order is time order."""
    seconds, micros = divmod(us, 1_000_000)
    return datetime.fromtimestamp(seconds, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%S") + f".{micros:06d}Z"


def link_text(
    seq: int,
    ts: str,
    actor: str,
    action: str,
    task_id: int | None,
    tenant: str | None,
    details: str,
    key_id: str | None,
    prev_hash: str,
) -> str:
    """The canonical encoding of one entry as text, lengths counted in characters.

    The one place the link format is written down. It is the exact encoding
    (lengths in bytes) whenever it is ASCII, which `entry_hash` and the
    verifier's fast pass check before hashing it; other text takes
    `entry_hash`'s byte-by-byte path.
    """
    number = str(seq)
    task = "-" if task_id is None else f"{len(str(task_id))}:{task_id}"
    tenant_part = "-" if tenant is None else f"{len(tenant)}:{tenant}"
    key_part = "-" if key_id is None else f"{len(key_id)}:{key_id}"
    return (
        f"{_TAG_TEXT}{len(number)}:{number}{len(ts)}:{ts}{len(actor)}:{actor}{len(action)}:{action}"
        f"{task}{tenant_part}{len(details)}:{details}{key_part}{len(prev_hash)}:{prev_hash}"
    )


def entry_hash(*fields: Any) -> str:
    """The SHA-256 link of one entry over its canonical encoding; `fields` in `link_text`'s order."""
    text = link_text(*fields)
    if text.isascii():  # then every length in characters is also the length in bytes
        return hashlib.sha256(text.encode("ascii")).hexdigest()
    buf = bytearray(_TAG)
    for value in fields:
        if value is None:
            buf += b"-"
        else:
            data = str(value).encode("utf-8", "surrogatepass")
            buf += b"%d:" % len(data)
            buf += data
    return hashlib.sha256(buf).hexdigest()


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


def append_entries(
    tx: "Tx",
    actor: str,
    now_us: int,
    entries: Sequence[tuple[str, int | None, str | None, str]],
    keys: "Callable[[], KeyRing | None] | None" = None,
) -> None:
    """Append `entries` to the chain inside the caller's write transaction; `keys()` gives the audit key when the chain needs one."""
    if not entries:
        return
    ts = audit_time(now_us)

    def link(head: tuple[int, str] | None) -> list[tuple[Any, ...]]:
        seq, prev = head if head else (0, GENESIS_HASH)
        rows = []
        for action, task_id, tenant, details in entries:
            seq += 1
            digest = entry_hash(seq, ts, actor, action, task_id, tenant, details, None, prev)
            rows.append((seq, ts, actor, action, task_id, tenant, details, None, prev, digest))
            prev = digest
        return rows

    tx.append_audit(link)
