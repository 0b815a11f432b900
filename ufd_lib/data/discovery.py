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

import numpy as np

from ufd_lib import config
from ufd_lib.data.file_lists import is_pickled_list, read_pickled_list
from ufd_lib.data.image_sets import ImageSetSpec



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
    A root may be a pickled file list (:mod:`ufd_lib.data.file_lists`), read only when allowed.

    sampling: ``"all"`` keeps every image; ``"official"`` applies :func:`official_subsample`.
    """
    if sampling not in config.SAMPLING_MODES:
        raise ValueError(f"sampling must be one of {config.SAMPLING_MODES}, got {sampling!r}")
    real = _class_files(spec.real_root, config.REAL_DIR)
    fake = _class_files(spec.fake_root, config.FAKE_DIR)
    if sampling == "official":
        real, fake = official_subsample(real, fake)
    return [LabelledImage(p, 0) for p in real] + [LabelledImage(p, 1) for p in fake]


def balanced_subsample(labels: np.ndarray, per_class: int, seed: int = 0) -> np.ndarray:
    """Indices (sorted) of ``per_class`` images of each class (0 real, 1 fake), or all of a
    class that has fewer. Each class is shuffled once with ``seed`` and its first ``per_class``
    kept, so the subsets of one seed are nested and do not depend on the other class."""
    labels = np.asarray(labels)
    chosen = []
    for label in (0, 1):
        members = np.flatnonzero(labels == label)
        order = np.random.default_rng([seed, label]).permutation(len(members))
        chosen.append(members[order[:per_class]])
    return np.sort(np.concatenate(chosen))


def sample_images(spec: ImageSetSpec, per_class: int | None, seed: int = 0,
                  sampling: str = "all") -> list[LabelledImage]:
    """The images of a set, or ``per_class`` of each class chosen with :func:`balanced_subsample`.
    The same list and seed give the same choice, so test sets sharing a real folder share the
    sampled reals (and their cached features)."""
    images = collect_images(spec, sampling)
    if per_class is None:
        return images
    keep = balanced_subsample(np.array([image.label for image in images]), per_class, seed)
    return [images[i] for i in keep]
