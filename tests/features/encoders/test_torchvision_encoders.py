"""torchvision ImageNet classifiers as frozen encoders: registry prefixes, weights from the
torch hub cache, penultimate features, and cache keys that keep random and pretrained apart."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision

from ufd_lib.features.encoders import EncoderUnavailable, available_prefixes, load_encoder
from ufd_lib.features.encoders.torchvision_models import hub_checkpoint_dir, strip_classifier
from ufd_lib.features.extraction.extract import cache_setting, open_cache
from ufd_lib.features.preprocess import Perturbation
from ufd_lib.hashing import file_sha256

RESNET18_FILE = "resnet18-f37072fd.pth"  # torchvision's IMAGENET1K_V1 file name


@pytest.fixture
def empty_hub(tmp_path, monkeypatch):
    """A torch hub cache with no weights in it, and no downloads."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("UFD_OFFLINE", "1")
    return tmp_path / "torch" / "hub" / "checkpoints"


def fake_imagenet_file(seed: int = 123) -> tuple[torch.nn.Module, Path]:
    """Save a resnet18 state dict (random, seed) where torchvision keeps its ImageNet weights."""
    torch.manual_seed(seed)
    network = torchvision.models.resnet18(weights=None)
    path = hub_checkpoint_dir() / RESNET18_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(network.state_dict(), path)
    return network.eval(), path


def images(n: int = 2, seed: int = 0) -> torch.Tensor:
    return torch.from_numpy(np.random.default_rng(seed).normal(size=(n, 3, 224, 224)).astype(np.float32))


def test_both_prefixes_resolve_through_the_encoder_registry():
    assert {"torchvision", "random-torchvision"} <= set(available_prefixes())


def test_random_encoder_gives_penultimate_features_with_imagenet_normalisation(empty_hub):
    encoder = load_encoder("random-torchvision:resnet18", "cpu")
    assert encoder.name == "random-torchvision:resnet18"
    assert encoder.embed_dim == 512
    assert encoder.mean == (0.485, 0.456, 0.406) and encoder.std == (0.229, 0.224, 0.225)
    features = encoder.encode(images())
    assert features.shape == (2, 512) and features.dtype == torch.float32
    again = load_encoder("random-torchvision:resnet18", "cpu").encode(images())
    torch.testing.assert_close(features, again)  # seeded: the same network every time


def test_missing_imagenet_weights_say_where_to_put_them(empty_hub):
    with pytest.raises(EncoderUnavailable) as error:
        load_encoder("torchvision:resnet18", "cpu")
    message = str(error.value)
    assert str(empty_hub / RESNET18_FILE) in message
    assert "random-torchvision:resnet18" in message
    assert "UFD_OFFLINE" in message


def test_pretrained_encoder_reads_the_hub_file(empty_hub):
    network, path = fake_imagenet_file()
    encoder = load_encoder("torchvision:resnet18", "cpu")
    assert encoder.name == "torchvision:resnet18"
    assert encoder.checkpoint_sha256 == file_sha256(path)
    network.fc = torch.nn.Identity()
    with torch.no_grad():
        expected = network(images())
    torch.testing.assert_close(encoder.encode(images()), expected)


def test_random_and_pretrained_never_share_a_cache_entry(empty_hub, tmp_path):
    fake_imagenet_file()
    pretrained = load_encoder("torchvision:resnet18", "cpu")
    random = load_encoder("random-torchvision:resnet18", "cpu")
    assert cache_setting(pretrained, Perturbation()) != cache_setting(random, Perturbation())
    assert open_cache(pretrained, Perturbation(), tmp_path / "c").directory != \
        open_cache(random, Perturbation(), tmp_path / "c").directory


def test_unknown_architecture_is_a_clear_error(empty_hub):
    with pytest.raises(ValueError, match="no model 'resnet_nonexistent'"):
        load_encoder("random-torchvision:resnet_nonexistent", "cpu")


def test_strip_classifier_handles_vit_heads():
    vit = torchvision.models.VisionTransformer(image_size=32, patch_size=16, num_layers=1, num_heads=1,
                                               hidden_dim=8, mlp_dim=8)
    assert strip_classifier(vit) == 8
    assert vit(torch.zeros(1, 3, 32, 32)).shape == (1, 8)


def test_backbone_without_weights_falls_back_to_random_and_says_so(empty_hub):
    from ufd_lib.analyses.backbones import load_backbone

    encoder, notice = load_backbone("torchvision:resnet18", "cpu")
    assert encoder.name == "random-torchvision:resnet18"
    assert "RANDOM" in notice and "torchvision:resnet18" in notice


def test_a_loaded_backbone_notice_names_its_weights_whole():
    from ufd_lib.analyses.backbones import load_backbone

    encoder, notice = load_backbone("random-clip:tiny", "cpu")
    assert notice == f"random-clip:tiny: loaded; encoder random-clip:tiny: RANDOM weights, no weights file " \
                     f"(id {encoder.checkpoint_sha256})" and "…" not in notice


@pytest.mark.parametrize("change, named", [
    (lambda state: state.pop("layer1.0.conv1.weight"), "layer1.0.conv1.weight"),
    (lambda state: state.update({"fc.weight": torch.zeros(10, 512)}), "fc.weight"),
    (lambda state: state.update({"head.extra": torch.zeros(1)}), "head.extra"),
    (lambda state: state["bn1.running_var"].__setitem__(0, float("nan")), "bn1.running_var"),
], ids=["missing", "misshapen", "unexpected", "nan"])
def test_imagenet_weights_that_do_not_fit_are_refused_naming_the_key(empty_hub, change, named):
    _, path = fake_imagenet_file()
    state = torch.load(path, weights_only=True)
    change(state)
    torch.save(state, path)
    with pytest.raises((ValueError, EncoderUnavailable)) as caught:
        load_encoder("torchvision:resnet18", "cpu")
    message = str(caught.value)
    assert "\n" not in message and str(path) in message and named in message


def test_old_weights_without_num_batches_tracked_still_load(empty_hub):
    """Files saved before PyTorch 0.4.1 (torchvision's resnet50-0676ba61.pth among them) have no
    batch-norm step counters; batch norm fills them in, so they are not 'missing'."""
    network, path = fake_imagenet_file()
    torch.save({k: v for k, v in network.state_dict().items() if not k.endswith("num_batches_tracked")}, path)
    network.fc = torch.nn.Identity()
    with torch.no_grad():
        torch.testing.assert_close(load_encoder("torchvision:resnet18", "cpu").encode(images()), network(images()))
