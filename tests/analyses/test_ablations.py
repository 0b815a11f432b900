"""Ablations and sweeps: reproducible balanced subsets, the k=1 row equal to the main
nearest-neighbour result, categories read from the training layout, and robustness points
that never share cached features."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from conftest import make_image_set

from ufd_lib.analyses.backbones import has_spread
from ufd_lib.analyses.main_results import evaluate_methods, fit_methods, metric_table
from ufd_lib.analyses.nn_ablations import (
    bank_size_ablation,
    category_ablation,
    category_order,
    image_categories,
    k_ablation,
)
from ufd_lib.analyses.probe_augmentation import augmentation_ablation
from ufd_lib.analyses.robustness import degradations, robustness_sweep
from ufd_lib.analyses.tables import ALL_SETS, family_means
from ufd_lib.analyses.unseen_fakes import extremes, fake_bank_similarity
from ufd_lib.classifiers.nearest_neighbour import NearestNeighbourClassifier
from ufd_lib.data.discovery import balanced_subsample, sample_images
from ufd_lib.data.image_sets import ImageSetSpec
from ufd_lib.features.extraction.extract import ExtractionReport
from ufd_lib.features.feature_sets import BenchmarkFeatures, ExtractionOptions, FeatureSet, featurize

CATEGORIES = ("airplane", "bird", "car")
FAMILIES = {"gan_a": "gan", "gan_b": "gan", "diffusion_a": "diffusion"}


def synthetic_features(seed: int = 0, per_class_and_category: int = 10, d: int = 16) -> BenchmarkFeatures:
    """Features with some real/fake structure; training paths laid out as train/progan/<category>/<class>/."""
    rng = np.random.default_rng(seed)

    def feature_set(name: str, n_per_class: int, shift: float, paths=None) -> FeatureSet:
        labels = np.array([0] * n_per_class + [1] * n_per_class)
        features = rng.normal(size=(len(labels), d)).astype(np.float32)
        features[labels == 1, 0] += shift
        return FeatureSet(name, features, labels, paths or [f"{name}/{i}.png" for i in range(len(labels))])

    n = per_class_and_category
    paths = [f"/data/train/progan/{c}/0_real/{i:03d}.png" for c in CATEGORIES for i in range(n)]
    paths += [f"/data/train/progan/{c}/1_fake/{i:03d}.png" for c in CATEGORIES for i in range(n)]
    train = feature_set("progan", n * len(CATEGORIES), 1.5, paths)
    val = feature_set("progan", 5, 1.5)
    tests = [feature_set(name, 12, shift) for name, shift in (("gan_a", 1.5), ("gan_b", 0.8), ("diffusion_a", 0.3))]
    return BenchmarkFeatures(train, val, tests, ExtractionReport())


# --- subsets ---


def test_balanced_subsample_is_reproducible_balanced_and_nested():
    labels = np.array([0] * 30 + [1] * 50)
    np.random.default_rng(3).shuffle(labels)
    small, large = balanced_subsample(labels, 5, seed=1), balanced_subsample(labels, 20, seed=1)
    np.testing.assert_array_equal(small, balanced_subsample(labels, 5, seed=1))
    assert (labels[small] == 0).sum() == (labels[small] == 1).sum() == 5
    assert set(small) <= set(large), "a smaller bank is part of the larger one"
    assert not np.array_equal(small, balanced_subsample(labels, 5, seed=2))
    everything = balanced_subsample(labels, 40, seed=1)
    assert (labels[everything] == 0).sum() == 30 and (labels[everything] == 1).sum() == 40


def test_categories_come_from_the_training_layout():
    paths = ["/d/train/progan/cat/0_real/1.png", "/d/train/progan/dog/1_fake/x/2.png", "/d/train/progan/0_real/3.png"]
    assert list(image_categories(paths, "/d/train/progan")) == ["cat", "dog", ""]
    order = category_order(np.array(["b", "a", "c", "a"]), seed=0)
    assert sorted(order) == ["a", "b", "c"] and order == category_order(np.array(["c", "a", "b"]), seed=0)


# --- the main result is one row of each ablation ---


def main_nn_k1(features: BenchmarkFeatures) -> pd.DataFrame:
    """What notebook 03 reports for NN k=1: AP and accuracy per family, and the mean row."""
    results = evaluate_methods({"NN k=1": fit_methods(features, (1,), None)["NN k=1"]}, features)
    frame = pd.DataFrame({metric: pd.concat([family_means(metric_table(results, metric), FAMILIES)["NN k=1"],
                                             metric_table(results, metric).loc[["mean"], "NN k=1"]])
                          for metric in ("ap", "acc")})
    return frame.rename(index={"mean": ALL_SETS})


def rows_of(table: pd.DataFrame, column: str, value) -> pd.DataFrame:
    return table[table[column] == value].set_index("family")[["ap", "acc"]]


def test_k1_row_equals_the_main_nearest_neighbour_result():
    features = synthetic_features()
    expected = main_nn_k1(features)
    table = k_ablation(features, range(1, 10), FAMILIES, device="cpu")
    assert sorted(table["k"].unique()) == list(range(1, 10))
    pd.testing.assert_frame_equal(rows_of(table, "k", 1), expected, check_names=False)


def test_whole_bank_and_all_categories_rows_equal_the_main_result():
    features = synthetic_features()
    expected = main_nn_k1(features)
    bank = bank_size_ablation(features, (0.1, 0.5, 1.0), FAMILIES, k=1, device="cpu")
    pd.testing.assert_frame_equal(rows_of(bank, "fraction", 1.0), expected, check_names=False)
    categories = category_ablation(features, "/data/train/progan", (1, 2, 8, 20), FAMILIES, k=1, device="cpu")
    assert sorted(categories["n_categories"].unique()) == [1, 2, 3], "counts are capped at the categories present"
    pd.testing.assert_frame_equal(rows_of(categories, "n_categories", 3), expected, check_names=False)


def test_bank_sizes_are_balanced_shares_of_the_training_set():
    features = synthetic_features()  # 30 real + 30 fake
    table = bank_size_ablation(features, (0.1, 0.5, 1.0), FAMILIES, k=1, device="cpu")
    sizes = table.drop_duplicates("fraction")[["fraction", "bank_size", "bank_real", "bank_fake"]].to_numpy().tolist()
    assert sizes == [[0.1, 6, 3, 3], [0.5, 30, 15, 15], [1.0, 60, 30, 30]]


def test_category_banks_hold_every_image_of_the_chosen_categories():
    features = synthetic_features(per_class_and_category=4)
    table = category_ablation(features, "/data/train/progan", (1, 2), FAMILIES, device="cpu")
    table = table.drop_duplicates("n_categories")
    assert table["bank_real"].tolist() == [4, 8] and table["bank_fake"].tolist() == [4, 8]
    first, second = (set(text.split(", ")) for text in table["categories"])
    assert first < second


# --- linear-probe training augmentation ---


def test_zero_views_row_is_the_main_probe_and_views_change_it():
    features = synthetic_features()
    train = features.train.features
    views = np.stack([train + np.random.default_rng(v).normal(size=train.shape).astype(np.float32) for v in range(3)])
    table = augmentation_ablation(features, views.astype(np.float16), (0, 1, 3), FAMILIES, probe_lr=1e-2, device="cpu")
    settings = table.drop_duplicates("views")[["views", "train_encodings"]].to_numpy().tolist()
    assert settings == [[0, 60], [1, 60], [3, 180]], "n encodings unaugmented, V·n with V views"
    assert (table.groupby("views").size() == 3).all(), "two families and all test sets per setting"
    results = evaluate_methods({"LC": fit_methods(features, (1,), None, probe_lr=1e-2, device="cpu")["LC"]}, features)
    np.testing.assert_allclose(rows_of(table, "views", 0).loc[ALL_SETS, "ap"],
                               metric_table(results, "ap").loc["mean", "LC"])
    assert not rows_of(table, "views", 3).equals(rows_of(table, "views", 0))
    with pytest.raises(ValueError, match="4 views"):
        augmentation_ablation(features, views, (4,), FAMILIES, device="cpu")


# --- nearest / farthest ---


def test_fake_bank_similarity_ranks_fakes_by_their_nearest_training_fake():
    features = synthetic_features()
    query = features.test_sets[0]
    table = fake_bank_similarity(features.train, query)
    assert len(table) == int((query.labels == 1).sum())
    assert table["fake_similarity"].is_monotonic_decreasing
    unit = lambda X: X / np.linalg.norm(X, axis=1, keepdims=True)  # noqa: E731
    fakes = unit(query.features[query.labels == 1].astype(np.float64))
    bank = unit(features.train.features[features.train.labels == 1].astype(np.float64))
    expected = np.sort((fakes @ bank.T).max(axis=1))[::-1]
    np.testing.assert_allclose(table["fake_similarity"], expected, atol=1e-5)
    np.testing.assert_allclose(table["margin"], table["fake_similarity"] - table["real_similarity"])
    shown = extremes(table, 3)
    assert shown["which"].tolist() == ["nearest"] * 3 + ["farthest"] * 3
    assert shown["rank"].tolist() == [1, 2, 3, len(table) - 2, len(table) - 1, len(table)]
    assert len(extremes(table.head(4), 3)) == 4, "a short ranking is split in half, never repeated"


# --- robustness ---


def test_robustness_points_use_separate_cache_entries_and_the_same_images(tmp_path, tiny_encoder):
    train = make_image_set(tmp_path / "train", 4, 4)
    laion = make_image_set(tmp_path / "laion", 6, 0)
    tests = [ImageSetSpec("ldm", laion, make_image_set(tmp_path / "ldm", 0, 6)),
             ImageSetSpec("glide", laion, make_image_set(tmp_path / "glide", 0, 6))]
    options = ExtractionOptions(cache_root=tmp_path / "cache", progress=False, batch_size=8)
    clean = featurize(tiny_encoder, ImageSetSpec("train", train, train), options)
    knn = NearestNeighbourClassifier(k=1, device="cpu").fit(clean.features, clean.labels)
    points = degradations(jpeg_qualities=(30,), blur_sigmas=(0.0, 2.0))
    table = robustness_sweep({"NN k=1": (tiny_encoder, knn)}, tests, {"ldm": "LDM", "glide": "Glide"},
                             options, points, images_per_class=3)
    assert set(zip(table["kind"], table["level"])) == {("JPEG quality", 30.0), ("blur sigma", 0.0), ("blur sigma", 2.0)}
    # each row counts its own images: 3 real + 3 fake per family, 12 over all test sets
    counts = table.groupby("family")["n_images"].unique().map(list).to_dict()
    assert counts == {"LDM": [6], "Glide": [6], ALL_SETS: [12]}
    settings = sorted(p.name for p in (tmp_path / "cache").iterdir() if p.is_dir())
    assert len(settings) == 3, "clean (blur 0), JPEG 30 and blur 2 each have their own cache entry"
    # the two test sets share their real folder, so they share the sampled reals
    reals = [[i.path for i in sample_images(spec, 3) if i.label == 0] for spec in tests]
    assert reals[0] == reals[1]


def test_degenerate_feature_spaces_are_recognised():
    rng = np.random.default_rng(0)
    assert has_spread(rng.normal(size=(10, 4)))
    assert not has_spread(np.zeros((10, 4))), "all-zero features (a random net underflowing float16)"
    assert not has_spread(np.tile(rng.normal(size=(1, 4)), (10, 1)) * rng.uniform(1, 2, size=(10, 1))), \
        "rows that differ only in length point the same way"
