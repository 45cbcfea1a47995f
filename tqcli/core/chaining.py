"""Dependencies between tasks: blocking, unblocking and cascading.

A task waits while any dependency is not `completed` (`waiting_deps` counts
them, so the claim query needs no join). It is `blocked` while any
dependency is failed, cancelled or itself blocked; blocking spreads to
dependents transitively and is undone the same way.
"""

from __future__ import annotations

from typing import Sequence

from tqcli.security.audit import Journal
from tqcli.store.base import Tx

# A dependency in one of these states blocks its dependents.
STOPPING_STATES = ("failed", "cancelled", "blocked")


def block_dependents(tx: Tx, journal: Journal, ids: Sequence[int], cause: str) -> list[int]:
    """Block every pending task that depends, directly or not, on `ids`; returns them."""
    blocked: list[int] = []
    frontier = list(ids)
    while frontier:
        dependents = [(task_id, tenant) for task_id, state, tenant in tx.dependents_of(frontier) if state == "pending"]
        if not dependents:
            break
        frontier = [task_id for task_id, _ in dependents]
        tx.set_states(frontier, "blocked")
        for task_id, tenant in dependents:
            journal.add("task.block", task_id, tenant, cause=cause)
        blocked += frontier
    return blocked


def unblock_dependents(tx: Tx, journal: Journal, ids: Sequence[int], cause: str) -> list[int]:
    """Return blocked dependents of `ids` to pending when nothing else blocks them."""
    released: list[int] = []
    frontier = list(ids)
    while frontier:
        candidates = [(task_id, tenant) for task_id, state, tenant in tx.dependents_of(frontier) if state == "blocked"]
        ready = [
            (task_id, tenant)
            for task_id, tenant in candidates
            if not any(state in STOPPING_STATES for _, state in tx.dependency_states(task_id))
        ]
        if not ready:
            break
        frontier = [task_id for task_id, _ in ready]
        tx.set_states(frontier, "pending")
        for task_id, tenant in ready:
            journal.add("task.unblock", task_id, tenant, cause=cause)
        released += frontier
    return released


def all_dependents(tx: Tx, ids: Sequence[int]) -> list[tuple[int, str, str]]:
    """`(id, state, tenant)` of every task depending on `ids`, directly or not."""
    seen: dict[int, tuple[int, str, str]] = {}
    frontier = list(ids)
    while frontier:
        fresh = [row for row in tx.dependents_of(frontier) if row[0] not in seen]
        for row in fresh:
            seen[row[0]] = row
        frontier = [row[0] for row in fresh]
    return list(seen.values())


def waiting_dependents(tx: Tx, ids: Sequence[int]) -> list[tuple[int, str, str]]:
    """`(id, state, tenant)` of the pending or blocked tasks that wait on `ids`, directly or through each other."""
    seen: dict[int, tuple[int, str, str]] = {}
    excluded = set(ids)
    frontier = list(ids)
    while frontier:
        fresh = [row for row in tx.dependents_of(frontier) if row[1] in ("pending", "blocked") and row[0] not in seen and row[0] not in excluded]
        for row in fresh:
            seen[row[0]] = row
        frontier = [row[0] for row in fresh]
    return list(seen.values())


def blocking_reason(dependency_states: Sequence[tuple[int, str]]) -> str | None:
    """Why a task with these dependency states is blocked, naming the task; None if it is not."""
    for dep_id, state in dependency_states:
        if state in ("failed", "cancelled"):
            return f"blocked: task {dep_id} {state}"
    for dep_id, state in dependency_states:
        if state == "blocked":
            return f"blocked: task {dep_id} is blocked"
    return None


def waiting_reason(dependency_states: Sequence[tuple[int, str]]) -> str | None:
    """`waiting for task 7` (or `tasks 7, 9`) while dependencies are unfinished; else None."""
    unfinished = [dep_id for dep_id, state in dependency_states if state != "completed"]
    if not unfinished:
        return None
    if len(unfinished) == 1:
        return f"waiting for task {unfinished[0]}"
    return "waiting for tasks " + ", ".join(str(dep_id) for dep_id in unfinished)
