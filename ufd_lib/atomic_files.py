"""Atomic file writes: a reader sees the old file or the whole new one, never a part.

Each write goes to a hidden temporary sibling (same folder, so the rename stays on one file
system), is flushed and fsync'd, then renamed over the target. A failure (a full disk, a
killed process before the rename) leaves the target as it was and removes the temporary; the
OSError raised names the target.
"""
from __future__ import annotations

import os
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO


def atomic_write(path: Path | str, write: Callable[[BinaryIO], object]) -> None:
    """Call ``write(handle)`` on a temporary binary file, then rename it to ``path``."""
    path = Path(path)
    temporary = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        with open(temporary, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except OSError as error:
        if error.filename is None or Path(error.filename) == temporary:
            raise OSError(error.errno, f"could not write {path}: {error.strerror or error}") from error
        raise
    finally:
        temporary.unlink(missing_ok=True)


def atomic_write_bytes(path: Path | str, data: bytes) -> None:
    atomic_write(path, lambda handle: handle.write(data))


def atomic_write_text(path: Path | str, text: str) -> None:
    """UTF-8 text."""
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_files(files: dict[Path, bytes]) -> None:
    """Write several files all or nothing: each goes to a temporary sibling (flushed, fsync'd)
    and only when every one is written are they renamed over their targets, in the given order
    (put the commit record last). A failure while writing (a full disk) leaves every target as
    it was and removes the temporaries; the OSError raised names the target."""
    staged: list[tuple[Path, Path]] = []
    try:
        for path, data in files.items():
            path = Path(path)
            temporary = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
            staged.append((temporary, path))
            try:
                with open(temporary, "wb") as handle:
                    handle.write(data)
                    handle.flush()
                    os.fsync(handle.fileno())
            except OSError as error:
                raise OSError(error.errno, f"could not write {path}: {error.strerror or error}") from error
        for temporary, path in staged:
            os.replace(temporary, path)
    finally:
        for temporary, _ in staged:
            temporary.unlink(missing_ok=True)
