"""Writing a file so that a reader sees the old contents or the new, never half of either."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from tqcli.errors import InvalidInput


def write_atomically(path: str | Path, text: str, *, what: str, example: str) -> None:
    """Replace `path` with `text` atomically: a temporary file in the same folder, fsynced, renamed over it, the folder fsynced.

    node_exporter's textfile collector (metrics) and `audit verify
    --checkpoint` read these files while they may be rewritten. The
    temporary file is removed when anything fails; a missing folder, a
    folder given as the file, or an unwritable place is InvalidInput (exit
    2) naming `what` and showing `example`.
    """
    target = Path(path)
    if not str(path).strip() or target.is_dir() or not target.name:
        raise InvalidInput(f"cannot write {what} {str(path)!r}: give a file name, e.g. {example}")
    folder = target.parent
    if not folder.is_dir():
        raise InvalidInput(f"cannot write {what} {path}: folder {folder} does not exist (create it first)")
    # A dot name that does not end in .prom: the textfile collector never reads it half written.
    temporary = folder / f".{target.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp"
    try:
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                handle.write(text)
                handle.flush()
                os.fsync(handle.fileno())
        except BaseException:
            temporary.unlink(missing_ok=True)
            raise
        os.replace(temporary, target)
    except OSError as exc:
        temporary.unlink(missing_ok=True)
        raise InvalidInput(f"cannot write {what} {path}: {exc.strerror or exc} (choose a file in a folder you can write to)") from None
    _sync_folder(folder)


def _sync_folder(folder: Path) -> None:
    """Make the rename itself durable (a no-op where folders cannot be opened)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
