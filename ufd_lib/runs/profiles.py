"""Reproduction profiles: the one place that says what ``smoke`` and ``paper`` mean.

Notebooks receive only a profile name (plus a data root and output folder) as papermill
parameters and ask this module for everything else, so nothing inside them is
profile-specific.

- ``smoke``: the embedded synthetic benchmark (:mod:`ufd_lib.data.smoke_benchmark`), generated on
  first use, encoded by ``random-clip:small`` (random weights, no download). It checks that the
  pipeline runs end to end in minutes on 2 CPU cores; its numbers say nothing about the paper.
- ``paper``: the real datasets under ``--data-root`` laid out as the official releases
  (see ``data_manifests/``, read by :mod:`ufd_lib.data.manifests`), encoded by CLIP ViT-L/14; the
  paper's 19 test sets in its order.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ufd_lib import config
from ufd_lib.data.image_sets import Benchmark, ImageSetSpec


@dataclass(frozen=True)
class Profile:
    """Settings of one reproduction profile.

    k_values: nearest-neighbour pool sizes reported in the main tables.
    embedding_points_per_group: images per (family, class) group in t-SNE/UMAP plots.
    use_released_probe: whether notebooks 03 and 07 evaluate the official probe shipped with the
    package (``ufd_lib/classifiers/released/fc_weights.pth``) next to the probe trained here.
    compare_with_paper: whether the test sets are the paper's, so differences are meaningful.
    sampling: which images of each test set are evaluated (:mod:`ufd_lib.data.discovery`):
    ``"official"`` is the released evaluation's capped selection, from which the paper's Tables
    2–3 come; ``"all"`` every image. ``ufd reproduce --sampling`` replaces it.
    probe_lr: learning rate of the linear probe (the paper's 1e-4; the smoke training set is
    about 2000× smaller, two optimiser steps an epoch, so it uses 1e-3 to converge at all).

    Analyses and ablations (notebooks 05–10; defaults are the paper's settings):
    backbones: frozen feature spaces compared in notebook 08, as encoder registry strings.
    detector_architecture: the end-to-end trained real/fake classifier of notebook 05
    (``resnet50``: Wang et al. 2020, ImageNet-initialised; ``small_cnn``: a CPU-sized stand-in).
    detector_max_epochs, detector_batch_size, detector_lr: its training (Adam, early stopping
    on validation accuracy); detector_time_budget_s: wall-clock cap on training (None = none).
    released_detector: file name of the released CNNDetection weights in the weights directory.
    Without that file a ``resnet50`` detector is fine-tuned from torchvision's ImageNet weights
    (torch hub cache), and without those it is skipped, never trained from random weights.
    ablation_k_values: nearest-neighbour pool sizes of the k ablation.
    bank_fractions: shares of the training set kept in the feature-bank-size ablation (the
    paper's 8k, 20k, 80k, 200k, 720k of 720k images).
    category_counts: numbers of training categories in the category ablation (capped at what
    is present).
    jpeg_qualities, blur_sigmas: test-time degradations of the robustness sweep (PIL quality
    1..100; Gaussian sigma in pixels, 0 = none). robustness_images_per_class: images per class
    and test set in that sweep (None = all).
    unseen_example_set: the unseen-family test set of the "sink" t-SNE and of the
    nearest/farthest fakes (the paper's LDM). extreme_examples: images per nearest/farthest grid.
    spectrum_images: images per set and class averaged into a frequency spectrum.
    probe_view_counts: numbers V of cached augmented views per training image in the probe
    augmentation ablation (notebook 10; 0 = the unaugmented centre crop, which the main tables
    and ``ufd train-probe`` use by default as the fast choice). Each view encodes the whole
    training set once more (paper: 720k images per view).
    """

    name: str
    encoder: str
    description: str
    k_values: tuple[int, ...] = (1, 5, 9)
    batch_size: int = 64
    num_workers: int = 0
    embedding_points_per_group: int = 200
    use_released_probe: bool = False
    compare_with_paper: bool = False
    sampling: str = "all"
    smoke_images_per_class: int = 40
    probe_lr: float = config.PROBE_LR
    backbones: tuple[str, ...] = (
        "clip:ViT-L/14", "clip:ViT-B/16", "clip:RN50", "torchvision:resnet50", "torchvision:vit_b_16",
    )
    detector_architecture: str = "resnet50"
    detector_max_epochs: int = 100
    detector_batch_size: int = 64
    detector_lr: float = 1e-4
    detector_time_budget_s: float | None = None
    released_detector: str | None = None
    ablation_k_values: tuple[int, ...] = tuple(range(1, 10))
    bank_fractions: tuple[float, ...] = (8 / 720, 20 / 720, 80 / 720, 200 / 720, 1.0)
    category_counts: tuple[int, ...] = (2, 4, 8, 20)
    jpeg_qualities: tuple[int, ...] = (100, 90, 70, 50, 30)
    blur_sigmas: tuple[float, ...] = (0.0, 1.0, 2.0, 3.0, 4.0)
    robustness_images_per_class: int | None = None
    unseen_example_set: str = "LDM_200"
    extreme_examples: int = 10
    spectrum_images: int = 1000
    probe_view_counts: tuple[int, ...] = (0, 1, 2, 4)
    other_training_set: str = "ldm"

    def detector_request(self):
        """The trained-detector baseline this profile asks for, a
        :class:`~ufd_lib.classifiers.trained_detector.DetectorRequest` (imported here: it needs torch)."""
        from ufd_lib.classifiers.trained_detector import DetectorRecipe, DetectorRequest

        recipe = DetectorRecipe(architecture=self.detector_architecture, max_epochs=self.detector_max_epochs,
                                batch_size=self.detector_batch_size, lr=self.detector_lr,
                                time_budget_s=self.detector_time_budget_s)
        return DetectorRequest(recipe, self.released_detector, f"{self.name} profile")


PROFILES = {
    "smoke": Profile(
        name="smoke",
        encoder="random-clip:small",
        description=(
            "Embedded synthetic benchmark (stand-in images in the official layouts) encoded by a "
            "random-weight CLIP; no download. A pipeline check, not the paper's numbers."
        ),
        batch_size=32,
        embedding_points_per_group=60,
        probe_lr=1e-3,
        backbones=("random-clip:small", "random-torchvision:resnet18"),
        detector_architecture="small_cnn",
        detector_max_epochs=8,
        detector_batch_size=32,
        detector_lr=1e-3,
        detector_time_budget_s=60.0,
        bank_fractions=(0.05, 0.1, 0.25, 0.5, 1.0),
        category_counts=(1, 2, 3, 4),
        jpeg_qualities=(100, 60, 30),
        blur_sigmas=(0.0, 2.0, 4.0),
        robustness_images_per_class=6,
        unseen_example_set="ldm_200",
        extreme_examples=6,
        spectrum_images=40,
        probe_view_counts=(0, 1, 2),
    ),
    "paper": Profile(
        name="paper",
        encoder=config.DEFAULT_ENCODER,
        description="The paper's data (CNNDetection ProGAN training set, 19 test sets).",
        batch_size=128,
        num_workers=4,
        embedding_points_per_group=1000,
        use_released_probe=True,
        compare_with_paper=True,
        sampling="official",
        released_detector="blur_jpg_prob0.5.pth",
    ),
}


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
        from ufd_lib.data.smoke_benchmark import generate_smoke_benchmark

        per_class = profile.smoke_images_per_class
        smoke = generate_smoke_benchmark(data_root, images_per_class=per_class)
        expected = {spec.name: (per_class, per_class) for spec in smoke.test_sets}
        return Benchmark(smoke.train, smoke.val, smoke.test_sets, smoke.families, smoke.family_descriptions, expected,
                         other_training={name: sets for name, sets in smoke.other_training.items()
                                         if name == profile.other_training_set})
    from ufd_lib.data import manifests

    expected = {entry.paper_name: (entry.expected_real, entry.expected_fake)
                for entry in manifests.benchmark_entries()
                if entry.expected_real is not None and entry.expected_fake is not None}
    return Benchmark(
        train=manifests.paper_training_set(data_root),
        val=manifests.paper_validation_set(data_root),
        test_sets=manifests.paper_benchmark(data_root),
        families=manifests.test_set_families(),
        expected_counts=expected,
        other_training=other_training_sets(data_root, profile.other_training_set),
    )


def other_training_sets(data_root: Path, name: str) -> dict[str, tuple[ImageSetSpec, ImageSetSpec | None]]:
    """``{name: (train/<name>, val/<name> or None)}`` under ``data_root`` when ``train/<name>`` is
    a directory, else ``{}`` (the data is the user's to provide; none is downloaded)."""
    train, val = Path(data_root) / "train" / name, Path(data_root) / "val" / name
    if not train.is_dir():
        return {}
    return {name: (ImageSetSpec(name, train, train), ImageSetSpec(name, val, val) if val.is_dir() else None)}
