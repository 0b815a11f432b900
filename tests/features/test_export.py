"""Exported features: arrays and an index a user's own code can read without ufd."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from ufd_lib.features.export import export_feature_set
from ufd_lib.features.feature_sets import FeatureSet


def test_export_writes_final_and_layer_arrays_with_an_index(tmp_path):
    paths = ["/d/0_real/a.png", "/d/1_fake/b.png", "/d/1_fake/c.png"]
    final = FeatureSet("progan", np.arange(12, dtype=np.float32).reshape(3, 4), np.array([0, 1, 1]), paths)
    layer = FeatureSet("progan", np.full((3, 6), 0.5, dtype=np.float32), final.labels, list(paths))
    written = export_feature_set(tmp_path / "out", final, {8: layer})
    assert sorted(p.name for p in written) == ["progan.csv", "progan.npy", "progan_layer8.npy"]
    loaded = np.load(tmp_path / "out" / "progan.npy")
    assert loaded.dtype == np.float32 and np.array_equal(loaded, final.features)
    tokens = np.load(tmp_path / "out" / "progan_layer8.npy")
    assert tokens.dtype == np.float16 and tokens.shape == (3, 6) and np.all(tokens == 0.5)
    index = pd.read_csv(tmp_path / "out" / "progan.csv")
    assert list(index.columns) == ["row", "path", "label"]
    assert index["path"].tolist() == paths and index["label"].tolist() == [0, 1, 1]
    assert index["row"].tolist() == [0, 1, 2]


def test_export_refuses_layers_of_other_images_and_writes_nothing(tmp_path):
    final = FeatureSet("x", np.zeros((2, 4), np.float32), np.array([0, 1]), ["a.png", "b.png"])
    other = FeatureSet("x", np.zeros((2, 4), np.float32), np.array([0, 1]), ["b.png", "a.png"])
    with pytest.raises(ValueError, match="layer 3 features are not of the same images"):
        export_feature_set(tmp_path / "out", final, {3: other})
    assert not (tmp_path / "out").exists()
    with pytest.raises(ValueError, match="cannot name an exported file"):
        export_feature_set(tmp_path / "out", FeatureSet("../up", final.features, final.labels, final.paths))
