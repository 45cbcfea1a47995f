"""The key file: where it is, the checks it must pass, and what it holds.

The key file is TOML, outside the database, readable by its owner alone:

    version = 1
    [[data]]                    # AES-256-GCM data keys; one is primary
    id = "data-3f2a9c1b"
    key = "<base64 of 32 bytes>"
    primary = true
    created = "2026-12-02T10:00:00Z"
    [[audit]]                   # HMAC-SHA256 keys of the audit chain; one is primary
    id = "audit-9b1c22d0"
    key = "<base64 of 32 bytes>"
    primary = true
    created = "..."
    [signing]                   # Ed25519: private key on the auditor's host only
    id = "sign-77aa01fe"
    private_key = "<base64 of 32 bytes>"   # absent in a worker's copy
    public_key = "<base64 of 32 bytes>"

A key's id is `KIND-` and eight hex digits of a SHA-256 over the kind and the
key, so the same key has the same id in every copy of the file, and the id
says nothing usable about the key. Loading needs no `cryptography`; making
a signing key does.
"""

from __future__ import annotations

import os
import stat
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Mapping

from tqcli.errors import KeyProblem

KEY_FILE_VERSION = 1
KEY_BYTES = 32


def key_file_path(flag: str | None, configured: Path | None, env: Mapping[str, str] | None = None) -> Path:
    """The key file by SPEC's precedence: `--key-file` > `TQCLI_KEY_FILE` > `key_file` in the config file > `$XDG_CONFIG_HOME/tqcli/keys.toml`."""
    env = os.environ if env is None else env
    if flag:
        return Path(flag).expanduser()
    if env.get("TQCLI_KEY_FILE"):
        return Path(env["TQCLI_KEY_FILE"]).expanduser()
    if configured is not None:
        return configured
    base = env.get("XDG_CONFIG_HOME") or str(Path(env.get("HOME") or Path.home()) / ".config")
    return Path(base) / "tqcli" / "keys.toml"


def key_id(kind: str, key: bytes) -> str:
    """The id of a key: its kind and eight hex digits of a hash over kind and key."""
    import hashlib  # only where keys are read or made: loading OpenSSL costs every command 2.5 ms

    digest = hashlib.sha256(kind.encode() + b"\0" + key).hexdigest()
    return f"{kind}-{digest[:8]}"


def _now_text() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


class SecretKey:
    """One symmetric key (data or audit) with its id; its repr leaves the key out.

    Plain classes, not dataclasses, here and in `KeyRing`: every command
    reads the key file's place from this module, and generating dataclass
    code costs about a millisecond of start-up. Treat instances as immutable.
    """

    __slots__ = ("id", "key", "primary", "created")

    def __init__(self, id: str, key: bytes, primary: bool = False, created: str = "") -> None:
        self.id = id
        self.key = key
        self.primary = primary
        self.created = created

    def __repr__(self) -> str:
        return f"SecretKey(id={self.id!r}, primary={self.primary!r}, created={self.created!r})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, SecretKey):
            return NotImplemented
        return (self.id, self.key, self.primary, self.created) == (other.id, other.key, other.primary, other.created)

    __hash__ = None  # type: ignore[assignment]  # equal by value, and not meant as a dict key

    def demoted(self) -> "SecretKey":
        """The same key, no longer primary."""
        return SecretKey(self.id, self.key, False, self.created)


class KeyRing:
    """Everything one key file holds. Data and audit keys in file order; `signing` may be absent (a worker's copy)."""

    __slots__ = ("path", "data", "audit", "signing_id", "signing_private", "signing_public")

    def __init__(
        self,
        path: Path,
        data: tuple[SecretKey, ...] = (),
        audit: tuple[SecretKey, ...] = (),
        signing_id: str | None = None,
        signing_private: bytes | None = None,
        signing_public: bytes | None = None,
    ) -> None:
        self.path = path
        self.data = data
        self.audit = audit
        self.signing_id = signing_id
        self.signing_private = signing_private
        self.signing_public = signing_public

    def __repr__(self) -> str:
        return f"KeyRing(path={self.path!r}, data={self.data!r}, audit={self.audit!r}, signing_id={self.signing_id!r})"

    def replaced(self, **changes: Any) -> "KeyRing":
        """A copy with the fields named in `changes` set to their values (as `dataclasses.replace`)."""
        fields = {name: getattr(self, name) for name in self.__slots__}
        fields.update(changes)
        return KeyRing(**fields)

    @property
    def primary_data(self) -> SecretKey | None:
        """The data key new values are encrypted under."""
        return next((key for key in self.data if key.primary), None)

    @property
    def primary_audit(self) -> SecretKey | None:
        """The audit key new entries are linked with."""
        return next((key for key in self.audit if key.primary), None)

    def data_key(self, wanted: str) -> bytes | None:
        """The data key with id `wanted`, or None when this file lacks it."""
        return next((key.key for key in self.data if key.id == wanted), None)

    def audit_key(self, wanted: str) -> bytes | None:
        """The audit key with id `wanted`, or None when this file lacks it."""
        return next((key.key for key in self.audit if key.id == wanted), None)

    def with_new_data_key(self) -> "KeyRing":
        """This ring with a fresh primary data key; the old ones stay for reading."""
        fresh = os.urandom(KEY_BYTES)
        old = tuple(key.demoted() for key in self.data)
        return self.replaced(data=old + (SecretKey(key_id("data", fresh), fresh, True, _now_text()),))

    def without_data_key(self, retired: str) -> "KeyRing":
        """This ring without data key `retired` (never the primary one)."""
        return self.replaced(data=tuple(key for key in self.data if key.id != retired))

    def for_worker(self, path: Path) -> "KeyRing":
        """A copy for worker hosts: every key but the private signing key."""
        return self.replaced(path=path, signing_private=None)


def new_key_ring(path: Path) -> KeyRing:
    """A new ring: one data key, one audit key and an Ed25519 signing key (needs `cryptography`)."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat, PublicFormat

    data, audit = os.urandom(KEY_BYTES), os.urandom(KEY_BYTES)
    private = Ed25519PrivateKey.generate()
    private_raw = private.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())
    public_raw = private.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    now = _now_text()
    return KeyRing(
        path=path,
        data=(SecretKey(key_id("data", data), data, True, now),),
        audit=(SecretKey(key_id("audit", audit), audit, True, now),),
        signing_id=key_id("sign", public_raw),
        signing_private=private_raw,
        signing_public=public_raw,
    )


def check_key_file(path: Path) -> os.stat_result | None:
    """The key file's stat, or None when there is none; KeyProblem unless it is a regular file of ours with mode 0600 or stricter."""
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise KeyProblem(f"cannot read key file {path}: {exc.strerror}") from None
    if not stat.S_ISREG(info.st_mode):
        raise KeyProblem(f"key file {path} is not a regular file (a symlink or a directory is refused): give the file itself")
    if info.st_uid != os.geteuid():
        raise KeyProblem(f"key file {path} belongs to uid {info.st_uid}, not to you: keep your own copy ('tqcli keys export --for-worker')")
    if info.st_mode & 0o077:
        raise KeyProblem(
            f"key file {path} can be read by others (mode {stat.S_IMODE(info.st_mode):04o}): run 'chmod 600 {path}'"
        )
    return info


def load_key_file(path: Path) -> KeyRing | None:
    """The key ring in `path`, or None when the file does not exist; KeyProblem when it is unsafe or not a key file."""
    if check_key_file(path) is None:
        return None
    import tomllib  # only when a key file exists: it costs start-up time

    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise KeyProblem(f"key file {path} is not a tqcli key file ({exc}): restore it from your backup") from None
    return _parse(path, raw)


def _parse(path: Path, raw: dict[str, Any]) -> KeyRing:
    import base64

    def bad(what: str) -> KeyProblem:
        return KeyProblem(f"key file {path} is damaged: {what}; restore it from your backup")

    if raw.get("version") != KEY_FILE_VERSION:
        raise bad(f"version {raw.get('version')!r} is not {KEY_FILE_VERSION}")

    def secret(text: Any, what: str) -> bytes:
        try:
            value = base64.b64decode(str(text), validate=True)
        except ValueError:
            raise bad(f"{what} is not base64") from None
        if len(value) != KEY_BYTES:
            raise bad(f"{what} is {len(value)} bytes, not {KEY_BYTES}")
        return value

    def keys(kind: str) -> tuple[SecretKey, ...]:
        found = []
        for index, entry in enumerate(raw.get(kind, [])):
            if not isinstance(entry, dict):
                raise bad(f"[[{kind}]] entry {index + 1} is not a table")
            value = secret(entry.get("key"), f"[[{kind}]] entry {index + 1}'s key")
            if entry.get("id") != key_id(kind, value):
                raise bad(f"[[{kind}]] entry {index + 1}'s id {entry.get('id')!r} does not match its key")
            found.append(SecretKey(entry["id"], value, bool(entry.get("primary")), str(entry.get("created", ""))))
        if found and sum(key.primary for key in found) != 1:
            raise bad(f"[[{kind}]] must have exactly one primary key")
        return tuple(found)

    signing = raw.get("signing") or {}
    public = secret(signing["public_key"], "[signing] public_key") if "public_key" in signing else None
    private = secret(signing["private_key"], "[signing] private_key") if "private_key" in signing else None
    if private is not None and public is None:
        raise bad("[signing] has a private key without its public_key")
    return KeyRing(
        path=path,
        data=keys("data"),
        audit=keys("audit"),
        signing_id=key_id("sign", public) if public is not None else None,
        signing_private=private,
        signing_public=public,
    )


def _document(ring: KeyRing) -> dict[str, Any]:
    import base64

    def entries(keys: tuple[SecretKey, ...]) -> list[dict[str, Any]]:
        return [
            {"id": key.id, "key": base64.b64encode(key.key).decode(), "primary": key.primary, "created": key.created}
            for key in keys
        ]

    doc: dict[str, Any] = {"version": KEY_FILE_VERSION, "data": entries(ring.data), "audit": entries(ring.audit)}
    if ring.signing_public is not None:
        doc["signing"] = {"id": ring.signing_id, "public_key": base64.b64encode(ring.signing_public).decode()}
        if ring.signing_private is not None:
            doc["signing"]["private_key"] = base64.b64encode(ring.signing_private).decode()
    return doc


_HEADER = (
    "# tqcli key file: keep it secret, mode 0600. Losing it loses every encrypted value\n"
    "# and the means to extend the audit chain: keep a backup somewhere safe.\n"
)


def write_key_file(ring: KeyRing, *, replace_existing: bool = False) -> None:
    """Write `ring` to `ring.path` with mode 0600: a new file (Conflict-free: FileExistsError when one is there), or atomically over the old one."""
    import tomli_w

    text = _HEADER + tomli_w.dumps(_document(ring))
    path = ring.path
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    target = path.with_name(f".{path.name}.{os.getpid()}.tmp") if replace_existing else path
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(text)
            out.flush()
            os.fsync(out.fileno())
        if replace_existing:
            os.replace(target, path)
    except BaseException:
        if replace_existing:
            target.unlink(missing_ok=True)
        else:
            path.unlink(missing_ok=True)
        raise
