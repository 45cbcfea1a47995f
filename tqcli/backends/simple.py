"""The `simple` backend: call `package.module:function(**payload)`."""

from __future__ import annotations

import importlib
from typing import Any, Callable

from tqcli.backends.base import TaskContext


class SimpleBackend:
    """Imports `package.module:function` and calls it with the payload as keyword arguments.

    Runs in the worker's executor process, so a function that overruns its
    timeout or is cancelled is stopped by ending that process.
    """

    enforces_limits = False

    def __init__(self) -> None:
        self._functions: dict[str, Callable[..., Any]] = {}

    def resolve(self, target: str) -> Callable[..., Any]:
        """The callable named by `target`, imported once and then cached."""
        function = self._functions.get(target)
        if function is None:
            module_name, _, attribute = target.partition(":")
            if not module_name or not attribute:
                raise ValueError(f"target {target!r} is not package.module:function")
            found: Any = importlib.import_module(module_name)
            for part in attribute.split("."):
                found = getattr(found, part)
            if not callable(found):
                raise TypeError(f"{target} is not callable")
            function = self._functions[target] = found
        return function

    def execute(self, ctx: TaskContext) -> Any:
        """Call the target with the payload as keyword arguments; its return value is the result."""
        return self.resolve(ctx.target)(**ctx.payload)
