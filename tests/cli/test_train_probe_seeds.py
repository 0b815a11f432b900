"""``ufd train-probe --seeds``: one probe per seed and the spread across seeds."""
from __future__ import annotations

import re

import torch
from conftest import TINY_ENCODER, make_image_set, ufd


def test_one_probe_per_seed_and_their_spread(capsys, tmp_path):
    make_image_set(tmp_path / "train", 6, 6)
    common = ["--encoder", TINY_ENCODER, "--device", "cpu", "--quiet", "--cache-dir", str(tmp_path / "cache")]
    code, stdout, stderr = ufd(capsys, "train-probe", *common, "--train", f"train={tmp_path / 'train'}",
                               "--epochs", "2", "--seeds", "0", "1", "2", "--out", tmp_path / "p" / "probe.pth")
    assert code == 0, stderr
    weights = [torch.load(tmp_path / "p" / f"probe_seed{seed}.pth", weights_only=True)["weight"] for seed in (0, 1, 2)]
    assert not torch.equal(weights[0], weights[1]) and not (tmp_path / "p" / "probe.pth").exists()
    accuracies = [float(value) for value in re.findall(r"best validation accuracy (\d+\.\d+)%", stdout)]
    assert len(accuracies) == 3
    pattern = r"over 3 seeds: best validation accuracy mean (\d+\.\d+)%.*range (\d+\.\d+)%-(\d+\.\d+)%"
    spread = re.search(pattern, stdout)
    assert spread and float(spread[2]) == min(accuracies) and float(spread[3]) == max(accuracies)
    assert abs(float(spread[1]) - sum(accuracies) / 3) < 0.01


def test_a_repeated_seed_is_refused_before_encoding(capsys, tmp_path):
    make_image_set(tmp_path / "train", 2, 2)
    code, _, stderr = ufd(capsys, "train-probe", "--encoder", TINY_ENCODER, "--device", "cpu", "--cache-dir",
                          str(tmp_path / "cache"), "--train", f"train={tmp_path / 'train'}", "--seeds", "1", "1",
                          "--out", tmp_path / "probe.pth")
    assert code == 2 and "--seeds: each seed once" in stderr
    assert not (tmp_path / "cache").exists()
