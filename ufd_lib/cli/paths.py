"""The checks every command applies to the paths it is given, so that a bad path is a usage error
(exit status 2, one line) before any model loads.

A path the command reads must exist (and be a directory where one is meant); a path it creates
must be non-empty, free of control characters (NUL, newline, ...), of a length the file system
accepts, not an existing entry of the other kind, and not inside a file. Nothing is created by
these checks. Each raises :class:`~ufd_lib.data.image_sets.PathArgumentError`.
"""
from __future__ import annotations

import os
import stat
from pathlib import Path

from ufd_lib.data.image_sets import PathArgumentError, control_character


def existing_directory(text: str) -> Path:
    """A directory a command reads (``--data-root`` of reproduce)."""
    if not os.path.isdir(text):
        raise PathArgumentError(f"{text!r} does not exist or is not a directory")
    return Path(text)


def existing_file(text: str) -> Path:
    """A file a command reads (``--probe``)."""
    if not os.path.isfile(text):
        raise PathArgumentError(f"{text!r} does not exist or is not a file")
    return Path(text)


def output_path(text: str, kind: str) -> Path:
    """``text`` as a path that a command will create or overwrite; kind: "file" or "directory".

    Raises PathArgumentError when the path is empty, holds a control character, is too long
    for the file system, is an existing entry of the other kind, or lies inside a file.
    """
    if kind not in ("file", "directory"):
        raise ValueError(f"kind must be 'file' or 'directory', not {kind!r}")
    if not text:
        raise PathArgumentError("the path is empty")
    if control_character(text):
        raise PathArgumentError(f"{text!r} contains a control character")
    path = Path(text)
    for existing in (path, *path.parents):
        try:
            mode = os.stat(existing).st_mode
        except (FileNotFoundError, NotADirectoryError):
            continue  # not there yet; what matters is the nearest ancestor that is
        except OSError as error:  # name too long, a symlink loop, a folder we may not enter
            raise PathArgumentError(f"{text!r}: {error.strerror or error}") from None
        except ValueError:  # a lone surrogate: no bytes on disk can spell it
            raise PathArgumentError(f"{text!r} cannot be encoded as a file name") from None
        if existing == path:
            if kind == "directory" and not stat.S_ISDIR(mode):
                raise PathArgumentError(f"{text!r} exists and is not a directory")
            if kind == "file" and stat.S_ISDIR(mode):
                raise PathArgumentError(f"{text!r} is a directory, not a file")
        elif not stat.S_ISDIR(mode):
            raise PathArgumentError(f"{text!r} lies inside {str(existing)!r}, which is not a directory")
        _check_lengths(text, path.relative_to(existing).parts, existing)
        return path
    return path  # unreachable in practice: "." or "/" exists


def _check_lengths(text: str, new_parts: tuple[str, ...], existing: Path) -> None:
    """The names still to be created must fit the file system (stat cannot tell while their
    parent does not exist)."""
    name_max, path_max = _limit(existing, "PC_NAME_MAX", 255), _limit(existing, "PC_PATH_MAX", 4096)
    if any(len(os.fsencode(part)) > name_max for part in new_parts):
        raise PathArgumentError(f"{text!r}: a name in it is longer than {name_max} bytes")
    if len(os.fsencode(os.path.abspath(text))) >= path_max:
        raise PathArgumentError(f"{text!r}: longer than {path_max - 1} bytes")


def _limit(path: Path, name: str, default: int) -> int:
    try:
        return os.pathconf(path, name)
    except (OSError, ValueError):
        return default


def output_directory(text: str) -> Path:
    """A directory a command creates or writes into (``--out``, ``--cache-dir``, ``--data-root``)."""
    return output_path(text, "directory")


def output_file(text: str) -> Path:
    """A file a command creates or overwrites (``--fingerprint``, a probe's ``--out``)."""
    return output_path(text, "file")
