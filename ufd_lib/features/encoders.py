"""Frozen image encoders, named by a string and resolved in one registry.

- ``clip:<official name>`` (``clip:ViT-L/14`` is the paper's): the official weights through
  ``clip.load``, cached in :func:`ufd_lib.config.weights_dir`.
- ``clip:/path/to/checkpoint.pt``: a local checkpoint, either OpenAI's TorchScript archive or
  a plain state dict (which ``clip.load`` in openai-clip 1.0.1 cannot read).
- ``random-clip:<size>``: CLIP with seeded random weights, built from a state dict by the same
  ``clip.model.build_model`` path. For tests and the embedded benchmark only: its features
  carry no knowledge of natural images. Every size has a 768-d output like ViT-L/14.

Adding a backbone is one :func:`register` entry.
"""
from __future__ import annotations

import os
import socket
import urllib.error
import warnings
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from ufd_lib import config
from ufd_lib.hashing import file_sha256
from ufd_lib.checkpoints import load_checkpoint
from ufd_lib.devices import resolve_device


def import_clip():
    """``import clip`` without its pkg_resources deprecation warning (openai-clip 1.0.1)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="pkg_resources is deprecated", category=UserWarning)
        import clip
        import clip.model
    return clip


class EncoderUnavailable(RuntimeError):
    """The encoder's weights cannot be had; the message says how to provide them."""


@dataclass
class Encoder:
    """A frozen image encoder ready for inference.

    model: module whose ``encode_image`` maps (n, 3, 224, 224) normalised images to (n, d).
    name: the registry string that produced it.
    checkpoint_sha256: SHA-256 of the weights file (or a deterministic id for random weights).
    mean, std: per-channel input normalisation the encoder expects.
    """

    model: nn.Module
    name: str
    checkpoint_sha256: str
    device: torch.device
    embed_dim: int
    mean: tuple[float, float, float] = config.CLIP_MEAN
    std: tuple[float, float, float] = config.CLIP_STD

    @property
    def dtype(self) -> torch.dtype:
        """The dtype holding most of the image tower's weights (CLIP's ``visual``). CLIP on CUDA
        is mixed, as ``clip.load`` leaves it: matrices fp16, embeddings and LayerNorms fp32, and
        its first parameter is an fp32 one."""
        elements: dict[torch.dtype, int] = {}
        for parameter in getattr(self.model, "visual", self.model).parameters():
            elements[parameter.dtype] = elements.get(parameter.dtype, 0) + parameter.numel()
        return max(elements, key=elements.get)

    @torch.inference_mode()
    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """images: float32 (n, 3, 224, 224), normalised → features float32 (n, embed_dim) on CPU."""
        images = images.to(self.device, non_blocking=True)
        return self.model.encode_image(images).float().cpu()


_REGISTRY: dict[str, Callable[[str, torch.device], Encoder]] = {}


def register(prefix: str):
    """Decorator: make ``prefix:<argument>`` resolve through the decorated loader."""

    def decorate(loader: Callable[[str, torch.device], Encoder]):
        _REGISTRY[prefix] = loader
        return loader

    return decorate


def available_prefixes() -> list[str]:
    return sorted(_REGISTRY)




def load_encoder(spec: str, device: str | torch.device | None = None) -> Encoder:
    """Resolve an encoder string such as ``clip:ViT-L/14`` into a frozen :class:`Encoder`."""
    prefix, sep, argument = spec.partition(":")
    if not sep or not argument or prefix not in _REGISTRY:
        raise ValueError(
            f"unknown encoder {spec!r}: expected one of "
            + ", ".join(f"{p}:<...>" for p in available_prefixes())
        )
    encoder = _REGISTRY[prefix](argument, resolve_device(device))
    encoder.model.eval().requires_grad_(False)
    return encoder


def _finish_clip(model: nn.Module, device: torch.device) -> nn.Module:
    """Device and dtype handling of ``clip.load``'s non-JIT branch: fp16 on CUDA, fp32 on CPU."""
    model = model.to(device)
    if device.type == "cpu":
        model.float()
    return model


def _clip_encoder(model: nn.Module, name: str, sha256: str, device: torch.device) -> Encoder:
    embed_dim = model.visual.output_dim
    return Encoder(model=model, name=name, checkpoint_sha256=sha256, device=device, embed_dim=embed_dim)


def is_torchscript_archive(path: Path) -> bool:
    """OpenAI's released ``.pt`` files are TorchScript zips with a ``code/`` folder; state dicts have none."""
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as archive:
        return any("/code/" in name for name in archive.namelist())


def load_clip_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """Read a CLIP state dict from either checkpoint format, without executing pickled code."""
    if is_torchscript_archive(path):
        return torch.jit.load(str(path), map_location="cpu").state_dict()
    loaded = load_checkpoint(path, EncoderUnavailable, "CLIP checkpoint (TorchScript archive or state dict)")
    if isinstance(loaded, dict) and isinstance(loaded.get("state_dict"), dict):
        loaded = loaded["state_dict"]
    if not isinstance(loaded, dict) or "visual.conv1.weight" not in loaded:
        raise EncoderUnavailable(f"{path}: the state dict does not hold CLIP weights (no 'visual.conv1.weight')")
    return loaded


def _official_clip(name: str, device: torch.device, download_root: Path) -> Encoder:
    clip = import_clip()
    url = clip.clip._MODELS[name]
    expected_sha256 = url.split("/")[-2]
    target = download_root / os.path.basename(url)
    if not target.is_file():
        how_to = (
            f"CLIP weights for {name!r} are not available offline. Download {url} and save it as "
            f"{target} (or set UFD_WEIGHTS_DIR to the folder that holds {target.name}), "
            f"or pass the file directly as --encoder clip:/path/to/{target.name}."
        )
        if config.offline():
            raise EncoderUnavailable(how_to + " (UFD_OFFLINE is set, so no download was tried.)")
        previous_timeout = socket.getdefaulttimeout()
        socket.setdefaulttimeout(20)
        try:
            clip.clip._download(url, str(download_root))
        except (urllib.error.URLError, OSError, RuntimeError) as error:  # RuntimeError: checksum mismatch
            target.unlink(missing_ok=True)
            raise EncoderUnavailable(f"{how_to} Download failed: {error}") from error
        finally:
            socket.setdefaulttimeout(previous_timeout)
    model, _ = clip.load(name, device=device, jit=False, download_root=str(download_root))
    return _clip_encoder(model, f"clip:{name}", expected_sha256, device)


@register("clip")
def _load_clip(argument: str, device: torch.device) -> Encoder:
    clip = import_clip()
    if argument in clip.available_models():
        return _official_clip(argument, device, config.weights_dir())
    path = Path(argument).expanduser()
    if not path.is_file():
        raise EncoderUnavailable(
            f"clip:{argument}: no such official model or checkpoint file. Official names: "
            f"{', '.join(clip.available_models())}; or give the path of a .pt file."
        )
    model = clip.model.build_model(load_clip_state_dict(path))
    return _clip_encoder(_finish_clip(model, device), f"clip:{path}", file_sha256(path), device)


@dataclass(frozen=True)
class RandomClipShape:
    """Vision-tower shape of a random-weight CLIP; the text tower is kept minimal."""

    vision_width: int
    vision_layers: int
    patch_size: int
    embed_dim: int = 768
    image_resolution: int = 224


RANDOM_CLIP_SHAPES = {
    "tiny": RandomClipShape(vision_width=64, vision_layers=2, patch_size=32),
    "small": RandomClipShape(vision_width=256, vision_layers=4, patch_size=16),
    "ViT-B/32": RandomClipShape(vision_width=768, vision_layers=12, patch_size=32),
    "ViT-B/16": RandomClipShape(vision_width=768, vision_layers=12, patch_size=16),
    "ViT-L/14": RandomClipShape(vision_width=1024, vision_layers=24, patch_size=14),
}
RANDOM_CLIP_SEED = 0


def random_clip_state_dict(size: str, seed: int = RANDOM_CLIP_SEED) -> dict[str, torch.Tensor]:
    """State dict of a CLIP of the named shape with weights drawn from CLIP's own initialiser."""
    CLIP = import_clip().model.CLIP
    if size not in RANDOM_CLIP_SHAPES:
        raise ValueError(f"random-clip:{size}: unknown size; choose one of {', '.join(RANDOM_CLIP_SHAPES)}")
    shape = RANDOM_CLIP_SHAPES[size]
    generator_state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    try:
        model = CLIP(
            embed_dim=shape.embed_dim,
            image_resolution=shape.image_resolution,
            vision_layers=shape.vision_layers,
            vision_width=shape.vision_width,
            vision_patch_size=shape.patch_size,
            context_length=77,
            vocab_size=49408,
            transformer_width=64,
            transformer_heads=1,
            transformer_layers=1,
        )
    finally:
        torch.random.set_rng_state(generator_state)
    return model.state_dict()


@register("random-clip")
def _load_random_clip(size: str, device: torch.device) -> Encoder:
    model = import_clip().model.build_model(random_clip_state_dict(size))
    identity = f"random-clip:{size}:seed{RANDOM_CLIP_SEED}:torch{torch.__version__.split('+')[0]}"
    return _clip_encoder(_finish_clip(model, device), f"random-clip:{size}", identity, device)


from ufd_lib.features import torchvision_encoders  # noqa: E402,F401  (registers torchvision: and random-torchvision:)
