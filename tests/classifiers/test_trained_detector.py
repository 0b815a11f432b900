"""The end-to-end trained detector: released weights are used when present, a ResNet-50 is never
trained from random weights (skipped, saying which file to put where), a trained detector is
saved in CNNDetection's format and reused, its body is the registry's ``detector:`` encoder and
body + head equal the whole network."""
from __future__ import annotations

import dataclasses
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torchvision
from PIL import Image

from ufd_lib.classifiers.trained_detector import (
    DetectorRecipe,
    DetectorUnavailable,
    build_detector,
    detector_or_notice,
    load_or_train_detector,
)
from ufd_lib.data.image_sets import ImageSetSpec
from ufd_lib.features.augmentation import TrainingAugmentation
from ufd_lib.features.encoders import load_encoder
from ufd_lib.features.encoders.detector import DetectorFileError, SmallCNN, detector_network, read_detector_file
from ufd_lib.features.encoders.torchvision_models import hub_checkpoint_dir
from ufd_lib.features.feature_sets import ExtractionOptions, featurize
from ufd_lib.hashing import file_sha256
from ufd_lib.runs.profiles import get_profile


class NotAWeight:
    """A pickled object no weights file should carry."""


@pytest.fixture
def empty_hub(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("UFD_WEIGHTS_DIR", str(tmp_path / "weights"))
    return tmp_path


def write_images(folder: Path, n: int, value: int, seed: int, size: int = 64) -> None:
    """n noisy images around grey level ``value``."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(n):
        pixels = np.clip(value + rng.normal(0, 12, (size, size, 3)), 0, 255).astype(np.uint8)
        Image.fromarray(pixels).save(folder / f"{i:03d}.png")


def dark_vs_bright(root: Path) -> SimpleNamespace:
    """A benchmark stub where reals are dark and fakes bright: trivially separable."""
    seeds = iter(range(100))
    for split, n in (("train", 8), ("val", 4), ("test", 4)):
        for category in ("cat", "dog"):
            write_images(root / split / category / "0_real", n, 60, seed=next(seeds))
            write_images(root / split / category / "1_fake", n, 190, seed=next(seeds))
    spec = lambda split: ImageSetSpec("progan", root / split, root / split)  # noqa: E731
    return SimpleNamespace(train=spec("train"), val=spec("val"),
                           test_sets=[ImageSetSpec("test", root / "test", root / "test")])


def small_profile(**changes):
    settings = dict(detector_max_epochs=3, detector_batch_size=8, detector_time_budget_s=None)
    return dataclasses.replace(get_profile("smoke"), **{**settings, **changes})


def test_resnet50_is_never_built_from_random_weights(empty_hub):
    with pytest.raises(DetectorUnavailable) as caught:
        build_detector("resnet50")
    assert str(hub_checkpoint_dir() / "resnet50-0676ba61.pth") in str(caught.value)


def test_paper_profile_without_any_weights_skips_the_detector_saying_where_to_put_them(empty_hub, tmp_path):
    with pytest.raises(DetectorUnavailable) as caught:
        load_or_train_detector(get_profile("paper").detector_request(), benchmark=None, output_dir=tmp_path / "run",
                               log=None)
    notice = str(caught.value)
    assert "\n" not in notice and "skipped" in notice
    assert str(tmp_path / "weights" / "blur_jpg_prob0.5.pth") in notice
    assert str(hub_checkpoint_dir() / "resnet50-0676ba61.pth") in notice
    assert not (tmp_path / "run").exists(), "nothing was trained or written"
    assert detector_or_notice(get_profile("paper").detector_request(), None, tmp_path / "run",
                              log=None) == (None, notice)


def test_resnet50_starts_from_imagenet_weights_in_the_hub_cache(empty_hub):
    torch.manual_seed(7)
    imagenet = torchvision.models.resnet50(weights=None)
    path = hub_checkpoint_dir() / "resnet50-0676ba61.pth"
    path.parent.mkdir(parents=True)
    torch.save(imagenet.state_dict(), path)
    network, note = build_detector("resnet50")
    assert str(path) in note and file_sha256(path) in note
    torch.testing.assert_close(network.conv1.weight, imagenet.conv1.weight)
    assert network.fc.weight.shape == (1, 2048)


def test_released_cnndetection_weights_are_used_and_split_into_body_and_head(empty_hub, tmp_path):
    torch.manual_seed(3)
    released = torchvision.models.resnet50(weights=None, num_classes=1).eval()
    (tmp_path / "weights").mkdir()
    torch.save({"model": released.state_dict()}, tmp_path / "weights" / "blur_jpg_prob0.5.pth")
    detector = load_or_train_detector(get_profile("paper").detector_request(), benchmark=None,
                                      output_dir=tmp_path / "run", log=None)
    released_file = tmp_path / "weights" / "blur_jpg_prob0.5.pth"
    assert detector.source == "released" and detector.history.empty
    assert detector.encoder.name == f"detector:{released_file}"
    assert str(released_file) in detector.notice and file_sha256(released_file) in detector.notice
    assert detector.encoder.embed_dim == 2048 and detector.encoder.device.type in ("cpu", "cuda")
    images = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        whole = torch.sigmoid(released(images)).squeeze(1).numpy()
    split = detector.head.predict_proba(detector.encoder.encode(images).numpy())[:, 1]
    np.testing.assert_allclose(split, whole, atol=1e-5)


def test_unsafe_or_foreign_detector_files_are_refused(tmp_path):
    unsafe = tmp_path / "unsafe.pth"
    torch.save({"model": {}, "extra": NotAWeight()}, unsafe)
    with pytest.raises(DetectorFileError, match="safely"):
        read_detector_file(unsafe)
    foreign = tmp_path / "foreign.pth"
    torch.save({"weight": torch.zeros(1, 4)}, foreign)
    with pytest.raises(DetectorFileError, match="format"):
        read_detector_file(foreign)


def test_the_detector_trains_on_the_probes_augmentation_recipe_without_the_resize():
    assert DetectorRecipe().augmentation == TrainingAugmentation(resize=None)
    assert DetectorRecipe().as_dict()["augmentation"] == TrainingAugmentation(resize=None).as_dict()


def test_detector_files_resolve_through_the_encoder_registry(tmp_path):
    torch.manual_seed(0)
    network = SmallCNN().eval()
    path = tmp_path / "detector.pth"
    torch.save({"model": network.state_dict(), "architecture": "small_cnn"}, path)
    encoder = load_encoder(f"detector:{path}", "cpu")
    assert encoder.name == f"detector:{path}" and encoder.checkpoint_sha256 == file_sha256(path)
    assert encoder.embed_dim == 64
    images = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        torch.testing.assert_close(encoder.encode(images), network.features(images))


@pytest.mark.parametrize("change, named", [
    (lambda state: state.pop("fc.bias"), "fc.bias"),
    (lambda state: state.update({"fc.weight": torch.zeros(1, 8)}), "fc.weight"),
    (lambda state: state["features.0.weight"].view(-1).__setitem__(0, float("nan")), "features.0.weight"),
], ids=["missing", "misshapen", "nan"])
def test_broken_detector_files_are_refused_naming_the_tensor(tmp_path, change, named):
    state = SmallCNN().state_dict()
    change(state)
    path = tmp_path / "detector.pth"
    torch.save({"model": state, "architecture": "small_cnn"}, path)
    with pytest.raises(DetectorFileError) as caught:
        load_encoder(f"detector:{path}", "cpu")
    assert "\n" not in str(caught.value) and str(path) in str(caught.value) and named in str(caught.value)


def test_trained_detector_learns_is_saved_and_is_reused(empty_hub, tmp_path, tiny_encoder):
    benchmark = dark_vs_bright(tmp_path / "data")
    output = tmp_path / "run"
    trained = load_or_train_detector(small_profile().detector_request(), benchmark, output, log=None)
    assert trained.source == "trained here" and "random initialisation" in trained.description
    assert str(trained.path) in trained.notice and file_sha256(trained.path) in trained.notice
    assert trained.path == output / "models" / "trained_detector.pth"
    assert len(trained.history) == 3
    # saved in CNNDetection's format, readable by the same code as released weights
    state, architecture, meta = read_detector_file(trained.path)
    assert architecture == "small_cnn" and "fc.weight" in state and meta["recipe"]["max_epochs"] == 3
    assert isinstance(detector_network(trained.path), torch.nn.Module)

    options = ExtractionOptions(cache_root=tmp_path / "cache", progress=False)
    test = featurize(trained.encoder, benchmark.test_sets[0], options)
    scores = trained.head.predict_proba(test.features)[:, 1]
    assert scores[test.labels == 1].min() > scores[test.labels == 0].max(), "bright fakes score above dark reals"

    reused = load_or_train_detector(small_profile().detector_request(), benchmark, output, log=None)
    assert reused.source == "reused" and reused.encoder.checkpoint_sha256 == trained.encoder.checkpoint_sha256
    assert reused.description == trained.description
    retrained = load_or_train_detector(small_profile(detector_max_epochs=2).detector_request(), benchmark, output,
                                       log=None)
    assert retrained.source == "trained here" and len(retrained.history) == 2
