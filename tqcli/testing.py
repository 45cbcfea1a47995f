"""Testing help for backend authors: the contract every backend must keep.

Subclass `BackendContract` in your pytest suite, give it a `backend` fixture
and three targets, and it checks your backend the way tqcli will use it::

    from tqcli.testing import BackendContract

    class TestMyBackend(BackendContract):
        succeeding_target = "ok"        # returns a JSON value
        failing_target = "fail"         # raises
        slow_target = "sleep 30"        # runs until stopped (only if it enforces limits)

        @pytest.fixture
        def backend(self):
            return MyBackend()

Both built-in backends run this same suite (tests/test_backends.py).
"""

from __future__ import annotations

import json
import threading
import time
from typing import Any

import pytest

from tqcli.backends.base import TaskCancelled, TaskContext, TaskTimeout, enforces_limits


def context(target: str, payload: dict[str, Any] | None = None, **options: Any) -> TaskContext:
    """A TaskContext as a worker would build it for attempt 1."""
    return TaskContext(id=options.pop("id", 1), target=target, payload=payload or {}, **options)


class BackendContract:
    """The behaviour tqcli relies on; subclasses provide `backend` and the targets."""

    succeeding_target: str = ""
    failing_target: str = ""
    slow_target: str | None = None
    payload: dict[str, Any] = {}

    @pytest.fixture
    def backend(self) -> Any:  # pragma: no cover - replaced by subclasses
        raise NotImplementedError("give your contract test a `backend` fixture")

    def test_is_constructed_without_arguments(self, backend: Any) -> None:
        assert type(backend)() is not None

    def test_success_returns_a_json_value(self, backend: Any) -> None:
        result = backend.execute(context(self.succeeding_target, dict(self.payload)))
        json.dumps(result, allow_nan=False)

    def test_failure_raises_with_a_message(self, backend: Any) -> None:
        with pytest.raises(Exception) as caught:
            backend.execute(context(self.failing_target, dict(self.payload)))
        assert str(caught.value) or type(caught.value).__name__

    def test_the_same_instance_runs_many_attempts(self, backend: Any) -> None:
        for attempt in (1, 2, 3):
            backend.execute(context(self.succeeding_target, dict(self.payload), attempt=attempt, id=attempt))

    def test_self_enforcing_backends_stop_on_timeout(self, backend: Any) -> None:
        if not enforces_limits(backend) or self.slow_target is None:
            pytest.skip("the worker enforces this backend's timeout by ending its executor")
        started = time.monotonic()
        with pytest.raises(TaskTimeout, match="timed out after 0.5 s"):
            backend.execute(context(self.slow_target, timeout=0.5))
        assert time.monotonic() - started < 5

    def test_self_enforcing_backends_stop_on_cancel(self, backend: Any) -> None:
        if not enforces_limits(backend) or self.slow_target is None:
            pytest.skip("the worker cancels this backend by ending its executor")
        cancelled = threading.Event()
        threading.Timer(0.3, cancelled.set).start()
        started = time.monotonic()
        with pytest.raises(TaskCancelled):
            backend.execute(context(self.slow_target, cancelled=cancelled.is_set))
        assert time.monotonic() - started < 5
