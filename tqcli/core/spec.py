"""What a submit asks for: one validated `TaskSpec`, however it arrived.

The same keys serve `submit` options, lines of `submit --from-file`, DAG
files and schedules, so one function checks them all and every bad value
gets the same message wherever it came from.
"""

from __future__ import annotations

import json
import os
from functools import lru_cache
from typing import Any, Mapping, Sequence

from tqcli.errors import InvalidInput
from tqcli.units import check_instant, check_name, check_seconds, parse_duration, parse_time

MAX_PAYLOAD_BYTES = 1024 * 1024
MAX_RETRIES_LIMIT = 10_000
MAX_TEXT = 65_536

SPEC_KEYS = (
    "target", "backend", "payload", "name", "queue", "tenant", "priority", "max_retries",
    "backoff", "timeout", "delay", "at", "depends_on", "service", "idempotency_key", "expires", "cwd", "env",
)
MAX_ENV_VARS = 256


@lru_cache(maxsize=4096)  # bulk submits repeat the same few targets
def is_function_path(target: str) -> bool:
    """Whether `target` reads `package.module:function` (dotted identifiers on both sides)."""
    module, colon, function = target.partition(":")
    if not colon:
        return False
    return all(part.isidentifier() for part in module.split(".")) and all(part.isidentifier() for part in function.split("."))


class TaskSpec:
    """A task to submit, with every value checked on creation; times in microseconds (UTC).

    A plain class rather than a dataclass: it sits on `tqcli submit`'s
    start-up path, where generating dataclass code costs more than it saves.
    Treat instances as immutable.
    """

    __slots__ = SPEC_KEYS + ("payload_json",)

    def __init__(
        self,
        target: str,
        *,
        backend: str = "simple",
        payload: Mapping[str, Any] | None = None,
        name: str | None = None,
        queue: str = "default",
        tenant: str = "default",
        priority: int = 0,
        max_retries: int = 3,
        backoff: float = 5.0,
        timeout: float | None = None,
        delay: float | None = None,
        at: int | None = None,
        depends_on: Sequence[int] = (),
        service: str | None = None,
        idempotency_key: str | None = None,
        expires: float | None = None,
        cwd: str | None = None,
        env: Mapping[str, str] | None = None,
    ) -> None:
        _check_text(target, "target")
        _check_text(backend, "backend", limit=64)
        if backend == "simple" and not is_function_path(target):
            raise InvalidInput(f"invalid target {target!r} for the simple backend: use package.module:function")
        if name is not None:
            _check_text(name, "name")
        check_name(queue, what="queue")
        check_name(tenant, what="tenant")
        _check_int(priority, "priority", -100, 100)
        _check_int(max_retries, "max retries", 0, MAX_RETRIES_LIMIT)
        if not isinstance(backoff, (int, float)) or isinstance(backoff, bool) or not 0 <= backoff <= 86400:
            raise InvalidInput(f"invalid backoff {backoff:g}: use 0 to 86400 seconds (1d)" if isinstance(backoff, (int, float)) and not isinstance(backoff, bool) else f"invalid backoff {backoff!r}: use a number of seconds")
        if timeout is not None:
            if not timeout > 0:
                raise InvalidInput("invalid timeout: it must be longer than 0 seconds")
            check_seconds(timeout, what="timeout")
        if delay is not None:
            check_seconds(delay, what="delay")
        if at is not None:
            check_instant(at, what="at")
        if delay is not None and at is not None:
            raise InvalidInput("use either delay or at, not both")
        for dep in depends_on:
            _check_int(dep, "dependency id", 1, 2**63 - 1)
        if service is not None:
            _check_text(service, "service", limit=256)
        if idempotency_key is not None:
            _check_text(idempotency_key, "idempotency key", limit=256)
        if expires is not None:
            if not expires > 0:
                raise InvalidInput("invalid expires: it must be longer than 0 seconds")
            check_seconds(expires, what="expires")
        if cwd is not None or env:
            if backend == "simple":  # a function runs in the worker's process: it cannot have its own
                raise InvalidInput("cwd and env apply to shell tasks (and backends that use ctx.cwd/ctx.env), not to the simple backend")
            if cwd is not None:
                _check_text(cwd, "cwd", limit=4096)
                cwd = os.path.abspath(cwd)
            env = _checked_env(env) if env else None
        payload = {} if payload is None else payload
        if not isinstance(payload, dict) and not isinstance(payload, Mapping):  # dict first: it is the fast check
            raise InvalidInput(f"invalid payload: it must be a JSON object, not {_json_type(payload)}")
        self.target = target
        self.backend = backend
        self.payload = payload
        self.payload_json = encode_payload(payload)
        self.name = name
        self.queue = queue
        self.tenant = tenant
        self.priority = priority
        self.max_retries = max_retries
        self.backoff = float(backoff)
        self.timeout = timeout
        self.delay = delay
        self.at = at
        self.depends_on = tuple(depends_on)
        self.service = service
        self.idempotency_key = idempotency_key
        self.expires = expires
        self.cwd = cwd
        self.env = env

    def __repr__(self) -> str:
        return f"TaskSpec(target={self.target!r}, backend={self.backend!r}, queue={self.queue!r})"

    @property
    def display_name(self) -> str:
        """The task's name: the given one, else the target."""
        return self.name if self.name is not None else self.target

    @property
    def service_key(self) -> str:
        """The circuit-breaker key: the given service, else `BACKEND:TARGET`."""
        return self.service if self.service is not None else f"{self.backend}:{self.target}"


def _checked_env(env: Mapping[str, Any]) -> dict[str, str]:
    """Extra environment variables for a shell task: names `[A-Za-z_][A-Za-z0-9_]*`, string values, none `TQCLI_*`."""
    if not isinstance(env, Mapping):
        raise InvalidInput(f"invalid env: use NAME=VALUE pairs (an object of strings), not {_json_type(env)}")
    if len(env) > MAX_ENV_VARS:
        raise InvalidInput(f"invalid env: more than {MAX_ENV_VARS} variables")
    for name, value in env.items():
        if not isinstance(name, str) or not name.isascii() or not (name[:1].isalpha() or name[:1] == "_") or not name.replace("_", "a").isalnum():
            raise InvalidInput(f"invalid env name {name!r}: use letters, digits and _ (A-Z a-z 0-9 _), not starting with a digit")
        if name.startswith("TQCLI_"):
            raise InvalidInput(f"invalid env name {name!r}: TQCLI_* variables are set by the worker")
        if not isinstance(value, str):
            raise InvalidInput(f"invalid env value for {name}: it must be a string")
        if "\x00" in value or len(value) > MAX_TEXT:
            raise InvalidInput(f"invalid env value for {name}: it contains a NUL character or is longer than {MAX_TEXT} characters")
    return dict(env)


def _json_type(value: Any) -> str:
    if isinstance(value, list):
        return "an array"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if value is None:
        return "null"
    return type(value).__name__


def _check_text(value: Any, what: str, limit: int = MAX_TEXT) -> None:
    if not isinstance(value, str) or not value.strip():
        raise InvalidInput(f"invalid {what}: it must be a non-empty string")
    if len(value) > limit:
        raise InvalidInput(f"invalid {what}: longer than {limit} characters")
    if "\x00" in value:
        raise InvalidInput(f"invalid {what}: it contains a NUL character")


def _check_int(value: Any, what: str, low: int, high: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise InvalidInput(f"invalid {what} {value!r}: use a whole number from {low} to {high}")


def _reject_constant(name: str) -> None:
    raise ValueError(f"{name} is not valid JSON")


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result = dict(pairs)  # in C; a key given twice leaves the dict shorter than the pairs
    if len(result) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise ValueError(f"duplicate key {key!r}")
            seen.add(key)
    return result


# Built once: json.loads/dumps with options build a new decoder/encoder on every call.
_STRICT_DECODER = json.JSONDecoder(parse_constant=_reject_constant, object_pairs_hook=_no_duplicate_keys)
_STRICT_SCAN = _STRICT_DECODER.scan_once  # what decode runs between its whitespace checks
_COMPACT_ENCODER = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def parse_json(text: str, *, what: str) -> Any:
    """Strict JSON: no NaN or Infinity, no duplicate keys; errors name line and column."""
    try:  # the decoder's C scanner alone, when no whitespace surrounds the value (a bulk line): 1 us less than decode
        value, end = _STRICT_SCAN(text, 0)
        if end == len(text):
            return value
    except (ValueError, StopIteration, RecursionError):
        pass  # decode says what is wrong
    try:
        return _STRICT_DECODER.decode(text)
    except json.JSONDecodeError as exc:
        raise InvalidInput(f"invalid JSON in {what}: {exc.msg} at line {exc.lineno} column {exc.colno}") from None
    except (ValueError, RecursionError) as exc:
        raise InvalidInput(f"invalid JSON in {what}: {exc}") from None


def parse_payload(text: str, *, what: str = "payload") -> dict[str, Any]:
    """The payload object in `text`; anything but a JSON object is refused."""
    if len(text.encode("utf-8", "surrogatepass")) > 8 * MAX_PAYLOAD_BYTES:
        raise InvalidInput(f"{what} is larger than {MAX_PAYLOAD_BYTES} bytes (1 MiB)")
    value = parse_json(text, what=what)
    if not isinstance(value, dict):
        raise InvalidInput(f"invalid {what}: it must be a JSON object, not {_json_type(value)}")
    return value


def encode_payload(payload: Mapping[str, Any]) -> str:
    """The stored (compact) form of a payload, checked against the 1 MiB limit."""
    if not payload and type(payload) is dict:
        return "{}"  # most tasks have none: skip the encoder
    try:
        text = _COMPACT_ENCODER.encode(payload)
    except (TypeError, ValueError) as exc:
        raise InvalidInput(f"invalid payload: {exc}") from None
    if len(text) > MAX_PAYLOAD_BYTES // 4 and len(text.encode("utf-8", "surrogatepass")) > MAX_PAYLOAD_BYTES:
        raise InvalidInput(f"payload is larger than {MAX_PAYLOAD_BYTES} bytes (1 MiB) once encoded")
    return text


def _as_int(value: Any, what: str) -> int:
    if isinstance(value, bool):
        raise InvalidInput(f"invalid {what} {value!r}: use a whole number")
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        text = value.strip()
        digits = text[1:] if text[:1] in ("+", "-") else text
        if digits.isascii() and digits.isdigit():
            return int(text)
    raise InvalidInput(f"invalid {what} {value!r}: use a whole number")


def _as_seconds(value: Any, what: str) -> float:
    if isinstance(value, bool):
        raise InvalidInput(f"invalid {what} {value!r}: use seconds or a duration like 30s")
    if isinstance(value, (int, float)):
        return parse_duration(repr(value), what=what)
    if isinstance(value, str):
        return parse_duration(value, what=what)
    raise InvalidInput(f"invalid {what} {value!r}: use seconds or a duration like 30s")


def _as_text(value: Any, key: str) -> str:
    if not isinstance(value, str):
        raise InvalidInput(f"invalid {key} {value!r}: it must be a string")
    return value


def _as_count(value: Any, key: str) -> int:
    return _as_int(value, key.replace("_", " "))


def _as_payload(value: Any, key: str) -> Any:
    return parse_payload(value) if isinstance(value, str) else value


def _as_instant(value: Any, key: str) -> int:
    if not isinstance(value, str):
        raise InvalidInput(f"invalid at {value!r}: use an ISO 8601 time string")
    return parse_time(value)


def _as_dependencies(value: Any, key: str) -> tuple[int, ...]:
    if isinstance(value, int) and not isinstance(value, bool):
        value = [value]
    if not isinstance(value, list):
        raise InvalidInput(f"invalid depends_on {value!r}: use a list of task ids")
    return tuple(_as_int(dep, "dependency id") for dep in value)


def _as_given(value: Any, key: str) -> Any:
    return value  # TaskSpec checks it


# How each key's loose value becomes a TaskSpec argument (target is taken apart).
_CONVERTERS = {
    "backend": _as_text, "name": _as_text, "queue": _as_text, "tenant": _as_text, "service": _as_text,
    "idempotency_key": _as_text, "cwd": _as_text, "payload": _as_payload,
    "priority": _as_count, "max_retries": _as_count,
    "backoff": _as_seconds, "timeout": _as_seconds, "delay": _as_seconds, "expires": _as_seconds,
    "at": _as_instant, "depends_on": _as_dependencies, "env": _as_given,
}
_NONE_IS_UNSET = frozenset(SPEC_KEYS) - {"priority", "max_retries", "depends_on"}  # null means "not given" for these
_KNOWN_KEYS = frozenset(SPEC_KEYS)


def spec_from_mapping(data: Mapping[str, Any], *, defaults: Mapping[str, Any] | None = None) -> TaskSpec:
    """A `TaskSpec` from loosely typed keys (bulk lines, DAG and schedule tables).

    Durations may be numbers of seconds or strings like `5m`; `at` is ISO 8601;
    `payload` may be an object or a JSON string of one. Only the keys given
    are looked at: a bulk line usually names two or three.
    """
    merged = {**defaults, **data} if defaults else data
    if not _KNOWN_KEYS.issuperset(merged):
        unknown = next(key for key in merged if key not in _KNOWN_KEYS)
        raise InvalidInput(f"unknown key {unknown!r}; known keys: {', '.join(SPEC_KEYS)}")
    if "target" not in merged:
        raise InvalidInput("missing key 'target'")
    values: dict[str, Any] = {}
    for key, value in merged.items():
        if key == "target" or (value is None and key in _NONE_IS_UNSET):
            continue
        values[key] = _CONVERTERS[key](value, key)
    target = merged["target"]
    if not isinstance(target, str):
        raise InvalidInput(f"invalid target {target!r}: it must be a string")
    return TaskSpec(target, **values)


def spec_from_object(data: Any, *, defaults: Mapping[str, Any] | None = None, encrypt: bool = False) -> tuple[TaskSpec, bool]:
    """A task object (a line of `submit --from-file`, an item of the HTTP API's submit) and whether to encrypt it.

    Its own `encrypt` key wins over `encrypt`; anything but a JSON object is refused.
    """
    if not isinstance(data, dict):
        raise InvalidInput(f"a task must be a JSON object, not {_json_type(data)}")
    fields, wanted = data, encrypt
    if "encrypt" in data:
        fields = dict(data)
        wanted = fields.pop("encrypt")
    if not isinstance(wanted, bool):
        raise InvalidInput(f"invalid encrypt {wanted!r}: use true or false")
    return spec_from_mapping(fields, defaults=defaults), wanted
