"""What an encoder is: a frozen image model with the normalisation it expects and the identity of
its weights (which keys the feature cache)."""
from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

import torch
from torch import nn

from ufd_lib import config


@dataclass(frozen=True)
class LayerTokens:
    """How an encoder exposes the class (CLS) token of its residual stream after each block.

    depth: blocks in the image tower (24 for ViT-L/14); layer 0 is the stream entering block 1,
    layer L (1..depth) the stream after block L. width: the token's width (1024 for ViT-L/14).
    forward: (model, model input, sorted layers) → (final embedding (n, embed_dim), {layer:
    CLS token (n, width)}), all from one forward pass.
    """

    depth: int
    width: int
    forward: Callable[[nn.Module, torch.Tensor, tuple[int, ...]], tuple[torch.Tensor, dict[int, torch.Tensor]]]


@dataclass
class Encoder:
    """A frozen image encoder ready for inference.

    model: module whose ``encode_image`` maps (n, 3, 224, 224) normalised images to (n, d).
    name: the registry string that produced it.
    checkpoint_sha256: SHA-256 of the weights file (or a deterministic id for random weights).
    mean, std: per-channel input normalisation the encoder expects.
    checkpoint_official: whether the weights file is one of OpenAI's published CLIP checkpoints
    (its SHA-256 is one OpenAI publishes). checkpoint_path: the weights file read (None for
    random weights). layer_tokens: how to read the CLS token of each block (None: the encoder
    has no per-layer features).
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
    layer_tokens: LayerTokens | None = None

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

    def check_layers(self, layers: Iterable[int]) -> tuple[int, ...]:
        """The requested layers, sorted and unique; ValueError naming the encoder when it has no
        per-layer features or a layer is outside 0..depth."""
        if self.layer_tokens is None:
            raise ValueError(f"the encoder {self.name} has no per-layer features (only CLIP ViTs have)")
        wanted = tuple(sorted(set(int(layer) for layer in layers)))
        outside = [layer for layer in wanted if not 0 <= layer <= self.layer_tokens.depth]
        if outside:
            raise ValueError(f"layer {outside[0]} does not exist in {self.name}: its layers are "
                             f"0..{self.layer_tokens.depth} (0: entering block 1, L: after block L)")
        return wanted

    @torch.inference_mode()
    def encode_layers(self, images: torch.Tensor,
                      layers: Iterable[int]) -> tuple[torch.Tensor, dict[int, torch.Tensor]]:
        """images as in :meth:`encode` → (features float32 (n, embed_dim), {layer: CLS token float32
        (n, layer_tokens.width)}) on CPU, from one forward pass; the features equal
        :meth:`encode`'s. Raises ValueError as :meth:`check_layers`."""
        wanted = self.check_layers(layers)
        images = images.to(self.device, non_blocking=True)
        final, tokens = self.layer_tokens.forward(self.model, images, wanted)
        return final.float().cpu(), {layer: tokens[layer].float().cpu() for layer in wanted}
