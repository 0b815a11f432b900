"""A benchmark: the training, validation and test image sets one reproduction evaluates."""
from __future__ import annotations

from dataclasses import dataclass, field

from ufd_lib.data.image_sets import ImageSetSpec


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
