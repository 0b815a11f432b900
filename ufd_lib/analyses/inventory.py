"""Notebooks 01 and 02's question: what data does this run have, and what reached the feature
cache? Tables of sets, families, image counts against the expected ones, and example images."""
from __future__ import annotations

import pandas as pd

from ufd_lib.data.discovery import EmptyImageSetError, LabelledImage, collect_images
from ufd_lib.data.image_sets import Benchmark, ImageSetSpec
from ufd_lib.features.feature_sets import BenchmarkFeatures


def family_table(benchmark: Benchmark) -> pd.DataFrame:
    """One row per test set: its generator family and what that family is."""
    return pd.DataFrame([
        {"test set": name, "family": family, "what it is": benchmark.family_descriptions.get(family, "")}
        for name, family in benchmark.families.items()
    ])


def example_images(benchmark: Benchmark, per_class: int = 3) -> dict[str, tuple[list[str], list[str]]]:
    """The first ``per_class`` real and fake image paths (strings) of every test set, by set name."""
    examples = {}
    for spec in benchmark.test_sets:
        images = collect_images(spec)
        examples[spec.name] = ([i.path for i in images if i.label == 0][:per_class],
                               [i.path for i in images if i.label == 1][:per_class])
    return examples


def _images_or_none(spec: ImageSetSpec, sampling: str) -> list[LabelledImage]:
    """The set's images; none when its folders are missing or hold no image (the inventory's
    "missing" rows, where evaluating the set would be a usage error)."""
    if not (spec.real_root.exists() and spec.fake_root.exists()):
        return []
    try:
        return collect_images(spec, sampling)
    except EmptyImageSetError:
        return []


def data_inventory(benchmark: Benchmark, sampling: str = "all") -> pd.DataFrame:
    """Images found per set and class, against the expected counts of the test sets where known."""
    rows = []
    for role, specs in (("train", [benchmark.train]), ("val", [benchmark.val]), ("test", benchmark.test_sets)):
        for spec in specs:
            images = _images_or_none(spec, sampling)
            found_real = sum(1 for image in images if image.label == 0)
            found_fake = len(images) - found_real
            expected = benchmark.expected_counts.get(spec.name) if role == "test" else None
            status = "missing" if not images else "ok"
            if images and expected is not None and (found_real, found_fake) != tuple(expected):
                status = "count mismatch"
            rows.append({
                "role": role, "set": spec.name, "family": benchmark.families.get(spec.name, "training"),
                "n_real": found_real, "n_fake": found_fake,
                "expected_real": expected[0] if expected else None,
                "expected_fake": expected[1] if expected else None, "status": status,
            })
    return pd.DataFrame(rows)


def feature_counts(features: BenchmarkFeatures, families: dict[str, str]) -> pd.DataFrame:
    """One row per set: role, name, family, real and fake images with features, skipped files."""
    rows = []
    for role, sets in (("train", [features.train]), ("val", [features.val]), ("test", features.test_sets)):
        for feature_set in sets:
            rows.append({
                "role": role, "set": feature_set.name, "family": families.get(feature_set.name, "training"),
                "n_real": int((feature_set.labels == 0).sum()), "n_fake": int((feature_set.labels == 1).sum()),
                "skipped": len(feature_set.skipped),
            })
    return pd.DataFrame(rows)
