"""Named image sets: a test (or training) set is a real root and a fake root; and the checks
every command applies to the paths it is given, so that a bad path is a usage error (exit
status 2, one line) before any model loads.

Official semantics (UniversalFakeDetect `validate.py`): real images are the files under
the real root inside a directory named ``0_real``; fake images are the files under the
fake root inside ``1_fake``. One root may serve both, and a category level may sit in
between (``progan/airplane/0_real``).

Path arguments: a path the command reads must exist (and be a directory where one is
meant); a path it creates must be non-empty, free of control characters (NUL, newline, ...),
of a length the file system accepts, not an existing file of the other kind, and not inside
a file. Nothing is created by these checks.
"""
from __future__ import annotations

import os
import stat
import unicodedata
from dataclasses import dataclass
from pathlib import Path

from ufd_lib.data.file_lists import is_pickled_list


@dataclass(frozen=True)
class ImageSetSpec:
    """One named set of real and fake images.

    name: the set's name as it appears in tables ("progan", "ldm_200", ...).
    real_root: directory searched for ``0_real`` folders, or a released-style pickled file list.
    fake_root: directory searched for ``1_fake`` folders (often equal to real_root), or a list.
    allow_pickled_lists: the user opted in to reading pickled file lists (``--allow-pickled-lists``).
    """

    name: str
    real_root: Path
    fake_root: Path
    allow_pickled_lists: bool = False


class PathArgumentError(ValueError):
    """A path given on the command line that cannot be used as it stands; the message is one
    line (paths appear as Python literals, so a newline in one shows as ``\\n``)."""


class SpecError(PathArgumentError):
    """A ``NAME=REAL[:FAKE]`` set specification that cannot be used."""


def _control_character(text: str) -> str | None:
    return next((char for char in text if unicodedata.category(char) == "Cc"), None)


def parse_set_spec(text: str) -> ImageSetSpec:
    """Parse ``NAME=REAL[:FAKE]`` into an :class:`ImageSetSpec`.

    With FAKE omitted, REAL serves both classes. A REAL path that itself contains ``:`` is
    accepted when it names an existing directory. The directories must exist; a root may also
    be a released-style pickled file list (``.pickle``, ``.pkl``) of one class, so REAL and
    FAKE are then two lists. NAME may not hold control characters: it is printed as one row of
    the results.
    """
    name, sep, roots = text.partition("=")
    name = name.strip()
    if not sep or not name or not roots:
        raise SpecError(f"{text!r} is not of the form NAME=REAL[:FAKE]")
    if _control_character(name):
        raise SpecError(f"set name {name!r} contains a control character")
    if os.path.isdir(roots) or ":" not in roots:
        real, fake = roots, roots
    else:
        real, _, fake = roots.partition(":")
        fake = fake or real
    for role, path in (("real", real), ("fake", fake)):
        if not (os.path.isdir(path) or is_pickled_list(Path(path))):
            raise SpecError(f"{name}: {role} directory {path!r} does not exist or is not a directory "
                            "(or a .pickle file list)")
    if real == fake and is_pickled_list(Path(real)):
        raise SpecError(f"{name}: a pickled file list holds one class; give NAME=REAL.pickle:FAKE.pickle")
    return ImageSetSpec(name=name, real_root=Path(real), fake_root=Path(fake))


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
    if _control_character(text):
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
