"""What a task is: its states, its row as data, and its attempts."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from tqcli.security.crypto import ENCRYPTED, is_sealed
from tqcli.units import format_time


class State(str, Enum):
    """The six states of a task (see docs/states.md for the diagram)."""

    PENDING = "pending"
    """Waiting to be claimed: maybe delayed (`run_at`), waiting on dependencies, or ready."""
    RUNNING = "running"
    """Claimed by a worker that holds its lease and fencing token."""
    COMPLETED = "completed"
    """Finished successfully; `result` holds what the last attempt returned."""
    FAILED = "failed"
    """Every allowed attempt failed: the task is in the dead-letter queue."""
    CANCELLED = "cancelled"
    """Cancelled by an operator before or while it ran."""
    BLOCKED = "blocked"
    """A dependency failed or was cancelled; returns to pending when it is replayed or completes."""

    @property
    def terminal(self) -> bool:
        """True for states a task leaves only by replay (completed, failed, cancelled)."""
        return self in TERMINAL_STATES


TERMINAL_STATES = frozenset({State.COMPLETED, State.FAILED, State.CANCELLED})
ALL_STATES = tuple(State)



@dataclass
class Attempt:
    """One claim of a task by a worker, and how it ended.

    `run` is 1, then one more after each `dlq replay`; `attempt` counts
    within the run (it is what `ctx.attempt` was).
    """

    run: int
    attempt: int
    started_at: int
    finished_at: int | None
    outcome: str | None
    error: str | None
    worker: str
    traceback: str | None = None

    def to_json(self) -> dict[str, Any]:
        """The attempt as in `status ID --json` (`history`)."""
        return {
            "run": self.run,
            "attempt": self.attempt,
            "started_at": format_time(self.started_at),
            "finished_at": format_time(self.finished_at),
            "outcome": self.outcome or "running",
            "error": shown(self.error),
            "worker": self.worker,
            "traceback": shown(self.traceback),
        }


@dataclass
class Replay:
    """A `dlq replay` of a task: it began run `run`."""

    run: int
    at: str
    by: str

    def to_json(self) -> dict[str, Any]:
        """As in `status ID --json` (`replays`)."""
        return {"run": self.run, "at": self.at, "by": self.by}


@dataclass
class Task:
    """A task as stored; times are microseconds since the epoch, UTC."""

    id: int
    name: str
    queue: str
    tenant: str
    backend: str
    target: str
    payload: str
    priority: int
    state: State
    attempts: int
    max_retries: int
    backoff: float
    timeout: float | None
    run_at: int
    dag_id: int | None
    service: str
    idempotency_key: str | None
    encrypted: bool
    result: str | None
    error: str | None
    created_at: int
    started_at: int | None
    finished_at: int | None
    submitted_by: str
    waiting_deps: int = 0
    cancel_requested: bool = False
    run: int = 1
    restarted_from: int | None = None
    expires_at: int | None = None
    cwd: str | None = None
    env: str | None = None
    depends_on: list[int] = field(default_factory=list)
    history: list[Attempt] | None = None
    replays: list[Replay] = field(default_factory=list)
    waiting: str | None = None
    waiting_detail: dict[str, Any] | None = None

    @classmethod
    def from_row(cls, row: tuple[Any, ...]) -> "Task":
        """Build from a row selected with the store's `TASK_COLUMNS` (same order as the fields)."""
        values = list(row)
        values[8] = State(values[8])
        values[17] = bool(values[17])
        values[25] = bool(values[25])
        return cls(*values)

    @property
    def payload_value(self) -> Any:
        """The payload as a dict; the stored text itself when it does not decode (edited in the database, say); `<encrypted>` while sealed."""
        return _decoded(self.payload)

    @property
    def env_value(self) -> dict[str, str]:
        """A shell task's extra environment (`--env`) as a dict; empty when it has none or it is still sealed."""
        return {} if self.env is None or is_sealed(self.env) else _decoded(self.env)

    @property
    def result_value(self) -> Any:
        """The stored result as a JSON value, or None; the stored text itself when it does not decode; `<encrypted>` while sealed."""
        return None if self.result is None else _decoded(self.result)

    def to_json(self) -> dict[str, Any]:
        """The task object of SPEC §1 (plus `history`/`waiting` when they were loaded)."""
        data: dict[str, Any] = {
            "id": self.id,
            "name": self.name,
            "queue": self.queue,
            "tenant": self.tenant,
            "backend": self.backend,
            "target": self.target,
            "payload": self.payload_value,
            "priority": self.priority,
            "state": self.state.value,
            "attempts": self.attempts,
            "max_retries": self.max_retries,
            "backoff": self.backoff,
            "timeout": self.timeout,
            "run_at": format_time(self.run_at),
            "depends_on": list(self.depends_on),
            "dag_id": self.dag_id,
            "service": self.service,
            "idempotency_key": self.idempotency_key,
            "encrypted": self.encrypted,
            "result": self.result_value,
            "error": shown(self.error),
            "created_at": format_time(self.created_at),
            "started_at": format_time(self.started_at),
            "finished_at": format_time(self.finished_at),
            "submitted_by": self.submitted_by,
            "run": self.run,
            "restarted_from": self.restarted_from,
            "expires_at": format_time(self.expires_at),
            "cwd": self.cwd,
            "env": ENCRYPTED if is_sealed(self.env) else self.env_value,
        }
        if self.history is not None:
            data["history"] = [attempt.to_json() for attempt in self.history]
            data["replays"] = [replay.to_json() for replay in self.replays]
            data["waiting"] = self.waiting
            data["waiting_detail"] = self.waiting_detail
        return data


def shown(text: str | None) -> str | None:
    """A stored text as a reader sees it: `<encrypted>` while it is a ciphertext."""
    return ENCRYPTED if is_sealed(text) else text


def _decoded(text: str) -> Any:
    """A stored JSON text as its value, or the text itself when it is not JSON (so reading it never fails); `<encrypted>` while sealed."""
    if is_sealed(text):
        return ENCRYPTED
    try:
        return json.loads(text)
    except (ValueError, RecursionError):
        return text
