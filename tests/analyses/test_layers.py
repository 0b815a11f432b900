"""The layer analysis: the paper's layers mapped onto other depths, one row per layer,
classifier and family, concatenated layers, and the training subset within a disk budget."""
from __future__ import annotations

import numpy as np
import pytest

from ufd_lib.analyses.layers import (
    FINAL,
    beside_final,
    concatenated,
    layer_sweep,
    paper_layer_map,
    paper_layer_table,
    training_images_within,
    training_subset,
)
from ufd_lib.analyses.tables import ALL_SETS
from ufd_lib.classifiers.nearest_neighbour import NearestNeighbourClassifier
from ufd_lib.evaluation.scoring import evaluate_sets
from ufd_lib.features.extraction.extract import ExtractionReport
from ufd_lib.features.feature_sets import BenchmarkFeatures, FeatureSet

FAMILIES = {"gan_a": "gan", "diffusion_a": "diffusion"}


def benchmark(signal: float, seed: int, d: int = 8) -> BenchmarkFeatures:
    """Features whose reals and fakes lie ``signal`` apart along one axis, on either side of the
    origin (so cosine similarity sees it); the same image paths for every seed."""
    rng = np.random.default_rng(seed)

    def feature_set(name: str, per_class: int) -> FeatureSet:
        labels = np.repeat([0, 1], per_class)
        features = rng.normal(size=(len(labels), d)).astype(np.float32)
        features[:, 0] += np.where(labels == 1, signal / 2, -signal / 2)
        return FeatureSet(name, features, labels, [f"{name}/{i}.png" for i in range(len(labels))])

    return BenchmarkFeatures(feature_set("train", 30), feature_set("val", 10),
                             [feature_set("gan_a", 20), feature_set("diffusion_a", 20)], ExtractionReport())


def test_paper_layers_map_to_the_same_fraction_of_depth():
    assert paper_layer_map(24) == {0: 0, 8: 8, 16: 16, 24: 24}
    assert paper_layer_map(4) == {0: 0, 8: 1, 16: 3, 24: 4}
    assert paper_layer_map(12) == {0: 0, 8: 4, 16: 8, 24: 12}


def test_layer_sweep_rows_follow_each_layers_features():
    layers = {0: benchmark(0.0, 1), 1: benchmark(6.0, 2), FINAL: benchmark(6.0, 3)}
    sweep = layer_sweep(layers, FAMILIES, classifiers=("NN",), k=1)
    assert list(sweep.columns) == ["layer", "depth", "classifier", "family", "ap", "acc"]
    assert set(sweep["layer"]) == {"L0", "L1", "final"}
    assert sweep[sweep["layer"] == "final"]["depth"].isna().all()
    everything = sweep[sweep["family"] == ALL_SETS].set_index("layer")["ap"]
    assert everything["L1"] > 95 and everything["L0"] < 80  # the layer with signal separates, the other not
    # Each row is the classifier on that layer's features, as evaluate_sets gives it.
    one = layers[1]
    expected = evaluate_sets(NearestNeighbourClassifier(k=1).fit(one.train.features, one.train.labels), one.test_sets)
    gan = sweep[(sweep["layer"] == "L1") & (sweep["family"] == "gan")]["ap"].item()
    assert gan == pytest.approx(expected.metrics.set_index("test_set").loc["gan_a", "ap"] * 100)


def test_paper_layer_table_picks_the_mapped_layers_and_the_final_embedding():
    layers = {layer: benchmark(float(layer), layer) for layer in range(5)} | {FINAL: benchmark(2.0, 9)}
    sweep = layer_sweep(layers, FAMILIES, classifiers=("NN",))
    table = paper_layer_table(sweep, depth=4)
    assert list(dict.fromkeys(table["paper_layer"])) == ["L0", "L8", "L16", "L24", "final"]
    assert list(dict.fromkeys(table["layer"])) == ["L0", "L1", "L3", "L4", "final"]


def test_concatenated_layers_stack_the_same_images_side_by_side():
    a, b = benchmark(1.0, 1, d=3), benchmark(1.0, 2, d=5)
    joined = concatenated([a, b])
    assert joined.train.features.shape == (60, 8)
    np.testing.assert_array_equal(joined.test_sets[1].features[:, 3:], b.test_sets[1].features)
    b.val.paths[0] = "elsewhere.png"
    with pytest.raises(ValueError, match="val: the layers' features are not of the same images"):
        concatenated([a, b])


def test_training_subset_fits_the_budget_balanced():
    assert training_images_within(10_000, 100, other_images=40, train_images=1000) == 60
    assert training_images_within(10_000, 100, other_images=200, train_images=1000) == 0
    assert training_images_within(1e9, 100, other_images=0, train_images=1000) == 1000
    labels = np.repeat([0, 1], [70, 50])
    chosen = training_subset(labels, 60)
    assert len(chosen) == 60 and (labels[chosen] == 0).sum() == 30


def test_named_features_sit_beside_the_final_embedding():
    layers = {FINAL: benchmark(4.0, 1), "L0+L1": concatenated([benchmark(4.0, 2), benchmark(0.0, 3)])}
    sweep = layer_sweep({FINAL: layers[FINAL]}, FAMILIES, classifiers=("NN",))
    other = layer_sweep({"L0+L1": layers["L0+L1"]}, FAMILIES, classifiers=("NN",))
    assert other["depth"].isna().all() and set(other["layer"]) == {"L0+L1"}
    table = beside_final(sweep, other)
    assert list(dict.fromkeys(table["layer"])) == ["final", "L0+L1"]


def test_bootstrap_intervals_bracket_each_family_mean():
    from ufd_lib.evaluation.bootstrap import BootstrapSettings

    layers = {0: benchmark(1.5, 1), FINAL: benchmark(3.0, 2)}
    plain = layer_sweep(layers, FAMILIES, classifiers=("NN",))
    sweep = layer_sweep(layers, FAMILIES, classifiers=("NN",), bootstrap=BootstrapSettings(200, 0.9, seed=0))
    assert list(sweep.columns[-4:]) == ["ap_ci_low", "ap_ci_high", "acc_ci_low", "acc_ci_high"]
    np.testing.assert_allclose(sweep["ap"], plain["ap"])  # the point estimates do not change
    assert (sweep["ap_ci_low"] <= sweep["ap"] + 1e-9).all() and (sweep["ap"] <= sweep["ap_ci_high"] + 1e-9).all()
    assert (sweep["acc_ci_low"] <= sweep["acc"] + 1e-9).all() and (sweep["acc"] <= sweep["acc_ci_high"] + 1e-9).all()
    assert (sweep["ap_ci_high"] - sweep["ap_ci_low"] > 0).any()
