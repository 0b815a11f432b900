"""Named image sets: a test (or training) set is a real root and a fake root, and a benchmark
is the training, validation and test sets one reproduction evaluates.

Official semantics (UniversalFakeDetect `validate.py`): real images are the files under
the real root inside a directory named ``0_real``; fake images are the files under the
fake root inside ``1_fake``. One root may serve both, and a category level may sit in
between (``progan/airplane/0_real``).
"""
from __future__ import annotations

import os
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path

from ufd_lib.data.adapters import ADAPTERS, AdapterError, adapter_paths
from ufd_lib.data.file_lists import is_pickled_list


@dataclass(frozen=True)
class ImageSetSpec:
    """One named set of real and fake images.

    name: the set's name as it appears in tables ("progan", "ldm_200", ...).
    real_root: directory searched for ``0_real`` folders, or a released-style pickled file list.
    fake_root: directory searched for ``1_fake`` folders (often equal to real_root), or a list.
    adapter, adapter_paths: a layout adapter's name and the paths it was given
    (:mod:`ufd_lib.data.adapters`), which then chooses the files; None and () for the layout above.
    allow_pickled_lists: the user opted in to reading pickled file lists (``--allow-pickled-lists``).
    """

    name: str
    real_root: Path
    fake_root: Path
    adapter: str | None = None
    adapter_paths: tuple[Path, ...] = ()
    allow_pickled_lists: bool = False


class PathArgumentError(ValueError):
    """A path given on the command line that cannot be used as it stands; the message is one
    line (paths appear as Python literals, so a newline in one shows as ``\\n``)."""


class SpecError(PathArgumentError):
    """A ``NAME=REAL[:FAKE]`` set specification that cannot be used."""


def control_character(text: str) -> str | None:
    """The first control character (NUL, newline, escape, ...) in ``text``, or None."""
    return next((char for char in text if unicodedata.category(char) == "Cc"), None)


def parse_set_spec(text: str) -> ImageSetSpec:
    """Parse ``NAME=REAL[:FAKE]`` or ``NAME=ADAPTER:PATH[:PATH]`` into an :class:`ImageSetSpec`.

    With FAKE omitted, REAL serves both classes. A REAL path that itself contains ``:`` is
    accepted when it names an existing directory. The directories must exist; a root may also
    be a released-style pickled file list (``.pickle``, ``.pkl``) of one class, so REAL and
    FAKE are then two lists. NAME may not hold control characters: it is printed as one row of
    the results. The text before the first ``:`` names a layout adapter
    (:mod:`ufd_lib.data.adapters`) when it is one and no directory of that name exists.
    """
    name, sep, roots = text.partition("=")
    name = name.strip()
    if not sep or not name or not roots:
        raise SpecError(f"{text!r} is not of the form NAME=REAL[:FAKE]")
    if control_character(name):
        raise SpecError(f"set name {name!r} contains a control character")
    adapter, colon, arguments = roots.partition(":")
    if colon and adapter in ADAPTERS and not os.path.isdir(roots) and not os.path.isdir(adapter):
        try:
            paths = adapter_paths(adapter, arguments)
        except AdapterError as error:
            raise SpecError(f"{name}: {error}") from None
        fake_root = paths[1] if ADAPTERS[adapter].required == 2 else paths[0]
        return ImageSetSpec(name, paths[0], fake_root, adapter=adapter, adapter_paths=paths)
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


def find_test_set(benchmark, name: str) -> ImageSetSpec:
    """The benchmark's test set called ``name`` (a clear error listing the names otherwise)."""
    for spec in benchmark.test_sets:
        if spec.name == name:
            return spec
    raise ValueError(f"no test set {name!r}; the benchmark has {', '.join(s.name for s in benchmark.test_sets)}")


@dataclass(frozen=True)
class Benchmark:
    """The image sets a profile evaluates.

    families: test set name → generator family; family_descriptions: family → explanation;
    expected_counts: test set name → (real, fake) images it should hold, where known.
    other_training: name → (training set, validation set or None) of training data other than
    the ProGAN training set that is present (the paper's Sec. 6.4 trains on LAION/LDM).
    """

    train: ImageSetSpec
    val: ImageSetSpec
    test_sets: list[ImageSetSpec]
    families: dict[str, str]
    family_descriptions: dict[str, str] = field(default_factory=dict)
    expected_counts: dict[str, tuple[int, int]] = field(default_factory=dict)
    other_training: dict[str, tuple[ImageSetSpec, ImageSetSpec | None]] = field(default_factory=dict)
