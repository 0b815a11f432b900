"""Each image is read once: a file-identity memo instead of re-hashing unchanged files, the bytes
that are hashed are the bytes that are decoded, inputs that are not regular files or are too
large are never read, and non-finite features never reach the cache."""
from __future__ import annotations

import dataclasses
import hashlib
import os
import stat

import numpy as np
import pytest
import torch
from conftest import settle_timestamps, write_image
from torch import nn

from ufd_lib.devices import torch_threads
from ufd_lib.features.encoders import Encoder
from ufd_lib.features.extraction import extract as extract_module
from ufd_lib.features.extraction.digest_memo import MEMO_NAME, DigestMemo, identity_of, memo_key
from ufd_lib.features.extraction.extract import (
    ExtractionError,
    default_workers,
    extract_features,
    fill_cache,
    open_cache,
)
from ufd_lib.features.preprocess import (
    Perturbation,
    centre_crop_pixels,
    evaluation_transform,
    load_pixels,
    load_tensor,
    to_model_input,
)
from ufd_lib.hashing import FileRefused, read_regular_file, regular_file_sha256


@pytest.fixture
def paths(tmp_path):
    written = [write_image(tmp_path / "images" / f"{i:02d}.png", seed=300 + i) for i in range(6)]
    settle_timestamps()
    return written


def run(encoder, paths, root, **options):
    options.setdefault("batch_size", 4)
    return extract_features(encoder, paths, open_cache(encoder, Perturbation(), root), progress=False, **options)


def test_a_repeat_run_recognises_every_file_without_reading_it(tiny_encoder, paths, tmp_path, monkeypatch):
    first, _, report = run(tiny_encoder, paths, tmp_path / "cache")
    assert (report.files_hashed, report.files_recognised) == (6, 0)
    assert (tmp_path / "cache" / MEMO_NAME).is_file()

    opened = []
    real_open = os.open
    monkeypatch.setattr(os, "open", lambda path, *a, **k: opened.append(str(path)) or real_open(path, *a, **k))
    again, _, report = run(tiny_encoder, paths, tmp_path / "cache")
    assert (report.files_hashed, report.files_recognised, report.images_from_cache) == (0, 6, 6)
    assert not [p for p in opened if p.endswith(".png")], "an image file was opened"
    np.testing.assert_array_equal(again, first)


def test_any_change_of_identity_rehashes_that_file_only(tiny_encoder, paths, tmp_path):
    run(tiny_encoder, paths, tmp_path / "cache")
    write_image(paths[1], seed=300)  # paths[1] now has paths[0]'s content
    os.utime(paths[2])  # same bytes, new mtime
    features, _, report = run(tiny_encoder, paths, tmp_path / "cache")
    assert report.files_hashed == 2 and report.images_encoded == 0
    np.testing.assert_array_equal(features[1], features[0])


def test_rows_that_fail_their_check_are_not_trusted(paths, tmp_path):
    memo = DigestMemo(tmp_path)
    key, identity = memo_key(paths[0]), identity_of(os.stat(paths[0]))
    memo.remember([(key, identity, bytes(32))])
    assert memo.lookup([key], [identity]) == [bytes(32)]
    memo._connect().execute("UPDATE digests SET digest = ?", (b"\1" * 32,))
    assert memo.lookup([key], [identity]) == [None], "an edited digest was served"
    memo.close()


def test_a_damaged_memo_is_set_aside_and_rebuilt(tiny_encoder, paths, tmp_path):
    first, _, _ = run(tiny_encoder, paths, tmp_path / "cache")
    (tmp_path / "cache" / MEMO_NAME).write_bytes(b"SQLite format 3\0" + os.urandom(3000))
    again, kept, report = run(tiny_encoder, paths, tmp_path / "cache")
    assert kept.all() and report.files_hashed == 6 and report.images_from_cache == 6
    np.testing.assert_array_equal(again, first)
    assert list((tmp_path / "cache").glob(f"{MEMO_NAME}.corrupt-*"))
    _, _, report = run(tiny_encoder, paths, tmp_path / "cache")
    assert report.files_recognised == 6, "the rebuilt memo does not work"


def test_a_file_changed_after_planning_is_skipped_not_cached_under_the_old_key(tiny_encoder, paths, tmp_path,
                                                                               monkeypatch):
    planned = extract_module.plan_digests

    def plan_then_swap(files, memo, max_bytes):
        plan = planned(files, memo, max_bytes)
        write_image(paths[3], seed=999)  # swapped in after hashing, before decoding
        return plan

    monkeypatch.setattr(extract_module, "plan_digests", plan_then_swap)
    old_digest = hashlib.sha256(paths[3].read_bytes()).digest()
    cache = open_cache(tiny_encoder, Perturbation(), tmp_path / "cache")
    kept, digests, report = fill_cache(tiny_encoder, paths, cache, batch_size=4, progress=False)
    assert digests[3] == old_digest and not kept[3] and kept.sum() == 5
    assert "changed since it was hashed" in dict(report.skipped)[str(paths[3])]
    assert not cache.contains([old_digest])[0], "the new pixels were cached under the old digest"
    monkeypatch.setattr(extract_module, "plan_digests", planned)
    features, kept, report = run(tiny_encoder, paths, tmp_path / "cache")
    assert kept.all() and report.images_encoded == 1, "the changed file is not taken up on the next run"
    reference = tiny_encoder.encode(load_tensor(paths[3], evaluation_transform())[None]).numpy()
    np.testing.assert_allclose(features[3], reference[0], atol=2e-3)


def test_fifo_device_and_dangling_link_are_skipped_with_reasons(tiny_encoder, paths, tmp_path):
    fifo = tmp_path / "images" / "fifo.png"
    os.mkfifo(fifo)
    device = tmp_path / "images" / "zero.png"
    device.symlink_to("/dev/zero")
    dangling = tmp_path / "images" / "gone.png"
    dangling.symlink_to(tmp_path / "nowhere.png")
    _, kept, report = run(tiny_encoder, [*paths, fifo, device, dangling], tmp_path / "cache")
    reasons = dict(report.skipped)
    assert kept.tolist() == [True] * 6 + [False] * 3
    assert reasons[str(fifo)] == "not a regular file (a FIFO)"
    assert reasons[str(device)] == "not a regular file (a character device)"
    assert reasons[str(dangling)] == "dangling symbolic link"
    assert (report.files_hashed, report.files_recognised) == (6, 0), "refused inputs counted as hashed"


def test_files_over_the_byte_limit_are_refused_unread(tiny_encoder, paths, tmp_path, monkeypatch):
    large = write_image(tmp_path / "images" / "large.png", size=(64, 64))
    paths = [*paths, large]
    limit = max(p.stat().st_size for p in paths[:-1])
    _, kept, report = run(tiny_encoder, paths, tmp_path / "cache", max_bytes=limit)
    assert kept.tolist() == [True] * 6 + [False]
    assert dict(report.skipped)[str(large)] == f"{large.stat().st_size} bytes exceeds the limit of {limit} " \
                                               "(--max-bytes, UFD_MAX_IMAGE_BYTES)"
    monkeypatch.setenv("UFD_MAX_IMAGE_BYTES", str(limit))
    _, kept_env, _ = run(tiny_encoder, paths, tmp_path / "cache")
    np.testing.assert_array_equal(kept_env, kept)
    with pytest.raises(FileRefused, match="exceeds the limit"):
        read_regular_file(large, limit)


def test_the_digest_of_a_file_changing_while_hashed_is_not_remembered(tmp_path, monkeypatch):
    path = write_image(tmp_path / "a.png")
    digest, identity = regular_file_sha256(path)
    assert digest == hashlib.sha256(path.read_bytes()).digest() and identity is not None
    real_fstat = os.fstat
    calls = []

    def fstat_after_a_write(descriptor):
        calls.append(descriptor)
        if len(calls) == 2:
            os.utime(path, ns=(1, 1))
        return real_fstat(descriptor)

    monkeypatch.setattr(os, "fstat", fstat_after_a_write)
    assert regular_file_sha256(path)[1] is None


@pytest.mark.parametrize("size", [(32, 32), (224, 224), (225, 300), (301, 230), (500, 120)])
@pytest.mark.parametrize("perturbation", [Perturbation(), Perturbation(blur_sigma=1.0, jpeg_quality=75)])
def test_uint8_crops_normalised_later_equal_the_torchvision_tensors_bit_for_bit(tmp_path, size, perturbation):
    path = write_image(tmp_path / "a.png", seed=size[0], size=size)
    pixels = load_pixels(path, perturbation)
    assert pixels.dtype == np.uint8 and pixels.shape == (224, 224, 3)
    mean, std = (0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711)
    reference = load_tensor(path, evaluation_transform(), perturbation)
    batch = torch.from_numpy(np.stack([pixels, pixels[::-1].copy()]))
    ours = to_model_input(batch, mean, std, "cpu", torch.float32)
    assert torch.equal(ours[0], reference)
    reused = torch.full((3, 3, 224, 224), float("nan"))
    into_buffer = to_model_input(batch, mean, std, "cpu", torch.float32, out=reused)
    assert into_buffer.data_ptr() == reused.data_ptr() and torch.equal(into_buffer, ours)


def test_centre_crop_pixels_is_torchvisions_center_crop():
    from PIL import Image

    for width, height in [(10, 7), (300, 225), (225, 300), (226, 100), (224, 224)]:
        image = Image.fromarray(np.random.default_rng(width).integers(0, 256, (height, width, 3), dtype=np.uint8))
        expected = np.asarray(evaluation_transform().transforms[0](image))
        np.testing.assert_array_equal(centre_crop_pixels(image), expected)


class _NaNForBrightImages(nn.Module):
    """Wraps a CLIP: the features of images whose mean normalised input is above 1 (white) become NaN."""

    def __init__(self, inner):
        super().__init__()
        self.inner = inner

    def encode_image(self, images):
        features = self.inner.encode_image(images)
        features[images.mean(dim=(1, 2, 3)) > 1] = float("nan")
        return features


def test_non_finite_features_are_refused_naming_the_image_and_encoder(tiny_encoder, tmp_path):
    dark = write_image(tmp_path / "dark.png", size=(224, 224))
    from PIL import Image

    bright = tmp_path / "bright.png"
    Image.new("RGB", (224, 224), (255, 255, 255)).save(bright)
    broken = dataclasses.replace(tiny_encoder, model=_NaNForBrightImages(tiny_encoder.model))
    cache = open_cache(broken, Perturbation(), tmp_path / "cache")
    features, kept, report = extract_features(broken, [dark, bright], cache, progress=False)
    assert kept.tolist() == [True, False] and np.isfinite(features).all()
    assert (dict(report.skipped)[str(bright)]
            == "the encoder random-clip:tiny gave non-finite features (NaN or infinity)")
    assert len(cache) == 1
    with pytest.raises(ExtractionError, match="bright.png: the encoder random-clip:tiny gave non-finite"):
        extract_features(broken, [bright], cache, progress=False, strict=True)


def test_default_workers_rule():
    assert default_workers("cpu", cores=64) == 0
    assert default_workers("cuda", cores=1) == 0
    assert default_workers("cuda", cores=4) == 3
    assert default_workers("cuda", cores=64) == 8


def test_cores_are_counted_where_the_affinity_is_unknown(monkeypatch):
    """macOS and Windows have no os.sched_getaffinity: every core counts there."""
    from ufd_lib import devices

    monkeypatch.setattr(devices.os, "sched_getaffinity", lambda pid: {0, 1, 2}, raising=False)
    assert devices.available_cores() == 3
    monkeypatch.delattr(devices.os, "sched_getaffinity")
    monkeypatch.setattr(devices.os, "cpu_count", lambda: 6)
    assert devices.available_cores() == 6 and default_workers("cuda") == 5


@pytest.mark.parametrize("offset_fraction", [0.3, 0.6, 0.9])
def test_a_memo_damaged_inside_never_yields_a_wrong_digest(tmp_path, offset_fraction):
    keys = [f"/images/{i:05d}.png" for i in range(3000)]
    identities = [(i, i, i, i, 1) for i in range(3000)]
    truth = [hashlib.sha256(key.encode()).digest() for key in keys]
    memo = DigestMemo(tmp_path)
    memo.remember(zip(keys, identities, truth))
    memo.close()
    path = tmp_path / MEMO_NAME
    data = bytearray(path.read_bytes())
    start = int(len(data) * offset_fraction)
    data[start : start + 64] = bytes(b ^ 0x5A for b in data[start : start + 64])
    path.write_bytes(bytes(data))
    found = DigestMemo(tmp_path).lookup(keys, identities)
    assert all(digest in (None, expected) for digest, expected in zip(found, truth))
    assert sum(digest is None for digest in found) > 0, "the damage went unnoticed"


def test_a_file_longer_than_its_stat_said_is_read_whole_and_not_trusted(tmp_path, monkeypatch):
    from ufd_lib.hashing import read_steadily

    path = write_image(tmp_path / "a.png")
    data = path.read_bytes()
    real_fstat = os.fstat
    calls = []

    def shorter_at_first(descriptor):
        calls.append(descriptor)
        found = real_fstat(descriptor)
        if len(calls) > 1:
            return found
        fields = list(found)
        fields[stat.ST_SIZE] = 10
        return os.stat_result(fields)

    monkeypatch.setattr(os, "fstat", shorter_at_first)
    read, identity = read_steadily(path)
    assert read == data and identity is None
    calls.clear()
    with pytest.raises(FileRefused, match="grew past the limit of 20 bytes"):
        read_steadily(path, max_bytes=20)


def test_a_short_read_is_read_on_to_the_end(tmp_path, monkeypatch):
    """One read that returns the size stat gave is the whole file; fewer bytes (a read cut short,
    as network filesystems may) are not taken for it."""
    from ufd_lib.hashing import read_steadily

    path = write_image(tmp_path / "a.png")
    data = path.read_bytes()
    real_read, sizes = os.read, []

    def ten_bytes_at_first(descriptor, size):
        sizes.append(size)
        return real_read(descriptor, 10 if len(sizes) == 1 else size)

    monkeypatch.setattr(os, "read", ten_bytes_at_first)
    read, identity = read_steadily(path)
    assert read == data and identity is not None and len(sizes) > 1
    sizes.clear()
    monkeypatch.setattr(os, "read", lambda descriptor, size: sizes.append(size) or real_read(descriptor, size))
    assert read_steadily(path)[0] == data and sizes == [len(data) + 1]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_model_input_on_cuda_is_the_cpu_input_and_frees_the_callers_buffer():
    mean, std = (0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711)
    pixels = torch.from_numpy(np.random.default_rng(0).integers(0, 256, (4, 224, 224, 3), dtype=np.uint8))
    on_cpu = to_model_input(pixels, mean, std, "cpu", torch.float32)
    on_cuda = to_model_input(pixels, mean, std, "cuda", torch.float32)
    pixels.zero_()  # the caller reuses its buffer at once
    torch.testing.assert_close(on_cuda.cpu(), on_cpu, rtol=0, atol=1e-6)


def test_hashing_threads_leave_the_main_threads_core_and_stay_few():
    from ufd_lib.features.extraction.extract import MAX_HASH_THREADS, hash_threads

    assert [hash_threads(cores) for cores in (1, 2, 3, 4)] == [1, 1, 2, 3]
    assert hash_threads(64) == MAX_HASH_THREADS


@dataclasses.dataclass
class ThreadRecordingEncoder(Encoder):
    """Features of ones; records the torch threads each call of the model runs with."""

    threads_seen: list[int] = dataclasses.field(default_factory=list)

    @torch.inference_mode()
    def encode(self, images):
        self.threads_seen.append(torch.get_num_threads())
        return torch.ones((len(images), self.embed_dim))


@pytest.mark.parametrize("device, model_threads", [("meta", 1), ("cpu", 2)])
def test_the_host_works_on_one_torch_thread_and_a_cpu_model_on_all(paths, tmp_path, monkeypatch, device,
                                                                   model_threads):
    """Threads that torch would split the host's small ops over spin for milliseconds after each,
    on the cores that decoding workers need: only a model on the CPU gets the whole pool."""
    input_threads = []

    def recording_input(*args, **kwargs):
        input_threads.append(torch.get_num_threads())
        return to_model_input(*args, **kwargs)

    monkeypatch.setattr(extract_module, "to_model_input", recording_input)
    encoder = ThreadRecordingEncoder(model=nn.Linear(1, 1), name=f"recording-{device}", checkpoint_sha256="none",
                                     device=torch.device(device), embed_dim=8)
    with torch_threads(2):
        _, kept, _ = run(encoder, paths, tmp_path / "cache", batch_size=2, num_workers=0)
    assert kept.all()
    assert input_threads == [1, 1, 1]
    assert encoder.threads_seen == [model_threads] * 3
