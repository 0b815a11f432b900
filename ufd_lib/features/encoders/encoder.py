"""What an encoder is: a frozen image model with the normalisation it expects and the identity of
its weights (which keys the feature cache)."""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ufd_lib import config


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
