"""Capturing what attempts print, and writing it to the database (`tqcli logs` reads it).

An executor sends each attempt's output as chunks tagged with their stream
and the attempt's token (see `tqcli.backends.output_pipes`). `OutputCapture`
keeps, per running attempt, only what arrived since the last flush and at
most `limit` bytes of it (older pieces are counted as dropped, never
kept), so a task printing 100 MB costs the worker `limit` bytes of memory
and writes at most `limit` bytes per flush.

One `OutputFlusher` thread per worker writes every attempt's new output in
one transaction at most every FLUSH_SECONDS, and the worker writes the rest
of an attempt's output in the transaction that records how it ended, so a
finished task's output is complete. Nothing arrived, nothing written: a
quiet task costs no statement. The database keeps the last `limit` bytes
per attempt (whole chunks): each flush deletes the older chunks.

Chunks are keyed by the attempt's token and fenced by it: only an attempt
that still holds its task writes, so a worker whose lease was taken over
writes nothing more. An encrypted task's chunks are sealed under its key,
bound to the attempt and offset.
"""

from __future__ import annotations

import codecs
import threading
from collections import deque
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Callable, Iterable, Iterator

from tqcli.config import DEFAULT_OUTPUT_LIMIT

if TYPE_CHECKING:
    from tqcli.core.dispatcher import Claim
    from tqcli.store.base import Store, Tx

FLUSH_SECONDS = 0.5
_UTF8 = codecs.getincrementaldecoder("utf-8")
PIECE_BYTES = 16 * 1024  # the largest chunk stored: how finely the kept output is trimmed
Token = tuple[int, int]


def output_field(claim: int, offset: int) -> str:
    """The encrypted field an output chunk is bound to (`tqcli.security.crypto`)."""
    return f"output:{claim}:{offset}"


class _Attempt:
    """One attempt's output not yet written, and what is known of what was."""

    __slots__ = ("token", "sealer", "encrypted", "end", "pieces", "pending", "decoders", "stored_from", "ended")

    def __init__(self, claim: "Claim") -> None:
        self.token: Token = claim.token
        self.encrypted = bool(claim.encrypted)
        self.sealer = claim.sealer
        self.end = 0  # bytes the attempt printed so far, both streams
        self.pieces: deque[list[Any]] = deque()  # [byte_offset, size, stream, [texts]], oldest first, not yet written
        self.pending = 0  # the bytes those pieces stand for
        self.decoders: dict[int, Any] = {}  # per stream, made at its first output (an attempt that prints nothing costs none)
        self.stored_from = 0  # no chunk before this offset is stored
        self.ended = False  # its outcome is on its way to the transaction that records it, which writes the rest

    def add(self, stream: int, chunk: bytes, limit: int) -> None:
        decoder = self.decoders.get(stream)
        if decoder is None:
            decoder = self.decoders[stream] = _UTF8("replace")
        offset = self.end
        self.end += len(chunk)
        if len(chunk) > limit:  # only its last `limit` bytes can be kept
            offset += len(chunk) - limit
            chunk = chunk[-limit:]
            decoder.reset()
        pieces = self.pieces
        for start in range(0, len(chunk), PIECE_BYTES):
            part = chunk[start:start + PIECE_BYTES]
            last = pieces[-1] if pieces else None
            if last is not None and last[2] == stream and last[0] + last[1] == offset + start and last[1] + len(part) <= PIECE_BYTES:
                last[1] += len(part)  # a print of a line at a time grows one piece
                last[3].append(decoder.decode(part))
            else:
                pieces.append([offset + start, len(part), stream, [decoder.decode(part)]])
        self.pending += len(chunk)
        while self.pending > limit:
            self.pending -= pieces.popleft()[1]

    def finish_text(self) -> None:
        """Decode what the decoders still hold (a character cut short at the end) into the last pieces."""
        for stream, decoder in self.decoders.items():
            rest = decoder.decode(b"", final=True)
            if rest:
                last = next((piece for piece in reversed(self.pieces) if piece[2] == stream), None)
                if last is not None:
                    last[3].append(rest)
                else:
                    self.pieces.append([self.end, 0, stream, [rest]])


class OutputBatch:
    """Output taken from the capture for one transaction: `write(tx)` stores it."""

    def __init__(self, taken: list[tuple[_Attempt, deque[list[Any]]]], limit: int, final: bool) -> None:
        self.taken = taken
        self.limit = limit
        self.final = final

    def __bool__(self) -> bool:
        return any(pieces for _, pieces in self.taken)

    def write(self, tx: "Tx") -> None:
        """Insert the chunks of the attempts that still hold their task, and trim each attempt to the limit."""
        with_output = [(attempt, pieces) for attempt, pieces in self.taken if pieces]
        if not with_output:
            return
        held = tx.held_tokens([attempt.token for attempt, _ in with_output])
        rows, trims = [], []
        for attempt, pieces in with_output:
            if attempt.token not in held:
                continue  # another worker took the task over: this attempt writes nothing more
            if attempt.encrypted and attempt.sealer is None:
                continue  # never stored in clear; a claim that was opened always has its sealer
            task_id, claim = attempt.token
            for offset, size, stream, text in _coalesced(pieces):
                if attempt.encrypted:
                    text = attempt.sealer.cipher.seal(task_id, output_field(claim, offset), text)
                rows.append((task_id, claim, offset, size, "stderr" if stream == 2 else "stdout", text))
            cutoff = attempt.end - self.limit
            if cutoff > attempt.stored_from:
                trims.append((task_id, claim, cutoff))
        if rows:
            rows.sort()  # in task id order, as transactions lock tasks: inserting takes a share of each task's row lock
            tx.insert_output(rows)
        if trims:
            tx.trim_output(trims)


def _coalesced(pieces: Iterable[list[Any]]) -> Iterator[tuple[int, int, int, str]]:
    """Adjacent pieces of one stream joined, up to PIECE_BYTES a chunk, with their text."""
    current: list[Any] | None = None
    for offset, size, stream, texts in pieces:
        if current is not None and current[2] == stream and current[0] + current[1] == offset and current[1] + size <= PIECE_BYTES:
            current[1] += size
            current[3] += texts
            continue
        if current is not None:
            yield current[0], current[1], current[2], "".join(current[3])
        current = [offset, size, stream, list(texts)]
    if current is not None:
        yield current[0], current[1], current[2], "".join(current[3])


class OutputCapture:
    """The output of one worker's (or `run`'s) attempts until it is written (see the module docstring).

    `add` is called from the slots' threads; `flushing` from the flusher
    and from the thread that records attempts' endings. `limit` 0 keeps no output.
    """

    def __init__(self, limit: int = DEFAULT_OUTPUT_LIMIT) -> None:
        self.limit = limit
        self._attempts: dict[Token, _Attempt] = {}
        self._dirty: set[Token] = set()
        self._lock = threading.Lock()  # the attempts and their pieces
        self.flush_lock = threading.Lock()  # held from taking a batch until its transaction ended: batches land in order
        self.on_output: Callable[[], None] = lambda: None  # told when output arrives (the flusher starts on the first)

    def track(self, claims: Iterable["Claim"]) -> None:
        """Expect output of these attempts (output of attempts not tracked is ignored)."""
        if not self.limit:
            return
        with self._lock:
            for claim in claims:
                self._attempts.setdefault(claim.token, _Attempt(claim))

    def add(self, chunk: bytes, stream: int, token: Any) -> None:
        """One chunk an attempt printed (stream 1 stdout, 2 stderr), as an executor sent it."""
        if not chunk or token is None:
            return
        with self._lock:
            attempt = self._attempts.get(tuple(token))  # type: ignore[arg-type]
            if attempt is None:
                return
            attempt.add(2 if stream == 2 else 1, chunk, self.limit)
            if attempt.ended:
                return
            self._dirty.add(attempt.token)
        self.on_output()

    def ending(self, tokens: Iterable[Token]) -> None:
        """These attempts ended: their output is left to the transaction that records their endings (the flusher skips them)."""
        with self._lock:
            for token in tokens:
                attempt = self._attempts.get(token)
                if attempt is not None:
                    attempt.ended = True
                    self._dirty.discard(token)

    @property
    def dirty(self) -> bool:
        """Whether output arrived since the last flush."""
        return bool(self._dirty)

    @contextmanager
    def flushing(self, tokens: Iterable[Token] | None = None, *, final: bool = False) -> Iterator[OutputBatch]:
        """Take the output of `tokens` (None: every attempt with new output) for a transaction opened inside.

        With `final`, those attempts ended: they are forgotten once the
        transaction commits. If it fails, the output is put back for the next try.
        """
        with self.flush_lock:
            batch = self._take(tokens, final)
            try:
                yield batch
            except BaseException:
                self._put_back(batch)
                raise
            self._written(batch)

    def _take(self, tokens: Iterable[Token] | None, final: bool) -> OutputBatch:
        taken = []
        with self._lock:
            wanted = list(self._dirty) if tokens is None else list(tokens)
            for token in wanted:
                attempt = self._attempts.get(token)
                if attempt is None:
                    continue
                if final:
                    attempt.finish_text()
                taken.append((attempt, attempt.pieces))
                attempt.pieces, attempt.pending = deque(), 0
                self._dirty.discard(token)
        return OutputBatch(taken, self.limit, final)

    def _put_back(self, batch: OutputBatch) -> None:
        with self._lock:
            for attempt, pieces in batch.taken:
                if not pieces:
                    continue
                pieces.extend(attempt.pieces)
                attempt.pieces = pieces
                attempt.pending = sum(piece[1] for piece in pieces)
                while attempt.pending > self.limit:
                    attempt.pending -= pieces.popleft()[1]
                if not attempt.ended:
                    self._dirty.add(attempt.token)

    def _written(self, batch: OutputBatch) -> None:
        with self._lock:
            for attempt, pieces in batch.taken:
                if pieces:
                    attempt.stored_from = max(attempt.stored_from, attempt.end - self.limit)
                if batch.final:
                    self._attempts.pop(attempt.token, None)
                    self._dirty.discard(attempt.token)

    def forget(self, tokens: Iterable[Token]) -> None:
        """Drop what is held for attempts whose ending was recorded elsewhere."""
        with self._lock:
            for token in tokens:
                self._attempts.pop(token, None)
                self._dirty.discard(token)


class OutputFlusher:
    """The thread that writes a capture's new output every FLUSH_SECONDS, on a connection of its own.

    Started by the first output that arrives (`wake`), so a worker whose
    tasks print nothing never opens that connection. `close` writes what
    is left. A write that fails (a busy database) keeps the output for the next.
    """

    def __init__(self, capture: OutputCapture, open_store: Callable[[], "Store"], warn: Callable[[str], None] = lambda text: None) -> None:
        self._capture = capture
        self._open_store = open_store
        self._warn = warn
        self._store: "Store | None" = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._start_lock = threading.Lock()
        self._warned = False

    def wake(self) -> None:
        """Output arrived: make sure the thread runs."""
        if self._thread is None:
            with self._start_lock:
                if self._thread is None and not self._stop.is_set():
                    self._thread = threading.Thread(target=self._run, name="tqcli-output-flush", daemon=True)
                    self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(FLUSH_SECONDS):
            self.flush()

    def flush(self) -> None:
        """Write every attempt's new output now, in one transaction (nothing when none arrived)."""
        from tqcli.errors import TqcliError

        if not self._capture.dirty:
            return
        try:
            if self._store is None:
                self._store = self._open_store()
            with self._capture.flushing() as batch:
                if batch:
                    with self._store.write() as tx:
                        batch.write(tx)
        except TqcliError as exc:
            if not self._warned:
                self._warned = True
                self._warn(f"warning: could not store task output ({exc.message.split(';')[0]}); trying again")

    def close(self) -> None:
        """Stop the thread and close its connection (what the endings did not write is written first)."""
        self._stop.set()
        thread = self._thread
        if thread is not None:
            thread.join()
            self.flush()
        if self._store is not None:
            self._store.close()
            self._store = None
