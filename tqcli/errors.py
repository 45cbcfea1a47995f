"""The one error hierarchy of tqcli.

Every error the library raises on purpose is a `TqcliError` whose class
carries the exit code of SPEC §2. The CLI maps them to exit codes in one
place (`tqcli.cli.main`); library users catch them like any exception.
"""

from __future__ import annotations


class TqcliError(Exception):
    """Base of every expected tqcli failure; `exit_code` is the CLI's exit status."""

    exit_code = 1

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class WorkFailed(TqcliError):
    """The work itself failed: a task ended failed/cancelled, a DAG did not complete."""

    exit_code = 1


class AuditTampered(TqcliError):
    """`audit verify` found an entry that was changed, removed, inserted or reordered."""

    exit_code = 1


class InvalidInput(TqcliError):
    """Usage error or invalid input: bad JSON, duration, name, TOML, missing file."""

    exit_code = 2


class NotFound(TqcliError):
    """A task, DAG, schedule, queue or key that does not exist."""

    exit_code = 3


class PermissionDenied(TqcliError):
    """The acting identity may not do this; `audit` holds the details of its `access.denied` entry."""

    exit_code = 4

    def __init__(self, message: str, *, audit: dict[str, object] | None = None) -> None:
        super().__init__(message)
        self.audit = audit
        self.recorded = False

    def add_note_to_message(self, note: str) -> None:
        """Append `note` (in parentheses) to the message the user sees."""
        self.message = f"{self.message} ({note})"
        self.args = (self.message,)


class LimitReached(TqcliError):
    """A queue or tenant limit would be passed; nothing was enqueued.

    `kind` ("queue" or "tenant") and `name` say which limit refused, when one did.
    """

    exit_code = 5

    def __init__(self, message: str, kind: str | None = None, name: str | None = None) -> None:
        super().__init__(message)
        self.kind = kind
        self.name = name


class Conflict(TqcliError):
    """The object's state does not allow this (cancel a completed task, bump a running one)."""

    exit_code = 6


class StorageError(TqcliError):
    """The database is busy, corrupt, read-only, full, unreadable or from a newer tqcli."""

    exit_code = 7


class StorageBusy(StorageError):
    """Another process held the database's write lock past the busy timeout; trying again may work."""


class StorageFull(StorageError):
    """The disk (or a file-size limit) had no room for the write; freeing space and trying again may work."""


class StorageConflict(StorageError):
    """A change lost a race with another one (a deadlock, or a key taken first): running it again succeeds."""


class StorageLost(StorageError):
    """The connection to the database server was lost or refused; nothing of the change was committed."""


class KeyProblem(TqcliError):
    """An encryption or audit key is missing or wrong."""

    exit_code = 8


class InternalError(TqcliError):
    """A bug in tqcli (a worker whose slot failed twice, say): exit 70, never a task's own failure."""

    exit_code = 70


class WaitTimeout(TqcliError):
    """`--wait` gave up before the task finished; the task goes on."""

    exit_code = 124


class Interrupted(TqcliError):
    """The user interrupted the command (Ctrl-C)."""

    exit_code = 130
