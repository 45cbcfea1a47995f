"""Checkpoints of the audit chain's head: the file, its Ed25519 signature, the public key file.

A checkpoint names the head (seq, hash) of one database's chain at one
time. Kept outside the database, it lets `audit verify --checkpoint`
catch what a chain cannot show about itself: entries cut from the end, an
older copy restored, a history rewritten up to that point. Signed with the
key file's Ed25519 key, it also cannot be edited or made up by whoever
holds the audit key alone (a worker's copy has no signing key).

The signature covers `signed_bytes`: the tag `tqcli-audit-checkpoint/1`
and a newline, then format, db_id, seq, hash, time and key_id, each
length-prefixed as the chain's links are (`tqcli.security.audit.length_prefixed`).
`cryptography` is imported only to sign or check a signature.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tqcli.errors import InvalidInput, KeyProblem
from tqcli.security.audit import length_prefixed

FORMAT = "tqcli-audit-checkpoint/1"
_SIGNED_TAG = FORMAT.encode() + b"\n"
# DER of an Ed25519 SubjectPublicKeyInfo before its 32 key bytes (RFC 8410), what a PEM public key holds.
_ED25519_SPKI = bytes.fromhex("302a300506032b6570032100")
_PEM_BEGIN, _PEM_END = "-----BEGIN PUBLIC KEY-----", "-----END PUBLIC KEY-----"


@dataclass
class Checkpoint:
    """The head of the chain at one moment, kept outside the database; `signature` (base64) by key `key_id`."""

    db_id: str
    seq: int
    hash: str
    time: str
    signature: str | None = None
    key_id: str | None = None

    FORMAT = FORMAT

    def signed_bytes(self) -> bytes:
        """What the signature covers: every field but the signature, length-prefixed."""
        return length_prefixed(_SIGNED_TAG, (FORMAT, self.db_id, self.seq, self.hash, self.time, self.key_id))

    def to_json(self) -> dict[str, Any]:
        """The checkpoint file's JSON object."""
        return {
            "format": FORMAT,
            "db_id": self.db_id,
            "seq": self.seq,
            "hash": self.hash,
            "time": self.time,
            "key_id": self.key_id,
            "signature": self.signature,
        }

    @classmethod
    def from_json(cls, data: Any) -> "Checkpoint":
        """Parse a checkpoint file's object; raises ValueError when it is not one."""
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise ValueError("not a tqcli audit checkpoint")
        seq, digest = data.get("seq"), data.get("hash")
        if not isinstance(seq, int) or isinstance(seq, bool) or seq < 0 or not isinstance(digest, str) or len(digest) != 64:
            raise ValueError("checkpoint has no valid seq and hash")
        if not isinstance(data.get("db_id"), str) or not isinstance(data.get("time"), str):
            raise ValueError("checkpoint has no db_id or time")
        signature, key_id = data.get("signature"), data.get("key_id")
        if not isinstance(signature, (str, type(None))) or not isinstance(key_id, (str, type(None))):
            raise ValueError("checkpoint's signature and key_id must be text or null")
        return cls(data["db_id"], seq, digest, data["time"], signature, key_id)


def sign_checkpoint(checkpoint: Checkpoint, private_key: bytes, key_id: str) -> Checkpoint:
    """`checkpoint` signed with the raw Ed25519 `private_key` whose public key has id `key_id`."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    signed = Checkpoint(checkpoint.db_id, checkpoint.seq, checkpoint.hash, checkpoint.time, None, key_id)
    signature = Ed25519PrivateKey.from_private_bytes(private_key).sign(signed.signed_bytes())
    signed.signature = base64.b64encode(signature).decode()
    return signed


def signature_problem(checkpoint: Checkpoint, public_key: bytes | None, *, required: bool = False) -> str | None:
    """Why `checkpoint`'s signature does not hold (it was edited or signed by another key), or None.

    `public_key` is the raw Ed25519 key to check with; `required` (a public
    key was given on purpose) makes an unsigned checkpoint a problem too.
    KeyProblem when the checkpoint is signed and there is no public key.
    """
    if checkpoint.signature is None:
        if checkpoint.key_id is not None:
            return f"the checkpoint names signing key {checkpoint.key_id} but carries no signature: it was edited"
        if required:
            return "the checkpoint is not signed, but a public key was given to check its signature: it is not the checkpoint 'tqcli audit checkpoint' wrote with the signing key"
        return None
    if public_key is None:
        raise KeyProblem(
            f"the checkpoint is signed (key {checkpoint.key_id}) and there is no public key to check it: "
            "give --public-key FILE (written by 'tqcli keys public') or a --key-file with the signing key"
        )
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    from tqcli.security.keys import key_id

    ours = key_id("sign", public_key)
    try:
        signature = base64.b64decode(checkpoint.signature, validate=True)
        Ed25519PublicKey.from_public_bytes(public_key).verify(signature, checkpoint.signed_bytes())
    except (InvalidSignature, binascii.Error, ValueError):
        other = f", which names key {checkpoint.key_id}" if checkpoint.key_id and checkpoint.key_id != ours else ""
        return f"the checkpoint's signature does not verify with public key {ours}{other}: it was edited or signed by another key"
    return None


def read_checkpoint(path: str | Path) -> Checkpoint:
    """Load a checkpoint file; a missing or malformed one is invalid input (exit 2)."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidInput(f"cannot read checkpoint file {path}: {getattr(exc, 'strerror', None) or exc}") from None
    try:
        return Checkpoint.from_json(json.loads(text))
    except ValueError as exc:
        raise InvalidInput(f"checkpoint file {path} is not valid: {exc}") from None


def write_checkpoint(checkpoint: Checkpoint, path: str | Path) -> None:
    """Write a checkpoint file atomically (write a temporary file, then rename)."""
    _write_atomically(path, json.dumps(checkpoint.to_json(), indent=2) + "\n", "checkpoint file", "--output head.json")


def write_public_key(path: str | Path, raw: bytes) -> None:
    """Write the raw Ed25519 public key `raw` as a PEM file (a comment line naming its id first), atomically.

    The file `tqcli keys public` writes and `audit verify --public-key` reads
    (`read_public_key`); `openssl pkey -pubin` reads it too.
    """
    from tqcli.security.keys import key_id

    if len(raw) != 32:
        raise ValueError(f"an Ed25519 public key is 32 bytes, not {len(raw)}")
    body = base64.b64encode(_ED25519_SPKI + raw).decode()
    text = (
        f"# tqcli signing key {key_id('sign', raw)} (Ed25519): checks audit checkpoints, "
        "'tqcli audit verify --checkpoint FILE --public-key THIS-FILE'\n"
        f"{_PEM_BEGIN}\n{body}\n{_PEM_END}\n"
    )
    _write_atomically(path, text, "public key file", "--output signing.pub")


def read_public_key(path: str | Path) -> bytes:
    """The raw Ed25519 public key in a file `write_public_key` wrote (or any PEM Ed25519 public key); exit 2 when it is not one."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidInput(f"cannot read public key file {path}: {getattr(exc, 'strerror', None) or exc}") from None
    start, end = text.find(_PEM_BEGIN), text.find(_PEM_END)
    der = b""
    if 0 <= start < end:
        try:
            der = base64.b64decode("".join(text[start + len(_PEM_BEGIN):end].split()), validate=True)
        except binascii.Error:
            der = b""
    if len(der) != len(_ED25519_SPKI) + 32 or not der.startswith(_ED25519_SPKI):
        raise InvalidInput(
            f"public key file {path} is not an Ed25519 public key in PEM: give the file 'tqcli keys public --output FILE' writes"
        )
    return der[len(_ED25519_SPKI):]


def _write_atomically(path: str | Path, text: str, what: str, example: str) -> None:
    from tqcli.files import write_atomically

    write_atomically(path, text, what=what, example=example)
