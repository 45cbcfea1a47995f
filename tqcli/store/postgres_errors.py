"""How PostgreSQL's errors read to a tqcli user: each driver error as a tqcli error that says what to do."""

from __future__ import annotations

from urllib.parse import urlsplit

import psycopg
from psycopg import errors as pg_errors

from tqcli.errors import InvalidInput, StorageBusy, StorageConflict, StorageError, StorageFull, StorageLost

# How long a statement waits for a lock before it is a busy database (ms).
LOCK_TIMEOUT_MS = 10_000


def describe(exc: psycopg.Error, where: str, busy_timeout: float = LOCK_TIMEOUT_MS / 1000) -> StorageError | InvalidInput:
    """The tqcli error for a driver error: what happened, and what to do (`busy_timeout`: the lock wait, in seconds)."""
    state = getattr(exc, "sqlstate", None) or ""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    if isinstance(exc, (pg_errors.DeadlockDetected, pg_errors.SerializationFailure)):
        return StorageConflict(f"database {where}: {text}; nothing was changed")
    if isinstance(exc, pg_errors.UniqueViolation) and "tasks_idempotency" in str(exc):
        return StorageConflict(f"database {where}: another submit took the same idempotency key first; nothing was changed")
    if isinstance(exc, (pg_errors.LockNotAvailable, pg_errors.QueryCanceled)):
        return StorageBusy(
            f"database {where} is busy: another change held a lock for more than the busy timeout of {busy_timeout:g} s; "
            "nothing was changed. Try again, or raise busy_timeout in the config file"
        )
    if state == "22003":  # numeric_value_out_of_range
        return InvalidInput("a number is too large: ids, counts and limits go up to 9223372036854775807")
    if state.startswith("53"):  # insufficient resources: disk full, out of memory, too many connections
        if state == "53100":
            return StorageFull(f"disk full on the PostgreSQL server of {where}: nothing was changed; free some space and try again")
        return StorageError(f"the PostgreSQL server of {where} is out of resources ({text}): nothing was changed; try again later")
    if state in ("42P01", "42703"):  # undefined table or column
        return StorageError(
            f"database {where} is missing part of tqcli's schema ({text}): it was changed outside tqcli; "
            "nothing was changed: restore it from a backup"
        )
    if state == "25006":  # read_only_sql_transaction
        return StorageError(f"database {where} is read-only here ({text}): nothing was changed")
    if state.startswith("28") or state == "42501":
        return StorageError(f"PostgreSQL refused access to {where} ({text}): check the user and password in the URL")
    if state == "25P03":  # idle_in_transaction_session_timeout: this process was stopped or starved inside a transaction
        return StorageLost(
            f"the PostgreSQL server of {where} ended this session: it sat idle inside a transaction for longer than "
            "half the busy timeout (the process was stopped or starved), so nothing was changed; try again"
        )
    if isinstance(exc, psycopg.OperationalError) or state.startswith("08") or state.startswith("57P"):
        return StorageLost(
            f"cannot reach the PostgreSQL server of {where} ({text}): nothing was changed; check that it is running and reachable"
        )
    return StorageError(f"database error on {where}: {text}")


def first_line(exc: BaseException) -> str:
    """The first line of an error's text (psycopg's often run on with context)."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def connect_error(exc: psycopg.Error, where: str) -> StorageError | InvalidInput:
    """The tqcli error for a connection the server refused or could not take."""
    text = first_line(exc)
    reason = text.rsplit("FATAL:", 1)[-1].strip() if "FATAL:" in text else text
    if "FATAL:" in text and "database" in reason and "does not exist" in reason:
        return StorageError(
            f"{where}: {reason} on the server; tqcli creates its tables but not the database: "
            "create it first (createdb, or CREATE DATABASE in psql)"
        )
    if "FATAL:" in text and ("password" in reason or "role" in reason or "authentication" in reason or "pg_hba" in reason):
        return StorageError(f"PostgreSQL refused the connection to {where} ({reason}): check the user and password in the URL")
    if "invalid" in text and any(word in text for word in ("option", "value", "URI", "port number")):
        return InvalidInput(f"invalid database URL {where}: {text}")
    return describe(exc, where)


def display_url(url: str) -> str:
    """The URL without its password, for messages."""
    try:
        parts = urlsplit(url)
        password = parts.password
    except ValueError as exc:
        raise InvalidInput(f"invalid database URL: {exc}; the form is postgresql://user:password@host:port/database") from None
    if password is None:
        return url
    netloc = parts.netloc.replace(f":{password}@", ":***@")
    return parts._replace(netloc=netloc).geturl()
