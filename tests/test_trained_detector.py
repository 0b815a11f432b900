"""The end-to-end trained detector: released weights are used when present, ImageNet
initialisation is said to be random when the weights are absent, a trained detector is saved
in CNNDetection's format and reused, and its body + head equal the whole network."""
from __future__ import annotations

import dataclasses
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torchvision
from PIL import Image

from ufd_lib.features.feature_sets import ExtractionOptions, featurize
from ufd_lib.data.image_sets import ImageSetSpec
from ufd_lib.runs.profiles import get_profile
from ufd_lib.features.torchvision_encoders import hub_checkpoint_dir
from ufd_lib.classifiers.trained_detector import DetectorFileError, DetectorRecipe, augment, build_detector, detector_network, load_or_train_detector, read_detector_file


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


def test_resnet50_without_imagenet_weights_says_it_is_random(empty_hub):
    network, note = build_detector("resnet50")
    assert "RANDOM" in note
    assert str(hub_checkpoint_dir() / "resnet50-0676ba61.pth") in note
    assert network.fc.out_features == 1


def test_resnet50_starts_from_imagenet_weights_in_the_hub_cache(empty_hub):
    torch.manual_seed(7)
    imagenet = torchvision.models.resnet50(weights=None)
    path = hub_checkpoint_dir() / "resnet50-0676ba61.pth"
    path.parent.mkdir(parents=True)
    torch.save(imagenet.state_dict(), path)
    network, note = build_detector("resnet50")
    assert "ImageNet" in note and "RANDOM" not in note
    torch.testing.assert_close(network.conv1.weight, imagenet.conv1.weight)
    assert network.fc.weight.shape == (1, 2048)


def test_released_cnndetection_weights_are_used_and_split_into_body_and_head(empty_hub, tmp_path):
    torch.manual_seed(3)
    released = torchvision.models.resnet50(weights=None, num_classes=1).eval()
    (tmp_path / "weights").mkdir()
    torch.save({"model": released.state_dict()}, tmp_path / "weights" / "blur_jpg_prob0.5.pth")
    detector = load_or_train_detector(get_profile("paper"), benchmark=None, output_dir=tmp_path / "run", log=None)
    assert detector.source == "released" and detector.history.empty
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


def test_augmentation_is_reproducible_and_gives_224_crops():
    image = Image.fromarray(np.random.default_rng(0).integers(0, 256, (256, 300, 3), dtype=np.uint8))
    recipe = DetectorRecipe(architecture="small_cnn", blur_prob=1.0, jpeg_prob=1.0)
    first = augment(image, np.random.default_rng(5), recipe)
    assert first.size == (224, 224)
    assert np.array_equal(np.asarray(first), np.asarray(augment(image, np.random.default_rng(5), recipe)))
    small = Image.new("RGB", (100, 80), (255, 255, 255))
    assert augment(small, np.random.default_rng(1), DetectorRecipe(architecture="small_cnn")).size == (224, 224)


def test_trained_detector_learns_is_saved_and_is_reused(empty_hub, tmp_path, tiny_encoder):
    benchmark = dark_vs_bright(tmp_path / "data")
    output = tmp_path / "run"
    trained = load_or_train_detector(small_profile(), benchmark, output, log=None)
    assert trained.source == "trained here" and "random initialisation" in trained.description
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

    reused = load_or_train_detector(small_profile(), benchmark, output, log=None)
    assert reused.source == "reused" and reused.encoder.checkpoint_sha256 == trained.encoder.checkpoint_sha256
    assert reused.description == trained.description
    retrained = load_or_train_detector(small_profile(detector_max_epochs=2), benchmark, output, log=None)
    assert retrained.source == "trained here" and len(retrained.history) == 2


@pytest.mark.parametrize("size", [(227, 229), (300, 225), (100, 240), (224, 224)])
def test_evaluation_crop_is_the_one_clip_features_use(size):
    """Same pixels as the CLIP evaluation path's centre window (odd margins round half to even)."""
    from ufd_lib.features.preprocess import centre_window
    from ufd_lib.classifiers.trained_detector import _centre_crop

    image = Image.fromarray(np.random.default_rng(0).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8))
    cropped = np.asarray(_centre_crop(image))
    assert cropped.shape == (224, 224, 3)
    if min(size) >= 224:
        np.testing.assert_array_equal(cropped, np.asarray(image.crop(centre_window(size, (224, 224)))))
