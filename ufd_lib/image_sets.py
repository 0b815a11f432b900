"""Named image sets: a test (or training) set is a real root and a fake root.

Official semantics (UniversalFakeDetect `validate.py`): real images are the files under
the real root inside a directory named ``0_real``; fake images are the files under the
fake root inside ``1_fake``. One root may serve both, and a category level may sit in
between (``progan/airplane/0_real``).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class ImageSetSpec:
    """One named set of real and fake images.

    name: the set's name as it appears in tables ("progan", "ldm_200", ...).
    real_root: directory searched for ``0_real`` folders.
    fake_root: directory searched for ``1_fake`` folders (often equal to real_root).
    """

    name: str
    real_root: Path
    fake_root: Path


class SpecError(ValueError):
    """A ``NAME=REAL[:FAKE]`` set specification that cannot be used."""


def parse_set_spec(text: str) -> ImageSetSpec:
    """Parse ``NAME=REAL[:FAKE]`` into an :class:`ImageSetSpec`.

    With FAKE omitted, REAL serves both classes. A REAL path that itself contains ``:`` is
    accepted when it names an existing directory. The directories must exist.
    """
    name, sep, roots = text.partition("=")
    name = name.strip()
    if not sep or not name or not roots:
        raise SpecError(f"{text!r} is not of the form NAME=REAL[:FAKE]")
    if os.path.isdir(roots) or ":" not in roots:
        real, fake = roots, roots
    else:
        real, _, fake = roots.partition(":")
        fake = fake or real
    for role, path in (("real", real), ("fake", fake)):
        if not os.path.isdir(path):
            raise SpecError(f"{name}: {role} directory {path!r} does not exist or is not a directory")
    return ImageSetSpec(name=name, real_root=Path(real), fake_root=Path(fake))
