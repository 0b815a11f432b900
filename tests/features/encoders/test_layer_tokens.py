"""Per-layer CLS tokens of a CLIP ViT against forward hooks on the same weights."""
from __future__ import annotations

import pytest
import torch

from ufd_lib.features.encoders import load_encoder
from ufd_lib.features.encoders.clip import random_clip_state_dict


def hooked_tokens(encoder, images: torch.Tensor) -> tuple[torch.Tensor, dict[int, torch.Tensor]]:
    """Reference: ``encode_image`` with forward hooks on ``ln_pre`` (batch-first output) and on
    every residual block (output in (seq, batch, width) layout: the CLS token is sequence position 0)."""
    visual = encoder.model.visual
    seen: dict[int, torch.Tensor] = {}
    handles = [visual.ln_pre.register_forward_hook(lambda module, args, output: seen.__setitem__(0, output[:, 0]))]
    for depth, block in enumerate(visual.transformer.resblocks, start=1):
        handles.append(block.register_forward_hook(
            lambda module, args, output, depth=depth: seen.__setitem__(depth, output[0])))
    try:
        with torch.inference_mode():
            final = encoder.model.encode_image(images)
    finally:
        for handle in handles:
            handle.remove()
    return final, {layer: token.clone() for layer, token in seen.items()}


@pytest.fixture(scope="module")
def checkpoint_encoder(tmp_path_factory):
    """A CLIP ViT read from a state-dict file (``clip:/path``), weights unlike any stand-in's."""
    path = tmp_path_factory.mktemp("ckpt") / "hidden.pt"
    torch.save(random_clip_state_dict("small", seed=123), path)
    return load_encoder(f"clip:{path}", "cpu")


def test_layer_tokens_equal_forward_hooks(checkpoint_encoder):
    images = torch.randn(3, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    depth = checkpoint_encoder.layer_tokens.depth
    assert depth == 4 and checkpoint_encoder.layer_tokens.width == 256
    final, tokens = checkpoint_encoder.encode_layers(images, range(depth + 1))
    reference_final, reference = hooked_tokens(checkpoint_encoder, images)
    assert sorted(tokens) == list(range(depth + 1))
    for layer in range(depth + 1):
        assert tokens[layer].shape == (3, 256) and tokens[layer].dtype == torch.float32
        torch.testing.assert_close(tokens[layer], reference[layer].float(), rtol=0, atol=0)
    # The same pass gives the final embedding, exactly encode()'s.
    torch.testing.assert_close(final, reference_final.float(), rtol=0, atol=0)
    torch.testing.assert_close(final, checkpoint_encoder.encode(images), rtol=0, atol=0)
    # Tokens of different layers differ (no layer is another's copy); the class token entering
    # block 1 has seen no patch yet, so it is the same for every image, and later ones are not.
    assert not torch.equal(tokens[1], tokens[2])
    assert torch.equal(tokens[0][0], tokens[0][2]) and not torch.equal(tokens[1][0], tokens[1][2])


def test_a_subset_of_layers_matches_the_full_request(checkpoint_encoder):
    images = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(1))
    _, every = checkpoint_encoder.encode_layers(images, range(5))
    _, some = checkpoint_encoder.encode_layers(images, [4, 0, 4])
    assert sorted(some) == [0, 4]
    for layer in some:
        assert torch.equal(some[layer], every[layer])


def test_layers_outside_the_model_or_without_tokens_are_refused(tiny_encoder):
    images = torch.zeros(1, 3, 224, 224)
    with pytest.raises(ValueError, match=r"layer 3 does not exist in random-clip:tiny: its layers are 0\.\.2"):
        tiny_encoder.encode_layers(images, [0, 3])
    with pytest.raises(ValueError, match="layer -1"):
        tiny_encoder.check_layers([-1])
    resnet = load_encoder("random-torchvision:resnet18", "cpu")
    with pytest.raises(ValueError, match="has no per-layer features"):
        resnet.check_layers([0])
