"""Image discovery: from an :class:`ImageSetSpec` to a sorted, labelled list of files.

Two ways to choose the files (``sampling``):

- ``"all"`` (default): a file is real when a directory named ``0_real`` lies on its path below
  (or at) the real root, fake when ``1_fake`` lies on its path below the fake root, and it is an
  image by :func:`ufd_lib.config.is_image_name`. Every such image is kept.
- ``"official"``: the released evaluation's selection (UniversalFakeDetect ``validate.py``:
  ``recursively_read``, ``get_list``, ``RealFakeDataset.read_path``), exactly but for one
  deliberate difference: the release shuffles the order of an unsorted directory walk, so its
  subset depends on the filesystem; we shuffle the sorted list. A file is read when the text
  between the first and second dot of its name is ``png``, ``jpg``, ``JPEG``, ``jpeg`` or
  ``bmp`` (:func:`ufd_lib.config.is_official_image_name`) and ``0_real`` (reals) or ``1_fake``
  (fakes) occurs anywhere in the joined path string; the release's walk does not enter
  symlinked directories. Every entry its walk lists as a file counts, regular or not (a dangling
  link or a FIFO named ``x.png`` is in the list that is shuffled, as in the release; extraction
  skips it afterwards, with the reason). Then ``random.seed(0)``, shuffle the reals, shuffle the
  fakes (one stream), keep the first 1000 of each, or 100 when either class has fewer than 1000.
  A path chosen in both classes (it contains both ``0_real`` and ``1_fake``) is labelled fake in
  both places, as the release's label dictionary does, with a warning. Image files the release
  would not read, and names without a dot (on which it stops), are reported as skipped, with the
  reason. Where the release stops on ``assert len(real_list) == len(fake_list)``, we warn and
  evaluate what there is.

Either way a set with no image in either class is a usage error (:class:`EmptyImageSetError`),
and a set with one class only is evaluated with a warning naming the missing class.
Discovery never opens a file: a FIFO named ``x.png`` is listed by name and never read.
Links to directories below the root are never entered (``os.walk``'s default, as in the
release): each is reported as skipped, with the reason (:data:`DIRECTORY_LINK`), so a link to
``/`` inside a set cannot pull the machine's images in and a link loop cannot form. The walk
keeps its own stack, so a deep tree costs no recursion.
"""
from __future__ import annotations

import os
import random
import warnings
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from itertools import compress, repeat
from operator import attrgetter, methodcaller, not_
from pathlib import Path
from typing import NamedTuple

import numpy as np

from ufd_lib import config
from ufd_lib.data.adapters import AdapterError, ClassSelection, adapter_selections
from ufd_lib.data.file_lists import is_pickled_list, read_pickled_list
from ufd_lib.data.image_sets import ImageSetSpec, PathArgumentError, SpecError

DIRECTORY_LINK = ("a link to a directory, not followed (as the released loader's os.walk); "
                  "give its target as the set's root instead")


class EmptyImageSetError(PathArgumentError):
    """An image set in which neither class holds an image (a usage error: wrong folder or layout)."""


class LabelledImage(NamedTuple):  # a tuple: half the cost of a frozen dataclass, one per file
    """One image file of a set; label 0 = real, 1 = fake.

    path: the file's path as a string, as discovery found it (the walked root joined with the
    names below it) or as a pickled file list gives it; wrap it in ``Path`` for path arithmetic.
    """

    path: str
    label: int


@dataclass
class DiscoveredImages:
    """What discovery found for one set: images (reals first, then fakes) and skipped
    (path, reason) pairs of image files the chosen rule leaves out. listed_real: how many of
    the images come from the real list (the first ones; more than the images labelled real
    when a path of both lists is labelled fake); None: the images labelled real."""

    images: list[LabelledImage]
    skipped: list[tuple[str, str]] = field(default_factory=list)
    listed_real: int | None = None


def _listing(directory: str) -> tuple[list[str], list[str], list[str]]:
    """(names of the subdirectories, names of the links to directories, names of everything
    else) in ``directory``, as ``os.walk`` tells them apart, but with no Python work per file;
    all empty when it cannot be listed (``os.walk`` skips it too)."""
    try:
        with os.scandir(directory) as listing:
            entries = list(listing)
    except OSError:
        return [], [], []
    names = list(map(attrgetter("name"), entries))
    try:
        is_directory = list(map(methodcaller("is_dir"), entries))
    except OSError:  # a link whose target cannot be looked at: not a directory, as for os.walk
        is_directory = [_is_directory(entry) for entry in entries]
    directories = list(compress(entries, is_directory))
    is_link = [_is_link(entry) for entry in directories]
    return ([entry.name for entry, link in zip(directories, is_link) if not link],
            [entry.name for entry, link in zip(directories, is_link) if link],
            list(compress(names, map(not_, is_directory))))


def _is_link(entry: os.DirEntry) -> bool:
    try:
        return entry.is_symlink()
    except OSError:
        return True


def _is_directory(entry: os.DirEntry) -> bool:
    try:
        return entry.is_dir()
    except OSError:
        return False


def _walk_directories(root: Path, links: list[str] | None = None) -> Iterator[tuple[str, list[str]]]:
    """(directory, names of its non-directory entries) below ``root`` (itself followed if a
    link), in sorted walk order (``os.walk``'s top-down order with each directory's
    subdirectories sorted), from an explicit stack (no recursion, whatever the depth).

    Links to directories below ``root`` are not entered; their paths are appended to ``links``
    when it is given. Each real directory is still visited once (a bind mount cannot loop).
    """
    visited: set[tuple[int, int]] = set()
    pending = [os.fspath(root)]
    while pending:
        directory = pending.pop()
        try:
            found = os.stat(directory)
        except OSError:
            continue
        if (found.st_dev, found.st_ino) in visited:
            continue
        visited.add((found.st_dev, found.st_ino))
        subdirectories, linked, files = _listing(directory)
        if links is not None:
            links += [os.path.join(directory, name) for name in linked]
        yield directory, files
        pending += [os.path.join(directory, name) for name in sorted(subdirectories, reverse=True)]


def _image_entries(directories: Iterable[tuple[str, list[str]]]) -> list[str]:
    """The entries of ``directories`` whose name passes :func:`ufd_lib.config.is_image_name`,
    as ``os.path.join(directory, name)`` strings, sorted; from the listings alone, with no
    ``stat`` of each entry and no Python work per file (discovery of a large tree costs about
    as much as listing it)."""
    paths: list[str] = []
    for directory, names in directories:
        paths += map(os.path.join(directory, "").__add__, config.image_names(names))
    paths.sort()
    return paths


def _image_files(directory: Path) -> list[str]:
    """The image files below ``directory`` (:func:`image_files_under`), as sorted strings."""
    return [path for path in _image_entries(_walk_directories(Path(directory))) if os.path.isfile(path)]


def _release_walk(root: Path) -> Iterator[tuple[str, bool]]:
    """(path, a link to a directory) of the entries below ``root``: the files the release's
    ``os.walk(rootdir)`` lists, then the links to directories it lists but does not enter."""
    links: list[str] = []
    for directory, files in _walk_directories(root, links):
        yield from ((os.path.join(directory, name), False) for name in files)
    yield from ((link, True) for link in links)


def image_files_under(directory: Path) -> list[Path]:
    """The image files below ``directory``: regular files, or links to them, whose name passes
    :func:`ufd_lib.config.is_image_name`, sorted by their string form."""
    return [Path(path) for path in _image_files(directory)]


def find_class_images(root: Path, class_dir: str) -> list[str]:
    """Image files under ``root`` that sit inside a directory named ``class_dir``.

    Does not enter links to directories (:func:`discover_images` reports them). Extensions
    are matched case-insensitively. Returns path strings, sorted. What
    each entry is (a regular file, a FIFO, a dangling link) is not looked at here but when it is
    read: extraction skips what is not a regular file, with the reason, in ``skipped.csv``.
    """
    return _class_images(Path(root), class_dir, _walk_directories(Path(root)))


def _class_images(root: Path, class_dir: str, directories: Iterable[tuple[str, list[str]]]) -> list[str]:
    """:func:`find_class_images` from the walk of ``root`` (:func:`_walk_directories`)."""
    if not (class_dir in root.resolve().parts or class_dir in root.parts):
        directories = ((directory, names) for directory, names in directories
                       if class_dir in Path(directory).relative_to(root).parts)
    return _image_entries(directories)


NO_DOT_REASON = "a name without a dot: the released loader stops on it (IndexError in file.split('.')[1])"


def _official_reason(path: str, through_link: bool) -> str | None:
    """Why the release would not read ``path``, or None if its file rule lets it (the class
    folder is checked by the caller)."""
    if through_link:
        return DIRECTORY_LINK
    name = os.path.basename(path)
    if "." not in name:
        return NO_DOT_REASON
    if not config.is_official_image_name(name):
        return ("the released loader reads only names whose text after the first dot is one of "
                + ", ".join(config.OFFICIAL_IMAGE_EXTENSIONS))
    return None


def _official_class_files(spec: ImageSetSpec) -> tuple[list[str], list[str], list[tuple[str, str]]]:
    """(reals, fakes, skipped) by the release's rule, each list sorted."""
    chosen: dict[str, list[str]] = {config.REAL_DIR: [], config.FAKE_DIR: []}
    skipped: dict[str, str] = {}
    for class_dir, root in ((config.REAL_DIR, spec.real_root), (config.FAKE_DIR, spec.fake_root)):
        if is_pickled_list(root):
            # The release applies no file rule to its pickled lists (data_mode "ours").
            chosen[class_dir] = _pickled_class_files(root, spec.allow_pickled_lists)
            continue
        for path, through_link in _release_walk(Path(root)):
            name = os.path.basename(path)
            reason = _official_reason(path, through_link)
            if reason is None and class_dir in path:
                chosen[class_dir].append(path)
            elif reason is None:
                skipped.setdefault(path, f"{class_dir} does not occur in its path")
            elif through_link or config.is_image_name(name) or config.is_official_image_name(name) or "." not in name:
                skipped[path] = reason
    taken = {path for paths in chosen.values() for path in paths}
    skipped_list = sorted((path, reason) for path, reason in skipped.items() if path not in taken)
    real, fake = (sorted(chosen[name]) for name in (config.REAL_DIR, config.FAKE_DIR))
    return real, fake, skipped_list


def official_subsample(real: list[str], fake: list[str]) -> tuple[list[str], list[str]]:
    """The released evaluation's cap: seed 0 once, shuffle the reals and then the fakes from
    the same stream, keep the first 1000 of each; if either class has fewer than 1000, keep
    only 100 of each (this hits SITD and SAN).

    Unlike the release we shuffle sorted lists, so the subset does not depend on the filesystem.
    """
    cap = config.OFFICIAL_MAX_PER_CLASS
    if cap > len(real) or cap > len(fake):
        cap = config.OFFICIAL_FALLBACK_PER_CLASS
    stream = random.Random(config.OFFICIAL_SAMPLING_SEED)  # the state random.seed(0) gives
    real, fake = list(real), list(fake)
    stream.shuffle(real)
    stream.shuffle(fake)
    return real[:cap], fake[:cap]


def _pickled_class_files(path: Path, allowed: bool) -> list[str]:
    """The files a released-style pickled file list names, as strings, sorted (``allowed``:
    :func:`ufd_lib.data.file_lists.read_pickled_list`)."""
    return sorted(str(listed) for listed in read_pickled_list(path, allowed))


def _class_files_and_links(root: Path, class_dir: str, allowed: bool) -> tuple[list[str], list[str]]:
    """(a class's files, the directory links below ``root``): found under a folder, or listed by
    a released-style pickled file list (every listed file belongs to the class, as in the
    release; sorted here too)."""
    if is_pickled_list(root):
        return _pickled_class_files(root, allowed), []
    links: list[str] = []
    return _class_images(Path(root), class_dir, _walk_directories(Path(root), links)), links


def _both_class_files(spec: ImageSetSpec) -> tuple[list[str], list[str], list[tuple[str, str]]]:
    """(reals, fakes, skipped directory links) by :func:`_class_files_and_links`; a folder that holds
    both classes (the usual layout) is walked once."""
    root = Path(spec.real_root)
    if spec.fake_root != spec.real_root or is_pickled_list(root):
        allowed = spec.allow_pickled_lists
        (real, real_links), (fake, fake_links) = (_class_files_and_links(spec.real_root, config.REAL_DIR, allowed),
                                                  _class_files_and_links(spec.fake_root, config.FAKE_DIR, allowed))
        links = sorted(set(real_links + fake_links))
    else:
        links = []
        directories = list(_walk_directories(root, links))
        real = _class_images(root, config.REAL_DIR, directories)
        fake = _class_images(root, config.FAKE_DIR, directories)
        links.sort()
    return real, fake, [(link, DIRECTORY_LINK) for link in links]


def _selected_files(selection: ClassSelection) -> list[str]:
    """The files of one class as a layout adapter selected them, sorted."""
    if selection.listed is not None:
        return list(selection.listed)
    wanted, width = selection.folders, len(selection.folders)

    def holds(path: str) -> bool:
        folders = Path(path).parts[:-1]
        return any(folders[i:i + width] == wanted for i in range(len(folders) - width + 1))

    return [path for path in _image_files(selection.root) if holds(path)]


def _adapter_class_files(spec: ImageSetSpec) -> tuple[list[str], list[str], list[tuple[str, str]]]:
    """(reals, fakes, skipped) of a set named through a layout adapter."""
    try:
        chosen = adapter_selections(spec.adapter, spec.adapter_paths)
    except AdapterError as error:
        raise SpecError(f"set {spec.name}: {error}") from None
    return _selected_files(chosen.real), _selected_files(chosen.fake), list(chosen.skipped)


def _labelled(paths: list[str], label: int) -> list[LabelledImage]:
    """A record per path, built by ``tuple.__new__``: a NamedTuple's own constructor is a Python
    function, called once per file of the tree otherwise."""
    return list(map(tuple.__new__, repeat(LabelledImage), zip(paths, repeat(label))))


def _empty_set_message(spec: ImageSetSpec) -> str:
    """Why a set has no image: how many image files its roots hold outside the class folders,
    and where they must go."""
    roots = list(dict.fromkeys((Path(spec.real_root), Path(spec.fake_root))))
    where = " or ".join(str(root) for root in roots)
    found = sum(len(_image_files(root)) for root in roots if root.is_dir() and not is_pickled_list(root))
    kinds = ", ".join(sorted(config.IMAGE_EXTENSIONS))
    if found:
        problem = f"{found} image file(s) under {where}, none inside a {config.REAL_DIR} or {config.FAKE_DIR} folder"
    else:
        problem = f"no image files ({kinds}) under {where}"
    return (f"set {spec.name}: {problem}; real images go in {spec.real_root}/{config.REAL_DIR}/ and fakes in "
            f"{spec.fake_root}/{config.FAKE_DIR}/ (a category folder may sit in between)")


def _check_classes(spec: ImageSetSpec, real: list[str], fake: list[str]) -> None:
    if not real and not fake:
        raise EmptyImageSetError(_empty_set_message(spec))
    for images, class_dir, root in ((real, config.REAL_DIR, spec.real_root), (fake, config.FAKE_DIR, spec.fake_root)):
        if not images:
            kind = "real" if class_dir == config.REAL_DIR else "fake"
            warnings.warn(f"set {spec.name}: no {kind} images ({class_dir}) under {root}; "
                          f"metrics that need both classes (average precision) will be NaN", stacklevel=3)


def discover_images(spec: ImageSetSpec, sampling: str = "all") -> DiscoveredImages:
    """All images of a set, reals first then fakes, each class sorted (or officially sampled),
    with the image files left out and why. A root may be a pickled file list
    (:mod:`ufd_lib.data.file_lists`), read only when allowed.

    sampling: ``"all"`` keeps every image; ``"official"`` is the release's selection (module
    docstring). A set named through a layout adapter takes the adapter's files either way, and
    ``"official"`` then applies the release's cap. Raises EmptyImageSetError when neither class has
    an image; warns when one has none.
    """
    if sampling not in config.SAMPLING_MODES:
        raise ValueError(f"sampling must be one of {config.SAMPLING_MODES}, got {sampling!r}")
    skipped: list[tuple[str, str]] = []
    if spec.adapter is not None:
        real, fake, skipped = _adapter_class_files(spec)
    elif sampling == "official":
        real, fake, skipped = _official_class_files(spec)
    else:
        real, fake, skipped = _both_class_files(spec)
    _check_classes(spec, real, fake)
    if sampling != "official":
        return DiscoveredImages(_labelled(real, 0) + _labelled(fake, 1), skipped)
    in_both = sorted(set(real).intersection(fake))
    real, fake = official_subsample(real, fake)
    if len(real) != len(fake):
        warnings.warn(f"set {spec.name}: {len(real)} real and {len(fake)} fake images after the official cap; "
                      "the released code stops here (it asserts equal classes), ufd evaluates them as they are",
                      stacklevel=2)
    return DiscoveredImages(_released_labels(spec, real, fake, in_both), skipped, len(real))


def _released_labels(spec: ImageSetSpec, real: list[str], fake: list[str], in_both: list[str]) -> list[LabelledImage]:
    """The reals (label 0) then the fakes (label 1), as the release labels them: its label
    dictionary is filled from the chosen reals and then the chosen fakes, so a path chosen in
    both classes is fake (1) in both places. ``in_both``: the paths in both lists before the
    cap, named in a warning."""
    if not in_both:
        return _labelled(real, 0) + _labelled(fake, 1)
    relabelled = set(real).intersection(fake)
    warnings.warn(f"set {spec.name}: {len(in_both)} path(s) contain both {config.REAL_DIR} and {config.FAKE_DIR} "
                  f"and are in both class lists: {', '.join(in_both)}; as in the released code, a path chosen in "
                  f"both is labelled fake (1) in both places ({len(relabelled)} chosen in both)", stacklevel=3)
    return [LabelledImage(path, int(path in relabelled)) for path in real] + _labelled(fake, 1)


def collect_images(spec: ImageSetSpec, sampling: str = "all") -> list[LabelledImage]:
    """The images of :func:`discover_images`, without the skipped files."""
    return discover_images(spec, sampling).images


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
