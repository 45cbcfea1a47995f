"""The backend contract, documented once.

A backend is registered in the entry-point group `tqcli.backends` under its
name; the entry point names a class (or factory) called with no arguments.
Its `execute(ctx)` runs one attempt of one task:

- the return value (JSON-serialisable) is the task's result;
- an exception is a failed attempt, whose error is the exception's type and
  text (`ValueError: nope`), its traceback kept beside it; a `TaskFailed`
  (which the built-in backends raise) is its text alone.

How the worker isolates it depends on one class attribute:

- `enforces_limits = False` (the default): `execute` may run arbitrary code
  that cannot be interrupted, so the worker runs it in an executor process
  of its own and ends that process (and its process group) on timeout or
  cancel. `ctx.is_cancelled()` turns true when a cancel arrives, a second
  before the process is ended, for code that wants to stop cleanly.
- `enforces_limits = True`: `execute` itself stops the work when
  `ctx.timeout` passes (raising `TaskTimeout`) or `ctx.is_cancelled()`
  turns true (raising `TaskCancelled`), so the worker may call it on a
  thread. The `shell` backend does this for its process group.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Protocol


class TaskFailed(Exception):
    """A failure a backend words itself: its text is the whole error, without the exception's type."""


class TaskTimeout(TaskFailed):
    """The attempt ran longer than its timeout and was stopped."""

    def __init__(self, seconds: float) -> None:
        super().__init__(f"timed out after {seconds:g} s")
        self.seconds = seconds


class TaskCancelled(Exception):
    """The attempt was stopped because the task was cancelled."""

    def __init__(self) -> None:
        super().__init__("cancelled while running")


def _never() -> bool:
    return False


@dataclass
class TaskContext:
    """What a backend gets for one attempt."""

    id: int
    target: str
    payload: dict[str, Any]
    attempt: int = 1
    timeout: float | None = None
    cwd: str | None = None
    """The directory a `shell` task runs in (None: the worker's)."""
    env: dict[str, str] | None = None
    """Extra environment variables for a `shell` task."""
    cancelled: Callable[[], bool] = field(default=_never, repr=False)
    on_output: Callable[..., None] | None = field(default=None, repr=False)
    """Where a backend may stream output as it appears: `on_output(chunk, stream)`, stream 1 (stdout, the default) or 2 (stderr)."""

    def is_cancelled(self) -> bool:
        """True once the task was cancelled while this attempt runs."""
        return self.cancelled()


class Backend(Protocol):
    """What the entry point's object must provide."""

    def execute(self, ctx: TaskContext) -> Any:
        """Run one attempt; return the result or raise to fail it."""
        ...


def enforces_limits(backend: Any) -> bool:
    """Whether `backend` stops its own work on timeout and cancel (see module docs)."""
    return bool(getattr(backend, "enforces_limits", False))
