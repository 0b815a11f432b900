"""Reproduction profiles: the one place that says what ``smoke`` and ``paper`` mean.

Notebooks receive only a profile name (plus a data root and output folder) as papermill
parameters and ask this module for everything else, so nothing inside them is
profile-specific.

- ``smoke``: the embedded synthetic benchmark (:mod:`ufd_lib.smoke_benchmark`), generated on
  first use, encoded by ``random-clip:small`` (random weights, no download). It checks that the
  pipeline runs end to end in minutes on 2 CPU cores; its numbers say nothing about the paper.
- ``paper``: the real datasets under ``--data-root`` laid out as the official releases
  (see ``data_manifests/``), encoded by CLIP ViT-L/14; the paper's 19 test sets in its order.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from . import config
from .image_sets import ImageSetSpec


@dataclass(frozen=True)
class Profile:
    """Settings of one reproduction profile.

    k_values: nearest-neighbour pool sizes reported in the main tables.
    embedding_points_per_group: images per (family, class) group in t-SNE/UMAP plots.
    released_probe: file name of the official probe, looked for in the weights directory.
    compare_with_paper: whether the test sets are the paper's, so differences are meaningful.
    probe_lr: learning rate of the linear probe (the paper's 1e-4; the smoke training set is
    about 2000× smaller, two optimiser steps an epoch, so it uses 1e-3 to converge at all).
    """

    name: str
    encoder: str
    description: str
    k_values: tuple[int, ...] = (1, 5, 9)
    batch_size: int = 64
    num_workers: int = 0
    embedding_points_per_group: int = 200
    released_probe: str | None = None
    compare_with_paper: bool = False
    smoke_images_per_class: int = 40
    probe_lr: float = config.PROBE_LR


PROFILES = {
    "smoke": Profile(
        name="smoke",
        encoder="random-clip:small",
        description=(
            "Embedded synthetic benchmark with a random-weight CLIP (no download). A pipeline "
            "check: its numbers are not the paper's and are not comparable to them."
        ),
        batch_size=32,
        embedding_points_per_group=60,
        probe_lr=1e-3,
    ),
    "paper": Profile(
        name="paper",
        encoder=config.DEFAULT_ENCODER,
        description="The paper's data (CNNDetection ProGAN training set, 19 test sets) with CLIP ViT-L/14.",
        batch_size=128,
        num_workers=4,
        embedding_points_per_group=1000,
        released_probe="fc_weights.pth",
        compare_with_paper=True,
    ),
}


@dataclass(frozen=True)
class Benchmark:
    """The image sets a profile evaluates.

    families: test set name → generator family; family_descriptions: family → explanation;
    expected_counts: set name → (real, fake) images the data should hold, where known.
    """

    train: ImageSetSpec
    val: ImageSetSpec
    test_sets: list[ImageSetSpec]
    families: dict[str, str]
    family_descriptions: dict[str, str] = field(default_factory=dict)
    expected_counts: dict[str, tuple[int, int]] = field(default_factory=dict)


def get_profile(name: str) -> Profile:
    if name not in PROFILES:
        raise ValueError(f"unknown profile {name!r}; choose one of {', '.join(PROFILES)}")
    return PROFILES[name]


def default_data_root(profile: Profile, output_dir: Path) -> Path | None:
    """Where a profile's data lives when no --data-root is given (smoke: inside the run folder)."""
    return Path(output_dir) / "data" if profile.name == "smoke" else None


def load_benchmark(profile: Profile, data_root: Path | str | None) -> Benchmark:
    """The profile's image sets under ``data_root`` (generating the smoke benchmark if needed)."""
    if data_root is None:
        raise ValueError(f"profile {profile.name!r} needs a data root (--data-root DIR)")
    data_root = Path(data_root)
    if profile.name == "smoke":
        from .smoke_benchmark import generate_smoke_benchmark

        per_class = profile.smoke_images_per_class
        smoke = generate_smoke_benchmark(data_root, images_per_class=per_class)
        expected = {spec.name: (per_class, per_class) for spec in smoke.test_sets}
        return Benchmark(smoke.train, smoke.val, smoke.test_sets, smoke.families, smoke.family_descriptions, expected)
    from . import manifests

    expected = {entry.paper_name: (entry.expected_real, entry.expected_fake)
                for entry in manifests.benchmark_entries()
                if entry.expected_real is not None and entry.expected_fake is not None}
    return Benchmark(
        train=manifests.paper_training_set(data_root),
        val=manifests.paper_validation_set(data_root),
        test_sets=manifests.paper_benchmark(data_root),
        families=manifests.test_set_families(),
        expected_counts=expected,
    )
