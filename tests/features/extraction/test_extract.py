"""Extraction through the cache: each image encoded once, resumable, broken files reported."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import write_image

from ufd_lib import config
from ufd_lib.features.encoders import Encoder
from ufd_lib.features.extraction.extract import ExtractionError, extract_features, open_cache
from ufd_lib.features.preprocess import Perturbation, evaluation_transform, load_tensor


@pytest.fixture
def paths(tmp_path):
    return [write_image(tmp_path / "images" / f"{i:02d}.png", seed=100 + i) for i in range(10)]


@pytest.fixture
def encode_counter(monkeypatch):
    """Counts the images that reach the model, per batch."""
    batches: list[int] = []
    original = Encoder.encode

    def counting(self, images):
        batches.append(len(images))
        return original(self, images)

    monkeypatch.setattr(Encoder, "encode", counting)
    return batches


def extract(encoder, paths, root, perturbation=Perturbation(), **kwargs):
    cache = open_cache(encoder, perturbation, root)
    kwargs.setdefault("batch_size", 4)
    return extract_features(encoder, paths, cache, perturbation=perturbation, progress=False, **kwargs)


def test_second_extraction_comes_from_the_cache(tiny_encoder, paths, tmp_path, encode_counter):
    first, kept, report = extract(tiny_encoder, paths, tmp_path / "cache")
    assert first.shape == (10, 768) and kept.all()
    assert (report.images_encoded, report.images_from_cache) == (10, 0)
    assert sum(encode_counter) == 10
    again, kept, report = extract(tiny_encoder, paths, tmp_path / "cache")
    assert (report.images_encoded, report.images_from_cache) == (0, 10)
    assert sum(encode_counter) == 10, "the model ran again"
    np.testing.assert_array_equal(again, first)


def test_features_are_those_of_the_encoder(tiny_encoder, paths, tmp_path):
    features, _, _ = extract(tiny_encoder, paths[:3], tmp_path / "cache")
    batch = torch.stack([load_tensor(p, evaluation_transform()) for p in paths[:3]])
    direct = tiny_encoder.encode(batch).numpy()
    # bit for bit what torchvision's transforms give, up to the float16 storage
    np.testing.assert_array_equal(features, direct.astype(np.float16).astype(np.float32))


def test_changed_file_is_encoded_again(tiny_encoder, paths, tmp_path):
    before, _, _ = extract(tiny_encoder, paths, tmp_path / "cache")
    write_image(paths[4], seed=999)
    after, kept, report = extract(tiny_encoder, paths, tmp_path / "cache")
    assert (report.images_encoded, report.images_from_cache) == (1, 9)
    assert not np.allclose(after[4], before[4])
    np.testing.assert_array_equal(np.delete(after, 4, axis=0), np.delete(before, 4, axis=0))
    fresh, _, _ = extract(tiny_encoder, [paths[4]], tmp_path / "fresh-cache")
    np.testing.assert_allclose(after[4], fresh[0], atol=1e-3)


def test_duplicate_files_are_encoded_once(tiny_encoder, paths, tmp_path, encode_counter):
    copy = tmp_path / "elsewhere" / "copy.png"
    copy.parent.mkdir()
    copy.write_bytes(paths[0].read_bytes())
    features, kept, report = extract(tiny_encoder, [paths[0], paths[1], copy, paths[0]], tmp_path / "cache")
    assert kept.all() and features.shape == (4, 768)
    assert report.images_encoded == 2 and sum(encode_counter) == 2
    np.testing.assert_array_equal(features[0], features[2])
    np.testing.assert_array_equal(features[0], features[3])


class Interrupted(Exception):
    pass


def test_interrupted_extraction_resumes_from_committed_chunks(tiny_encoder, paths, tmp_path, monkeypatch):
    monkeypatch.setattr(config, "CACHE_CHUNK_IMAGES", 2)
    reference, _, _ = extract(tiny_encoder, paths, tmp_path / "reference-cache", batch_size=2)

    original = Encoder.encode
    calls = {"n": 0}

    def dies_on_third_batch(self, images):
        calls["n"] += 1
        if calls["n"] == 3:
            raise Interrupted
        return original(self, images)

    monkeypatch.setattr(Encoder, "encode", dies_on_third_batch)
    with pytest.raises(Interrupted):
        extract(tiny_encoder, paths, tmp_path / "cache", batch_size=2)
    monkeypatch.setattr(Encoder, "encode", original)

    cache = open_cache(tiny_encoder, Perturbation(), tmp_path / "cache")
    assert len(cache) == 4, "the two batches before the interruption were committed"

    encoded: list[int] = []

    def counting(self, images):
        encoded.append(len(images))
        return original(self, images)

    monkeypatch.setattr(Encoder, "encode", counting)
    resumed, kept, report = extract(tiny_encoder, paths, tmp_path / "cache", batch_size=2)
    assert (report.images_encoded, report.images_from_cache) == (6, 4)
    assert sum(encoded) == 6
    assert kept.all()
    np.testing.assert_allclose(resumed, reference, rtol=0, atol=2e-3)


def test_broken_files_are_skipped_with_reasons(tiny_encoder, paths, tmp_path):
    empty = tmp_path / "images" / "empty.png"
    empty.write_bytes(b"")
    text = tmp_path / "images" / "text.jpg"
    text.write_text("not an image")
    missing = tmp_path / "images" / "gone.png"
    listed = [paths[0], empty, paths[1], text, missing, paths[2]]
    features, kept, report = extract(tiny_encoder, listed, tmp_path / "cache")
    assert kept.tolist() == [True, False, True, False, False, True]
    assert features.shape == (3, 768)
    reasons = dict(report.skipped)
    assert set(reasons) == {str(empty), str(text), str(missing)}
    assert "empty" in reasons[str(empty)]
    assert "not an image" in reasons[str(text)]
    assert "unreadable" in reasons[str(missing)]
    alone, _, _ = extract(tiny_encoder, [paths[0], paths[1], paths[2]], tmp_path / "cache")
    np.testing.assert_array_equal(features, alone)


@pytest.mark.parametrize("broken", ["empty", "missing"])
def test_strict_mode_raises_naming_the_file(tiny_encoder, paths, tmp_path, broken):
    bad = tmp_path / "images" / "bad.png"
    if broken == "empty":
        bad.write_bytes(b"")
    with pytest.raises(ExtractionError, match="bad.png"):
        extract(tiny_encoder, [paths[0], bad], tmp_path / "cache", strict=True)


def test_perturbation_is_part_of_the_cache_key(tiny_encoder, paths, tmp_path, encode_counter):
    clean, _, _ = extract(tiny_encoder, paths[:4], tmp_path / "cache")
    jpeg = Perturbation(jpeg_quality=30)
    assert open_cache(tiny_encoder, jpeg, tmp_path / "cache").directory != \
        open_cache(tiny_encoder, Perturbation(), tmp_path / "cache").directory
    degraded, _, report = extract(tiny_encoder, paths[:4], tmp_path / "cache", perturbation=jpeg)
    assert report.images_encoded == 4
    assert not np.allclose(degraded, clean, atol=1e-2)
    _, _, report = extract(tiny_encoder, paths[:4], tmp_path / "cache", perturbation=Perturbation(blur_sigma=1.0))
    assert report.images_encoded == 4
    _, _, report = extract(tiny_encoder, paths[:4], tmp_path / "cache", perturbation=jpeg)
    assert report.images_encoded == 0


def test_fp32_caches_keep_their_key_and_bf16_gets_its_own(tiny_encoder, tmp_path):
    from ufd_lib.features.extraction.extract import cache_setting
    from ufd_lib.features.preprocess import preprocess_settings

    before_precision_existed = {
        "encoder": tiny_encoder.name,
        "checkpoint_sha256": tiny_encoder.checkpoint_sha256,
        "preprocess": preprocess_settings(tiny_encoder.mean, tiny_encoder.std, Perturbation()),
        "store_dtype": config.FEATURE_STORE_DTYPE,
    }
    assert cache_setting(tiny_encoder, Perturbation()) == before_precision_existed
    assert cache_setting(tiny_encoder, Perturbation(), "fp32") == before_precision_existed
    assert cache_setting(tiny_encoder, Perturbation(), "bf16") == {**before_precision_existed, "precision": "bf16"}


def test_bf16_features_are_close_to_fp32_and_cached_apart(tiny_encoder, paths, tmp_path):
    fp32, _, _ = extract(tiny_encoder, paths, tmp_path / "cache")
    cache = open_cache(tiny_encoder, Perturbation(), tmp_path / "cache", precision="bf16")
    bf16, kept, report = extract_features(tiny_encoder, paths, cache, batch_size=4, progress=False, precision="bf16")
    assert kept.all() and report.images_encoded == 10 and report.precision == "bf16"
    cosine = (fp32 * bf16).sum(1) / np.linalg.norm(fp32, axis=1) / np.linalg.norm(bf16, axis=1)
    assert cosine.min() > 0.99 and not np.array_equal(fp32, bf16)
    assert tiny_encoder.dtype == torch.float32, "bf16 runs under autocast; the weights stay fp32"
    _, _, again = extract(tiny_encoder, paths, tmp_path / "cache")
    assert again.images_encoded == 0 and again.precision == "fp32"


def test_precision_is_checked(tiny_encoder, paths, tmp_path):
    with pytest.raises(ValueError, match="fp16 extraction needs CUDA"):
        open_cache(tiny_encoder, Perturbation(), tmp_path / "cache", precision="fp16")
    with pytest.raises(ValueError, match="precision must be one of"):
        open_cache(tiny_encoder, Perturbation(), tmp_path / "cache", precision="int8")
    fp32_cache = open_cache(tiny_encoder, Perturbation(), tmp_path / "cache")
    with pytest.raises(ValueError, match="another precision"):
        extract_features(tiny_encoder, paths, fp32_cache, progress=False, precision="bf16")


@pytest.mark.parametrize("num_workers", [0, 1])
def test_features_do_not_depend_on_the_order_of_the_list(tiny_encoder, paths, tmp_path, num_workers):
    """Batches are cut from the digest-sorted list of missing images, so the batch each image
    lands in (and therefore its fp32 features, to the last bit) does not depend on list order."""
    forward, _, _ = extract(tiny_encoder, paths, tmp_path / "forward", batch_size=3, num_workers=num_workers)
    backward, _, _ = extract(tiny_encoder, paths[::-1], tmp_path / "backward", batch_size=3, num_workers=num_workers)
    np.testing.assert_array_equal(backward[::-1], forward)


def test_thread_count_is_restored(tiny_encoder, paths, tmp_path):
    threads = torch.get_num_threads()
    extract(tiny_encoder, paths[:3], tmp_path / "cache")
    assert torch.get_num_threads() == threads


def test_a_cache_that_cannot_take_claims_still_serves_its_features(tiny_encoder, paths, tmp_path, encode_counter):
    """A read-only shared cache: everything cached and one undecodable file (its group is never
    complete, so it is decoded again on every run) works without writing anything."""
    broken = paths[0].parent / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    cache = open_cache(tiny_encoder, Perturbation(), tmp_path / "cache")
    first, kept, _ = extract_features(tiny_encoder, [*paths, broken], cache, batch_size=4, progress=False)
    claims = cache.directory / "claims"
    claims.rmdir()
    claims.write_text("not a folder: claims cannot be taken here\n")
    encode_counter.clear()
    again, kept_again, report = extract_features(tiny_encoder, [*paths, broken], open_cache(
        tiny_encoder, Perturbation(), tmp_path / "cache"), batch_size=4, progress=False)
    assert encode_counter == [] and report.images_encoded == 0
    assert kept_again.tolist() == kept.tolist() == [True] * len(paths) + [False]
    assert [path for path, _ in report.skipped] == [str(broken)]
    np.testing.assert_array_equal(again, first)


@pytest.mark.parametrize("num_workers", [0, 1])
def test_crops_travel_through_the_ring_to_the_right_images(tiny_encoder, paths, tmp_path, num_workers):
    """Unreadable files leave holes inside batches, and there are more batches than ring slots:
    every image still gets its own features, bit for bit those of a run on its own."""
    listed = list(paths)
    for position, name in ((1, "empty.png"), (6, "text.jpg")):
        broken = tmp_path / "images" / name
        broken.write_bytes(b"" if name == "empty.png" else b"not an image")
        listed.insert(position, broken)
    from ufd_lib.features.extraction import decoding_workers

    slots = decoding_workers.PREFETCH_BATCHES_PER_WORKER * num_workers + 1
    assert len(listed) / 2 > slots, "the test must wrap around the ring"
    features, kept, _ = extract(tiny_encoder, listed, tmp_path / "ring", batch_size=2, num_workers=num_workers)
    assert kept.tolist() == [path.name not in ("empty.png", "text.jpg") for path in listed]
    for path, row in zip([p for p, keep in zip(listed, kept) if keep], features):
        alone, _, _ = extract(tiny_encoder, [path], tmp_path / "alone" / path.name, batch_size=2)
        np.testing.assert_allclose(row, alone[0], atol=2e-3)
    in_process, _, _ = extract(tiny_encoder, listed, tmp_path / "in-process", batch_size=2, num_workers=0)
    np.testing.assert_array_equal(features, in_process)


@pytest.mark.slow  # a spawned worker imports torch: about 15 s
def test_spawned_workers_write_the_shared_ring(tiny_encoder, paths, tmp_path, monkeypatch):
    """With the ``spawn`` start method (macOS's and Windows's default) the dataset reaches the
    worker pickled: its crops must still land in the parent's shared ring, not in a copy."""
    from ufd_lib.features.extraction import decoding_workers

    loader = decoding_workers.DataLoader

    def spawning(*args, num_workers=0, **kwargs):
        return loader(*args, num_workers=num_workers, **({"multiprocessing_context": "spawn"} if num_workers else {}),
                      **kwargs)

    in_process, _, _ = extract(tiny_encoder, paths, tmp_path / "in-process", num_workers=0)
    monkeypatch.setattr(decoding_workers, "DataLoader", spawning)
    spawned, kept, _ = extract(tiny_encoder, paths, tmp_path / "spawned", num_workers=1)
    assert kept.all()
    np.testing.assert_array_equal(spawned, in_process)
