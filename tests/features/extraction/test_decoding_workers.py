"""Decoding workers kept from one extraction to the next (ufd_lib.features.extraction.decoding_workers)."""
from __future__ import annotations

import gc
import multiprocessing
import os
import signal
import threading
import time

import numpy as np
import pytest
from conftest import write_image

from ufd_lib.features.encoders import Encoder
from ufd_lib.features.extraction import extract as extraction
from ufd_lib.features.extraction.decoding_workers import kept_decoding_workers
from ufd_lib.features.extraction.extract import ExtractionError, extract_features, open_cache
from ufd_lib.features.preprocess import Perturbation


@pytest.fixture
def paths(tmp_path):
    return [write_image(tmp_path / "images" / f"{i}.png", seed=i, size=(40 + i, 36)) for i in range(6)]


def extract(encoder, paths, root, perturbation=Perturbation(), **kwargs):
    return extract_features(encoder, paths, open_cache(encoder, perturbation, root), perturbation=perturbation,
                            batch_size=2, progress=False, **kwargs)


def worker_pids(before: set[int]) -> set[int]:
    """The pids of this process's live multiprocessing children that were not in ``before``."""
    return {child.pid for child in multiprocessing.active_children()} - before


def test_an_extraction_on_its_own_stops_its_workers(tiny_encoder, paths, tmp_path):
    before = worker_pids(set())
    features, kept, _ = extract(tiny_encoder, paths, tmp_path / "workers", num_workers=2)
    assert kept.all() and worker_pids(before) == set()
    in_process, _, _ = extract(tiny_encoder, paths, tmp_path / "in-process", num_workers=0)
    np.testing.assert_array_equal(features, in_process)


def test_kept_workers_serve_every_extraction_of_the_block_then_stop(tiny_encoder, paths, tmp_path):
    before = worker_pids(set())
    reference, _, _ = extract(tiny_encoder, paths, tmp_path / "in-process", num_workers=0)
    with kept_decoding_workers():
        first, _, _ = extract(tiny_encoder, paths[:4], tmp_path / "first", num_workers=2)
        started = worker_pids(before)
        assert len(started) == 2
        with kept_decoding_workers():  # nested: the outer block's workers
            second, _, report = extract(tiny_encoder, paths, tmp_path / "second", num_workers=2)
        assert report.images_encoded == len(paths) and worker_pids(before) == started
        gc.collect()
        assert not [o for o in gc.get_objects() if type(o) is extraction._ClaimedBatches], \
            "between extractions the kept workers' loader holds no extraction's paths and digests"
        perturbed, _, _ = extract(tiny_encoder, paths, tmp_path / "blurred", Perturbation(blur_sigma=1.0),
                                  num_workers=2)
        replaced = worker_pids(before)
        assert len(replaced) == 2 and not replaced & started, "other settings: the kept workers are replaced"
    assert worker_pids(before) == set()
    first_in_process, _, _ = extract(tiny_encoder, paths[:4], tmp_path / "first-in-process", num_workers=0)
    np.testing.assert_array_equal(first, first_in_process)  # same request, same batches: bit for bit
    np.testing.assert_array_equal(second, reference)
    blurred, _, _ = extract(tiny_encoder, paths, tmp_path / "blurred-in-process", Perturbation(blur_sigma=1.0),
                            num_workers=0)
    np.testing.assert_array_equal(perturbed, blurred)


def test_a_failed_extraction_stops_the_kept_workers(tiny_encoder, paths, tmp_path):
    """A pass abandoned midway may leave batches in its workers: they are stopped, and the next
    extraction starts its own and gets every image right."""
    broken = paths[0].parent / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    before = worker_pids(set())
    # The same request decoded in-process: batches are cut from the request's sorted digests, so
    # only the same request is comparable bit for bit.
    reference, _, _ = extract(tiny_encoder, [broken, *paths], tmp_path / "in-process", num_workers=0)
    with kept_decoding_workers():
        extract(tiny_encoder, paths[:2], tmp_path / "warm", num_workers=1)
        started = worker_pids(before)
        with pytest.raises(ExtractionError, match="broken.png") as failure:
            extract(tiny_encoder, [broken, *paths], tmp_path / "strict", num_workers=1, strict=True)
        assert failure.tb is not None and worker_pids(before) == set(), "stopped while the traceback lives on"
        again, kept, _ = extract(tiny_encoder, [broken, *paths], tmp_path / "again", num_workers=1)
        assert len(worker_pids(before)) == 1 and not worker_pids(before) & started
    assert kept.tolist() == [False] + [True] * len(paths)
    np.testing.assert_array_equal(again, reference)


def test_a_kept_worker_killed_while_idle_is_reported_and_replaced(tiny_encoder, paths, tmp_path):
    before = worker_pids(set())
    reference, _, _ = extract(tiny_encoder, paths, tmp_path / "in-process", num_workers=0)
    with kept_decoding_workers():
        extract(tiny_encoder, paths[:2], tmp_path / "warm", num_workers=1)
        (killed,) = worker_pids(before)
        with pytest.raises(RuntimeError, match=f"DataLoader worker \\(pid {killed}\\) is killed by signal"):
            os.kill(killed, signal.SIGKILL)
            time.sleep(10)  # PyTorch's SIGCHLD handler raises in this thread, wherever it is
        again, kept, _ = extract(tiny_encoder, paths, tmp_path / "again", num_workers=1)
        assert kept.all() and len(worker_pids(before)) == 1 and killed not in worker_pids(before)
    np.testing.assert_array_equal(again, reference)


def test_an_extraction_on_another_thread_meanwhile_starts_its_own_workers(tiny_encoder, paths, tmp_path,
                                                                          monkeypatch):
    """While one thread's extraction holds the kept worker (it waits inside its model), an
    extraction on this thread decodes with a worker of its own, which stops when it ends; the
    held extraction then finishes with the kept worker. Both get every image right."""
    entered, release = threading.Event(), threading.Event()
    encode = Encoder.encode

    def held_on_its_thread(self, images):
        if threading.current_thread().name == "held":
            entered.set()
            assert release.wait(60)
        return encode(self, images)

    monkeypatch.setattr(Encoder, "encode", held_on_its_thread)
    before = worker_pids(set())
    reference, _, _ = extract(tiny_encoder, paths, tmp_path / "in-process", num_workers=0)
    held: list[np.ndarray] = []
    with kept_decoding_workers():
        holder = threading.Thread(name="held", target=lambda: held.append(
            extract(tiny_encoder, paths, tmp_path / "held", num_workers=1)[0]))
        holder.start()
        try:
            assert entered.wait(60)
            kept = worker_pids(before)
            mine, _, _ = extract(tiny_encoder, paths, tmp_path / "mine", num_workers=1)
            assert len(kept) == 1 and worker_pids(before) == kept
        finally:
            release.set()
            holder.join(60)
    assert worker_pids(before) == set()
    np.testing.assert_array_equal(mine, reference)
    np.testing.assert_array_equal(held[0], reference)
