"""Local settings and path resolution, with one documented precedence.

- Config file: `--config` > `TQCLI_CONFIG` > `./tqcli.toml` > `$XDG_CONFIG_HOME/tqcli/config.toml`.
- Database: `--db` > `TQCLI_DB` > `db` in the config file > `$XDG_DATA_HOME/tqcli/tqcli.db`.
  A relative `db` in a config file is relative to that file's folder.

The config file holds what is local to one machine; everything shared lives
in the database.
"""

from __future__ import annotations

import os
import pwd
import re
from pathlib import Path
from typing import Any, Mapping

from tqcli.errors import InvalidInput
from tqcli.units import parse_duration

DEFAULT_BUSY_TIMEOUT = 10.0
DEFAULT_OUTPUT_LIMIT = 1024 * 1024  # bytes of output kept per attempt (`tqcli logs`)
_SIZE_UNITS = {"": 1, "b": 1, "k": 1024, "kb": 1000, "kib": 1024, "m": 1024**2, "mb": 1000**2, "mib": 1024**2, "g": 1024**3, "gb": 1000**3, "gib": 1024**3}
SYNCHRONOUS_MODES = ("normal", "full")


# Plain classes rather than dataclasses: they are on every command's start-up path.


class WorkerDefaults:
    """Defaults for `tqcli worker` that a machine's config file may change."""

    __slots__ = ("concurrency", "lease", "poll", "grace")

    def __init__(self, concurrency: int = 1, lease: float = 60.0, poll: float = 1.0, grace: float = 30.0) -> None:
        self.concurrency = concurrency
        self.lease = lease
        self.poll = poll
        self.grace = grace


class Config:
    """Resolved local settings: where the database is and how to open it."""

    __slots__ = ("db", "config_file", "busy_timeout", "synchronous", "worker", "key_file", "output_limit")

    def __init__(
        self,
        db: Path | str,
        config_file: Path | None = None,
        busy_timeout: float = DEFAULT_BUSY_TIMEOUT,
        synchronous: str = "normal",
        worker: WorkerDefaults | None = None,
        key_file: Path | None = None,
        output_limit: int = DEFAULT_OUTPUT_LIMIT,
    ) -> None:
        self.db = db
        self.config_file = config_file
        self.busy_timeout = busy_timeout
        self.synchronous = synchronous
        self.worker = worker or WorkerDefaults()
        self.key_file = key_file
        self.output_limit = output_limit

    def with_db(self, db: Path | str) -> "Config":
        """The same settings for another database (a file path, or a PostgreSQL URL as a str)."""
        return Config(db, self.config_file, self.busy_timeout, self.synchronous, self.worker, self.key_file, self.output_limit)


def db_location(value: str) -> Path | str:
    """A `--db` value as the store takes it: a PostgreSQL URL stays text, a file path becomes a Path.

    Anything else written as `scheme://...` is refused rather than taken
    for a file name (a mistyped `postgresql://` would make a SQLite file).
    """
    from tqcli.store import is_url

    if is_url(value):
        return value
    scheme = re.match(r"[A-Za-z][A-Za-z0-9+.-]*://", value)
    if scheme:
        shown = scheme.group() + value.rsplit("@", 1)[-1] if "@" in value else value  # never the password
        raise InvalidInput(
            f"invalid database {shown}: a URL must start with postgresql:// (or postgres://), and a file path has no scheme"
        )
    return Path(value).expanduser()


def _xdg(var: str, fallback: str, env: Mapping[str, str]) -> Path:
    value = env.get(var)
    if value and os.path.isabs(value):
        return Path(value)
    return Path(env.get("HOME") or os.path.expanduser("~")) / fallback


def default_db_path(env: Mapping[str, str] | None = None) -> Path:
    """`$XDG_DATA_HOME/tqcli/tqcli.db` (default `~/.local/share/tqcli/tqcli.db`)."""
    env = os.environ if env is None else env
    return _xdg("XDG_DATA_HOME", ".local/share", env) / "tqcli" / "tqcli.db"


def find_config_file(flag: str | None, env: Mapping[str, str], cwd: Path) -> Path | None:
    """The config file to read, or None; a file named by flag or env must exist."""
    for named, source in ((flag, "--config"), (env.get("TQCLI_CONFIG"), "TQCLI_CONFIG")):
        if named:
            path = Path(named).expanduser()
            if not path.is_file():
                raise InvalidInput(f"config file {named} (from {source}) does not exist or is not a file")
            return path
    for candidate in (cwd / "tqcli.toml", _xdg("XDG_CONFIG_HOME", ".config", env) / "tqcli" / "config.toml"):
        if candidate.is_file():
            return candidate
    return None


def _read_toml(path: Path) -> dict[str, Any]:
    import tomllib  # only when a config file exists: it costs start-up time

    try:
        with open(path, "rb") as handle:
            return tomllib.load(handle)
    except tomllib.TOMLDecodeError as exc:
        raise InvalidInput(f"malformed config file {path}: {exc}") from None
    except OSError as exc:
        raise InvalidInput(f"cannot read config file {path}: {exc.strerror}") from None


_TOP_KEYS = {"db", "busy_timeout", "synchronous", "worker", "key_file", "output_limit"}
_WORKER_KEYS = {"concurrency", "lease", "poll", "grace"}


def _output_limit(raw: Any, path: Path) -> int:
    """`output_limit` of the config file: bytes, as an integer or a string with a unit (`512KiB`, `2MiB`); 0 keeps no output."""
    if isinstance(raw, int) and not isinstance(raw, bool):
        value = raw
    else:
        match = re.fullmatch(r"\s*(\d+)\s*([A-Za-z]*)\s*", raw) if isinstance(raw, str) else None
        unit = match.group(2).lower() if match else None
        if match is None or unit not in _SIZE_UNITS:
            raise InvalidInput(f"config file {path}: output_limit must be a number of bytes, such as 1048576 or \"1MiB\", not {raw!r}")
        value = int(match.group(1)) * _SIZE_UNITS[unit]
    if not 0 <= value <= 1024**3:
        raise InvalidInput(f"config file {path}: output_limit must be between 0 (keep no output) and 1GiB, not {raw!r}")
    return value


def _worker_defaults(raw: Any, path: Path) -> WorkerDefaults:
    if not isinstance(raw, dict):
        raise InvalidInput(f"config file {path}: [worker] must be a table")
    unknown = set(raw) - _WORKER_KEYS
    if unknown:
        raise InvalidInput(
            f"config file {path}: unknown key {sorted(unknown)[0]!r} in [worker]; known: {', '.join(sorted(_WORKER_KEYS))}"
        )
    values: dict[str, Any] = {}
    if "concurrency" in raw:
        concurrency = raw["concurrency"]
        if not isinstance(concurrency, int) or isinstance(concurrency, bool) or concurrency < 1:
            raise InvalidInput(f"config file {path}: worker.concurrency must be a positive integer")
        values["concurrency"] = concurrency
    for key in ("lease", "poll", "grace"):
        if key in raw:
            values[key] = parse_duration(str(raw[key]), what=f"worker.{key} in {path}")
    return WorkerDefaults(**values)


def load_config(
    *,
    db_flag: str | None = None,
    config_flag: str | None = None,
    key_file_flag: str | None = None,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
) -> Config:
    """Resolve the database path and local settings by the documented precedence."""
    env = os.environ if env is None else env
    cwd = Path.cwd() if cwd is None else cwd
    for flag, value, what in (
        ("--db", db_flag, "a file path or a postgresql:// URL"), ("--config", config_flag, "a file path"), ("--key-file", key_file_flag, "a file path"),
    ):
        if value is not None and not value.strip():
            raise InvalidInput(f"{flag} is empty: give {what}, or leave the option out for the default")
    config_file = find_config_file(config_flag, env, cwd)
    raw: dict[str, Any] = _read_toml(config_file) if config_file else {}
    if config_file:
        unknown = set(raw) - _TOP_KEYS
        if unknown:
            raise InvalidInput(
                f"config file {config_file}: unknown key {sorted(unknown)[0]!r}; known: {', '.join(sorted(_TOP_KEYS))}"
            )

    def file_path(key: str) -> Path | str | None:
        if key not in raw:
            return None
        if not isinstance(raw[key], str) or not raw[key]:
            raise InvalidInput(f"config file {config_file}: {key} must be a non-empty string")
        location = db_location(raw[key])
        if isinstance(location, str) or location.is_absolute():
            return location
        return config_file.parent / location  # type: ignore[union-attr]

    db_value = db_flag or env.get("TQCLI_DB")
    db = db_location(db_value) if db_value else (file_path("db") or default_db_path(env))

    busy_timeout = DEFAULT_BUSY_TIMEOUT
    if "busy_timeout" in raw:
        busy_timeout = parse_duration(str(raw["busy_timeout"]), what=f"busy_timeout in {config_file}")
    synchronous = raw.get("synchronous", "normal")
    if synchronous not in SYNCHRONOUS_MODES:
        raise InvalidInput(f"config file {config_file}: synchronous must be 'normal' or 'full', not {synchronous!r}")
    worker = _worker_defaults(raw["worker"], config_file) if "worker" in raw else WorkerDefaults()  # type: ignore[arg-type]
    configured_keys = file_path("key_file")
    if isinstance(configured_keys, str):
        raise InvalidInput(f"config file {config_file}: key_file must be a file path, not a URL")
    from tqcli.security.keys import key_file_path

    output_limit = _output_limit(raw["output_limit"], config_file) if "output_limit" in raw else DEFAULT_OUTPUT_LIMIT  # type: ignore[arg-type]
    return Config(
        db=db,
        config_file=config_file,
        busy_timeout=busy_timeout,
        synchronous=synchronous,
        worker=worker,
        key_file=key_file_path(key_file_flag, configured_keys, env),
        output_limit=output_limit,
    )


def login_name() -> str:
    """The login name of the process's effective user (never taken from $USER)."""
    uid = os.geteuid()
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return f"uid{uid}"
