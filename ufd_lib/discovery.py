"""Image discovery: from an :class:`ImageSetSpec` to a sorted, labelled list of files.

Official semantics: a file is real when a directory named ``0_real`` lies on its path below
(or at) the real root, fake when ``1_fake`` lies on its path below the fake root. The released
code walks directories unsorted, so its subsets depend on the filesystem; we sort.
"""
from __future__ import annotations

import os
import random
from dataclasses import dataclass
from pathlib import Path

from . import config
from .file_lists import is_pickled_list, read_pickled_list
from .image_sets import ImageSetSpec

SAMPLING_MODES = ("all", "official")


@dataclass(frozen=True)
class LabelledImage:
    """One image file of a set; label 0 = real, 1 = fake."""

    path: Path
    label: int


def find_class_images(root: Path, class_dir: str) -> list[Path]:
    """Image files under ``root`` that sit inside a directory named ``class_dir``.

    Follows directory symlinks but visits each real directory once, so symlink loops end.
    Extensions are matched case-insensitively. Returns paths sorted by their string form.
    """
    root = Path(root)
    root_counts = class_dir in root.resolve().parts or class_dir in root.parts
    visited: set[tuple[int, int]] = set()
    found: list[Path] = []
    for directory, subdirs, files in os.walk(root, followlinks=True):
        stat = os.stat(directory)
        if (stat.st_dev, stat.st_ino) in visited:
            subdirs.clear()
            continue
        visited.add((stat.st_dev, stat.st_ino))
        subdirs.sort()
        inside = root_counts or class_dir in Path(directory).relative_to(root).parts
        if not inside:
            continue
        for name in files:
            path = Path(directory, name)
            if path.suffix.lower() in config.IMAGE_EXTENSIONS and path.is_file():
                found.append(path)
    return sorted(found, key=str)


def official_subsample(real: list[Path], fake: list[Path]) -> tuple[list[Path], list[Path]]:
    """The released evaluation's cap: shuffle each class with seed 0, keep the first 1000;
    if either class has fewer than 1000, keep only 100 of each (this hits SITD and SAN).

    Unlike the release we shuffle a sorted list, so the subset does not depend on the filesystem.
    """
    cap = config.OFFICIAL_MAX_PER_CLASS
    if cap > len(real) or cap > len(fake):
        cap = config.OFFICIAL_FALLBACK_PER_CLASS
    sampled = []
    for paths in (real, fake):
        paths = list(paths)
        random.Random(config.OFFICIAL_SAMPLING_SEED).shuffle(paths)
        sampled.append(paths[:cap])
    return sampled[0], sampled[1]


def _class_files(root: Path, class_dir: str) -> list[Path]:
    """A class's files: found under a folder, or listed by a released-style pickled file list
    (every listed file belongs to the class, as in the release; sorted here too)."""
    if is_pickled_list(root):
        return sorted(read_pickled_list(root), key=str)
    return find_class_images(root, class_dir)


def collect_images(spec: ImageSetSpec, sampling: str = "all") -> list[LabelledImage]:
    """All images of a set, reals first then fakes, each class sorted (or officially sampled).
    A root may be a pickled file list (:mod:`ufd_lib.file_lists`), read only when allowed.

    sampling: ``"all"`` keeps every image; ``"official"`` applies :func:`official_subsample`.
    """
    if sampling not in SAMPLING_MODES:
        raise ValueError(f"sampling must be one of {SAMPLING_MODES}, got {sampling!r}")
    real = _class_files(spec.real_root, config.REAL_DIR)
    fake = _class_files(spec.fake_root, config.FAKE_DIR)
    if sampling == "official":
        real, fake = official_subsample(real, fake)
    return [LabelledImage(p, 0) for p in real] + [LabelledImage(p, 1) for p in fake]
