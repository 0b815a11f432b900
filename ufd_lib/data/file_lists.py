"""The released code's pickled file lists, read without running anything.

UniversalFakeDetect's ``validate.py`` accepts, in place of a real or fake folder, a
``.pickle`` file holding a list of image paths, read with ``pickle.load``, which can run any
code the file carries. ufd refuses such a file unless the user asks for it
(``--allow-pickled-lists``, or ``UFD_ALLOW_PICKLED_LISTS=1``), and even then unpickles with
an unpickler that resolves no global at all, so only built-in containers and strings can be
built; the result must be a list (or tuple) of strings.
"""
from __future__ import annotations

import pickle
from pathlib import Path

from ufd_lib import config

PICKLE_SUFFIXES = (".pickle", ".pkl")


class PickledListError(ValueError):
    """A pickled file list that was refused or is not a plain list of strings."""


def is_pickled_list(path: Path) -> bool:
    return Path(path).suffix.lower() in PICKLE_SUFFIXES and Path(path).is_file()


def pickled_lists_allowed() -> bool:
    """Whether the environment opts in (``UFD_ALLOW_PICKLED_LISTS=1``); the command line's flag
    is passed down as an argument instead (:attr:`ufd_lib.data.image_sets.ImageSetSpec.allow_pickled_lists`)."""
    return config.env_flag("UFD_ALLOW_PICKLED_LISTS")


class _NoGlobals(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        raise PickledListError(f"it refers to {module}.{name}; a file list holds strings only")


def read_pickled_list(path: Path, allowed: bool = False) -> list[Path]:
    """The paths listed in a released-style ``.pickle`` file list, in their order.

    allowed: the user opted in (``--allow-pickled-lists``); the environment's switch
    (:func:`pickled_lists_allowed`) opts in too. Raises :class:`PickledListError` (naming the
    file) unless pickled lists are allowed, when
    the file refers to any Python global (a class or function: code), or when it does not
    hold a list of strings.
    """
    path = Path(path)
    if not (allowed or pickled_lists_allowed()):
        raise PickledListError(
            f"{path} is a pickled file list; unpickling can run code, so ufd reads it only with "
            "--allow-pickled-lists (or UFD_ALLOW_PICKLED_LISTS=1), and then as plain strings"
        )
    try:
        with open(path, "rb") as handle:
            items = _NoGlobals(handle).load()
    except PickledListError as error:
        raise PickledListError(f"{path}: refused: {error}") from None
    except Exception as error:  # pickle raises many types for damaged data
        raise PickledListError(f"{path}: not a readable pickled list: {type(error).__name__}: {error}") from None
    if not isinstance(items, list | tuple) or not all(isinstance(item, str) for item in items):
        raise PickledListError(f"{path}: holds {type(items).__name__}, not a list of path strings")
    return [Path(item) for item in items]
