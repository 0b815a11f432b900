"""ImageNet classifiers from torchvision as frozen encoders (the paper's backbone comparison).

Two registry prefixes, so that pretrained and random networks can never share a cache entry:

- ``torchvision:<architecture>`` (``torchvision:resnet50``, ``torchvision:vit_b_16``): the
  torchvision ImageNet weights, read from the torch hub cache
  (``torch.hub.get_dir()/checkpoints/<file>``, where ``torchvision`` itself puts them; move it
  with ``TORCH_HOME``). The weight variants are tried in torchvision's order (``IMAGENET1K_V1``
  first, the weights of the paper's time), keeping those made for 224-pixel crops. When no file
  is there the loader downloads the first variant unless ``UFD_OFFLINE`` is set, and otherwise
  raises :class:`~ufd_lib.features.encoders.clip.EncoderUnavailable` saying which file to put where. The
  encoder's identity is the SHA-256 of the weights file.
- ``random-torchvision:<architecture>``: the same network with seeded random weights (seed
  :data:`RANDOM_SEED`), for tests and the smoke profile. Its features know nothing of images.

Features are the penultimate layer: the classifier's last ``nn.Linear`` is replaced by the
identity (ResNet: 2048-d average-pooled features for resnet50; ViT: the 768-d class token).
Inputs are normalised with ImageNet's mean and std (the Encoder's ``mean``/``std``); the crop is
the pipeline's centre crop 224 without resize (torchvision's own recipe resizes to 256 first:
identical for the paper's 256×256 images).
"""
from __future__ import annotations

import os
import socket
import urllib.error
from pathlib import Path

import torch
import torchvision
from torch import nn

from ufd_lib import config
from ufd_lib.checkpoints import load_checkpoint, load_state_dict_strictly
from ufd_lib.features.encoders.encoder import Encoder
from ufd_lib.features.encoders.registry import EncoderUnavailable, LoadOptions
from ufd_lib.hashing import file_sha256

RANDOM_SEED = 0


class PenultimateFeatures(nn.Module):
    """A classifier whose last linear layer was removed: ``encode_image`` (and ``forward``)
    maps normalised images (n, 3, H, W) to penultimate features (n, d)."""

    def __init__(self, network: nn.Module):
        super().__init__()
        self.network = network

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.network(images)

    encode_image = forward


def strip_classifier(network: nn.Module) -> int:
    """Replace the network's final ``nn.Linear`` (``fc``, ``heads``, ``classifier`` or ``head``)
    by the identity, in place; returns the feature dimension it took as input."""
    for attribute in ("fc", "heads", "classifier", "head"):
        head = getattr(network, attribute, None)
        if isinstance(head, nn.Linear):
            setattr(network, attribute, nn.Identity())
            return head.in_features
        if isinstance(head, nn.Sequential):
            linear = [index for index, layer in enumerate(head) if isinstance(layer, nn.Linear)]
            if linear:
                dimension = head[linear[-1]].in_features
                head[linear[-1]] = nn.Identity()
                return dimension
    raise ValueError(f"{type(network).__name__}: no final linear layer found to remove")


def hub_checkpoint_dir() -> Path:
    """Where torchvision keeps downloaded weights (``$TORCH_HOME/hub/checkpoints``)."""
    return Path(torch.hub.get_dir()) / "checkpoints"


def _weight_variants(architecture: str) -> list:
    try:
        variants = list(torchvision.models.get_model_weights(architecture))
    except (ValueError, KeyError) as error:
        raise ValueError(f"torchvision has no model {architecture!r}: {error}") from None
    return [weights for weights in variants if list(weights.transforms().crop_size) == [config.CROP_SIZE]]


def imagenet_checkpoint(architecture: str) -> Path | None:
    """The first ImageNet weights file of ``architecture`` present in the hub cache, or None."""
    for weights in _weight_variants(architecture):
        path = hub_checkpoint_dir() / os.path.basename(weights.url)
        if path.is_file():
            return path
    return None


def expected_checkpoint(architecture: str) -> tuple[str, Path]:
    """(download URL, hub cache path) of the preferred ImageNet weights of ``architecture``."""
    variants = _weight_variants(architecture)
    if not variants:
        raise ValueError(f"torchvision has no 224-pixel ImageNet weights for {architecture!r}")
    url = variants[0].url
    return url, hub_checkpoint_dir() / os.path.basename(url)


def _download(url: str, target: Path) -> None:
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(20)
    try:
        torch.hub.download_url_to_file(url, str(target), progress=False)
    finally:
        socket.setdefaulttimeout(previous)


def find_or_fetch_imagenet_checkpoint(architecture: str) -> Path:
    """Path of ImageNet weights for ``architecture`` from the hub cache, downloading when allowed.

    Raises :class:`EncoderUnavailable` with the file to provide when none can be had.
    """
    found = imagenet_checkpoint(architecture)
    if found is not None:
        return found
    url, target = expected_checkpoint(architecture)
    how_to = (f"torchvision ImageNet weights for {architecture!r} are not in the torch hub cache. "
              f"Download {url} and save it as {target} (or set TORCH_HOME), or use "
              f"random-torchvision:{architecture} for a random-weight network.")
    if config.offline():
        raise EncoderUnavailable(how_to + " (UFD_OFFLINE is set, so no download was tried.)")
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        _download(url, target)
    except (urllib.error.URLError, OSError, RuntimeError) as error:
        target.unlink(missing_ok=True)
        raise EncoderUnavailable(f"{how_to} Download failed: {error}") from error
    return target


def build_network(architecture: str, checkpoint: Path | None, seed: int = RANDOM_SEED) -> nn.Module:
    """torchvision ``architecture`` with ImageNet weights from ``checkpoint`` (a state dict read
    with ``weights_only=True``, every key and shape checked), or seeded random weights when
    ``checkpoint`` is None."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        network = torchvision.models.get_model(architecture, weights=None)
    if checkpoint is not None:
        state = load_checkpoint(checkpoint, EncoderUnavailable, f"{architecture} weights")
        load_state_dict_strictly(network, state, checkpoint, f"torchvision's {architecture}")
    return network


def _encoder(network: nn.Module, name: str, identity: str, device: torch.device, path: Path | None = None) -> Encoder:
    dimension = strip_classifier(network)
    model = PenultimateFeatures(network).to(device)
    return Encoder(model=model, name=name, checkpoint_sha256=identity, device=device, embed_dim=dimension,
                   mean=config.IMAGENET_MEAN, std=config.IMAGENET_STD,
                   checkpoint_path=None if path is None else str(path))


def load_torchvision(architecture: str, options: LoadOptions) -> Encoder:
    checkpoint = find_or_fetch_imagenet_checkpoint(architecture)
    network = build_network(architecture, checkpoint)
    return _encoder(network, f"torchvision:{architecture}", file_sha256(checkpoint), options.device, checkpoint)


def load_random_torchvision(architecture: str, options: LoadOptions) -> Encoder:
    _weight_variants(architecture)  # an unknown architecture fails here, with the same message
    network = build_network(architecture, None)
    identity = f"random-torchvision:{architecture}:seed{RANDOM_SEED}:torch{torch.__version__.split('+')[0]}"
    return _encoder(network, f"random-torchvision:{architecture}", identity, options.device)


LOADERS = {"torchvision": load_torchvision, "random-torchvision": load_random_torchvision}
STAND_INS = {"torchvision": lambda architecture: f"random-torchvision:{architecture}"}
