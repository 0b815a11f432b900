"""Encoders: local CLIP checkpoints in both formats, clear refusals, and the offline story."""
from __future__ import annotations

import hashlib
import pickle
import socket
import time
import urllib.request
import warnings

import pytest
import torch

from ufd_lib.features.encoders import EncoderUnavailable, import_clip, is_torchscript_archive, load_encoder, random_clip_state_dict


@pytest.fixture(scope="module")
def images():
    return torch.randn(3, 3, 224, 224, generator=torch.Generator().manual_seed(0))


@pytest.fixture(scope="module")
def state_dict_checkpoint(tmp_path_factory):
    path = tmp_path_factory.mktemp("ckpt") / "tiny-state-dict.pt"
    torch.save(random_clip_state_dict("tiny"), path)
    return path


@pytest.fixture(scope="module")
def torchscript_checkpoint(tmp_path_factory):
    """A traced whole CLIP, as OpenAI releases its ``.pt`` files."""
    clip = import_clip()
    model = clip.model.build_model(random_clip_state_dict("tiny")).float().eval()
    example = (torch.zeros(1, 3, 224, 224), torch.zeros(1, 77, dtype=torch.long))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        traced = torch.jit.trace(model, example, check_trace=False)
        path = tmp_path_factory.mktemp("ckpt") / "tiny-torchscript.pt"
        torch.jit.save(traced, str(path))
    return path


def sha256_of(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


class CodeRunningPayload:
    """Unpickling this object creates ``marker``: proof that pickled code ran."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_random_clip_gives_768_d_features(tiny_encoder, images):
    features = tiny_encoder.encode(images)
    assert tiny_encoder.embed_dim == 768
    assert features.shape == (3, 768) and features.dtype == torch.float32
    assert torch.isfinite(features).all()


@pytest.mark.parametrize("checkpoint", ["state_dict_checkpoint", "torchscript_checkpoint"])
def test_local_checkpoint_matches_random_clip(checkpoint, request, tiny_encoder, images):
    path = request.getfixturevalue(checkpoint)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch.jit.load deprecation
        encoder = load_encoder(f"clip:{path}", "cpu")
    assert encoder.embed_dim == 768
    assert encoder.checkpoint_sha256 == sha256_of(path)
    assert encoder.name == f"clip:{path}"
    torch.testing.assert_close(encoder.encode(images), tiny_encoder.encode(images), rtol=0, atol=1e-5)


def test_torchscript_archive_detection(state_dict_checkpoint, torchscript_checkpoint, tmp_path):
    assert is_torchscript_archive(torchscript_checkpoint)
    assert not is_torchscript_archive(state_dict_checkpoint)
    text = tmp_path / "notes.pt"
    text.write_text("not a zip")
    assert not is_torchscript_archive(text)


def test_state_dict_under_state_dict_key_loads(tmp_path, tiny_encoder, images):
    path = tmp_path / "wrapped.pt"
    torch.save({"state_dict": random_clip_state_dict("tiny")}, path)
    encoder = load_encoder(f"clip:{path}", "cpu")
    torch.testing.assert_close(encoder.encode(images), tiny_encoder.encode(images), rtol=0, atol=1e-5)


def test_non_clip_state_dict_is_refused_naming_the_file(tmp_path):
    path = tmp_path / "resnet.pt"
    torch.save({"conv1.weight": torch.zeros(4, 3, 3, 3)}, path)
    with pytest.raises(EncoderUnavailable, match="visual.conv1.weight") as caught:
        load_encoder(f"clip:{path}", "cpu")
    assert str(path) in str(caught.value)


def test_non_checkpoint_file_is_refused_naming_the_file(tmp_path):
    path = tmp_path / "notes.pt"
    path.write_text("just some text")
    with pytest.raises(EncoderUnavailable) as caught:
        load_encoder(f"clip:{path}", "cpu")
    assert str(path) in str(caught.value)


@pytest.mark.parametrize("writer", ["torch.save", "pickle.dump"])
def test_pickle_with_code_is_refused_and_not_run(writer, tmp_path):
    marker = tmp_path / "payload-ran"
    payload = {"visual.conv1.weight": CodeRunningPayload(marker)}
    path = tmp_path / "evil.pt"
    if writer == "torch.save":
        torch.save(payload, path)
    else:
        path.write_bytes(pickle.dumps(payload, protocol=2))
    with pytest.raises(EncoderUnavailable) as caught:
        load_encoder(f"clip:{path}", "cpu")
    assert str(path) in str(caught.value)
    assert not marker.exists(), "the checkpoint's pickled code was executed"


def test_missing_checkpoint_path(tmp_path):
    path = tmp_path / "absent.pt"
    with pytest.raises(EncoderUnavailable, match="absent.pt"):
        load_encoder(f"clip:{path}", "cpu")


def _forbid_network(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("a download was attempted")

    monkeypatch.setattr(urllib.request, "urlopen", refuse)


@pytest.mark.timeout(30)
def test_official_weights_offline_fail_fast_with_instructions(tmp_path, monkeypatch):
    weights = tmp_path / "weights"
    weights.mkdir()
    monkeypatch.setenv("UFD_WEIGHTS_DIR", str(weights))
    monkeypatch.setenv("UFD_OFFLINE", "1")
    _forbid_network(monkeypatch)
    started = time.monotonic()
    with pytest.raises(EncoderUnavailable) as caught:
        load_encoder("clip:ViT-L/14", "cpu")
    assert time.monotonic() - started < 5
    message = str(caught.value)
    assert "ViT-L-14.pt" in message and str(weights) in message and "UFD_OFFLINE" in message
    assert list(weights.iterdir()) == []


@pytest.mark.timeout(60)
def test_official_weights_without_network_fail_fast_with_instructions(tmp_path, monkeypatch):
    """The real download path, with name resolution failing as on a machine without network
    (simulated so that the test never downloads 900 MB where a network exists)."""
    weights = tmp_path / "weights"
    weights.mkdir()
    monkeypatch.setenv("UFD_WEIGHTS_DIR", str(weights))
    monkeypatch.delenv("UFD_OFFLINE", raising=False)

    def no_dns(*args, **kwargs):
        raise socket.gaierror(socket.EAI_NONAME, "simulated: no network")

    monkeypatch.setattr(socket, "getaddrinfo", no_dns)
    started = time.monotonic()
    with pytest.raises(EncoderUnavailable) as caught:
        load_encoder("clip:ViT-L/14", "cpu")
    assert time.monotonic() - started < 10
    message = str(caught.value)
    assert "ViT-L-14.pt" in message and str(weights) in message and "simulated: no network" in message
    assert not (weights / "ViT-L-14.pt").exists(), "a partial download was left behind"


@pytest.mark.parametrize("spec", ["resnet:50", "random-clip:huge", "random-clip:", "no-prefix", ""])
def test_unknown_encoder_names_raise_value_error(spec):
    with pytest.raises(ValueError):
        load_encoder(spec, "cpu")


def test_random_clip_is_deterministic_across_loads(tiny_encoder, images):
    again = load_encoder("random-clip:tiny", "cpu")
    assert again.checkpoint_sha256 == tiny_encoder.checkpoint_sha256
    assert torch.equal(again.encode(images), tiny_encoder.encode(images))


def test_dtype_is_that_of_most_weights_for_clips_mixed_cuda_layout():
    """On CUDA, CLIP keeps its matrices fp16 and embeddings/LayerNorms fp32 (clip.load's
    layout); the first parameter is fp32, but the encoder computes in fp16."""
    from ufd_lib.features.encoders import Encoder, import_clip, random_clip_state_dict

    model = import_clip().model.build_model(random_clip_state_dict("tiny"))  # converts to that layout
    encoder = Encoder(model=model, name="random-clip:tiny", checkpoint_sha256="x", device=torch.device("cpu"),
                      embed_dim=768)
    assert next(model.parameters()).dtype == torch.float32
    assert encoder.dtype == torch.float16
    assert Encoder(model=model.float(), name="random-clip:tiny", checkpoint_sha256="x",
                   device=torch.device("cpu"), embed_dim=768).dtype == torch.float32
