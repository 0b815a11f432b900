"""``ufd extract --layers ... --export DIR``: the disk estimate printed first, against the bytes
written; arrays a user's own code reads; layers the encoder lacks refused on one line."""
from __future__ import annotations

import json
import re

import numpy as np
import pandas as pd
from conftest import TINY_ENCODER, make_image_set, ufd


def argv(tmp_path, *extra):
    return ["extract", "--encoder", TINY_ENCODER, "--set", f"train={tmp_path / 'data' / 'train'}",
            "--set", f"test={tmp_path / 'data' / 'test'}", "--cache-dir", str(tmp_path / "cache"),
            "--batch-size", "4", "--device", "cpu", "--quiet", *extra]


def cache_bytes(root) -> int:
    """Bytes of the files in the cache's setting folders (not the file-identity memo beside them,
    nor the emptied claims folder)."""
    return sum(path.stat().st_size for folder in root.iterdir() if folder.is_dir()
               for path in folder.iterdir() if path.is_file())


def test_the_estimate_printed_first_is_what_the_cache_then_holds(capsys, tmp_path):
    make_image_set(tmp_path / "data" / "train", 6, 6)
    make_image_set(tmp_path / "data" / "test", 4, 4)
    status, out, _ = ufd(capsys, *argv(tmp_path, "--layers", "all", "--out", str(tmp_path / "run")))
    assert status == 0
    first, last = out.splitlines()[0], out.splitlines()[-1]
    assert first.startswith("ufd extract: 20 images × (final 768-d + 3 layers × 64-d), float16: at most")
    assert "encoded 20 images" in last
    estimate = int(re.search(r"\((\d+) bytes\)", first).group(1))
    written = cache_bytes(tmp_path / "cache")
    assert abs(estimate - written) <= 0.05 * written, (estimate, written)
    record = json.loads((tmp_path / "run" / "run.json").read_text())
    assert record["layers"] == [0, 1, 2] and record["estimated_bytes_at_most"] == estimate
    assert len([folder for folder in (tmp_path / "cache").iterdir() if folder.is_dir()]) == 4


def test_export_writes_each_sets_arrays_and_index(capsys, tmp_path):
    make_image_set(tmp_path / "data" / "train", 3, 2)
    make_image_set(tmp_path / "data" / "test", 2, 2, categories=("car", "cat"))
    status, out, _ = ufd(capsys, *argv(tmp_path, "--layers", "0,2", "--export", str(tmp_path / "export")))
    assert status == 0 and f"exported to {tmp_path / 'export'}" in out
    names = sorted(path.name for path in (tmp_path / "export").iterdir())
    assert names == ["test.csv", "test.npy", "test_layer0.npy", "test_layer2.npy",
                     "train.csv", "train.npy", "train_layer0.npy", "train_layer2.npy"]
    index = pd.read_csv(tmp_path / "export" / "test.csv")
    final = np.load(tmp_path / "export" / "test.npy")
    tokens = np.load(tmp_path / "export" / "test_layer2.npy")
    assert final.shape == (8, 768) and final.dtype == np.float32
    assert tokens.shape == (8, 64) and tokens.dtype == np.float16
    assert index["row"].tolist() == list(range(8)) and sorted(index["label"]) == [0] * 4 + [1] * 4
    assert all(("0_real" in path) == (label == 0) for path, label in zip(index["path"], index["label"]))
    # The rows are the cached features of those images: an export without --layers gives the same final rows.
    status, _, _ = ufd(capsys, *argv(tmp_path, "--export", str(tmp_path / "plain")))
    assert status == 0 and not list((tmp_path / "plain").glob("*_layer*.npy"))
    np.testing.assert_array_equal(np.load(tmp_path / "plain" / "test.npy"), final)


def test_layers_the_encoder_lacks_are_a_usage_error(capsys, tmp_path):
    make_image_set(tmp_path / "data" / "train", 2, 2)
    make_image_set(tmp_path / "data" / "test", 2, 2)
    status, _, err = ufd(capsys, *argv(tmp_path, "--layers", "0,3"))
    assert status == 2 and "--layers: layer 3 does not exist in random-clip:tiny" in err
    assert len(err.strip().splitlines()) == 1
    status, _, err = ufd(capsys, *argv(tmp_path, "--layers", "eight"))
    assert status == 2 and "expected 'all' or comma-separated layer numbers" in err
    status, _, err = ufd(capsys, "extract", "--encoder", "random-torchvision:resnet18", "--set",
                         f"train={tmp_path / 'data' / 'train'}", "--cache-dir", str(tmp_path / "cache"),
                         "--device", "cpu", "--quiet", "--layers", "all")
    assert status == 2 and "has no per-layer features" in err
