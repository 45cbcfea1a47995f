"""`apply` and `export`: the queues, tenants, schedules and breakers of a database as one TOML file.

A file declares objects, each a table (`[queues.etl]`, `[tenants.acme]`,
`[schedules.nightly]`, `[breakers."simple:etl.jobs:sync"]`, and the
breakers' defaults `[breaker_defaults]`). A declared table is the whole
truth about its object: a key it leaves out takes its default (no limit,
weight 1, no rate, UTC, not paused, the breaker default). What the file
does not declare is left alone, unless `prune`: then undeclared queues and
tenants go back to the defaults (their settings rows are deleted),
undeclared schedules are removed, undeclared circuits lose their own
threshold and timeout (they follow the defaults), and the breaker defaults
go back to the built-in ones.

`load_settings` reads and checks a whole file before anything is written;
`apply_settings` makes the database match it inside the caller's
transaction and journals one `settings.apply` entry whose details are the
difference (see `apply_settings`), or none when nothing changed. `export`
writes the file that declares what is stored, so `export | apply -`
changes nothing.
"""

from __future__ import annotations

import difflib
import json
import re
from dataclasses import dataclass, field
from typing import Any, Mapping, NoReturn

from tqcli.core.context import Context, retrying
from tqcli.core.spec import SPEC_KEYS, spec_from_mapping
from tqcli.errors import InvalidInput
from tqcli.resilience.breakers import change_breaker, check_breaker_settings
from tqcli.resilience.circuit_breaker import DEFAULT_FAILURE_THRESHOLD, DEFAULT_RECOVERY_TIMEOUT, defaults
from tqcli.scheduler.schedules import NOT_FOR_SCHEDULES, Schedule, change_schedule, create_schedule, set_schedule_paused
from tqcli.security.audit import Journal
from tqcli.security.rbac import Grant
from tqcli.security.roles import check_grant, replace_grants
from tqcli.store.base import Tx
from tqcli.tenancy.settings import change_queue, change_tenant, check_limit, check_weight, queue_settings, tenant_settings
from tqcli.tenancy.limits import parse_rate
from tqcli.units import check_name, format_duration, parse_duration

SECTIONS = ("queues", "tenants", "schedules", "breaker_defaults", "breakers")
QUEUE_DEFAULTS: dict[str, Any] = {"max_length": 0, "max_running": 0, "paused": False}
TENANT_DEFAULTS: dict[str, Any] = {"max_pending": 0, "max_running": 0, "rate": None, "weight": 1.0}
BREAKER_KEYS = ("failure_threshold", "recovery_timeout")
BUILT_IN_BREAKER_DEFAULTS: dict[str, Any] = {"failure_threshold": DEFAULT_FAILURE_THRESHOLD, "recovery_timeout": DEFAULT_RECOVERY_TIMEOUT}
SCHEDULE_KEYS = ("cron", "tz", "catchup", "paused")
SCHEDULE_OPTIONS = tuple(key for key in SPEC_KEYS if key not in NOT_FOR_SCHEDULES)
_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")
_TOML_INT = range(-(2**63), 2**63)


@dataclass(frozen=True)
class DeclaredSchedule:
    """A schedule as a settings file declares it; `options` are its submit keys (target, payload, queue, ...)."""

    cron: str
    tz: str
    catchup: bool
    paused: bool
    options: dict[str, Any]


@dataclass(frozen=True)
class Settings:
    """What a settings file declares, every value checked; `source` names the file in messages and the audit entry.

    Queues and tenants map to the keyword arguments of `change_queue` and
    `change_tenant`; breakers to their own `failure_threshold` (int) and
    `recovery_timeout` (seconds), None where the file leaves one out;
    `breaker_defaults` is None when the file has no `[breaker_defaults]`.
    """

    source: str
    queues: dict[str, dict[str, Any]] = field(default_factory=dict)
    tenants: dict[str, dict[str, Any]] = field(default_factory=dict)
    schedules: dict[str, DeclaredSchedule] = field(default_factory=dict)
    breakers: dict[str, dict[str, Any]] = field(default_factory=dict)
    breaker_defaults: dict[str, Any] | None = None
    roles: tuple[Grant, ...] | None = None  # None: the file has no [[roles]], so apply leaves the grants alone

    def declares_nothing(self) -> bool:
        """Whether the file declares no object at all."""
        return not (self.queues or self.tenants or self.schedules or self.breakers or self.roles) and self.breaker_defaults is None


@dataclass
class ApplyReport:
    """What an apply changed: `diff` as in the `settings.apply` entry (empty: nothing changed, nothing audited)."""

    source: str
    prune: bool
    diff: dict[str, Any]

    @property
    def changed(self) -> bool:
        """Whether anything changed."""
        return bool(self.diff)


class _RolledBack(Exception):
    """Ends a dry run's transaction without committing it, carrying what it would have changed."""

    def __init__(self, diff: dict[str, Any]) -> None:
        super().__init__("dry run")
        self.diff = diff


class SettingsService:
    """`apply` and `export`."""

    def __init__(self, ctx: Context) -> None:
        self._ctx = ctx

    @retrying
    def apply(self, settings: Settings, *, prune: bool = False, dry_run: bool = False) -> ApplyReport:
        """Make the database declare what `settings` do, in one transaction with one audit entry (see `apply_settings`).

        With `prune`, a file that declares nothing is refused (InvalidInput):
        it would remove every setting, which an empty pipe does by mistake.
        `dry_run` reports what would change and changes nothing: the same
        transaction, rolled back.
        """
        if dry_run:
            try:
                with self._ctx.change() as (tx, journal):
                    raise _RolledBack(apply_settings(self._ctx, tx, journal, settings, prune=prune))
            except _RolledBack as done:
                return ApplyReport(settings.source, prune, done.diff)
        if prune and settings.declares_nothing():
            raise InvalidInput(
                f"{settings.source} declares nothing, so --prune would remove every queue, tenant, schedule and breaker setting: "
                "nothing was changed (was the export before it empty or failed?); declare what to keep, or remove them one by one"
            )
        with self._ctx.change() as (tx, journal):
            return ApplyReport(settings.source, prune, apply_settings(self._ctx, tx, journal, settings, prune=prune))

    def export(self) -> dict[str, Any]:
        """The settings stored, as the document a settings file holds (only what differs from the defaults)."""
        with self._ctx.read() as tx:
            self._ctx.authorize(tx, "audit", "export the settings")
            return export_settings(tx)

    def export_toml(self) -> str:
        """`export` as TOML text that `apply` takes."""
        import tomli_w

        document = _toml_safe_document(self.export())
        roles = document.pop("roles", [])
        text = tomli_w.dumps(document)
        # Written as [[roles]] tables, as SPEC shows them (tomli_w would inline such small tables).
        blocks = ["[[roles]]\n" + tomli_w.dumps(grant) for grant in roles]
        return "\n".join(part for part in (text.rstrip("\n"), *blocks) if part).rstrip("\n") + "\n" if (text or blocks) else ""


# -- reading and checking a file ------------------------------------------------------


def load_settings(text: str, source: str) -> Settings:
    """Parse and check a settings file's text; InvalidInput (exit 2) naming `source`, the table and the key otherwise."""
    import tomllib

    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise InvalidInput(f"{source}: malformed TOML: {exc}") from None
    return parse_settings(data, source)


def parse_settings(data: Mapping[str, Any], source: str) -> Settings:
    """Check a settings document (a parsed TOML file) and every value in it."""
    reader = _Reader(source)
    for key, value in data.items():
        if key == "roles":
            continue
        if key not in SECTIONS:
            tables = f"a settings file has the tables {_listed(SECTIONS)}" + _did_you_mean(key, SECTIONS)
            if isinstance(value, (dict, list)):
                reader.fail(f"[{_toml_key(key)}]", None, f"unknown table; {tables}")
            reader.fail("", key, f"unknown key; {tables}")
        if not isinstance(value, dict):
            shown = f"[[{key}]]" if isinstance(value, list) else key
            hint = "[breaker_defaults]" if key == "breaker_defaults" else f"[{key}.NAME]"
            reader.fail(shown, None, f"not a table: write {hint}")
    defaults_table = data.get("breaker_defaults")
    return Settings(
        source=source,
        queues={name: reader.queue(name, table) for name, table in reader.tables(data, "queues")},
        tenants={name: reader.tenant(name, table) for name, table in reader.tables(data, "tenants")},
        schedules={name: reader.schedule(name, table) for name, table in reader.tables(data, "schedules")},
        breakers={key: reader.breaker("breakers", key, table) for key, table in reader.tables(data, "breakers")},
        breaker_defaults=None if defaults_table is None else reader.breaker(None, None, defaults_table),
        roles=reader.roles(data["roles"]) if "roles" in data else None,
    )


class _Reader:
    """Checks the tables of one file; every error names the file, the table and the key."""

    def __init__(self, source: str) -> None:
        self.source = source

    def fail(self, where: str, key: str | None, message: str) -> NoReturn:
        place = " ".join(part for part in (where, key) if part)
        raise InvalidInput(f"{self.source}: {place}: {message}" if place else f"{self.source}: {message}")

    def check(self, where: str, key: str | None, check: Any) -> Any:
        """The value `check()` returns; its InvalidInput, said at `where` and `key`."""
        try:
            return check()
        except InvalidInput as exc:
            self.fail(where, key, exc.message)

    def tables(self, data: Mapping[str, Any], section: str) -> list[tuple[str, dict[str, Any]]]:
        found = []
        for name, table in data.get(section, {}).items():
            if not isinstance(table, dict):
                self.fail(f"[{section}]", name, f"not a table: write [{section}.{_toml_key(name)}] with its settings below it")
            found.append((name, table))
        return found

    def known_keys(self, where: str, table: Mapping[str, Any], keys: tuple[str, ...], what: str, section: str, name: str) -> None:
        for key, value in table.items():
            if key in keys:
                continue
            if isinstance(value, dict):
                self.fail(where, key, f"is a table, not a setting: a {what} name with a dot is quoted, [{section}.\"{name}.{key}\"]")
            self.fail(where, key, f"unknown key; a {what} takes {_listed(keys)}" + _did_you_mean(key, keys))

    def flag(self, where: str, key: str, value: Any) -> bool:
        if not isinstance(value, bool):
            self.fail(where, key, f"invalid {key} {_shown(value)}: use true or false")
        return value

    def queue(self, name: str, table: Mapping[str, Any]) -> dict[str, Any]:
        where = _header("queues", name)
        self.check(where, None, lambda: check_name(name, what="queue"))
        if "encrypt" in table:
            self.fail(where, "encrypt", "apply does not set a queue's encryption: remove the key and run 'tqcli queue set Q --encrypt'")
        self.known_keys(where, table, tuple(QUEUE_DEFAULTS), "queue", "queues", name)
        wanted = dict(QUEUE_DEFAULTS)
        for key in ("max_length", "max_running"):
            if key in table:
                wanted[key] = self.check(where, key, lambda: check_limit(table[key], what=key.replace("_", "-")))
        if "paused" in table:
            wanted["paused"] = self.flag(where, "paused", table["paused"])
        return wanted

    def tenant(self, name: str, table: Mapping[str, Any]) -> dict[str, Any]:
        where = _header("tenants", name)
        self.check(where, None, lambda: check_name(name, what="tenant"))
        self.known_keys(where, table, tuple(TENANT_DEFAULTS), "tenant", "tenants", name)
        wanted = dict(TENANT_DEFAULTS)
        for key in ("max_pending", "max_running"):
            if key in table:
                wanted[key] = self.check(where, key, lambda: check_limit(table[key], what=key.replace("_", "-")))
        if "weight" in table:
            wanted["weight"] = self.check(where, "weight", lambda: check_weight(table["weight"]))
        if "rate" in table:
            rate = table["rate"]
            if not isinstance(rate, str):
                self.fail(where, "rate", f"invalid rate {_shown(rate)}: give a string N/PERIOD with PERIOD s, m or h (e.g. \"100/m\"), or \"none\"")
            wanted["rate"] = None if self.check(where, "rate", lambda: parse_rate(rate)) is None else rate.strip()
        return wanted

    def breaker(self, section: str | None, key: str | None, table: Mapping[str, Any]) -> dict[str, Any]:
        where = "[breaker_defaults]" if section is None else _header(section, str(key))
        if key is not None and (not key.strip() or len(key) > 256):
            self.fail(where, None, "invalid service key: use 1-256 characters")
        self.known_keys(where, table, BREAKER_KEYS, "breaker", "breakers", str(key))
        wanted: dict[str, Any] = dict.fromkeys(BREAKER_KEYS)
        if "failure_threshold" in table:
            value = table["failure_threshold"]
            self.check(where, "failure_threshold", lambda: check_breaker_settings(value, None))
            wanted["failure_threshold"] = value
        if "recovery_timeout" in table:
            value = table["recovery_timeout"]
            if isinstance(value, bool) or not isinstance(value, (str, int, float)):
                self.fail(where, "recovery_timeout", f"invalid recovery timeout {_shown(value)}: use a duration such as \"30s\" or \"1m\"")
            wanted["recovery_timeout"] = self.check(where, "recovery_timeout", lambda: check_breaker_settings(None, value))
        return wanted

    def roles(self, entries: Any) -> tuple[Grant, ...]:
        """The `[[roles]]` array: tables of `user`, `role` and (for one tenant only) `tenant`."""
        if not isinstance(entries, list):
            self.fail("roles", None, 'not an array of tables: write [[roles]] with user = "alice" and role = "admin"')
        grants = []
        for number, table in enumerate(entries, start=1):
            where = f"[[roles]] #{number}"
            if not isinstance(table, dict):
                self.fail(where, None, 'not a table: write [[roles]] with user = "alice" and role = "admin"')
            unknown = sorted(set(table) - {"user", "role", "tenant"})
            if unknown:
                self.fail(where, unknown[0], f"unknown key; a role has user, role and tenant{_did_you_mean(unknown[0], ('user', 'role', 'tenant'))}")
            for required in ("user", "role"):
                if not isinstance(table.get(required), str):
                    self.fail(where, required, "missing or not a string")
            tenant = table.get("tenant")
            if tenant is not None and not isinstance(tenant, str):
                self.fail(where, "tenant", "not a string")
            grants.append(self.check(where, None, lambda: check_grant(table["user"], table["role"], tenant)))
        return tuple(grants)

    def schedule(self, name: str, table: Mapping[str, Any]) -> DeclaredSchedule:
        from tqcli.core.submission import check_backends
        from tqcli.scheduler.cron import CronSchedule, check_zone

        where = _header("schedules", name)
        self.check(where, None, lambda: check_name(name, what="schedule"))
        for key in table:
            if key in NOT_FOR_SCHEDULES:
                self.fail(where, key, f"a schedule cannot set {key}: {NOT_FOR_SCHEDULES[key]}")
        self.known_keys(where, table, SCHEDULE_KEYS + SCHEDULE_OPTIONS, "schedule", "schedules", name)
        for key in ("cron", "target"):
            if key not in table:
                self.fail(where, None, f"missing key {key}")
        for key in ("cron", "tz"):
            if key in table and not isinstance(table[key], str):
                self.fail(where, key, f"invalid {key} {_shown(table[key])}: it must be a string")
        cron, tz = table["cron"], table.get("tz", "UTC")
        catchup = self.flag(where, "catchup", table["catchup"]) if "catchup" in table else False
        paused = self.flag(where, "paused", table["paused"]) if "paused" in table else False
        options = {key: value for key, value in table.items() if key not in SCHEDULE_KEYS}
        # One key at a time, each with those it depends on (the target and cwd/env need the backend), so an error names its key.
        checked: dict[str, Any] = {}
        for key in sorted(options, key=lambda k: (k != "backend", k != "target")):
            checked[key] = options[key]
            self.check(where, key, lambda: spec_from_mapping({"target": "tqcli.check:target", **checked, "name": name}))
        spec = spec_from_mapping({**options, "name": name})
        self.check(where, "backend", lambda: check_backends([spec]))
        self.check(where, "tz", lambda: check_zone(tz))
        self.check(where, "cron", lambda: CronSchedule(cron, tz))
        return DeclaredSchedule(cron, tz, catchup, paused, options)


# -- applying -------------------------------------------------------------------------


def apply_settings(ctx: Context, tx: Tx, journal: Journal, settings: Settings, *, prune: bool = False) -> dict[str, Any]:
    """Make the database declare what `settings` do, inside the caller's transaction; the difference (empty: nothing changed).

    The difference has a section per kind that changed: `queues`, `tenants`,
    `breakers` and `breaker_defaults` map each name to `{FIELD: {"from",
    "to"}}` (a breaker's None is "inherits the default"); `schedules` maps
    each name to `"added"`, `"removed"` or `{FIELD: {"from", "to"}}`. It is
    journaled as one `settings.apply` entry with `file` and `prune` beside
    those sections; nothing is journaled when it is empty.
    """
    ctx.authorize(tx, "admin", f"apply settings from {settings.source}")
    diff: dict[str, Any] = {}
    sections = (
        ("queues", _apply_queues(tx, settings, prune)),
        ("tenants", _apply_tenants(tx, settings, prune)),
        ("schedules", _apply_schedules(ctx, tx, settings, prune)),
        ("breaker_defaults", _apply_breaker_defaults(ctx, tx, settings, prune)),
        ("breakers", _apply_breakers(ctx, tx, settings, prune)),
    )
    for section, changes in sections:
        if changes:
            diff[section] = changes
    if settings.roles is not None:
        roles = replace_grants(ctx, tx, list(settings.roles), prune=prune, source=settings.source)
        if roles:
            diff["roles"] = roles
    if diff:
        journal.add("settings.apply", None, None, file=settings.source, prune=prune, **diff)
    return diff


def _apply_queues(tx: Tx, settings: Settings, prune: bool) -> dict[str, Any]:
    changes = {name: change_queue(tx, name, **wanted) for name, wanted in settings.queues.items()}
    if prune:
        for row in tx.queue_rows():
            if row.name not in settings.queues:
                changes[row.name] = change_queue(tx, row.name, **QUEUE_DEFAULTS)
                if changes[row.name] and not row.encrypt:  # an encrypted queue keeps its row: apply does not manage encryption
                    tx.delete_queue(row.name)
    return {name: diff for name, diff in changes.items() if diff}


def _apply_tenants(tx: Tx, settings: Settings, prune: bool) -> dict[str, Any]:
    changes = {name: change_tenant(tx, name, **wanted) for name, wanted in settings.tenants.items()}
    if prune:
        for row in tx.tenant_rows():
            if row.name not in settings.tenants:
                changes[row.name] = change_tenant(tx, row.name, **TENANT_DEFAULTS)
                if changes[row.name]:
                    tx.delete_tenant(row.name)
    return {name: diff for name, diff in changes.items() if diff}


def _apply_schedules(ctx: Context, tx: Tx, settings: Settings, prune: bool) -> dict[str, Any]:
    stored = {row.name for row in tx.schedule_rows()}
    changes: dict[str, Any] = {}
    for name, declared in settings.schedules.items():
        if name not in stored:
            create_schedule(ctx, tx, name, cron=declared.cron, tz=declared.tz, catchup=declared.catchup, options=declared.options)
            if declared.paused:
                set_schedule_paused(ctx, tx, name, True)
            changes[name] = "added"
            continue
        _, diff = change_schedule(ctx, tx, name, cron=declared.cron, tz=declared.tz, catchup=declared.catchup,
                                  options=declared.options, replace=True)
        if set_schedule_paused(ctx, tx, name, declared.paused):
            diff = {**diff, "paused": {"from": not declared.paused, "to": declared.paused}}
        if diff:
            changes[name] = diff
    if prune:
        for name in sorted(stored - set(settings.schedules)):
            tx.delete_schedule(name)
            changes[name] = "removed"
    return changes


def _apply_breaker_defaults(ctx: Context, tx: Tx, settings: Settings, prune: bool) -> dict[str, Any]:
    if settings.breaker_defaults is None and not prune:
        return {}
    declared = settings.breaker_defaults or {}
    wanted = {key: BUILT_IN_BREAKER_DEFAULTS[key] if declared.get(key) is None else declared[key] for key in BREAKER_KEYS}
    return change_breaker(ctx, tx, None, **wanted)


def _apply_breakers(ctx: Context, tx: Tx, settings: Settings, prune: bool) -> dict[str, Any]:
    changes: dict[str, Any] = _unpin_breakers(tx, settings, prune)
    for key, wanted in settings.breakers.items():
        if any(value is not None for value in wanted.values()):
            diff = change_breaker(ctx, tx, key, **wanted)
            if diff:
                changes[key] = {**changes.get(key, {}), **diff}
    return changes


def _unpin_breakers(tx: Tx, settings: Settings, prune: bool) -> dict[str, Any]:
    """Take away the circuits' own settings the file leaves out (of undeclared circuits only with `prune`): they follow the defaults again."""
    changes: dict[str, Any] = {}
    for row in tx.breaker_rows():
        wanted = settings.breakers.get(row.key)
        if wanted is None and not prune:
            continue
        own = dict(zip(BREAKER_KEYS, (row.failure_threshold, row.recovery_timeout)))
        dropped = [name for name, value in own.items() if value is not None and (wanted is None or wanted[name] is None)]
        if not dropped:
            continue
        tx.clear_breaker_settings(row.key, failure_threshold="failure_threshold" in dropped, recovery_timeout="recovery_timeout" in dropped)
        if "recovery_timeout" in dropped:  # an open circuit now waits the default time from when it opened
            tx.reschedule_open_breakers(row.key, defaults(tx)[1])
        changes[row.key] = {name: {"from": own[name], "to": None} for name in dropped}
    return changes


# -- exporting ------------------------------------------------------------------------


def export_settings(tx: Tx) -> dict[str, Any]:
    """The settings stored, as a settings document: each object with the keys that differ from their defaults."""
    document: dict[str, Any] = {}
    queues = {row.name: _differing(queue_settings(row), QUEUE_DEFAULTS) for row in tx.queue_rows()}
    tenants = {row.name: _differing(tenant_settings(row), TENANT_DEFAULTS) for row in tx.tenant_rows()}
    for table in tenants.values():
        if "weight" in table and float(table["weight"]).is_integer():
            table["weight"] = int(table["weight"])
    schedules = {row.name: _schedule_table(Schedule.from_row(row)) for row in tx.schedule_rows()}
    threshold, recovery = defaults(tx)
    breaker_defaults = _differing({"failure_threshold": threshold, "recovery_timeout": recovery}, BUILT_IN_BREAKER_DEFAULTS)
    breakers = {
        row.key: {name: value for name, value in zip(BREAKER_KEYS, (row.failure_threshold, row.recovery_timeout)) if value is not None}
        for row in tx.breaker_rows()
    }
    for section, tables in (("queues", queues), ("tenants", tenants), ("schedules", schedules), ("breakers", breakers)):
        kept = {name: table for name, table in tables.items() if table}
        if kept:
            document[section] = kept
    if breaker_defaults:
        document["breaker_defaults"] = breaker_defaults
    grants = [{"user": user, "role": role, **({"tenant": tenant} if tenant else {})} for user, role, tenant in tx.role_rows()]
    if grants:
        document["roles"] = grants
    for table in [*document.get("breakers", {}).values(), document.get("breaker_defaults", {})]:
        if "recovery_timeout" in table:
            table["recovery_timeout"] = _duration_text(table["recovery_timeout"])
    return {section: document[section] for section in (*SECTIONS, "roles") if section in document}


def _differing(settings: Mapping[str, Any], defaults_: Mapping[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in settings.items() if key in defaults_ and value != defaults_[key]}


def _schedule_table(schedule: Schedule) -> dict[str, Any]:
    table: dict[str, Any] = {"cron": schedule.cron, "tz": schedule.tz, "target": schedule.spec.get("target")}
    table.update({key: value for key, value in sorted(schedule.spec.items()) if key != "target" and value is not None})
    if schedule.catchup:
        table["catchup"] = True
    if schedule.paused:
        table["paused"] = True
    return table


def _duration_text(seconds: float) -> str | float | int:
    """`1m` rather than 60.0 where that reads back the same; else the seconds."""
    text = format_duration(seconds)
    if parse_duration(text) == seconds:
        return text
    return int(seconds) if float(seconds).is_integer() else seconds


def _toml_safe_document(document: dict[str, Any]) -> dict[str, Any]:
    """The document with each schedule's payload that TOML cannot hold (a null, a huge number) as a JSON string, which `apply` takes."""
    for table in document.get("schedules", {}).values():
        if "payload" in table and not _toml_safe(table["payload"]):
            table["payload"] = json.dumps(table["payload"], separators=(",", ":"), ensure_ascii=False)
    return document


def _toml_safe(value: Any) -> bool:
    if value is None:
        return False
    if isinstance(value, bool):
        return True
    if isinstance(value, int):
        return value in _TOML_INT
    if isinstance(value, dict):
        return all(_toml_safe(item) for item in value.values())
    if isinstance(value, list):
        return all(_toml_safe(item) for item in value)
    return True


# -- how messages name things ---------------------------------------------------------


def _toml_key(name: str) -> str:
    return name if _BARE_KEY.fullmatch(name) else json.dumps(name, ensure_ascii=False)


def _header(section: str, name: str) -> str:
    """How TOML names the table: `[queues.etl]`, `[breakers."simple:etl.jobs:sync"]`."""
    return f"[{section}.{_toml_key(name)}]"


def _listed(keys: tuple[str, ...]) -> str:
    return ", ".join(keys[:-1]) + f" and {keys[-1]}" if len(keys) > 1 else keys[0]


def _did_you_mean(key: str, keys: tuple[str, ...]) -> str:
    close = difflib.get_close_matches(key, keys, n=1)
    return f" (did you mean {close[0]}?)" if close else ""


def _shown(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return json.dumps(value) if isinstance(value, str) else repr(value)
