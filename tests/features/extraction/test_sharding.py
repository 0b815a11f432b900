"""Sharded extraction: deterministic batch-aligned shares, and the same features bit for bit.

The fast tests simulate ranks with threads sharing one cache directory; the slow test
launches ``torchrun --nproc_per_node 2 -m ufd_lib extract`` for real (gloo on CPU).
"""
from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import threading

import pytest
from conftest import REPO_ROOT, TINY_ENCODER, make_image_set, write_image

from ufd_lib import config
from ufd_lib.features.extraction import extract as extract_module
from ufd_lib.features.extraction.extract import ExtractionError, encoding_groups, fill_cache, open_cache
from ufd_lib.features.extraction.sharding import World, environment, even_slice, rank_device
from ufd_lib.features.preprocess import Perturbation
from ufd_lib.reliability.fault_injection import cache_folder, stored_rows


@pytest.mark.parametrize("n_items", [0, 1, 7, 64, 65, 1000])
@pytest.mark.parametrize("batch_size", [1, 4, 64, 1500])
@pytest.mark.parametrize("world_size", [1, 2, 3, 8])
def test_groups_are_whole_batches_shared_out_once(n_items, batch_size, world_size, monkeypatch):
    monkeypatch.setattr(config, "CACHE_CHUNK_IMAGES", 100)
    digests = [i.to_bytes(32, "big") for i in range(n_items)]
    groups = encoding_groups(digests, batch_size)
    assert [d for group in groups for d in group] == digests
    size = batch_size * max(1, 100 // batch_size)
    assert all(len(group) == size for group in groups[:-1])
    shares = [[groups[g] for g in even_slice(len(groups), rank, world_size)] for rank in range(world_size)]
    assert [group for share in shares for group in share] == groups
    assert max(map(len, shares)) - min(map(len, shares)) <= 1


def test_even_slices_cover_the_list():
    assert [list(even_slice(5, r, 2)) for r in range(2)] == [[0, 1], [2, 3, 4]]


def test_environment_and_device(monkeypatch):
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(name, raising=False)
    assert environment() == (0, 1, 0)
    monkeypatch.setenv("RANK", "3")
    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setenv("LOCAL_RANK", "1")
    assert environment() == (3, 4, 1)
    assert rank_device("cpu", 1, 4) == "cpu"
    assert rank_device("cuda", 1, 4) == "cuda:1"
    assert rank_device("cuda:0", 1, 4) == "cuda:0"
    monkeypatch.setenv("RANK", "4")
    with pytest.raises(ValueError, match="RANK=4"):
        environment()


class ThreadWorld(World):
    """Ranks simulated by threads: collectives through shared slots and a barrier."""

    def __init__(self, rank: int, world_size: int, shared: dict):
        super().__init__(rank=rank, world_size=world_size)
        self.shared = shared

    def all_gather(self, value):
        self.shared["slots"][self.rank] = value
        self.shared["barrier"].wait()
        gathered = list(self.shared["slots"])
        self.shared["barrier"].wait()
        return gathered

    def broadcast(self, value, source=0):
        if self.rank == source:
            self.shared["box"] = value
        self.shared["barrier"].wait()
        value = self.shared["box"]
        self.shared["barrier"].wait()
        return value


def run_ranks(world_size: int, work) -> list:
    """Run work(world) on world_size threads; returns each rank's result or exception."""
    shared = {"slots": [None] * world_size, "barrier": threading.Barrier(world_size, timeout=60)}
    results: list = [None] * world_size

    def rank_main(rank):
        try:
            results[rank] = work(ThreadWorld(rank, world_size, shared))
        except Exception as error:  # returned to the test
            results[rank] = error

    threads = [threading.Thread(target=rank_main, args=(rank,)) for rank in range(world_size)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


@pytest.fixture
def images(tmp_path):
    root = make_image_set(tmp_path / "images", 9, 8)
    return sorted(root.rglob("*.png"))


@pytest.fixture
def one_thread_decoding(monkeypatch):
    """Simulated ranks share one process, so they must not toggle its thread count."""
    monkeypatch.setattr(extract_module, "torch_threads", lambda count: contextlib.nullcontext())


@pytest.mark.parametrize("world_size", [2, 3, 6])
def test_simulated_ranks_write_the_single_process_features(tiny_encoder, images, tmp_path, world_size,
                                                           one_thread_decoding, monkeypatch):
    monkeypatch.setattr(config, "CACHE_CHUNK_IMAGES", 4)  # groups of one batch: 5 of them
    single = open_cache(tiny_encoder, Perturbation(), tmp_path / "single")
    kept, _, report = fill_cache(tiny_encoder, images, single, batch_size=4, progress=False)
    assert kept.all() and report.images_encoded == 17

    def work(world):
        cache = open_cache(tiny_encoder, Perturbation(), tmp_path / "sharded")
        return fill_cache(tiny_encoder, images, cache, batch_size=4, progress=False, world=world)

    results = run_ranks(world_size, work)
    for kept, digests, rank_report in results:
        assert kept.all()
        assert (rank_report.images_encoded, rank_report.world_size) == (17, world_size)
    sharded = stored_rows(open_cache(tiny_encoder, Perturbation(), tmp_path / "sharded").directory)
    assert sharded == stored_rows(single.directory)
    chunk_files = list((open_cache(tiny_encoder, Perturbation(), tmp_path / "sharded").directory).glob("chunk-*.json"))
    assert len(chunk_files) == 5, "one chunk per group, whichever rank encoded it"


def test_a_failure_on_one_rank_stops_every_rank(tiny_encoder, images, tmp_path, one_thread_decoding):
    broken = images[0].parent / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n truncated")

    def work(world):
        cache = open_cache(tiny_encoder, Perturbation(), tmp_path / "cache")
        return fill_cache(tiny_encoder, [*images, broken], cache, batch_size=4, progress=False, strict=True,
                          world=world)

    results = run_ranks(2, work)
    assert all(isinstance(result, ExtractionError) for result in results), results
    assert any("broken.png" in str(result) and "another rank" not in str(result) for result in results)


def test_skipped_files_are_reported_by_every_rank(tiny_encoder, images, tmp_path, one_thread_decoding):
    broken = images[0].parent / "broken.png"
    broken.write_bytes(b"")
    listed = [*images, broken, tmp_path / "missing.png"]

    def work(world):
        cache = open_cache(tiny_encoder, Perturbation(), tmp_path / "cache")
        return fill_cache(tiny_encoder, listed, cache, batch_size=4, progress=False, world=world)

    for kept, _, report in run_ranks(2, work):
        assert kept.tolist() == [True] * 17 + [False, False]
        assert {path for path, _ in report.skipped} == {str(broken), str(tmp_path / "missing.png")}


@pytest.mark.slow
def test_torchrun_two_processes_match_one_process_bit_for_bit(tmp_path):
    data = make_image_set(tmp_path / "data" / "a", 10, 9)
    make_image_set(tmp_path / "data" / "b", 4, 5)
    write_image(tmp_path / "data" / "b" / "1_fake" / "odd-size.jpg", seed=3, size=(300, 250))
    (tmp_path / "data" / "b" / "1_fake" / "broken.png").write_bytes(b"")
    common = ["extract", "--encoder", TINY_ENCODER, "--set", f"a={data}", "--set", f"b={tmp_path / 'data' / 'b'}",
              "--batch-size", "4", "--device", "cpu", "--quiet"]
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "OMP_NUM_THREADS")}
    env["PYTHONPATH"] = str(REPO_ROOT)
    env["UFD_CACHE_CHUNK_IMAGES"] = "8"  # groups of two batches: both ranks get some

    sharded = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
         "-m", "ufd_lib", *common, "--cache-dir", str(tmp_path / "sharded"), "--out", str(tmp_path / "out")],
        capture_output=True, text=True, env=env, timeout=300,
    )
    assert sharded.returncode == 0, sharded.stderr[-3000:]
    record = json.loads((tmp_path / "out" / "run.json").read_text())
    assert (record["world_size"], record["images_encoded"], record["images_skipped"]) == (2, 29, 1)
    assert record["precision"] == "fp32" and record["images_per_second"] > 0
    assert sharded.stdout.count("encoded 29 images") == 1, "only rank 0 reports"

    single = subprocess.run([sys.executable, "-m", "ufd_lib", *common, "--cache-dir", str(tmp_path / "single")],
                            capture_output=True, text=True, env=env, timeout=300)
    assert single.returncode == 0, single.stderr[-3000:]
    assert "world size 1" in single.stdout

    sharded_rows, single_rows = (stored_rows(cache_folder(tmp_path / name)) for name in ("sharded", "single"))
    assert len(single_rows) == 29
    assert sharded_rows == single_rows, "sharded features differ from single-process ones"
    writers = {marker.name.split("-")[2] for marker in cache_folder(tmp_path / "sharded").glob("chunk-*.json")}
    assert len(writers) == 2, "both ranks committed chunks"

    again = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
         "-m", "ufd_lib", *common, "--cache-dir", str(tmp_path / "sharded")],
        capture_output=True, text=True, env=env, timeout=300,
    )
    assert again.returncode == 0, again.stderr[-3000:]
    assert "encoded 0 images" in again.stdout and "29 from cache" in again.stdout


def test_chunk_size_comes_from_the_environment_and_is_checked(monkeypatch):
    monkeypatch.setenv("UFD_CACHE_CHUNK_IMAGES", "8")
    assert [len(group) for group in encoding_groups([bytes(32)] * 20, 4)] == [8, 8, 4]
    for bad in ("0", "-3", "1e3", "many"):
        monkeypatch.setenv("UFD_CACHE_CHUNK_IMAGES", bad)
        with pytest.raises(ValueError, match="UFD_CACHE_CHUNK_IMAGES must be a positive integer"):
            encoding_groups([bytes(32)], 4)


def test_simulated_ranks_with_layers_write_the_single_process_tokens(tiny_encoder, images, tmp_path,
                                                                     one_thread_decoding, monkeypatch):
    from ufd_lib.features.extraction.layer_caches import layer_caches

    monkeypatch.setattr(config, "CACHE_CHUNK_IMAGES", 4)
    single = open_cache(tiny_encoder, Perturbation(), tmp_path / "single")
    fill_cache(tiny_encoder, images, single, batch_size=4, progress=False, layers=(0, 2))

    def work(world):
        cache = open_cache(tiny_encoder, Perturbation(), tmp_path / "sharded")
        return fill_cache(tiny_encoder, images, cache, batch_size=4, progress=False, layers=(0, 2), world=world)

    for kept, _, rank_report in run_ranks(2, work):
        assert kept.all() and rank_report.images_encoded == 17
    sharded = open_cache(tiny_encoder, Perturbation(), tmp_path / "sharded")
    assert stored_rows(sharded.directory) == stored_rows(single.directory)
    for layer, store in layer_caches(sharded, (0, 2), 64).items():
        assert stored_rows(store.directory) == stored_rows(layer_caches(single, (layer,), 64)[layer].directory)
        assert len(store) == 17
