"""The encoder registry: what an encoder is (:class:`Encoder`), and how a loader joins the
registry (:func:`register`). Loaders live in :mod:`ufd_lib.features.encoders` (CLIP),
:mod:`~ufd_lib.features.torchvision_encoders` and :mod:`~ufd_lib.features.detector_networks`;
:func:`ufd_lib.features.encoders.load_encoder` resolves a string through all of them.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from ufd_lib import config


class EncoderUnavailable(RuntimeError):
    """The encoder's weights cannot be had; the message says how to provide them."""


@dataclass
class Encoder:
    """A frozen image encoder ready for inference.

    model: module whose ``encode_image`` maps (n, 3, 224, 224) normalised images to (n, d).
    name: the registry string that produced it.
    checkpoint_sha256: SHA-256 of the weights file (or a deterministic id for random weights).
    mean, std: per-channel input normalisation the encoder expects.
    checkpoint_official: whether the weights file is one of OpenAI's published CLIP checkpoints
    (its SHA-256 is one OpenAI publishes). checkpoint_path: the weights file read (None for
    random weights).
    """

    model: nn.Module
    name: str
    checkpoint_sha256: str
    device: torch.device
    embed_dim: int
    mean: tuple[float, float, float] = config.CLIP_MEAN
    std: tuple[float, float, float] = config.CLIP_STD
    checkpoint_official: bool = False
    checkpoint_path: str | None = None

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


_STAND_INS: dict[str, Callable[[str], str | None]] = {}


def register(prefix: str, stand_in: Callable[[str], str | None] | None = None):
    """Decorator: make ``prefix:<argument>`` resolve through the decorated loader.

    stand_in: for pretrained weights, maps the argument to the registry string of the
    random-weight network of the same architecture (or None where there is none).
    """

    def decorate(loader: Callable[[str, torch.device], Encoder]):
        _REGISTRY[prefix] = loader
        if stand_in is not None:
            _STAND_INS[prefix] = stand_in
        return loader

    return decorate
