"""The ``ufd`` command line, end to end on tiny image trees with ``random-clip:tiny``."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import TINY_ENCODER, make_image_set, ufd

from ufd_lib.classifiers.linear_probe import LinearProbe
from ufd_lib.evaluation.metrics import METRIC_COLUMNS, average_precision
from ufd_lib.features.extraction.extract import extract_features, open_cache
from ufd_lib.features.preprocess import Perturbation

N_TRAIN, N_PROGAN, N_LDM = 8, 8, 6  # good images per set (progan also holds one broken file)


@pytest.fixture
def data(tmp_path):
    """train (flat), progan (two categories + a broken file), ldm (separate real and fake roots)."""
    root = tmp_path / "data"
    make_image_set(root / "train", 4, 4)
    make_image_set(root / "progan", 2, 2, categories=("car", "horse"))
    broken = root / "progan" / "horse" / "1_fake" / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    make_image_set(root / "laion", 3, 0)
    make_image_set(root / "ldm", 0, 3)
    return {
        "root": root,
        "train": f"train={root / 'train'}",
        "progan": f"progan={root / 'progan'}",
        "ldm": f"ldm={root / 'laion'}:{root / 'ldm'}",
        "broken": broken,
    }


@pytest.fixture
def common(tmp_path):
    return ["--encoder", TINY_ENCODER, "--device", "cpu", "--quiet", "--cache-dir", str(tmp_path / "cache")]


def evaluate(capsys, common, data, out, *extra):
    return ufd(capsys, "evaluate", *common, "--test", data["progan"], "--test", data["ldm"], "--out", out, *extra)


def sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def test_evaluate_knn_writes_the_tables_and_a_rerun_encodes_nothing(capsys, common, data, tmp_path):
    out = tmp_path / "run1"
    code, stdout, stderr = evaluate(capsys, common, data, out, "--classifier", "knn", "--k", "3",
                                    "--train", data["train"])
    assert code == 0, stderr

    with open(out / "metrics.csv") as handle:
        assert handle.readline().strip() == ",".join(METRIC_COLUMNS) == (
            "test_set,n_real,n_fake,ap,acc_real,acc_fake,acc,oracle_threshold,oracle_acc_real,oracle_acc_fake,oracle_acc,"
            "released_threshold,released_acc_real,released_acc_fake,released_acc,"
            "auc,eer,tpr_at_fpr_1,tpr_at_fpr_5,balanced_acc,ece,brier,nll"
        )
    metrics = pd.read_csv(out / "metrics.csv")
    assert metrics["test_set"].tolist() == ["progan", "ldm", "mean"]
    assert metrics["n_real"].tolist() == [4, 3, 7] and metrics["n_fake"].tolist() == [4, 3, 7]
    assert np.isnan(metrics["oracle_threshold"].iloc[-1])

    scores = pd.read_csv(out / "scores.csv")
    assert list(scores.columns) == ["test_set", "path", "label", "score"]
    assert len(scores) == N_PROGAN + N_LDM
    for name, group in scores.groupby("test_set"):
        row = metrics.set_index("test_set").loc[name]
        assert row["ap"] == pytest.approx(average_precision(group["label"], group["score"]), abs=1e-5)

    skipped = pd.read_csv(out / "skipped.csv")
    assert list(skipped.columns) == ["test_set", "path", "reason"]
    assert skipped["test_set"].tolist() == ["progan"]
    assert skipped["path"].tolist() == [str(data["broken"])]
    assert skipped["reason"].iloc[0]

    record = json.loads((out / "run.json").read_text())
    assert record["images_encoded"] == N_TRAIN + N_PROGAN + N_LDM
    assert record["images_from_cache"] == 0
    assert record["encoder"] == TINY_ENCODER
    # JSON types only: an image set is its fields, not a Python repr
    assert record["settings"]["test"][1] == {"name": "ldm", "real_root": str(data["root"] / "laion"),
                                             "fake_root": str(data["root"] / "ldm"),
                                             "adapter": None, "adapter_paths": [], "allow_pickled_lists": False}
    assert record["settings"]["train"]["name"] == "train" and record["settings"]["k"] == 3
    assert "ImageSetSpec" not in (out / "run.json").read_text() and "PosixPath" not in (out / "run.json").read_text()

    # printed in percent: the mean row's AP is metrics.csv's fraction × 100, two decimals
    printed = {line.split()[0]: line.split() for line in stdout.splitlines() if line.split()}
    assert printed["test_set"][:4] == ["test_set", "n_real", "n_fake", "AP%"]
    assert printed["mean"][1:4] == ["7", "7", f"{metrics['ap'].iloc[-1] * 100:.2f}"]

    again = tmp_path / "run2"
    code, _, stderr = evaluate(capsys, common, data, again, "--classifier", "knn", "--k", "3", "--train", data["train"])
    assert code == 0, stderr
    record = json.loads((again / "run.json").read_text())
    assert record["images_encoded"] == 0
    assert record["images_from_cache"] == N_TRAIN + N_PROGAN + N_LDM
    pd.testing.assert_frame_equal(pd.read_csv(again / "scores.csv"), scores)


def test_evaluate_linear_scores_are_the_probe_on_cached_features(capsys, common, data, tmp_path, tiny_encoder):
    rng = np.random.default_rng(0)
    weight, bias = rng.normal(size=768) * 0.05, 0.1
    probe_path = tmp_path / "probe.pth"
    torch.save({"weight": torch.tensor(weight[None, :], dtype=torch.float32),
                "bias": torch.tensor([bias], dtype=torch.float32)}, probe_path)
    out = tmp_path / "linear"
    code, _, stderr = evaluate(capsys, common, data, out, "--classifier", "linear", "--probe", probe_path)
    assert code == 0, stderr
    scores = pd.read_csv(out / "scores.csv")
    assert pd.read_csv(out / "metrics.csv")["test_set"].tolist() == ["progan", "ldm", "mean"]

    cache = open_cache(tiny_encoder, Perturbation(), tmp_path / "cache")
    features, kept, report = extract_features(tiny_encoder, [p for p in scores["path"]], cache, progress=False)
    assert report.images_encoded == 0 and kept.all()
    expected = sigmoid(features.astype(np.float64) @ np.float32(weight).astype(np.float64) + np.float32(bias))
    np.testing.assert_allclose(scores["score"].to_numpy(), expected, rtol=1e-5, atol=1e-7)


def test_evaluate_on_a_full_disk_names_the_file_and_keeps_older_results(capsys, common, data, tmp_path):
    from ufd_lib.reliability.output_checks import disk_full_while_writing

    out = tmp_path / "out"
    knn = ["--classifier", "knn", "--train", data["train"]]
    assert evaluate(capsys, common, data, out, *knn, "--k", "1")[0] == 0
    before = {path.name: path.read_bytes() for path in out.iterdir()}
    with disk_full_while_writing("scores.csv"):
        code, stdout, stderr = evaluate(capsys, common, data, out, *knn, "--k", "3")
    assert code == 1
    assert f"could not write {out / 'scores.csv'}: No space left on device" in stderr
    assert {path.name: path.read_bytes() for path in out.iterdir()} == before  # no new file, no temporary


def test_evaluate_refuses_a_probe_with_nan_weights_before_scoring(capsys, common, data, tmp_path):
    probe_path = tmp_path / "nan.pth"
    torch.save({"weight": torch.full((1, 768), float("nan")), "bias": torch.zeros(1)}, probe_path)
    code, stdout, stderr = evaluate(capsys, common, data, tmp_path / "out", "--classifier", "linear",
                                    "--probe", probe_path)
    assert code == 2 and stdout == ""
    assert str(probe_path) in stderr and "weight" in stderr and len(stderr.strip().splitlines()) == 1
    assert not (tmp_path / "out" / "metrics.csv").exists()


def test_train_probe_then_predict_json(capsys, common, data, tmp_path, tiny_encoder):
    probe_path = tmp_path / "probes" / "probe.pth"
    code, stdout, stderr = ufd(capsys, "train-probe", *common, "--train", data["train"], "--out", probe_path)
    assert code == 0, stderr
    probe = LinearProbe.load(probe_path)
    assert probe.n_features_in_ == 768

    folder = data["root"] / "progan"
    code, stdout, stderr = ufd(capsys, "predict", *common, "--probe", probe_path, "--json", folder)
    assert code == 1, "a skipped file must make the exit status non-zero"
    assert "broken.png" in stderr
    lines = [json.loads(line) for line in stdout.splitlines()]
    assert len(lines) == N_PROGAN
    assert [line["path"] for line in lines] == sorted(line["path"] for line in lines)
    cache = open_cache(tiny_encoder, Perturbation(), tmp_path / "cache")
    features, _, _ = extract_features(tiny_encoder, [line["path"] for line in lines], cache, progress=False)
    expected = probe.predict_proba(features)[:, 1]
    for line, probability in zip(lines, expected):
        assert set(line) == {"path", "probability_fake", "label"}
        assert line["probability_fake"] == pytest.approx(probability, rel=1e-6)
        assert line["label"] == ("fake" if probability > 0.5 else "real")

    one = folder / "car" / "0_real" / "000.png"
    code, stdout, stderr = ufd(capsys, "predict", *common, "--probe", probe_path, one)
    assert code == 0, stderr
    path, probability, label = stdout.strip().split("\t")
    assert path == str(one) and label in ("real", "fake") and 0 <= float(probability) <= 1


@pytest.mark.parametrize(
    "argv, named",
    [
        (["--classifier", "knn", "--train", "{train}", "--out", "{out}"], "--test"),
        (["--classifier", "knn", "--train", "{train}", "--test", "{progan}", "--out", "{out}", "--k", "0"], "--k"),
        (["--classifier", "knn", "--train", "{train}", "--test", "{progan}", "--out", "{out}", "--k", "two"], "--k"),
        (["--classifier", "knn", "--train", "{train}", "--test", "{progan}", "--out", "{out}",
          "--jpeg-quality", "0"], "--jpeg-quality"),
        (["--classifier", "knn", "--train", "{train}", "--test", "{progan}", "--out", "{out}",
          "--jpeg-quality", "101"], "--jpeg-quality"),
        (["--classifier", "knn", "--train", "{train}", "--test", "{progan}", "--out", "{out}",
          "--blur-sigma", "-1"], "--blur-sigma"),
        (["--classifier", "knn", "--train", "{train}", "--test", "x={missing}", "--out", "{out}"], "{missing}"),
        (["--classifier", "knn", "--test", "{progan}", "--out", "{out}"], "--train"),
        (["--classifier", "svm", "--train", "{train}", "--test", "{progan}", "--out", "{out}"], "--classifier"),
        (["--classifier", "linear", "--probe", "{missing}", "--test", "{progan}", "--out", "{out}"], "{missing}"),
        (["--classifier", "linear", "--test", "{progan}", "--out", "{out}"], "--probe"),
    ],
    ids=["no-test", "k-zero", "k-text", "jpeg-0", "jpeg-101", "blur-negative", "missing-test-dir",
         "knn-without-train", "unknown-classifier", "missing-probe", "linear-without-probe"],
)
def test_evaluate_bad_usage_exits_2_naming_the_problem(capsys, common, data, tmp_path, argv, named):
    values = {"train": data["train"], "progan": data["progan"], "out": tmp_path / "out",
              "missing": tmp_path / "no-such-dir"}
    argv = [a.format(**values) for a in argv]
    code, _, stderr = ufd(capsys, "evaluate", *common, *argv)
    assert code == 2
    assert named.format(**values) in stderr
    assert not (tmp_path / "out" / "metrics.csv").exists()


def test_probe_of_the_wrong_dimension_exits_2(capsys, common, data, tmp_path):
    probe_path = tmp_path / "small.pth"
    torch.save({"weight": torch.zeros(1, 512), "bias": torch.zeros(1)}, probe_path)
    code, _, stderr = evaluate(capsys, common, data, tmp_path / "out", "--classifier", "linear", "--probe", probe_path)
    assert code == 2 and str(probe_path) in stderr and "512" in stderr


@pytest.mark.parametrize("kind", ["missing", "directory", "not-a-probe"])
def test_predict_with_unreadable_probe_exits_2_naming_it(capsys, common, data, tmp_path, kind):
    probe_path = tmp_path / "probe.pth"
    if kind == "directory":
        probe_path.mkdir()
    elif kind == "not-a-probe":
        probe_path.write_text("hello")
    code, stdout, stderr = ufd(capsys, "predict", *common, "--probe", probe_path, data["root"] / "progan")
    assert code == 2
    assert str(probe_path) in stderr
    assert stdout == ""


def test_predict_missing_image_exits_2(capsys, common, tmp_path):
    probe_path = tmp_path / "probe.pth"
    torch.save({"weight": torch.zeros(1, 768), "bias": torch.zeros(1)}, probe_path)
    code, _, stderr = ufd(capsys, "predict", *common, "--probe", probe_path, tmp_path / "absent.png")
    assert code == 2 and "absent.png" in stderr


@pytest.mark.slow  # a fresh interpreter imports torch, torchvision and CLIP: about 10 s
@pytest.mark.timeout(180)
def test_python_dash_m_ufd_lib(data, tmp_path):
    env = {**os.environ, "UFD_CACHE_DIR": str(tmp_path / "env-cache"), "UFD_OFFLINE": "1"}
    out = tmp_path / "out"
    command = [sys.executable, "-m", "ufd_lib", "evaluate", "--encoder", TINY_ENCODER, "--device", "cpu", "--quiet",
               "--classifier", "knn", "--train", data["train"], "--test", data["ldm"], "--out", str(out)]
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=170)
    assert done.returncode == 0, done.stderr
    assert "ldm" in done.stdout
    metrics = pd.read_csv(out / "metrics.csv")
    assert list(metrics.columns) == METRIC_COLUMNS and metrics["test_set"].tolist() == ["ldm", "mean"]
    assert json.loads((out / "run.json").read_text())["images_encoded"] == N_TRAIN + N_LDM
    assert any((tmp_path / "env-cache").iterdir()), "UFD_CACHE_DIR was not used"


def test_predict_defaults_to_the_released_probe(capsys, common, data, tiny_encoder, tmp_path):
    from ufd_lib.classifiers.released import RELEASED_PROBE

    one = data["root"] / "train" / "0_real" / "000.png"
    code, stdout, stderr = ufd(capsys, "predict", *common, one)
    assert code == 0, stderr
    state = torch.load(RELEASED_PROBE, map_location="cpu", weights_only=True)
    cache = open_cache(tiny_encoder, Perturbation(), tmp_path / "cache")
    features, _, _ = extract_features(tiny_encoder, [one], cache, progress=False)
    expected = sigmoid(features[0].astype(np.float64) @ state["weight"][0].double().numpy() + state["bias"].item())
    path, probability, label = stdout.strip().split("\t")
    assert path == str(one) and float(probability) == pytest.approx(expected, abs=2e-6)
    assert label == ("fake" if expected > 0.5 else "real")


def test_predict_with_a_bank_is_nearest_neighbour_on_cached_features(capsys, common, data, tiny_encoder, tmp_path):
    from ufd_lib.classifiers.nearest_neighbour import NearestNeighbourClassifier
    from ufd_lib.data.image_sets import parse_set_spec
    from ufd_lib.features.feature_sets import ExtractionOptions, featurize

    folder = data["root"] / "ldm"
    code, stdout, stderr = ufd(capsys, "predict", *common, "--bank", data["train"], "--json", folder)
    assert code == 0, stderr
    lines = [json.loads(line) for line in stdout.splitlines()]
    bank = featurize(tiny_encoder, parse_set_spec(data["train"]),
                     ExtractionOptions(cache_root=tmp_path / "cache", progress=False))
    cache = open_cache(tiny_encoder, Perturbation(), tmp_path / "cache")
    features, _, _ = extract_features(tiny_encoder, [line["path"] for line in lines], cache, progress=False)
    expected = NearestNeighbourClassifier(k=1).fit(bank.features, bank.labels).decision_function(features)
    assert len(lines) == N_LDM // 2
    for line, margin in zip(lines, expected):
        assert line["cosine_margin"] == pytest.approx(margin, abs=1e-5)
        assert line["label"] == ("fake" if margin > 0 else "real")

    code, _, stderr = ufd(capsys, "predict", *common, "--bank", data["train"], "--probe", "released", folder)
    assert code == 2 and "--bank" in stderr and "--probe" in stderr


def test_predict_text_output_escapes_newlines_in_paths(capsys, common, tmp_path):
    from conftest import write_image

    odd = write_image(tmp_path / "two\nlines\tand\\slash.png", seed=3)
    code, stdout, stderr = ufd(capsys, "predict", *common, odd)
    assert code == 0, stderr
    [line] = stdout.splitlines()
    path, probability, label = line.split("\t")
    assert path == str(tmp_path) + "/two\\nlines\\tand\\\\slash.png"
    assert path.encode().decode("unicode_escape") == str(odd)


def test_predict_released_probe_on_a_narrower_encoder_exits_2(capsys, data, tmp_path):
    one = data["root"] / "train" / "0_real" / "000.png"
    code, stdout, stderr = ufd(capsys, "predict", "--encoder", "random-torchvision:resnet18", "--device", "cpu",
                               "--quiet", "--cache-dir", tmp_path / "cache", one)
    assert code == 2 and "released probe" in stderr and "768-d" in stderr and stdout == ""


def test_train_probe_flags_reach_the_probe_and_the_save_is_atomic(capsys, common, data, tmp_path, monkeypatch):
    from ufd_lib.cli import train_probe

    seen = {}
    original = train_probe.LinearProbe.__init__

    def spy(self, **kwargs):
        seen.update(kwargs)
        original(self, **kwargs)

    monkeypatch.setattr(train_probe.LinearProbe, "__init__", spy)
    out = tmp_path / "probe.pth"
    code, stdout, stderr = ufd(capsys, "train-probe", *common, "--train", data["train"], "--lr", "0.002",
                               "--epochs", "3", "--patience", "2", "--seed", "7", "--out", out)
    assert code == 0, stderr
    assert {k: seen[k] for k in ("lr", "max_epochs", "patience", "seed")} == {"lr": 0.002, "max_epochs": 3,
                                                                             "patience": 2, "seed": 7}
    epochs, accuracy = re.search(r"for (\d+) epochs; best validation accuracy ([\d.]+)% \(epoch", stdout).groups()
    assert 1 <= int(epochs) <= 3 and 0 <= float(accuracy) <= 100
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".probe.pth")] == [], "temporary left behind"
    assert LinearProbe.load(out).n_features_in_ == 768


@pytest.mark.parametrize("flag, value", [("--lr", "0"), ("--lr", "nan"), ("--epochs", "0"), ("--patience", "-1")])
def test_train_probe_bad_hyperparameters_exit_2(capsys, common, data, tmp_path, flag, value):
    code, _, stderr = ufd(capsys, "train-probe", *common, "--train", data["train"], flag, value,
                          "--out", tmp_path / "p.pth")
    assert code == 2 and flag in stderr and not (tmp_path / "p.pth").exists()


@pytest.mark.parametrize("history, chance, problem", [
    ([{"epoch": 0, "val_acc": 0.5}, {"epoch": 1, "val_acc": 0.51}], 0.5, "at chance (50.0%)"),
    ([{"epoch": 0, "val_acc": 0.75}, {"epoch": 1, "val_acc": 0.75}], 0.75, "at chance (75.0%)"),
    ([{"epoch": 0, "val_acc": 0.9}, {"epoch": 1, "val_acc": 0.8}], 0.5, "came from epoch 0"),
    ([{"epoch": 0, "val_acc": 0.6}, {"epoch": 1, "val_acc": 0.9}], 0.5, None),
])
def test_train_probe_warns_when_the_probe_learned_nothing(history, chance, problem):
    from ufd_lib.cli.train_probe import training_warning

    warning = training_warning(history, chance, lr=1e-4, epochs=100)
    if problem is None:
        assert warning is None
    else:
        assert problem in warning and "--lr 1e-3" in warning and "--epochs 200" in warning


def test_train_probe_on_indistinguishable_images_warns(capsys, common, tmp_path):
    """Real and fake folders holding the same pixels: nothing to learn, and the command says so."""
    import shutil

    from conftest import make_image_set

    root = make_image_set(tmp_path / "same", 6, 0)
    shutil.copytree(root / "0_real", root / "1_fake")
    code, stdout, stderr = ufd(capsys, "train-probe", *common, "--train", f"same={root}", "--epochs", "3",
                               "--out", tmp_path / "p.pth")
    assert code == 0 and "warning:" in stderr and "at chance" in stderr
    assert (tmp_path / "p.pth").exists()


def _actions(parser):
    import argparse

    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from ((f"{name} {n}", a) for n, a in _actions(sub))
        elif not isinstance(action, argparse._HelpAction):
            yield (action.option_strings or [action.dest])[0], action


def test_every_flag_and_positional_explains_itself():
    from ufd_lib.cli.parser import build_parser

    undocumented = [name for name, action in _actions(build_parser()) if not action.help]
    assert undocumented == []


def test_evaluate_help_shows_the_folder_layouts(capsys):
    code, stdout, _ = ufd(capsys, "evaluate", "--help")
    assert code == 0
    for text in ("ROOT/0_real/*.png", "ROOT/airplane/1_fake/*.png", "NAME=REAL:FAKE", "share their reals"):
        assert text in stdout


def test_train_probe_that_fails_to_write_keeps_the_previous_probe(capsys, common, data, tmp_path, monkeypatch):
    out = tmp_path / "probe.pth"
    out.write_bytes(b"previous probe")

    def full_disk(self, handle):
        handle.write(b"half a probe")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(LinearProbe, "save", full_disk)
    code, _, stderr = ufd(capsys, "train-probe", *common, "--train", data["train"], "--epochs", "1", "--out", out)
    assert code == 1 and str(out) in stderr
    assert out.read_bytes() == b"previous probe"
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []


def test_predict_on_a_folder_without_images_exits_2_before_loading(capsys, tmp_path):
    (tmp_path / "empty").mkdir()
    code, stdout, stderr = ufd(capsys, "predict", tmp_path / "empty")  # default encoder: CLIP weights absent here
    assert code == 2 and "no images in" in stderr and "empty" in stderr and stdout == ""


@pytest.mark.timeout(60)
@pytest.mark.parametrize("sampling", ["all", "official"])
def test_evaluate_lists_a_fifo_and_a_dangling_link_in_skipped_csv(capsys, common, data, tmp_path, sampling):
    fake_folder = data["root"] / "ldm" / "1_fake"
    os.mkfifo(fake_folder / "pipe.png")  # opening it for reading would block for ever
    (fake_folder / "gone.png").symlink_to(tmp_path / "nowhere.png")
    out = tmp_path / "out"
    code, stdout, stderr = evaluate(capsys, common, data, out, "--classifier", "knn", "--train", data["train"],
                                    "--sampling", sampling)
    assert code == 0, stderr
    skipped = pd.read_csv(out / "skipped.csv")
    reasons = {(test_set, path): reason for test_set, path, reason in skipped.itertuples(index=False)}
    assert reasons[("ldm", str(fake_folder / "pipe.png"))] == "not a regular file (a FIFO)"
    assert reasons[("ldm", str(fake_folder / "gone.png"))] == "dangling symbolic link"


def test_every_metric_is_recomputed_exactly_from_scores_csv(capsys, common, data, tmp_path, tiny_encoder):
    """scores.csv holds round-trip exact scores in the evaluated order, so metrics.csv follows
    from it bit for bit, also when a steep probe's float32 scores saturate and tie."""
    from ufd_lib.data.discovery import image_files_under
    from ufd_lib.evaluation.metrics import metrics_table
    from ufd_lib.evaluation.metrics import test_set_metrics as set_metrics

    weight = np.random.default_rng(1).normal(size=768).astype(np.float32)
    cache = open_cache(tiny_encoder, Perturbation(), tmp_path / "cache")
    features, _, _ = extract_features(tiny_encoder, image_files_under(data["root"]), cache, progress=False)
    bias = 17.0 - float(np.median(features @ weight))  # about half the logits above 16.6: saturated
    probe_path = tmp_path / "steep.pth"
    torch.save({"weight": torch.tensor(weight[None, :]), "bias": torch.tensor([bias], dtype=torch.float32)},
               probe_path)
    out = tmp_path / "out"
    code, _, stderr = evaluate(capsys, common, data, out, "--classifier", "linear", "--probe", probe_path,
                               "--sampling", "official")
    assert code == 0, stderr
    scores = pd.read_csv(out / "scores.csv")
    assert 2 <= (scores["score"] == 1.0).sum() < len(scores)  # some saturated and tied, as in the release
    rows = [set_metrics(name, group["label"].to_numpy(), group["score"].to_numpy(), 0.5, probabilities=True)
            for name, group in scores.groupby("test_set", sort=False)]
    pd.testing.assert_frame_equal(metrics_table(rows), pd.read_csv(out / "metrics.csv"), check_exact=True,
                                  check_dtype=False)


def test_evaluate_probe_released_is_the_shipped_probe(capsys, common, data, tmp_path):
    from ufd_lib.classifiers.released import RELEASED_PROBE

    code, _, stderr = evaluate(capsys, common, data, tmp_path / "named", "--classifier", "linear",
                               "--probe", "released")
    assert code == 0, stderr
    code, _, stderr = evaluate(capsys, common, data, tmp_path / "path", "--classifier", "linear",
                               "--probe", RELEASED_PROBE)
    assert code == 0, stderr
    assert (tmp_path / "named" / "scores.csv").read_bytes() == (tmp_path / "path" / "scores.csv").read_bytes()


def test_evaluate_samples_only_the_test_sets(capsys, common, data, tmp_path, monkeypatch):
    """--sampling official chooses the test sets' images; the --train bank keeps every image."""
    from ufd_lib.cli import evaluate as evaluate_command

    seen = {}
    real_featurize = evaluate_command.featurize

    def recording(encoder, spec, options, report=None):
        seen[spec.name] = options.sampling
        return real_featurize(encoder, spec, options, report)

    monkeypatch.setattr(evaluate_command, "featurize", recording)
    code, _, stderr = evaluate(capsys, common, data, tmp_path / "out", "--classifier", "knn", "--train", data["train"],
                               "--sampling", "official")
    assert code == 0, stderr
    assert seen == {"train": "all", "progan": "official", "ldm": "official"}


def test_a_path_in_both_class_lists_is_evaluated_as_the_release_does(capsys, common, tmp_path, tiny_encoder):
    """validate.py evaluates such a path twice, labelled fake both times, and its best-threshold
    search takes the real list (not the images labelled real) as its first half."""
    from ufd_lib.data.discovery import image_files_under
    from ufd_lib.evaluation.metrics import released_best_threshold

    root = make_image_set(tmp_path / "set", 3, 3)
    both = make_image_set(root / "0_real" / "x", 0, 1) / "1_fake" / "000.png"  # contains 0_real and 1_fake
    # A probe giving reals logit -2, fakes 0 and the path in both lists +2: separable by the
    # labels, not by the release's halves (the real list holds the +2).
    paths = image_files_under(root)
    features, _, _ = extract_features(tiny_encoder, paths, open_cache(tiny_encoder, Perturbation(), tmp_path / "cache"),
                                      progress=False)
    targets = [2.0 if path == both else -2.0 if "0_real" in path.parts else 0.0 for path in paths]
    design = np.hstack([features.astype(np.float64), np.ones((len(paths), 1))])
    solution = np.linalg.lstsq(design, np.array(targets), rcond=None)[0]
    probe_path = tmp_path / "probe.pth"
    torch.save({"weight": torch.tensor(solution[None, :-1], dtype=torch.float32),
                "bias": torch.tensor(solution[-1:], dtype=torch.float32)}, probe_path)
    out = tmp_path / "out"
    code, _, stderr = ufd(capsys, "evaluate", *common, "--classifier", "linear", "--probe", probe_path,
                          "--test", f"set={root}", "--sampling", "official", "--out", out)
    assert code == 0, stderr
    assert "ufd evaluate: warning:" in stderr and f"in both class lists: {both}" in stderr
    scores = pd.read_csv(out / "scores.csv")
    assert scores.loc[scores["path"] == str(both), "label"].tolist() == [1, 1]
    first_half = int((scores["label"] == 0).sum()) + 1  # the real list: the reals and one copy of the path
    assert first_half == 4 and len(scores) == 8
    row = pd.read_csv(out / "metrics.csv").iloc[0]
    expected = released_best_threshold(scores["label"], scores["score"], first_half)
    assert (row["released_threshold"], row["released_acc_real"], row["released_acc_fake"],
            row["released_acc"]) == expected
    assert expected != released_best_threshold(scores["label"], scores["score"])  # the halves matter here
