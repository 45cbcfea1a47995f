"""tqcli: a task queue in one SQLite file.

The library behind the `tqcli` command, importable without Typer or rich::

    import tqcli
    with tqcli.open("jobs.db") as queue:
        task_id = queue.submit("myapp.jobs:resize", payload={"path": "a.png"})
        print(queue.get(task_id).state)

Names are imported on first use, so `import tqcli` costs almost nothing.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from tqcli.errors import (
    AuditTampered,
    Conflict,
    Interrupted,
    InvalidInput,
    KeyProblem,
    LimitReached,
    NotFound,
    PermissionDenied,
    StorageBusy,
    StorageConflict,
    StorageError,
    StorageLost,
    TqcliError,
    WaitTimeout,
    WorkFailed,
)

if TYPE_CHECKING:
    from tqcli.api import Queue, open
    from tqcli.clock import ManualClock, SystemClock
    from tqcli.core.spec import TaskSpec
    from tqcli.core.task import Attempt, State, Task

__version__ = "0.1.0"

_LAZY = {
    "open": "tqcli.api",
    "Queue": "tqcli.api",
    "TaskSpec": "tqcli.core.spec",
    "Attempt": "tqcli.core.task",
    "State": "tqcli.core.task",
    "Task": "tqcli.core.task",
    "ManualClock": "tqcli.clock",
    "SystemClock": "tqcli.clock",
}

__all__ = [
    "Attempt", "AuditTampered", "Conflict", "Interrupted", "InvalidInput", "KeyProblem",
    "LimitReached", "ManualClock", "NotFound", "PermissionDenied", "Queue", "State", "StorageBusy", "StorageConflict", "StorageError", "StorageLost",
    "SystemClock", "Task", "TaskSpec", "TqcliError", "WaitTimeout", "WorkFailed", "open",
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'tqcli' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
