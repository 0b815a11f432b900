"""Encoders: local CLIP checkpoints in both formats, clear refusals, and the offline story."""
from __future__ import annotations

import hashlib
import io
import os
import pickle
import socket
import time
import urllib.request
import warnings

import pytest
import torch

from ufd_lib.checkpoints import CheckpointMismatch
from ufd_lib.features.encoders import CheckpointRefused, EncoderUnavailable, load_encoder, random_stand_in
from ufd_lib.features.encoders.clip import import_clip, is_torchscript_archive, random_clip_state_dict
from ufd_lib.reliability.checkpoint_checks import write_scripted_payload


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
def test_local_checkpoint_matches_random_clip(checkpoint, request, tiny_encoder, images, monkeypatch):
    path = request.getfixturevalue(checkpoint)
    monkeypatch.setenv("UFD_ALLOW_TORCHSCRIPT", "1")  # the user trusts this archive
    encoder = load_encoder(f"clip:{path}", "cpu")
    assert encoder.embed_dim == 768
    assert encoder.checkpoint_sha256 == sha256_of(path)
    assert encoder.name == f"clip:{path}"
    assert encoder.checkpoint_official is False
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
    assert message.lower().count("download failed") == 1, message
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
    from ufd_lib.features.encoders import Encoder
    from ufd_lib.features.encoders.clip import import_clip, random_clip_state_dict

    model = import_clip().model.build_model(random_clip_state_dict("tiny"))  # converts to that layout
    encoder = Encoder(model=model, name="random-clip:tiny", checkpoint_sha256="x", device=torch.device("cpu"),
                      embed_dim=768)
    assert next(model.parameters()).dtype == torch.float32
    assert encoder.dtype == torch.float16
    assert Encoder(model=model.float(), name="random-clip:tiny", checkpoint_sha256="x",
                   device=torch.device("cpu"), embed_dim=768).dtype == torch.float32


# --- TorchScript archives: loaded only when official or opted in (issue 12) ---


def test_unofficial_torchscript_archive_is_refused_without_advice_that_runs_it(torchscript_checkpoint, monkeypatch):
    monkeypatch.setenv("UFD_ALLOW_TORCHSCRIPT", "0")
    with pytest.raises(CheckpointRefused) as caught:
        load_encoder(f"clip:{torchscript_checkpoint}", "cpu")
    message = str(caught.value)
    assert "\n" not in message and str(torchscript_checkpoint) in message
    assert sha256_of(torchscript_checkpoint) in message
    assert "--allow-torchscript" in message and "would run the code" in message
    assert "jit.load" not in message and "python" not in message, "the refusal suggests running the archive"


def test_crafted_torchscript_archive_never_runs_its_code(tmp_path, monkeypatch):
    marker = tmp_path / "payload-ran"
    path = write_scripted_payload(tmp_path / "crafted.pt", marker)
    assert is_torchscript_archive(path) and not marker.exists()
    monkeypatch.setenv("UFD_ALLOW_TORCHSCRIPT", "0")
    jit_loads = []
    real_jit_load = torch.jit.load
    monkeypatch.setattr(torch.jit, "load", lambda *a, **k: jit_loads.append(a) or real_jit_load(*a, **k))
    with pytest.raises(CheckpointRefused, match="--allow-torchscript"):
        load_encoder(f"clip:{path}", "cpu")
    assert jit_loads == [] and not marker.exists(), "the archive's code ran"
    # opted in, the archive is loaded (its code runs: that is what the opt-in allows) and, holding
    # no CLIP weights, refused afterwards
    monkeypatch.setenv("UFD_ALLOW_TORCHSCRIPT", "1")
    with pytest.raises(CheckpointMismatch):
        load_encoder(f"clip:{path}", "cpu")
    assert len(jit_loads) == 1 and marker.read_bytes() == b"A" * 8


def test_an_archive_swapped_after_its_hash_was_decided_is_never_the_one_loaded(tmp_path, torchscript_checkpoint,
                                                                              monkeypatch):
    """The official-file decision and torch.jit.load use one in-memory copy of the file."""
    from ufd_lib.features.encoders import clip as clip_module

    marker = tmp_path / "payload-ran"
    crafted = write_scripted_payload(tmp_path / "crafted.pt", marker)
    path = tmp_path / "ViT-like.pt"
    path.write_bytes(torchscript_checkpoint.read_bytes())
    trusted = sha256_of(path)
    monkeypatch.setenv("UFD_ALLOW_TORCHSCRIPT", "0")
    monkeypatch.setattr(clip_module, "is_official_sha256", lambda sha256: sha256 == trusted)
    real_read = clip_module.read_checkpoint

    def read_then_swap(*args, **kwargs):
        found = real_read(*args, **kwargs)
        os.replace(crafted, path)  # the attacker's swap, right after the hash was taken
        return found

    monkeypatch.setattr(clip_module, "read_checkpoint", read_then_swap)
    encoder = load_encoder(f"clip:{path}", "cpu")
    assert encoder.checkpoint_sha256 == trusted and not marker.exists(), "the swapped-in archive ran"


def test_allow_torchscript_flag_reaches_the_loader_without_the_environment(tmp_path, monkeypatch):
    import os

    from ufd_lib.cli.main import main

    monkeypatch.setenv("UFD_ALLOW_TORCHSCRIPT", "0")  # restored after the test
    seen = []
    monkeypatch.setattr("ufd_lib.cli.extract.load_encoder",
                        lambda spec, device, allow_torchscript: seen.append(allow_torchscript) or 1 / 0)
    with pytest.raises(ZeroDivisionError):
        main(["extract", "--allow-torchscript", "--set", f"x={tmp_path}"])
    assert seen == [True] and os.environ["UFD_ALLOW_TORCHSCRIPT"] == "0"


# --- official names: the file in the weights dir, checked by its published SHA-256 (issue 11) ---


@pytest.fixture
def official_tiny(torchscript_checkpoint, tmp_path, monkeypatch):
    """``clip:ViT-L/14`` made to publish the tiny TorchScript archive's SHA-256 (a real OpenAI
    file is 900 MB), in an empty weights dir; the network is forbidden unless a test allows it."""
    clip = import_clip()
    digest = sha256_of(torchscript_checkpoint)
    monkeypatch.setitem(clip.clip._MODELS, "ViT-L/14", f"https://example.invalid/models/{digest}/ViT-L-14.pt")
    weights = tmp_path / "weights"
    weights.mkdir()
    monkeypatch.setenv("UFD_WEIGHTS_DIR", str(weights))
    monkeypatch.delenv("UFD_OFFLINE", raising=False)
    monkeypatch.setenv("UFD_ALLOW_TORCHSCRIPT", "0")
    _forbid_network(monkeypatch)
    return weights, torchscript_checkpoint.read_bytes()


def test_official_file_in_the_weights_dir_loads_and_is_marked_official(official_tiny, tiny_encoder, images):
    weights, data = official_tiny
    (weights / "ViT-L-14.pt").write_bytes(data)
    encoder = load_encoder("clip:ViT-L/14", "cpu")  # a TorchScript archive, allowed: its SHA-256 is published
    assert encoder.name == "clip:ViT-L/14" and encoder.checkpoint_official is True
    assert encoder.checkpoint_sha256 == hashlib.sha256(data).hexdigest()
    torch.testing.assert_close(encoder.encode(images), tiny_encoder.encode(images), rtol=0, atol=1e-5)


def test_file_of_the_official_name_with_another_sha256_is_refused_and_kept(official_tiny, state_dict_checkpoint):
    weights, data = official_tiny
    impostor = weights / "ViT-L-14.pt"
    impostor.write_bytes(state_dict_checkpoint.read_bytes())
    with pytest.raises(CheckpointRefused) as caught:
        load_encoder("clip:ViT-L/14", "cpu")
    message = str(caught.value)
    assert "\n" not in message and str(impostor) in message
    assert sha256_of(impostor) in message and hashlib.sha256(data).hexdigest() in message
    assert f"--encoder clip:{impostor}" in message
    assert impostor.read_bytes() == state_dict_checkpoint.read_bytes(), "the file was changed"
    assert sorted(p.name for p in weights.iterdir()) == ["ViT-L-14.pt"]
    # the message's advice works: as a path it loads, marked not official
    assert load_encoder(f"clip:{impostor}", "cpu").checkpoint_official is False


class FakeResponse(io.BytesIO):
    """What ``urlopen`` returns, from bytes in memory."""


def test_missing_official_file_is_downloaded_verified_and_renamed_into_place(official_tiny, monkeypatch):
    weights, data = official_tiny
    requests = []
    monkeypatch.setattr(urllib.request, "urlopen",
                        lambda url, timeout: requests.append((url, timeout)) or FakeResponse(data))
    encoder = load_encoder("clip:ViT-L/14", "cpu")
    assert [url for url, _ in requests] == [import_clip().clip._MODELS["ViT-L/14"]] and requests[0][1] > 0
    assert (weights / "ViT-L-14.pt").read_bytes() == data
    assert sorted(p.name for p in weights.iterdir()) == ["ViT-L-14.pt"], "a temporary file was left"
    assert encoder.checkpoint_official is True


def test_download_with_the_wrong_checksum_leaves_nothing(official_tiny, monkeypatch):
    weights, data = official_tiny
    monkeypatch.setattr(urllib.request, "urlopen", lambda url, timeout: FakeResponse(data[:-1] + b"x"))
    with pytest.raises(EncoderUnavailable, match="SHA-256") as caught:
        load_encoder("clip:ViT-L/14", "cpu")
    assert hashlib.sha256(data).hexdigest() in str(caught.value)
    assert list(weights.iterdir()) == []


# --- state dicts checked against the architecture; finite weights (issue 12) ---


@pytest.mark.parametrize("change, named", [
    (lambda state: state.pop("visual.ln_post.weight"), "visual.ln_post.weight"),
    (lambda state: state.update({"visual.extra": torch.zeros(2)}), "visual.extra"),
    (lambda state: state.update({"visual.ln_post.bias": torch.zeros(3)}), "visual.ln_post.bias"),
    (lambda state: state.pop("visual.positional_embedding"), "visual.positional_embedding"),
], ids=["missing", "unexpected", "misshapen", "missing-architecture-key"])
def test_state_dict_that_does_not_fit_is_refused_in_one_line(tmp_path, capsys, change, named):
    from conftest import make_image_set, ufd

    state = random_clip_state_dict("tiny")
    change(state)
    path = tmp_path / "broken.pt"
    torch.save(state, path)
    with pytest.raises(CheckpointMismatch) as caught:
        load_encoder(f"clip:{path}", "cpu")
    assert "\n" not in str(caught.value) and str(path) in str(caught.value) and named in str(caught.value)
    images = make_image_set(tmp_path / "images", 1, 1)
    status, _, err = ufd(capsys, "extract", "--encoder", f"clip:{path}", "--set", f"x={images}",
                         "--out", str(tmp_path / "out"), "--device", "cpu")
    assert status == 2 and named in err and len(err.strip().splitlines()) == 1


def test_non_finite_clip_weights_are_refused_naming_file_and_tensor(tmp_path):
    state = random_clip_state_dict("tiny")
    state["visual.conv1.weight"][0, 0, 0, 0] = float("inf")
    path = tmp_path / "inf.pt"
    torch.save(state, path)
    with pytest.raises(EncoderUnavailable) as caught:
        load_encoder(f"clip:{path}", "cpu")
    assert str(path) in str(caught.value) and "'visual.conv1.weight'" in str(caught.value)


# --- one registry ---


@pytest.mark.parametrize("spec, stand_in", [
    ("clip:ViT-B/16", "random-clip:ViT-B/16"), ("clip:ViT-L/14", "random-clip:ViT-L/14"), ("clip:RN50", None),
    ("clip:/some/file.pt", None), ("torchvision:resnet50", "random-torchvision:resnet50"),
    ("random-clip:tiny", None), ("detector:/x.pth", None), ("nonsense", None),
])
def test_the_registry_names_each_pretrained_entrys_random_stand_in(spec, stand_in):
    assert random_stand_in(spec) == stand_in
    if stand_in is not None:
        assert stand_in.split(":")[0] in {"random-clip", "random-torchvision"}


def test_weights_that_overflow_the_dtype_the_encoder_runs_in_are_refused(tmp_path):
    state = {name: tensor.double() if tensor.is_floating_point() else tensor
             for name, tensor in random_clip_state_dict("tiny").items()}
    state["visual.proj"][0, 0] = 1e300  # finite in float64, infinite in float32 (the CPU dtype)
    path = tmp_path / "overflowing.pt"
    torch.save(state, path)
    with pytest.raises(EncoderUnavailable, match=r"in float32, the dtype it runs in.*visual\.proj"):
        load_encoder(f"clip:{path}", "cpu")


def test_random_clip_takes_only_its_sizes_and_the_registry_knows_them():
    from ufd_lib.features.encoders import parse_encoder_spec
    from ufd_lib.features.encoders.clip import RANDOM_CLIP_SHAPES
    from ufd_lib.features.encoders.registry import FAMILIES

    assert FAMILIES["random-clip"].arguments == tuple(RANDOM_CLIP_SHAPES)
    assert parse_encoder_spec("random-clip:tiny") == ("random-clip", "tiny")
    with pytest.raises(ValueError, match="random-clip takes one of tiny, small"):
        parse_encoder_spec("random-clip:anything")


def test_reproduce_refuses_an_unknown_random_clip_size_before_any_work(tmp_path, capsys):
    from conftest import ufd

    code, _, stderr = ufd(capsys, "reproduce", "--profile", "smoke", "--encoder", "random-clip:anything",
                          "--output-dir", tmp_path / "run")
    assert code == 2 and "--encoder 'random-clip:anything'" in stderr
    assert not (tmp_path / "run" / "data").exists()
