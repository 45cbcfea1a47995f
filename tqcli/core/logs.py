"""Reading what a task's attempts printed (`tqcli logs`), once or following it live.

Attempts are numbered 1, 2, 3… across the task's whole history, in the
order they were claimed: the numbering of the `history` list of `status ID
--json` (whose `run` and `attempt` fields say which run, after a `dlq
replay`, and which attempt within it), the running attempt last.

Each read is one short read transaction with the `read` permission on the
task's tenant; following polls, with no transaction open between polls.
An encrypted task's output is opened with the reader's keys, as its
payload is: `<encrypted>` for a reader who may not see it in clear, exit 8
for one who may but lacks the key.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

from tqcli.core import encryption
from tqcli.core.context import Context
from tqcli.core.output import output_field
from tqcli.core.task import Task
from tqcli.errors import InvalidInput, KeyProblem, NotFound
from tqcli.security.crypto import ENCRYPTED, DoesNotDecrypt, UnknownDataKey, missing_key_file
from tqcli.store.base import Tx

FOLLOW_POLL = 0.25
ENDED_STATES = frozenset({"completed", "failed", "cancelled", "blocked"})  # where `--follow` stops, as `submit --wait` does


@dataclass
class Chunk:
    """A piece of one stream (`stdout` or `stderr`); `dropped` bytes were dropped just before it."""

    stream: str
    text: str
    dropped: int = 0


@dataclass
class AttemptOutput:
    """What one attempt printed, as kept."""

    task_id: int
    attempt: int
    chunks: list[Chunk]
    dropped_bytes: int
    running: bool
    end: int = 0  # the byte offset after the last chunk read
    claim: int = field(default=0, repr=False)

    @property
    def output(self) -> str:
        """Both streams' text, in the order the worker read it."""
        return "".join(chunk.text for chunk in self.chunks)

    def to_json(self) -> dict[str, Any]:
        """The JSON of `logs --json`: SPEC's fields, and `chunks` with each piece's stream, so a script can tell them apart."""
        return {
            "task": self.task_id, "attempt": self.attempt, "output": self.output, "dropped_bytes": self.dropped_bytes,
            "running": self.running,
            "chunks": [{"stream": chunk.stream, "text": chunk.text, "dropped_before": chunk.dropped} for chunk in self.chunks],
        }


@dataclass
class LogFollow:
    """Where a follow of one task's output stands between two polls (`OutputService.poll`)."""

    task_id: int
    attempt: int | None = None  # the attempt to start from (None: the latest)
    tail: int | None = None  # each attempt's first part cut to its last `tail` lines
    number: int | None = None  # the attempt being followed, once the task has one
    end: int = 0  # the byte offset read up to in that attempt
    finished: bool = False  # the task is finished and everything it printed was returned
    task: Task | None = None  # the task as the last poll read it

    def __post_init__(self) -> None:
        _check(self.attempt, self.tail)


def last_lines(chunks: list[Chunk], count: int) -> list[Chunk]:
    """The chunks cut to the last `count` lines of their text (a final newline ends the last line)."""
    text = "".join(chunk.text for chunk in chunks)
    position = len(text) - (1 if text.endswith("\n") else 0)
    for _ in range(count):
        position = text.rfind("\n", 0, position)
        if position < 0:
            return chunks
    cut, kept, seen = position + 1, [], 0
    for chunk in chunks:
        if seen + len(chunk.text) > cut:
            kept.append(Chunk(chunk.stream, chunk.text[max(0, cut - seen):]))
        seen += len(chunk.text)
    return kept


class OutputService:
    """The output of tasks' attempts."""

    def __init__(self, ctx: Context) -> None:
        self._ctx = ctx

    def read(self, task_id: int, *, attempt: int | None = None, tail: int | None = None) -> AttemptOutput:
        """Attempt `attempt` (1-based across the history; default the latest) of a task; NotFound for a task or attempt that is not there."""
        _check(attempt, tail)
        with self._ctx.read() as tx:
            task, claims = self._task(tx, task_id)
            number = _number(task_id, claims, attempt)
            found = self._attempt(tx, task, claims, number, 0)
        if tail is not None:
            found.chunks = last_lines(found.chunks, tail)
        return found

    def follow(
        self, task_id: int, *, attempt: int | None = None, tail: int | None = None,
        sleep: Callable[[float], None] = time.sleep, poll: float = FOLLOW_POLL,
    ) -> Iterator[AttemptOutput]:
        """What the task prints from attempt `attempt` (default the latest) on, as it arrives, until the task is finished.

        Yields what each poll found, per attempt (an attempt's first yield
        has all of it so far, cut to `tail` lines); the last yield comes
        after the task finished. A task that has not started yet is waited for;
        one that ends without running yields nothing.
        """
        following = LogFollow(task_id, attempt=attempt, tail=tail)
        while True:
            yield from self.poll(following)
            if following.finished:
                return
            sleep(poll)

    def poll(self, following: "LogFollow") -> list[AttemptOutput]:
        """One read of a follow: what was printed since its last poll, per attempt; sets `following.finished` at the end.

        Each poll is its own short read transaction, so consecutive polls may
        use different connections (the server lends one per poll). NotFound
        once the task is finished when the attempt asked for never ran.
        """
        with self._ctx.read() as tx:
            task, claims = self._task(tx, following.task_id)
            following.task = task
            finished = task.state.value in ENDED_STATES
            if following.number is None and claims:
                following.number = following.attempt or len(claims)
            found: list[AttemptOutput] = []
            while following.number is not None and following.number <= len(claims):
                part = self._attempt(tx, task, claims, following.number, following.end)
                if following.end == 0 and following.tail is not None:
                    part.chunks = last_lines(part.chunks, following.tail)
                found.append(part)
                following.end = part.end
                if following.number == len(claims):
                    break
                following.number, following.end = following.number + 1, 0  # that attempt ended: the next one from its start
            if finished and (following.number is None or following.number > len(claims)) and following.attempt is not None:
                raise NotFound(_no_attempt(following.task_id, len(claims), following.attempt))
        # A task that ended without running (blocked, cancelled, expired) yields nothing: the caller says how.
        following.finished = finished
        return found

    def _task(self, tx: Tx, task_id: int) -> tuple[Task, list[int]]:
        rows = tx.task_rows([task_id])
        if not rows:
            raise NotFound(f"task {task_id} does not exist: 'tqcli status' lists tasks")
        task = Task.from_row(rows[0])
        self._ctx.authorize(tx, "read", f"read the output of task {task_id}", tenant=task.tenant)
        return task, tx.output_claims(task_id)

    def _attempt(self, tx: Tx, task: Task, claims: list[int], number: int, start: int) -> AttemptOutput:
        claim = claims[number - 1]
        rows = tx.output_chunks(task.id, claim, start)
        end, kept = tx.output_extent(task.id, claim)
        running = task.state.value == "running" and number == len(claims)
        opener, masked = self._opener(tx, task) if task.encrypted else (None, False)
        chunks, offset = [], start
        for row in rows:
            text = row.text if opener is None else opener(claim, row.byte_offset, row.text)
            chunks.append(Chunk(row.stream, text, dropped=row.byte_offset - offset))
            offset = row.byte_offset + row.size
        if masked and chunks:
            chunks = [Chunk("stdout", ENCRYPTED + "\n")] if start == 0 else []
        return AttemptOutput(task.id, number, chunks, end - kept, running, end=offset, claim=claim)

    def _opener(self, tx: Tx, task: Task) -> tuple[Callable[[int, int, str], str] | None, bool]:
        """How this reader sees an encrypted task's chunks, and whether it sees them masked (`<encrypted>`: no decrypt permission).

        KeyProblem for a reader who may decrypt but lacks the key.
        """
        if not encryption.may_decrypt(self._ctx.access(tx), task):
            return None, True
        cipher = encryption.cipher_for(self._ctx, tx)
        if cipher.ring is None:
            raise KeyProblem(f"the output of task {task.id} is encrypted: {missing_key_file(self._ctx.key_file).message}")

        def opened(claim: int, offset: int, text: str) -> str:
            try:
                return cipher.open(task.id, output_field(claim, offset), text)
            except UnknownDataKey:
                raise
            except DoesNotDecrypt:
                return encryption.UNREADABLE + "\n"

        return opened, False


def _check(attempt: int | None, tail: int | None) -> None:
    if attempt is not None and attempt < 1:
        raise InvalidInput(f"invalid --attempt {attempt}: attempts are numbered from 1")
    if tail is not None and tail < 0:
        raise InvalidInput(f"invalid --tail {tail}: use 0 or more lines")


def _number(task_id: int, claims: list[int], attempt: int | None) -> int:
    number = attempt or len(claims)
    if not claims or number > len(claims):
        raise NotFound(_no_attempt(task_id, len(claims), attempt))
    return number


def _no_attempt(task_id: int, count: int, attempt: int | None) -> str:
    if not count:
        return f"task {task_id} has not run yet, so it has no output ('tqcli logs --follow {task_id}' waits for it)"
    return f"task {task_id} has no attempt {attempt}: it has {count} (--attempt 1 to {count})"
