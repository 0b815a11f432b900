"""Faults injected into real extractions: processes killed with SIGKILL, and processes sharing a cache.

Every extraction here runs in a child process started from a fork server (the parent's
imports are paid once), with ``random-clip:tiny`` on one CPU thread, small groups and a
delay per batch so that a run lasts long enough to be interrupted anywhere. The result of a
run is the set of rows committed to the cache folder (:func:`stored_rows`), compared bit for
bit with those of one uninterrupted run.
"""
from __future__ import annotations

import json
import multiprocessing
import os
import signal
import threading
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ENCODER = "random-clip:tiny"
BATCH_SIZE = 4
GROUP_IMAGES = 8  # config.CACHE_CHUNK_IMAGES in the children: two batches a group
BATCH_DELAY_SECONDS = 0.05
WRITE_CALLS = ("fsync", "replace")  # os functions a child can be told to die in


@dataclass(frozen=True)
class Workload:
    """Image files for an extraction: ``decodable`` distinct images, then ``broken`` files."""

    paths: tuple[Path, ...]
    decodable: int
    broken: int


def make_workload(folder: Path, decodable: int = 40, broken: int = 3, seed: int = 0) -> Workload:
    """Write ``decodable`` random 48×48 PNGs and ``broken`` truncated ones into ``folder``."""
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    paths = []
    for index in range(decodable):
        path = folder / f"image-{index:04d}.png"
        Image.fromarray(rng.integers(0, 256, (48, 48, 3), dtype=np.uint8)).save(path)
        paths.append(path)
    for index in range(broken):
        path = folder / f"broken-{index:02d}.png"
        path.write_bytes(paths[index].read_bytes()[:60])
        paths.append(path)
    return Workload(tuple(paths), decodable, broken)


def _extract(paths, cache_root, report_path, delay, die_in) -> None:
    """Child process body: one extraction into ``cache_root``; its report is written as JSON.

    die_in: (name of an os function in :data:`WRITE_CALLS`, n) → SIGKILL this process on the
    n-th call of that function, i.e. in the middle of writing the cache.
    """
    import torch
    from tqdm.auto import tqdm

    from ufd_lib import config
    from ufd_lib.features.encoders import load_encoder
    from ufd_lib.features.extraction.extract import fill_cache, open_cache
    from ufd_lib.features.preprocess import Perturbation

    torch.set_num_threads(1)
    tqdm.set_lock(threading.RLock())  # not tqdm's default multiprocessing lock, which a killed child would leak
    config.CACHE_CHUNK_IMAGES = GROUP_IMAGES
    encoder = load_encoder(ENCODER, "cpu")
    encode = encoder.encode

    def slow_encode(images):
        time.sleep(delay)
        return encode(images)

    encoder.encode = slow_encode
    if die_in is not None:
        name, n = die_in
        original, calls = getattr(os, name), [0]

        def dying(*args, **kwargs):
            calls[0] += 1
            if calls[0] == n:
                os.kill(os.getpid(), signal.SIGKILL)
            return original(*args, **kwargs)

        setattr(os, name, dying)
    cache = open_cache(encoder, Perturbation(), Path(cache_root))
    _, _, report = fill_cache(encoder, list(paths), cache, batch_size=BATCH_SIZE, progress=False)
    Path(report_path).write_text(json.dumps({"encoded": report.images_encoded, "skipped": len(report.skipped)}))


def _context():
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(["ufd_lib.features.extraction.extract", "ufd_lib.features.encoders.clip"])
    return context


def start_extraction(workload: Workload, cache_root: Path, report_path: Path, *, delay: float = BATCH_DELAY_SECONDS,
                     die_in: tuple[str, int] | None = None):
    """Start one extraction child; returns the running ``multiprocessing.Process``."""
    process = _context().Process(target=_extract,
                                 args=(workload.paths, str(cache_root), str(report_path), delay, die_in))
    process.start()
    return process


def run_extraction(workload: Workload, cache_root: Path, report_path: Path, **options) -> dict | None:
    """Run one extraction child to its end: its report, or None when it died."""
    process = start_extraction(workload, cache_root, report_path, **options)
    process.join()
    return json.loads(report_path.read_text()) if process.exitcode == 0 else None


def cache_folder(cache_root: Path) -> Path:
    """The single setting folder extractions of this module write under ``cache_root``."""
    folders = [p for p in Path(cache_root).iterdir() if p.is_dir()]
    if len(folders) != 1:
        raise RuntimeError(f"expected one cache setting folder in {cache_root}, found {len(folders)}")
    return folders[0]


def stored_rows(folder: Path) -> dict[bytes, bytes]:
    """Every committed row of a cache setting folder: digest → its stored float16 bytes.

    Reads chunks through :class:`~ufd_lib.features.extraction.feature_cache.FeatureCache`'s own checks (a chunk
    that fails them raises here, since warnings are errors) and raises if a digest is stored
    twice, which would mean work was done twice.
    """
    from ufd_lib.features.extraction.feature_cache import FeatureCache

    if not (folder / "setting.json").exists():  # written with the first chunk
        if any(folder.glob("chunk-*.json")):
            raise AssertionError(f"{folder} has chunks but no setting.json")
        return {}
    setting = json.loads((folder / "setting.json").read_text())
    cache = FeatureCache(folder.parent, setting)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        cache.refresh()
    rows: dict[bytes, bytes] = {}
    for marker in sorted(folder.glob("chunk-*.json")):
        name = marker.name[: -len(".json")]
        keys = np.load(folder / f"{name}.keys.npy")
        features = np.load(folder / f"{name}.features.npy")
        for key, row in zip(keys, features):
            if key.tobytes() in rows:
                raise AssertionError(f"image {key.tobytes().hex()} is stored twice in {folder}")
            rows[key.tobytes()] = row.tobytes()
    return rows


def uncommitted_parts(folder: Path) -> list[Path]:
    """Chunk files of a cache setting folder without their commit record (what a writer killed
    between renames leaves), and temporary files."""
    parts = [p for p in folder.glob("chunk-*.npy") if not (folder / f"{p.name.split('.')[0]}.json").exists()]
    return sorted(parts + list(folder.glob(".chunk-*.tmp")))


def forge_chunk(folder: Path, name: str, features: np.ndarray) -> None:
    """Replace the features of committed chunk ``name`` with ``features`` (as many rows as its
    keys; any width and float dtype) and rewrite its commit record to match: damage that no
    checksum catches, which the cache must still refuse (another width, non-finite values)."""
    from ufd_lib.hashing import file_sha256

    features_path, record_path = folder / f"{name}.features.npy", folder / f"{name}.json"
    np.save(features_path, features)
    record = json.loads(record_path.read_text())
    record.update(rows=int(features.shape[0]), dim=int(features.shape[1]), dtype=str(features.dtype),
                  features_sha256=file_sha256(features_path))
    record_path.write_text(json.dumps(record))


def reference_run(workload: Workload, work: Path) -> dict[bytes, bytes]:
    """One uninterrupted extraction into a fresh cache: its :func:`stored_rows`."""
    if run_extraction(workload, work / "cache", work / "report.json") is None:
        raise RuntimeError("the reference extraction did not finish")
    return stored_rows(cache_folder(work / "cache"))


def _committed_chunks(cache_root: Path) -> int:
    return sum(1 for _ in Path(cache_root).glob("*/chunk-*.json"))


def kill_and_resume(workload: Workload, work: Path, reference: dict[bytes, bytes], trials: int,
                    seed: int = 0) -> list[dict]:
    """``trials`` times: start an extraction into a fresh cache and SIGKILL it at a random
    moment: once a random number of its chunks (0 up to all but one) are committed, plus a
    random delay of up to one batch pair (:data:`BATCH_DELAY_SECONDS` × 3); check that what
    it committed reads back cleanly, run it again to the end and compare the cache bit for bit
    with ``reference`` (:func:`stored_rows` of an uninterrupted run). Returns one record per
    trial: the chunks waited for, whether the kill came before the run ended, rows committed
    when it came, whether the resumed result is identical."""
    rng = np.random.default_rng(seed)
    groups = -(-(workload.decodable + workload.broken) // GROUP_IMAGES)
    records = []
    for trial in range(trials):
        cache_root = work / f"trial-{trial}" / "cache"
        after_chunks, delay = int(rng.integers(0, groups)), float(rng.uniform(0.0, 3 * BATCH_DELAY_SECONDS))
        process = start_extraction(workload, cache_root, work / f"trial-{trial}" / "killed.json")
        while process.is_alive() and _committed_chunks(cache_root) < after_chunks:
            time.sleep(0.005)
        process.join(timeout=delay)
        killed = process.exitcode is None
        if killed:
            process.kill()
            process.join()
        started = cache_root.exists() and any(p.is_dir() for p in cache_root.iterdir())
        committed = len(stored_rows(cache_folder(cache_root))) if started else 0
        resumed = run_extraction(workload, cache_root, work / f"trial-{trial}" / "resumed.json")
        records.append({"after_chunks": after_chunks, "killed": killed, "committed_when_killed": committed,
                        "identical": resumed is not None and stored_rows(cache_folder(cache_root)) == reference})
    return records


def die_in_every_write(workload: Workload, work: Path, reference: dict[bytes, bytes], calls: int = 8) -> list[dict]:
    """Kill an extraction on the n-th ``os.fsync`` and on the n-th ``os.replace`` (n = 1..calls):
    in the middle of each step of writing a chunk. After each death, one more run must finish,
    leave the cache equal to ``reference`` and no temporary or uncommitted chunk file behind
    (:func:`uncommitted_parts`). Returns one record per death."""
    records = []
    for name in WRITE_CALLS:
        for n in range(1, calls + 1):
            cache_root = work / f"{name}-{n}" / "cache"
            died = run_extraction(workload, cache_root, work / f"{name}-{n}" / "report.json", delay=0,
                                  die_in=(name, n)) is None
            resumed = run_extraction(workload, cache_root, work / f"{name}-{n}" / "resumed.json", delay=0)
            folder = cache_folder(cache_root)
            records.append({"call": name, "n": n, "died": died,
                            "identical": resumed is not None and stored_rows(folder) == reference,
                            "chunk_leftovers": len(uncommitted_parts(folder))})
    return records


def concurrent_extractions(workload: Workload, work: Path, reference: dict[bytes, bytes], processes: int = 2) -> dict:
    """Start ``processes`` extractions of the same images into one cache at once; returns the
    images each encoded, how many were encoded more than once, and whether the cache equals
    ``reference``."""
    cache_root = work / "cache"
    children = [start_extraction(workload, cache_root, work / f"report-{i}.json") for i in range(processes)]
    for child in children:
        child.join()
    reports = [json.loads((work / f"report-{i}.json").read_text()) for i in range(processes)]
    encoded = [r["encoded"] for r in reports]
    return {"encoded": encoded, "duplicated": sum(encoded) - workload.decodable,
            "identical": stored_rows(cache_folder(cache_root)) == reference,
            "all_finished": all(c.exitcode == 0 for c in children)}
