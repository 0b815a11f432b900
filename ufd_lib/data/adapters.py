"""Layout adapters: how a benchmark's own layout on disk maps onto the real and fake classes of
one test set, so a user's copy is evaluated without moving a file.

A set is named on the command line as ``NAME=ADAPTER:PATH[:PATH]`` (``ufd data adapters`` lists
them). Each adapter reads only the files its benchmark's documentation assigns to the test
split and to each class:

- ``univfd:DIR`` — the layout ufd reads by default: reals in ``0_real``, fakes in ``1_fake``
  anywhere below DIR (CNNDetection, UnivFD).
- ``genimage:GEN_DIR`` — GenImage ``<generator>/[<subfolder>/]{train,val}/{ai,nature}``: reals are
  the images below ``val/nature``, fakes those below ``val/ai``; ``train/`` is never read.
- ``wildrf:DIR`` and ``aigibench:DIR`` — ``{train,val,test}/.../{0_real,1_fake}``: the
  ``0_real``/``1_fake`` rule applied to ``DIR/test`` when DIR holds a ``test`` folder (the
  dataset's root), else to DIR itself (a test folder or one platform or generator inside it).
- ``folders:REAL_DIR:FAKE_DIR`` — every image below REAL_DIR is real, every image below
  FAKE_DIR fake (fakes-only collections beside a real source, such as Synthbuster beside
  RAISE, and a user's own folders).
- ``spai:CSV[:IMAGE_ROOT]`` — the SPAI evaluation CSVs, columns ``image,class[,split]`` with a
  header: ``class`` 0 (or ``real``) real, 1 (or ``fake``) fake; with a ``split`` column only its
  ``test`` rows.
- ``imaginet:ANNOTATIONS[:IMAGE_ROOT]`` — ImagiNet's annotation lists, lines without a header
  ``path,origin,content_type,model,specific_model``: origin 0 real, 1 fake.

Paths in a list are relative to IMAGE_ROOT, or to the list's folder when it is omitted. A
listed file that is absent is left out and reported as skipped, with the list's line.

An adapter says which files belong to each class (:class:`ClassSelection`: folders below a root,
or the files a list names); :mod:`ufd_lib.data.discovery` walks the folders with the one rule
for what counts as an image.
Community Forensics' parquet shards have no adapter: reading them needs pyarrow, which ufd does
not depend on; export the rows to two folders and use ``folders``.
"""
from __future__ import annotations

import csv
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ufd_lib import config


class AdapterError(ValueError):
    """Arguments or a list that an adapter cannot use; the message is one line naming the path."""


@dataclass(frozen=True)
class ClassSelection:
    """The files of one class: the images below ``root`` whose path (as given, folders only)
    holds ``folders`` as consecutive names (every image below root when empty), or, when
    ``listed`` is not None, exactly those files."""

    root: Path
    folders: tuple[str, ...] = ()
    listed: tuple[str, ...] | None = None


@dataclass(frozen=True)
class Selections:
    """What an adapter chose: the real and the fake class, and listed files that are absent
    (path, reason)."""

    real: ClassSelection
    fake: ClassSelection
    skipped: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class LayoutAdapter:
    """One layout: its name, the paths it takes (``arguments``, as in ``ADAPTER:PATH[:PATH]``;
    the first ``files`` of them are files, the rest directories; ``optional`` may be left off
    the end), the layout in words, and the function from those paths to the selections."""

    name: str
    arguments: str
    layout: str
    select: Callable[[tuple[Path, ...]], Selections]
    required: int = 1
    optional: int = 0
    files: int = 0


def _univfd(paths: tuple[Path, ...]) -> Selections:
    (root,) = paths
    return Selections(ClassSelection(root, (config.REAL_DIR,)), ClassSelection(root, (config.FAKE_DIR,)))


def _genimage(paths: tuple[Path, ...]) -> Selections:
    (root,) = paths
    return Selections(ClassSelection(root, ("val", "nature")), ClassSelection(root, ("val", "ai")))


def _test_split(paths: tuple[Path, ...]) -> Selections:
    (root,) = paths
    test = root / "test"
    return _univfd((test if test.is_dir() else root,))


def _folders(paths: tuple[Path, ...]) -> Selections:
    real, fake = paths
    return Selections(ClassSelection(real), ClassSelection(fake))


def _listed(rows: list[tuple[str, str, int]], image_root: Path) -> Selections:
    """(path relative to image_root, where it is listed, label) rows → selections; absent files
    are skipped with the place that lists them."""
    chosen: tuple[list[str], list[str]] = ([], [])
    skipped: list[tuple[str, str]] = []
    for relative, where, label in rows:
        path = os.path.normpath(os.path.join(image_root, relative))
        if os.path.isfile(path):
            chosen[label].append(path)
        else:
            skipped.append((path, f"listed at {where} but absent"))
    real, fake = (ClassSelection(image_root, listed=tuple(sorted(paths))) for paths in chosen)
    return Selections(real, fake, tuple(sorted(skipped)))


_LABELS = {"0": 0, "real": 0, "1": 1, "fake": 1}


def _label(text: str | None, where: str) -> int:
    label = _LABELS.get((text or "").strip().lower())
    if label is None:
        raise AdapterError(f"{where}: class {text!r} is neither 0 / real nor 1 / fake")
    return label


def _read_list(path: Path) -> list[str]:
    try:
        return path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as error:
        raise AdapterError(f"{path}: cannot be read as a UTF-8 list: {error}") from None


def _list_and_root(paths: tuple[Path, ...]) -> tuple[Path, Path]:
    return paths[0], paths[1] if len(paths) > 1 else paths[0].parent


def _spai(paths: tuple[Path, ...]) -> Selections:
    listing, image_root = _list_and_root(paths)
    reader = csv.DictReader(_read_list(listing))
    if not {"image", "class"} <= set(reader.fieldnames or ()):
        raise AdapterError(f"{listing}: a SPAI list has a header with the columns image and class (and split)")
    rows = [(row["image"], f"{listing}:{number}", _label(row["class"], f"{listing}:{number}"))
            for number, row in enumerate(reader, start=2)
            if row.get("split") in (None, "test")]
    return _listed(rows, image_root)


def _imaginet(paths: tuple[Path, ...]) -> Selections:
    listing, image_root = _list_and_root(paths)
    rows = []
    for number, line in enumerate(_read_list(listing), start=1):
        if not line.strip():
            continue
        fields = line.strip().split(",")
        where = f"{listing}:{number}"
        if len(fields) < 2:
            raise AdapterError(f"{where}: an ImagiNet line is path,origin,content_type,model,specific_model")
        rows.append((fields[0], where, _label(fields[1], where)))
    return _listed(rows, image_root)


ADAPTERS: dict[str, LayoutAdapter] = {adapter.name: adapter for adapter in (
    LayoutAdapter("univfd", "DIR", "DIR/.../0_real/* real, DIR/.../1_fake/* fake (CNNDetection, UnivFD)", _univfd),
    LayoutAdapter("genimage", "GEN_DIR", "GenImage GEN_DIR/[...]/val/nature/* real, GEN_DIR/[...]/val/ai/* fake; "
                  "train/ never read", _genimage),
    LayoutAdapter("wildrf", "DIR", "WildRF DIR/test/<platform>/{0_real,1_fake} (DIR/test if present, else DIR)",
                  _test_split),
    LayoutAdapter("aigibench", "DIR", "AIGIBench DIR/test/<generator>/{0_real,1_fake} (DIR/test if present, else DIR)",
                  _test_split),
    LayoutAdapter("folders", "REAL_DIR:FAKE_DIR", "every image below REAL_DIR real, below FAKE_DIR fake", _folders,
                  required=2),
    LayoutAdapter("spai", "CSV[:IMAGE_ROOT]", "SPAI CSV with header image,class[,split]: class 0 real, 1 fake, "
                  "split test only; paths relative to IMAGE_ROOT (default: the CSV's folder)", _spai,
                  optional=1, files=1),
    LayoutAdapter("imaginet", "ANNOTATIONS[:IMAGE_ROOT]", "ImagiNet annotations path,origin,...: origin 0 real, "
                  "1 fake; paths relative to IMAGE_ROOT (default: the list's folder)", _imaginet,
                  optional=1, files=1),
)}


def describe_adapters() -> str:
    """One line per adapter: ``NAME:ARGUMENTS`` and the layout it expects."""
    width = max(len(f"{a.name}:{a.arguments}") for a in ADAPTERS.values())
    return "\n".join(f"{f'{a.name}:{a.arguments}':<{width}}  {a.layout}" for a in ADAPTERS.values())


def adapter_paths(adapter_name: str, text: str) -> tuple[Path, ...]:
    """The paths of ``ADAPTER:PATH[:PATH]`` (``text`` is what follows ``ADAPTER:``), checked.

    Raises AdapterError when the adapter is unknown, the number of paths is wrong, or a path is
    not an existing file or directory of the kind the adapter takes.
    """
    adapter = ADAPTERS.get(adapter_name)
    if adapter is None:
        raise AdapterError(f"unknown layout adapter {adapter_name!r} (known: {', '.join(ADAPTERS)})")
    parts = text.split(":") if text else []
    if not adapter.required <= len(parts) <= adapter.required + adapter.optional or not all(parts):
        raise AdapterError(f"adapter {adapter.name} takes {adapter.name}:{adapter.arguments}, not {text!r}")
    for index, part in enumerate(parts):
        kind, exists = ("file", os.path.isfile) if index < adapter.files else ("directory", os.path.isdir)
        if not exists(part):
            raise AdapterError(f"{adapter.name} {kind} {part!r} does not exist or is not a {kind}")
    return tuple(Path(part) for part in parts)


def adapter_selections(adapter_name: str, paths: tuple[Path, ...]) -> Selections:
    """Which files of ``paths`` (from :func:`adapter_paths`) are real and which fake. Raises
    AdapterError for a list it cannot read."""
    return ADAPTERS[adapter_name].select(tuple(paths))
