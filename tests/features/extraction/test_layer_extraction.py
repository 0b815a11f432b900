"""Per-layer features through the cache: one forward pass per image for every requested layer,
the tokens those of the encoder, and a later request for more layers encodes each image once more."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import make_image_set

from ufd_lib.data.discovery import collect_images
from ufd_lib.data.image_sets import ImageSetSpec
from ufd_lib.features.encoders import load_encoder
from ufd_lib.features.extraction.extract import extract_features, open_cache
from ufd_lib.features.extraction.layer_caches import layer_caches
from ufd_lib.features.feature_sets import FINAL, ExtractionOptions, featurize_images_with_layers
from ufd_lib.features.preprocess import evaluation_transform, load_tensor


@pytest.fixture(scope="module")
def encoder():
    """A 2-block CLIP ViT (its own instance: tests patch its layer tokens)."""
    return load_encoder("random-clip:tiny", "cpu")


@pytest.fixture
def passes(encoder, monkeypatch):
    """Images in every forward pass that reads layer tokens, and in every plain ``encode``."""
    seen = {"layers": [], "plain": []}
    tokens = encoder.layer_tokens
    original_forward, original_encode = tokens.forward, type(encoder).encode

    def forward(model, images, layers):
        seen["layers"].append(len(images))
        return original_forward(model, images, layers)

    def encode(self, images):
        seen["plain"].append(len(images))
        return original_encode(self, images)

    monkeypatch.setattr(encoder, "layer_tokens", type(tokens)(tokens.depth, tokens.width, forward))
    monkeypatch.setattr(type(encoder), "encode", encode)
    return seen


@pytest.fixture
def images(tmp_path):
    return collect_images(ImageSetSpec("set", *(2 * [make_image_set(tmp_path / "data", 5, 5)])))


def options(tmp_path, **overrides):
    return ExtractionOptions(**{"cache_root": tmp_path / "cache", "batch_size": 4, "progress": False, **overrides})


def chunk_files(cache) -> set[str]:
    return {path.name for path in cache.directory.glob("chunk-*")}


def test_layer_tokens_in_the_cache_are_the_encoders(encoder, images, tmp_path):
    sets = featurize_images_with_layers(encoder, "set", images, options(tmp_path), [0, 2])
    assert sorted(sets, key=str) == [0, 2, FINAL]
    batch = torch.stack([load_tensor(image.path, evaluation_transform()) for image in images])
    final, tokens = encoder.encode_layers(batch, [0, 2])
    for layer in (0, 2):
        assert sets[layer].features.shape == (10, encoder.layer_tokens.width)
        assert sets[layer].paths == sets[FINAL].paths == [image.path for image in images]
        np.testing.assert_allclose(sets[layer].features, tokens[layer].numpy().astype(np.float16).astype(np.float32),
                                   rtol=2e-3, atol=2e-3)
    np.testing.assert_allclose(sets[FINAL].features, final.numpy(), rtol=2e-3, atol=2e-3)
    assert not np.allclose(sets[0].features, sets[2].features)


def test_all_layers_come_from_one_pass_and_more_layers_later_encode_each_image_once_more(
        encoder, images, tmp_path, passes):
    plain, _, _ = extract_features(encoder, [image.path for image in images],
                                   open_cache(encoder, options(tmp_path).perturbation, tmp_path / "plain"),
                                   options(tmp_path, cache_root=tmp_path / "plain"))
    passes["plain"].clear()
    first = featurize_images_with_layers(encoder, "set", images, options(tmp_path), [0])
    assert sum(passes["layers"]) == 10 and not passes["plain"], "one pass per image gives the final embedding too"
    np.testing.assert_array_equal(first[FINAL].features, plain)  # the same batches, the same features

    cache = open_cache(encoder, options(tmp_path).perturbation, tmp_path / "cache")
    stores = layer_caches(cache, [0, 1, 2], encoder.layer_tokens.width)
    before = {"final": chunk_files(cache), 0: chunk_files(stores[0])}
    passes["layers"].clear()
    second = featurize_images_with_layers(encoder, "set", images, options(tmp_path), [0, 1, 2])
    assert sum(passes["layers"]) == 10, "each image once more for the two new layers, no more"
    assert chunk_files(cache) == before["final"] and chunk_files(stores[0]) == before[0], "cached data rewritten"
    np.testing.assert_array_equal(second[0].features, first[0].features)
    np.testing.assert_array_equal(second[FINAL].features, first[FINAL].features)
    assert len(stores[1]) == len(stores[2]) == 10

    passes["layers"].clear()
    featurize_images_with_layers(encoder, "set", images, options(tmp_path), [2, 1])
    assert passes["layers"] == [] and passes["plain"] == []


def test_a_plain_extraction_after_a_layered_one_encodes_nothing(encoder, images, tmp_path, passes):
    featurize_images_with_layers(encoder, "set", images, options(tmp_path), [1])
    passes["layers"].clear()
    cache = open_cache(encoder, options(tmp_path).perturbation, tmp_path / "cache")
    _, _, report = extract_features(encoder, [image.path for image in images], cache, options(tmp_path))
    assert report.images_encoded == 0 and passes == {"layers": [], "plain": []}


def test_layers_the_encoder_lacks_are_refused(encoder, images, tmp_path):
    with pytest.raises(ValueError, match="layer 3 does not exist"):
        featurize_images_with_layers(encoder, "set", images, options(tmp_path), [3])


def test_disk_figures_are_stated_in_powers_of_1000():
    from ufd_lib.features.extraction.layer_caches import human_bytes, stored_bytes

    assert stored_bytes(1, 1024, chunk_images=10**9) == 1024 * 2 + 32 + 556  # row, key, one chunk's records
    assert stored_bytes(0, 1024) == 0
    assert [human_bytes(n) for n in (999, 2080, 2.1e6, 10e9)] == ["999 bytes", "2.1 KB", "2.1 MB", "10.0 GB"]
