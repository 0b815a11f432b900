"""Scale and speed of the feature pipeline, measured side by side in one run on this machine.

    .venv/bin/python benchmarks/run.py            # full run (about 11 minutes on 2 busy CPU cores)
    .venv/bin/python benchmarks/run.py --quick    # smaller sizes, about 2 minutes
    .venv/bin/python benchmarks/run.py --json results.json
    .venv/bin/python benchmarks/run.py --only reading   # section 8 alone, about 8 minutes

What is measured (``benchmarks/README.md`` explains each ratio and records our numbers):

1. extraction pipeline efficiency: end-to-end ``extract_features`` images/s (hashing, decoding,
   encoding, cache writes, reading back) ÷ model-only images/s on preloaded tensors, for
   ``random-clip:ViT-B/32`` on 256×256 JPEGs; best of the rounds for each (the machine may
   be shared, so single timings are noisy);
2. a repeated ``ufd evaluate`` (kNN, smoke benchmark, ``random-clip:small``) vs the first run,
   both in-process: speed-up and images encoded by the rerun;
3. exact nearest-neighbour search, 2k queries against a 720k × 768 float16 memory-mapped bank
   (:mod:`ufd_lib.classifiers.nn_search`) vs faiss ``IndexFlatIP`` on the same data in float32 (search
   time only, index already built) and vs scikit-learn's brute-force cosine
   ``NearestNeighbors``; each in a fresh subprocess, peak RSS increase over the process's RSS
   before the search (VmHWM, reset just before; for faiss and sklearn this includes building
   their float32 copy of the bank);
4. backbone forward passes to regenerate Tables 2 and 3 plus the JPEG and blur sweeps: ours
   counted through the real caching path on the smoke profile (a stand-in encoder that
   counts instead of computing), the released code's procedure counted from the same image
   lists, both extrapolated to the paper's sizes;
5. linear-probe training on 720k cached 768-d features: seconds per epoch, with torch's
   default intra-op threads and with one;
6. bf16 vs fp32 extraction on CPU: speed ratio (model only, same tensors), minimum and mean
   cosine between the two features, and the change in the smoke metrics;
8. issue 13 side by side (``--only reading``): a repeat evaluation of a 20,000-file tree
   (image files opened, kernel I/O counters, wall time vs ``os.walk`` + ``stat``), the host
   pipeline with a null model vs the bare decode+crop floor in images per CPU second of every
   process involved (256×256 PNG and JPEG, 1024×768 JPEG; in-process and with workers; also
   without the model-input preparation, which runs on the device on a GPU, whole runs and in
   steady state), ``ufd --help`` vs ``import argparse``, and the peak memory of
   ``fake_bank_similarity`` on a 720k × 768 float16 memory-mapped bank;
9. the stratified bootstrap (``--only bootstrap``): 1,000 resamples of 19 sets × 2,000 scores,
   vectorised (:mod:`ufd_lib.evaluation.bootstrap`) vs a per-resample loop with scikit-learn on
   the same draws, one thread, and the largest difference between the two.

No timing here is asserted anywhere; tests check behaviour only.
"""
from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import torch  # noqa: E402

from ufd_lib.data.discovery import collect_images  # noqa: E402
from ufd_lib.features.encoders import Encoder, load_encoder  # noqa: E402
from ufd_lib.features.extraction.extract import extract_features, open_cache  # noqa: E402
from ufd_lib.features.preprocess import Perturbation, evaluation_transform, load_tensor  # noqa: E402

SIZES = {
    "full": {"jpegs": 200, "rounds": 2, "smoke_per_class": 40, "bank": 720_000, "queries": 2_000,
             "probe_rows": 720_000, "tree_files": 20_000, "host_images": 1000, "similarity_queries": 200,
             "bootstrap_resamples": 1000},
    "quick": {"jpegs": 48, "rounds": 1, "smoke_per_class": 8, "bank": 72_000, "queries": 500,
              "probe_rows": 72_000, "tree_files": 2_000, "host_images": 48, "similarity_queries": 100,
              "bootstrap_resamples": 100},
}
EXTRACTION_ENCODER = "random-clip:ViT-B/32"
SMOKE_ENCODER = "random-clip:small"
BATCH_SIZE = 32
DIM = 768
NN_K = 9


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# --- 1 and 6: extraction efficiency, bf16 vs fp32 ---------------------------------------------

def write_jpegs(folder: Path, count: int, seed: int = 0) -> list[Path]:
    """256×256 RGB JPEGs (quality 90) of smooth random content with a little noise."""
    from PIL import Image
    from scipy import ndimage

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    paths = []
    for index in range(count):
        coarse = rng.integers(0, 256, (32, 32, 3)).astype(np.float32)
        image = ndimage.zoom(coarse, (8, 8, 1), order=3) + rng.normal(0, 8, (256, 256, 3))
        path = folder / f"{index:05d}.jpg"
        Image.fromarray(np.clip(image, 0, 255).astype(np.uint8)).save(path, quality=90)
        paths.append(path)
    return paths


def encode_preloaded(encoder: Encoder, tensors: torch.Tensor, precision: str = "fp32") -> tuple[float, np.ndarray]:
    """Model-only pass over preloaded (n, 3, 224, 224) tensors in batches: (seconds, features)."""
    features = []
    started = time.perf_counter()
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
        for start in range(0, len(tensors), BATCH_SIZE):
            features.append(encoder.encode(tensors[start : start + BATCH_SIZE]).numpy())
    return time.perf_counter() - started, np.concatenate(features)


def extraction_benchmarks(work: Path, size: dict) -> dict:
    log(f"extraction: writing {size['jpegs']} JPEGs, loading {EXTRACTION_ENCODER}")
    paths = write_jpegs(work / "jpegs", size["jpegs"])
    encoder = load_encoder(EXTRACTION_ENCODER, "cpu")
    transform = evaluation_transform(encoder.mean, encoder.std)
    tensors = torch.stack([load_tensor(path, transform) for path in paths])
    encode_preloaded(encoder, tensors[:BATCH_SIZE])  # warm-up: kernels, allocator
    encode_preloaded(encoder, tensors[:BATCH_SIZE], "bf16")
    n = len(paths)
    times: dict[str, list[float]] = {"model_fp32": [], "model_bf16": [], "e2e_workers0": [], "e2e_workers1": []}
    features = {}
    for round_ in range(size["rounds"]):
        log(f"extraction round {round_ + 1}/{size['rounds']}: model-only fp32 and bf16, end-to-end")
        seconds, features["fp32"] = encode_preloaded(encoder, tensors)
        times["model_fp32"].append(seconds)
        seconds, features["bf16"] = encode_preloaded(encoder, tensors, "bf16")
        times["model_bf16"].append(seconds)
        for workers in ((0, 1) if round_ == 0 else (0,)):  # workers 1: informative, measured once
            cache = open_cache(encoder, Perturbation(), work / f"cache-e2e-{round_}-{workers}")
            started = time.perf_counter()
            extracted, kept, report = extract_features(encoder, paths, cache, batch_size=BATCH_SIZE,
                                                       num_workers=workers, progress=False)
            times[f"e2e_workers{workers}"].append(time.perf_counter() - started)
            assert kept.all() and report.images_encoded == n
    best = {key: n / min(values) for key, values in times.items()}
    a, b = features["fp32"].astype(np.float64), features["bf16"].astype(np.float64)
    cosine = (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
    stored = np.asarray(extracted, dtype=np.float64)  # end-to-end features as stored (float16)
    stored_cosine = (a * stored).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(stored, axis=1)
    return {
        "images": n, "batch_size": BATCH_SIZE, "rounds": size["rounds"],
        "model_only_images_per_s": best["model_fp32"],
        "end_to_end_images_per_s_workers0": best["e2e_workers0"],
        "end_to_end_images_per_s_workers1": best["e2e_workers1"],
        "efficiency_workers0": best["e2e_workers0"] / best["model_fp32"],
        "efficiency_workers1": best["e2e_workers1"] / best["model_fp32"],
        "bf16_model_only_images_per_s": best["model_bf16"],
        "bf16_speedup": best["model_bf16"] / best["model_fp32"],
        "bf16_cosine_min": float(cosine.min()), "bf16_cosine_mean": float(cosine.mean()),
        "float16_storage_cosine_min": float(stored_cosine.min()),
        "raw_seconds": times,
    }


# --- 2 and 6: repeated evaluate; bf16 effect on the smoke metrics ---------------------------

def set_argument(spec) -> str:
    return f"{spec.name}={spec.real_root}:{spec.fake_root}"


def evaluate_benchmarks(work: Path, size: dict, smoke) -> dict:
    from ufd_lib.cli.main import main as ufd

    argv = ["evaluate", "--encoder", SMOKE_ENCODER, "--classifier", "knn", "--train", set_argument(smoke.train),
            "--cache-dir", str(work / "cache-smoke"), "--device", "cpu", "--batch-size", str(BATCH_SIZE), "--quiet"]
    for spec in smoke.test_sets:
        argv += ["--test", set_argument(spec)]
    runs = []
    for index in range(2):
        log(f"ufd evaluate, run {index + 1}/2")
        started = time.perf_counter()
        with open(os.devnull, "w") as quiet:
            stdout, sys.stdout = sys.stdout, quiet
            try:
                status = ufd([*argv, "--out", str(work / f"evaluate-{index}")])
            finally:
                sys.stdout = stdout
        seconds = time.perf_counter() - started
        record = json.loads((work / f"evaluate-{index}" / "run.json").read_text())
        assert status == 0
        runs.append({"seconds": seconds, "images_encoded": record["images_encoded"],
                     "images_from_cache": record["images_from_cache"]})
    return {"encoder": SMOKE_ENCODER, "first": runs[0], "repeat": runs[1],
            "speedup": runs[0]["seconds"] / runs[1]["seconds"]}


def smoke_metrics(smoke, cache_root: Path, precision: str) -> dict:
    """Mean AP and accuracy of kNN (k=1) and the linear probe on the smoke benchmark."""
    from ufd_lib.classifiers.linear_probe import LinearProbe
    from ufd_lib.classifiers.nearest_neighbour import NearestNeighbourClassifier
    from ufd_lib.evaluation.scoring import evaluate_sets
    from ufd_lib.features.feature_sets import FeatureSet
    from ufd_lib.runs.profiles import get_profile

    encoder = load_encoder(SMOKE_ENCODER, "cpu")
    encoded = 0

    def featurize(spec) -> FeatureSet:
        nonlocal encoded
        images = collect_images(spec)
        cache = open_cache(encoder, Perturbation(), cache_root, precision)
        features, kept, report = extract_features(encoder, [i.path for i in images], cache, batch_size=BATCH_SIZE,
                                                  progress=False, precision=precision)
        encoded += report.images_encoded
        labels = np.array([i.label for i, k in zip(images, kept) if k])
        return FeatureSet(spec.name, features, labels, [i.path for i, k in zip(images, kept) if k])

    train = featurize(smoke.train)
    tests = [featurize(spec) for spec in smoke.test_sets]
    out = {"images_encoded": encoded}
    for name, classifier in (("knn_k1", NearestNeighbourClassifier(k=1, device="cpu")),
                             ("linear", LinearProbe(lr=get_profile("smoke").probe_lr, device="cpu"))):
        metrics = evaluate_sets(classifier.fit(train.features, train.labels), tests).metrics
        mean = metrics[metrics["test_set"] == "mean"].iloc[0]
        out[name] = {"mean_ap": float(mean["ap"]), "mean_acc": float(mean["acc"])}
    return out


# --- 3: nearest neighbour at full scale --------------------------------------------------------

def write_bank(path: Path, rows: int, seed: int = 1) -> None:
    """A (rows, 768) float16 .npy written block by block (never whole in memory)."""
    bank = np.lib.format.open_memmap(path, mode="w+", dtype=np.float16, shape=(rows, DIM))
    rng = np.random.default_rng(seed)
    for start in range(0, rows, 65536):
        stop = min(start + 65536, rows)
        bank[start:stop] = rng.standard_normal((stop - start, DIM), dtype=np.float32)
    bank.flush()
    del bank


def current_rss() -> int:
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def reset_peak_rss() -> None:
    """Start a new peak-RSS window (Linux >= 4.0). ``getrusage``'s ru_maxrss cannot be reset and,
    after fork + exec, still holds the parent's RSS at fork time."""
    try:
        with open("/proc/self/clear_refs", "w") as handle:
            handle.write("5")
    except OSError:
        pass


def peak_rss() -> int:
    """High-water RSS of this process image (VmHWM) since exec or the last :func:`reset_peak_rss`."""
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def nn_worker(method: str, bank_path: Path, queries_path: Path, out_path: Path) -> None:
    """One search in this (fresh) process; writes timing, memory and results to out_path."""
    import faiss
    from sklearn.neighbors import NearestNeighbors

    from ufd_lib.classifiers.nn_search import exact_topk, normalise_rows

    queries = np.load(queries_path)
    bank = np.load(bank_path, mmap_mode="r")
    warm = np.random.default_rng(0).standard_normal((2_000, DIM), dtype=np.float32)
    faiss.knn(warm[:100], warm, NN_K, metric=faiss.METRIC_INNER_PRODUCT)  # BLAS and OpenMP threads up
    torch.from_numpy(warm[:100]) @ torch.from_numpy(warm).T
    del warm
    reset_peak_rss()
    rss_before = current_rss()
    setup_started = time.perf_counter()
    if method.startswith("ours"):
        backend = "torch" if method == "ours-torch" else "faiss"
        setup_seconds = 0.0
        started = time.perf_counter()
        values, indices = exact_topk(queries, bank, NN_K, device="cpu", backend=backend)
        seconds = time.perf_counter() - started
    elif method == "faiss":
        data = normalise_rows(bank)  # the same values, float32, unit rows
        index = faiss.IndexFlatIP(DIM)
        index.add(data)
        del data
        unit_queries = normalise_rows(queries)
        setup_seconds = time.perf_counter() - setup_started
        started = time.perf_counter()
        values, indices = index.search(unit_queries, NN_K)
        seconds = time.perf_counter() - started
    elif method == "sklearn":
        data = np.asarray(bank, dtype=np.float32)
        search = NearestNeighbors(n_neighbors=NN_K, algorithm="brute", metric="cosine").fit(data)
        setup_seconds = time.perf_counter() - setup_started
        started = time.perf_counter()
        distances, indices = search.kneighbors(queries)
        seconds = time.perf_counter() - started
        values = (1.0 - distances).astype(np.float32)
    else:
        raise ValueError(method)
    peak = peak_rss()
    np.save(out_path.with_suffix(".values.npy"), values)
    np.save(out_path.with_suffix(".indices.npy"), indices)
    out_path.write_text(json.dumps({"method": method, "seconds": seconds, "setup_seconds": setup_seconds,
                                    "peak_rss_increase_bytes": peak - rss_before}))


def nn_benchmarks(work: Path, size: dict, with_torch: bool = False) -> dict:
    bank_path, queries_path = work / "bank.npy", work / "queries.npy"
    log(f"nearest neighbour: writing a {size['bank']} × {DIM} float16 bank")
    write_bank(bank_path, size["bank"])
    np.save(queries_path, np.random.default_rng(2).standard_normal((size["queries"], DIM), dtype=np.float32))
    # faiss and ours alternate twice (best of two each): their ratio is the one with a target,
    # and a busy machine can slow any single run.
    methods = ["faiss", "ours", "faiss", "ours", "sklearn"] + (["ours-torch"] if with_torch else [])
    runs: dict[str, list[float]] = {}
    results: dict[str, dict] = {}
    for run, method in enumerate(methods):
        log(f"nearest neighbour: {method} (subprocess)")
        out = work / f"nn-{run}-{method}.json"
        subprocess.run([sys.executable, __file__, "--nn-worker", method, str(bank_path), str(queries_path), str(out)],
                       check=True)
        result = json.loads(out.read_text())
        runs.setdefault(method, []).append(result["seconds"])
        if method not in results or result["seconds"] < results[method]["seconds"]:
            result["values"] = np.load(out.with_suffix(".values.npy"))
            result["indices"] = np.load(out.with_suffix(".indices.npy"))
            results[method] = result
    float32_bytes = size["bank"] * DIM * 4
    reference = results["faiss"]
    summary = {"bank_rows": size["bank"], "queries": size["queries"], "k": NN_K,
               "bank_float32_bytes": float32_bytes, "bank_float16_file_bytes": bank_path.stat().st_size}
    for method, result in results.items():
        summary[method] = {
            "seconds": result["seconds"], "all_runs_seconds": runs[method], "setup_seconds": result["setup_seconds"],
            "peak_rss_increase_bytes": result["peak_rss_increase_bytes"],
            "peak_over_bank_float32": result["peak_rss_increase_bytes"] / float32_bytes,
            "max_abs_similarity_difference_vs_faiss": float(np.abs(result["values"] - reference["values"]).max()),
            "same_neighbours_as_faiss": float((result["indices"] == reference["indices"]).mean()),
        }
    summary["ours_over_faiss_time"] = results["ours"]["seconds"] / reference["seconds"]
    summary["ours_over_faiss_time_with_setup"] = results["ours"]["seconds"] / (
        reference["seconds"] + reference["setup_seconds"])
    summary["sklearn_over_ours_time"] = results["sklearn"]["seconds"] / results["ours"]["seconds"]
    if "ours-torch" in results:
        summary["ours_torch_over_faiss_time"] = results["ours-torch"]["seconds"] / reference["seconds"]
    bank_path.unlink()
    return summary


# --- 8: issue 13 side by side: repeat evaluation, host pipeline, --help, bank memory ---------

# The host-pipeline runs also measured in steady state: those of the host's share of a GPU run.
STEADY_RUNS = ("in_process_host", "workers_host")
# Their steady state: an extraction of this many times the whole run's images, less the whole run.
STEADY_MULTIPLE = 4


class NullEncoder(Encoder):
    """A model that costs nothing: features are the first ``embed_dim`` input values. The
    pipeline around it (hashing, reading, decoding, cropping, normalising, cache) is the real one."""

    @torch.inference_mode()
    def encode(self, images: torch.Tensor) -> torch.Tensor:
        return images.flatten(1)[:, : self.embed_dim].float()


def null_encoder() -> NullEncoder:
    return NullEncoder(model=torch.nn.Linear(1, 1), name="null", checkpoint_sha256="null", device=torch.device("cpu"),
                       embed_dim=DIM)


class FreeDeviceEncoder(Encoder):
    """A model on a device that costs the host nothing (PyTorch's ``meta`` device: tensors without
    data): the model input is prepared "there", as it is on a GPU, and features are zeros. What
    extraction then costs is the host's share alone: what a GPU run needs of its host cores,
    but for the copy into page-locked memory (a 150 KB memcpy per image)."""

    @torch.inference_mode()
    def encode(self, images: torch.Tensor) -> torch.Tensor:
        return torch.zeros((len(images), self.embed_dim))


def free_device_encoder() -> FreeDeviceEncoder:
    return FreeDeviceEncoder(model=torch.nn.Linear(1, 1), name="null-on-meta", checkpoint_sha256="null",
                             device=torch.device("meta"), embed_dim=DIM)


def _write_tree_part(args) -> None:
    """Worker: ``count`` 16×16 PNGs (distinct noise) into ``folder``."""
    from PIL import Image

    folder, start, count = args
    Path(folder).mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(start)
    for index in range(start, start + count):
        Image.fromarray(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)).save(Path(folder) / f"{index:06d}.png",
                                                                               compress_level=1)


def write_tree(root: Path, files: int, per_folder: int = 1000) -> None:
    """``files`` small PNGs in ``root``/{0_real,1_fake}/<part>/, written by one process per core."""
    from multiprocessing import Pool

    jobs = [(str(root / ("0_real" if start < files // 2 else "1_fake") / f"{start // per_folder:03d}"), start,
             min(per_folder, files - start)) for start in range(0, files, per_folder)]
    with Pool(os.cpu_count()) as pool:
        pool.map(_write_tree_part, jobs)


def io_counters() -> dict[str, int]:
    """This process's kernel I/O counters (``/proc/self/io``): rchar (bytes returned by read
    calls, page cache included) and read_bytes (bytes fetched from storage)."""
    with open("/proc/self/io") as handle:
        return {key: int(value) for key, value in (line.split(": ") for line in handle)}


def walk_and_stat(root: Path) -> int:
    count = 0
    for folder, _, names in os.walk(root):
        for name in names:
            os.stat(os.path.join(folder, name))
            count += 1
    return count


def repeat_evaluation(work: Path, files: int, rounds: int) -> dict:
    """Second ``ufd evaluate``-style pass (discovery + extraction through the cache) over a tree
    of ``files`` images: image files opened (audit hook), I/O counters, time vs os.walk + stat."""
    from ufd_lib.data.image_sets import parse_set_spec
    from ufd_lib.features.extraction.digest_memo import MEMO_NAME

    root = work / "tree"
    log(f"repeat evaluation: writing {files} PNGs")
    write_tree(root, files)
    spec = parse_set_spec(f"tree={root}")
    encoder = null_encoder()
    log("repeat evaluation: first run (hashes and encodes everything)")
    started = time.perf_counter()
    paths = [image.path for image in collect_images(spec)]
    _, kept, first = extract_features(encoder, paths, open_cache(encoder, Perturbation(), work / "tree-cache"),
                                      batch_size=BATCH_SIZE, progress=False)
    first_seconds = time.perf_counter() - started
    assert kept.all() and first.files_hashed == files

    image_root = str(root) + os.sep
    opened: list[str] = []
    directories_opened: list[str] = []  # to stat the files in them by name (O_PATH: nothing read)
    watching = [False]

    def audit(event, args):
        if watching[0] and event == "open" and isinstance(args[0], (str, bytes, os.PathLike)) \
                and os.fsdecode(args[0]).startswith(image_root):
            directory = isinstance(args[2], int) and args[2] & getattr(os, "O_DIRECTORY", 0)
            (directories_opened if directory else opened).append(os.fsdecode(args[0]))

    sys.addaudithook(audit)
    times = {"walk_stat": [], "discovery": [], "extraction": []}
    for _ in range(rounds):
        started = time.perf_counter()
        assert walk_and_stat(root) == files
        times["walk_stat"].append(time.perf_counter() - started)
        before = io_counters()
        watching[0] = True
        started = time.perf_counter()
        paths = [image.path for image in collect_images(spec)]
        middle = time.perf_counter()
        _, kept, again = extract_features(encoder, paths, open_cache(encoder, Perturbation(), work / "tree-cache"),
                                          batch_size=BATCH_SIZE, progress=False)
        ended = time.perf_counter()
        watching[0] = False
        after = io_counters()
        times["discovery"].append(middle - started)
        times["extraction"].append(ended - middle)
        assert kept.all() and again.images_encoded == 0
    cache_files = sum(p.stat().st_size for p in (work / "tree-cache").rglob("*") if p.is_file())
    memo_bytes = (work / "tree-cache" / MEMO_NAME).stat().st_size
    best = {key: min(values) for key, values in times.items()}
    second = best["discovery"] + best["extraction"]
    return {
        "files": files, "rounds": rounds, "first_run_seconds": first_seconds,
        "second_files_hashed": again.files_hashed, "second_files_recognised": again.files_recognised,
        "second_images_encoded": again.images_encoded,
        "second_image_files_opened": len(opened) // rounds,
        "second_directories_opened": len(directories_opened) // rounds,
        "second_rchar": after["rchar"] - before["rchar"],
        "second_read_bytes": after["read_bytes"] - before["read_bytes"],
        "cache_folder_bytes": cache_files, "memo_bytes": memo_bytes,
        "image_tree_bytes": sum(os.path.getsize(p) for p in paths),
        "walk_stat_seconds": best["walk_stat"], "discovery_seconds": best["discovery"],
        "extraction_seconds": best["extraction"], "second_run_seconds": second,
        "second_over_walk_stat": second / best["walk_stat"], "raw_seconds": times,
    }


def _write_photo(args) -> None:
    """Worker: one smooth random RGB image of ``size`` (width, height) in ``fmt``."""
    from PIL import Image
    from scipy import ndimage

    path, size, fmt, seed = args
    width, height = size
    rng = np.random.default_rng(seed)
    coarse = rng.integers(0, 256, (height // 8, width // 8, 3)).astype(np.float32)
    image = ndimage.zoom(coarse, (8, 8, 1), order=1) + rng.normal(0, 8, (height, width, 3))
    Image.fromarray(np.clip(image, 0, 255).astype(np.uint8)).save(path, format=fmt,
                                                                  **({"quality": 90} if fmt == "JPEG" else {}))


def cpu_seconds() -> float:
    """CPU seconds (user + system) of this process, of its children that have ended and of its
    multiprocessing children still running (kept decoding workers; from ``/proc``, to a clock
    tick, 10 ms, each)."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    running = 0
    for child in multiprocessing.active_children():
        try:
            fields = Path(f"/proc/{child.pid}/stat").read_text().rsplit(")", 1)[1].split()
        except FileNotFoundError:  # ended since it was listed: counted with the children that ended
            continue
        running += int(fields[11]) + int(fields[12])  # utime, stime: the stat file's fields 14 and 15
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime + running / os.sysconf("SC_CLK_TCK")


def decode_crop_floor(paths: list[Path]) -> tuple[float, float]:
    """The bare floor, in this process: read the file, decode, centre-crop 224 as uint8.
    Returns (images per second, images per CPU second)."""
    import io

    from PIL import Image

    from ufd_lib.features.preprocess import centre_crop_pixels

    started, cpu = time.perf_counter(), cpu_seconds()
    for path in paths:
        with Image.open(io.BytesIO(path.read_bytes())) as image:
            image.load()
            centre_crop_pixels(image.convert("RGB"))
    return len(paths) / (time.perf_counter() - started), len(paths) / (cpu_seconds() - cpu)


def host_pipeline(work: Path, images: int, rounds: int) -> dict:
    """Null-model extraction into an empty cache (hash, read, check, decode, crop, normalise,
    write) vs the bare decode+crop floor, in images per CPU second of every process involved,
    decoding in-process and in workers: with the model on the CPU (the model input prepared
    there too), and on a device that costs the host nothing (:class:`FreeDeviceEncoder`).

    Workers are kept from one extraction to the next, as in a ``ufd`` command
    (:func:`ufd_lib.features.extraction.decoding_workers.kept_decoding_workers`); ``start_cpu_seconds`` is
    the first extraction of one batch, which starts them. ``workers_host_own`` is an extraction
    on its own, outside such a block, which starts and stops its workers (measured first, its
    rounds before the others').

    Each extraction runs on n images (the whole run); on the free device also on
    :data:`STEADY_MULTIPLE` n, for the steady state (the images added ÷ the CPU time they added),
    which leaves out what an extraction costs once whatever its size (opening the cache, and
    starting workers when it does): ``fixed_cpu_seconds`` (for ``workers_host_own``: its whole
    run less n times the kept workers' steady cost per image). The paper's extractions are
    hundreds of thousands of images. The floor of each pair is measured just before and just
    after the extraction(s) (the mean of the two times per image): the machine's speed drifts
    within seconds."""
    from multiprocessing import Pool

    from ufd_lib.features.extraction.decoding_workers import kept_decoding_workers
    from ufd_lib.features.extraction.extract import EngineOptions, default_workers

    # (size, format, share of ``images``): the large images cost 10x more each, fewer do as well
    cases = {"png_256x256": ((256, 256), "PNG", 1), "jpeg_256x256": ((256, 256), "JPEG", 1),
             "jpeg_1024x768": ((1024, 768), "JPEG", 0.3)}
    cores = len(os.sched_getaffinity(0))
    # As a GPU run gets them by default: one worker per core but one (the main process feeds the
    # device), and the default batch size.
    workers = max(1, default_workers("cuda", cores))
    batch_size = EngineOptions().batch_size
    runs = {"in_process": (null_encoder(), 0), "workers": (null_encoder(), workers),
            "in_process_host": (free_device_encoder(), 0), "workers_host": (free_device_encoder(), workers)}
    own = free_device_encoder()
    results = {"cores": cores, "workers": workers, "batch_size": batch_size, "rounds": rounds, "cases": {}}

    def cpu_of_extraction(encoder, processes: int, paths: list[Path], cache_name: str) -> float:
        cache = open_cache(encoder, Perturbation(), work / "host-cache" / cache_name)
        cpu = cpu_seconds()
        _, kept, _ = extract_features(encoder, paths, cache, batch_size=batch_size, num_workers=processes,
                                      progress=False)
        assert kept.all()
        return cpu_seconds() - cpu

    def floor_around(measure, paths: list[Path]):
        """(what ``measure()`` returns, the floor in images per CPU second just before and after it)."""
        before = decode_crop_floor(paths)[1]
        measured = measure()
        return measured, 2 / (1 / before + 1 / decode_crop_floor(paths)[1])

    for name, (size, fmt, share) in cases.items():
        count = max(1, int(images * share))
        folder = work / "host" / name
        folder.mkdir(parents=True, exist_ok=True)
        jobs = [(folder / f"{i:05d}.{fmt.lower()}", size, fmt, i) for i in range(STEADY_MULTIPLE * count)]
        with Pool(os.cpu_count()) as pool:
            pool.map(_write_photo, jobs)
        paths = [job[0] for job in jobs]
        decode_crop_floor(paths[:8])  # warm-up
        floors, ratios, steady, fixed = [], {run: [] for run in (*runs, "workers_host_own")}, \
            {run: [] for run in STEADY_RUNS}, {run: [] for run in (*STEADY_RUNS, "workers_host_own")}
        own_cpu = []
        for round_ in range(rounds):
            small, floor_cpu = floor_around(lambda: cpu_of_extraction(
                own, workers, paths[:count], f"{name}-own-{round_}"), paths[:count])
            floors.append(floor_cpu)
            own_cpu.append(small)
            ratios["workers_host_own"].append(count / small / floor_cpu)
        with kept_decoding_workers():
            start_cpu = cpu_of_extraction(own, workers, paths[:batch_size], f"{name}-start")
            # Each measurement right after its own floor, and the ratio taken within the pair: the
            # machine's speed drifts between rounds by more than the differences measured here.
            for round_ in range(rounds):
                for run, (encoder, processes) in runs.items():
                    def measure():
                        small = cpu_of_extraction(encoder, processes, paths[:count], f"{name}-{run}-{round_}-n")
                        large = cpu_of_extraction(encoder, processes, paths, f"{name}-{run}-{round_}-large") \
                            if run in STEADY_RUNS else None
                        return small, large

                    (small, large), floor_cpu = floor_around(measure, paths[:count])
                    floors.append(floor_cpu)
                    ratios[run].append(count / small / floor_cpu)
                    if large is not None:
                        per_image = (large - small) / (len(paths) - count)
                        steady[run].append(1 / per_image / floor_cpu)
                        fixed[run].append(small - count * per_image)
                        if run == "workers_host":
                            fixed["workers_host_own"].append(own_cpu[round_] - count * per_image)
        median = {key: {run: float(np.median(values)) for run, values in table.items()}
                  for key, table in (("over_floor", ratios), ("steady_over_floor", steady),
                                     ("fixed_cpu_seconds", fixed))}
        log(f"host pipeline {name}: per CPU second floor {np.median(floors):.0f} img/s; starting {workers} kept "
            f"worker(s) with {batch_size} images {start_cpu:.2f} CPU s; " + ", ".join(
                f"{run} {median['over_floor'][run]:.2f}x" + (
                    f" (steady {median['steady_over_floor'][run]:.2f}x)" if run in steady else "") + (
                    f" (fixed {median['fixed_cpu_seconds'][run]:.2f} CPU s)" if run in fixed else "")
                for run in ratios))
        results["cases"][name] = {"images": count, "floor_cpu": float(np.median(floors)),
                                  "start_cpu_seconds": start_cpu, **median,
                                  "raw": {"floor_cpu": floors, "over_floor": ratios,
                                          "steady_over_floor": steady, "fixed_cpu_seconds": fixed}}
    return results


def help_startup(rounds: int = 7) -> dict:
    """Wall time of ``ufd --help`` over that of ``python -c "import argparse"``, best of ``rounds``."""
    environment = {**os.environ, "PYTHONPATH": str(REPO)}

    def best(argv: list[str]) -> float:
        times = []
        for _ in range(rounds):
            started = time.perf_counter()
            subprocess.run(argv, env=environment, check=True, stdout=subprocess.DEVNULL)
            times.append(time.perf_counter() - started)
        return min(times)

    help_seconds = best([sys.executable, "-m", "ufd_lib", "--help"])
    argparse_seconds = best([sys.executable, "-c", "import argparse"])
    return {"help_seconds": help_seconds, "import_argparse_seconds": argparse_seconds,
            "ratio": help_seconds / argparse_seconds}


def bank_similarity_worker(bank_path: Path, queries: int, out_path: Path) -> None:
    """``fake_bank_similarity`` in this (fresh) process on a memory-mapped float16 bank whose
    first half is real and second half fake; writes seconds and peak RSS increase."""
    from ufd_lib.analyses.unseen_fakes import fake_bank_similarity
    from ufd_lib.features.feature_sets import FeatureSet

    features = np.load(bank_path, mmap_mode="r")
    rows = len(features)
    labels = (np.arange(rows) >= rows // 2).astype(int)
    bank = FeatureSet("bank", features, labels, [])
    rng = np.random.default_rng(2)
    query_set = FeatureSet("queries", rng.standard_normal((queries, DIM), dtype=np.float32),
                           np.ones(queries, dtype=int), [f"q{i}" for i in range(queries)])
    fake_bank_similarity(FeatureSet("warm", features[:2048], labels[:2048] * 0 + (np.arange(2048) >= 1024), []),
                         query_set)
    reset_peak_rss()
    rss_before = current_rss()
    started = time.perf_counter()
    table = fake_bank_similarity(bank, query_set, device="cpu")
    seconds = time.perf_counter() - started
    out_path.write_text(json.dumps({"seconds": seconds, "peak_rss_increase_bytes": peak_rss() - rss_before,
                                    "ranked_queries": len(table)}))


def bank_memory(work: Path, rows: int, queries: int) -> dict:
    bank_path = work / "similarity-bank.npy"
    log(f"nearest/farthest analysis: writing a {rows} × {DIM} float16 bank, {queries} fake queries")
    write_bank(bank_path, rows)
    out = work / "similarity.json"
    subprocess.run([sys.executable, __file__, "--bank-worker", str(bank_path), str(queries), str(out)], check=True)
    result = json.loads(out.read_text())
    bank_path.unlink()
    float32_bytes = rows * DIM * 4
    return {"rows": rows, "queries": queries, "bank_float32_bytes": float32_bytes, **result,
            "peak_over_bank_float32": result["peak_rss_increase_bytes"] / float32_bytes}


def reading_benchmarks(work: Path, size: dict) -> dict:
    """Issue 13, side by side in one run."""
    results = {"repeat_evaluation": repeat_evaluation(work, size["tree_files"], 5 * size["rounds"])}
    log(f"host pipeline: {size['host_images']} images per case")
    results["host_pipeline"] = host_pipeline(work, size["host_images"], size["rounds"] + 1)
    log("ufd --help start-up")
    results["help"] = help_startup()
    results["bank_similarity"] = bank_memory(work, size["bank"], size["similarity_queries"])
    return results


# --- 4: forward passes, ours vs the released procedure ----------------------------------------

class CountingEncoder(Encoder):
    """Stands in for the backbone: counts the images that reach it and returns zeros.

    Everything before the model (hashing, deduplication, cache look-up, decoding,
    perturbation) is the real pipeline, so the count is what a real encoder would compute.
    """

    @torch.inference_mode()
    def encode(self, images: torch.Tensor) -> torch.Tensor:
        self.forward_passes += len(images)
        return torch.zeros(len(images), self.embed_dim)


def first_per_class(spec, per_class: int | None) -> list[Path]:
    images = collect_images(spec)
    if per_class is None:
        return [image.path for image in images]
    return ([i.path for i in images if i.label == 0][:per_class] + [i.path for i in images if i.label == 1][:per_class])


# The sweeps of the profiles (ufd_lib.profiles), used where a profile does not name them.
DEFAULT_SWEEPS = {"smoke": ((100, 60, 30), (0.0, 2.0, 4.0), 8),
                  "paper": ((100, 90, 70, 50, 30), (0.0, 1.0, 2.0, 3.0, 4.0), None)}


def sweep_settings(profile) -> tuple[tuple[int, ...], tuple[float, ...], int | None]:
    """(JPEG qualities, blur sigmas, images per class and test set) of a profile's robustness sweep."""
    qualities, sigmas, per_class = DEFAULT_SWEEPS[profile.name]
    return (getattr(profile, "jpeg_qualities", qualities), getattr(profile, "blur_sigmas", sigmas),
            getattr(profile, "robustness_images_per_class", per_class))


def sweep_perturbations(profile) -> tuple[list[Perturbation], int]:
    """The sweep's perturbations and how many of them are the clean setting (blur sigma 0)."""
    qualities, sigmas, _ = sweep_settings(profile)
    perturbations = ([Perturbation(jpeg_quality=int(q)) for q in qualities]
                     + [Perturbation(blur_sigma=float(s)) for s in sigmas])
    return perturbations, sum(p == Perturbation() for p in perturbations)


def released_passes(n_train: int, n_val: int, n_test: int, n_sweep_test: int, k_values, sweep_levels: int,
                    epochs: int) -> dict:
    """The released code's procedure: the backbone runs on every image of every evaluation.

    Linear probe: each training epoch encodes every (augmented) training image and the
    validation set. Tables 2/3: one evaluation of the probe and one of nearest neighbour per k
    (each encoding the whole training bank and the test sets). Sweeps: the probe evaluated on
    the test images once per degradation level.
    """
    parts = {
        "probe_training": epochs * (n_train + n_val),
        "probe_tables": n_test,
        "nn_tables": len(k_values) * (n_train + n_test),
        "sweeps": sweep_levels * n_sweep_test,
    }
    return {**parts, "total": sum(parts.values())}


def forward_pass_counts(work: Path, smoke, profile_smoke, profile_paper) -> dict:
    from ufd_lib.features.encoders import load_encoder as load

    tiny = load("random-clip:tiny", "cpu")
    counter = CountingEncoder(model=tiny.model, name="count-only", checkpoint_sha256="count-only",
                              device=tiny.device, embed_dim=tiny.embed_dim)
    counter.forward_passes = 0
    cache_root = work / "cache-count"

    def encode(paths: list[Path], perturbation: Perturbation) -> None:
        cache = open_cache(counter, perturbation, cache_root)
        extract_features(counter, paths, cache, perturbation=perturbation, batch_size=BATCH_SIZE, progress=False)

    train = [i.path for i in collect_images(smoke.train)]
    val = [i.path for i in collect_images(smoke.val)]
    tests = [[i.path for i in collect_images(spec)] for spec in smoke.test_sets]
    per_class = sweep_settings(profile_smoke)[2]
    sweep_tests = [first_per_class(spec, per_class) for spec in smoke.test_sets]
    log("forward passes: counting ours on the smoke profile")
    for paths in (train, val, *tests):
        encode(paths, Perturbation())
    tables = counter.forward_passes
    perturbations, clean_levels = sweep_perturbations(profile_smoke)
    for perturbation in perturbations:
        for paths in sweep_tests:
            encode(paths, perturbation)
    ours_smoke = {"tables": tables, "sweeps": counter.forward_passes - tables, "total": counter.forward_passes}

    def unique(lists) -> int:
        return len({Path(p).resolve() for paths in lists for p in paths})

    # Our formula, checked against the count above: unique images once per setting.
    ours_formula = (unique([train, val, *tests])
                    + (len(perturbations) - clean_levels) * unique(sweep_tests))
    n_test = sum(map(len, tests))
    n_sweep = sum(map(len, sweep_tests))
    released = {epochs: released_passes(len(train), len(val), n_test, n_sweep, profile_smoke.k_values,
                                        len(perturbations), epochs) for epochs in (1, 100)}
    smoke_result = {
        "ours": ours_smoke, "ours_formula_total": ours_formula,
        "formula_matches_count": ours_formula == ours_smoke["total"],
        "released": released,
        "ratio_released_over_ours": {epochs: r["total"] / ours_smoke["total"] for epochs, r in released.items()},
        "sizes": {"train": len(train), "val": len(val), "test_listed": n_test, "sweep_test_listed": n_sweep,
                  "sweep_levels": len(perturbations), "k_values": list(profile_smoke.k_values)},
    }

    # The paper's sizes. Training: 720k ProGAN images. Validation (released train.py): the
    # 8000 images of test/progan, which the official-cap ProGAN test set is drawn from. Test,
    # official cap (1000 per class, 100 when a class has fewer): 2000 images per set except
    # SITD and SAN (200), 19 sets = 34,400; the 7 LAION-real sets share the same 1000 reals
    # and the ProGAN test images are among the validation images, so ours encodes
    # 34,400 - 6 × 1000 - 2000 = 26,400 test images beyond train+val.
    n_train, n_val = 720_000, 8_000
    n_test_paper = 17 * 2000 + 2 * 200
    unique_test_beyond_val = n_test_paper - 6 * 1000 - 2000
    unique_test = n_test_paper - 6 * 1000
    paper_perturbations, paper_clean = sweep_perturbations(profile_paper)
    ours_paper = {"tables": n_train + n_val + unique_test_beyond_val,
                  "sweeps": (len(paper_perturbations) - paper_clean) * unique_test}
    ours_paper["total"] = ours_paper["tables"] + ours_paper["sweeps"]
    released_paper = {epochs: released_passes(n_train, n_val, n_test_paper, n_test_paper, profile_paper.k_values,
                                              len(paper_perturbations), epochs) for epochs in (1, 100)}
    paper_result = {
        "ours": ours_paper, "released": released_paper,
        "ratio_released_over_ours": {epochs: r["total"] / ours_paper["total"] for epochs, r in released_paper.items()},
        "sizes": {"train": n_train, "val": n_val, "test_listed": n_test_paper, "test_unique": unique_test,
                  "sweep_levels": len(paper_perturbations), "k_values": list(profile_paper.k_values)},
    }
    return {"smoke": smoke_result, "paper": paper_result}


# --- 5: linear probe epoch ---------------------------------------------------------------------

def probe_benchmark(size: dict) -> dict:
    """One epoch of LinearProbe.fit on random features, with torch's default intra-op threads
    and with one thread (its per-batch ops are tiny: 256 × 768)."""
    from ufd_lib.classifiers.linear_probe import LinearProbe

    rows = size["probe_rows"]
    rng = np.random.default_rng(3)
    features = rng.standard_normal((rows, DIM), dtype=np.float32)
    labels = rng.integers(0, 2, rows)
    val_features = rng.standard_normal((4000, DIM), dtype=np.float32)
    val_labels = rng.integers(0, 2, 4000)
    default_threads = torch.get_num_threads()
    seconds = {}
    for threads in (default_threads, 1):
        log(f"linear probe: 1 epoch on {rows} x {DIM} random features, {threads} thread(s)")
        torch.set_num_threads(threads)
        try:
            probe = LinearProbe(max_epochs=1, device="cpu")
            started = time.perf_counter()
            probe.fit(features, labels, val_features, val_labels)
            seconds[threads] = time.perf_counter() - started
        finally:
            torch.set_num_threads(default_threads)
    return {"rows": rows, "batch_size": probe.batch_size, "default_threads": default_threads,
            "seconds_per_epoch": seconds[default_threads], "seconds_per_epoch_one_thread": seconds[1]}


# --- 9: the stratified bootstrap, vectorised vs a per-resample loop with scikit-learn ----------

BOOTSTRAP_SETS, BOOTSTRAP_PER_CLASS = 19, 1000


def bootstrap_benchmark(size: dict) -> dict:
    """``set_distributions`` (every resample at once from counts) vs a plain loop that
    materialises each resample and calls scikit-learn's ``average_precision_score`` and
    ``roc_auc_score``, the accuracies and ``released_best_threshold``, on the same draws; 19 sets
    of 1000 + 1000 scores, one thread; the largest difference between the two is reported."""
    import pandas as pd
    from sklearn.metrics import average_precision_score, roc_auc_score
    from threadpoolctl import threadpool_limits

    from ufd_lib.evaluation.bootstrap import BootstrapSettings, draw, set_distributions
    from ufd_lib.evaluation.metrics import released_best_threshold

    resamples = size["bootstrap_resamples"]
    rng = np.random.default_rng(4)
    labels = np.r_[np.zeros(BOOTSTRAP_PER_CLASS, int), np.ones(BOOTSTRAP_PER_CLASS, int)]
    sets = {f"set{i}": 1 / (1 + np.exp(-(rng.normal(0, 1, labels.size) + rng.uniform(0.5, 3) * labels)))
            for i in range(BOOTSTRAP_SETS)}
    scores = pd.concat([pd.DataFrame({"test_set": name, "label": labels, "score": values})
                        for name, values in sets.items()], ignore_index=True)
    settings = BootstrapSettings(resamples, seed=0)
    with threadpool_limits(1):
        log(f"bootstrap: vectorised, {resamples} resamples of {BOOTSTRAP_SETS} sets x {labels.size} scores")
        started = time.perf_counter()
        vectorised = set_distributions(scores, 0.5, settings)
        vectorised_seconds = time.perf_counter() - started
        log("bootstrap: the per-resample loop with scikit-learn")
        started = time.perf_counter()
        largest = 0.0
        for name, values in sets.items():
            draws = draw(name, BOOTSTRAP_PER_CLASS, BOOTSTRAP_PER_CLASS, settings)
            real, fake = values[labels == 0], values[labels == 1]
            for b in range(resamples):
                resampled = np.r_[np.repeat(real, draws.real[b].astype(int)),
                                  np.repeat(fake, draws.fake[b].astype(int))]
                row = {"ap": average_precision_score(labels, resampled), "auc": roc_auc_score(labels, resampled),
                       "acc_real": float((resampled[labels == 0] <= 0.5).mean()),
                       "acc_fake": float((resampled[labels == 1] > 0.5).mean()),
                       "released_acc": released_best_threshold(labels, resampled)[3]}
                largest = max(largest, *(abs(row[key] - vectorised[name][key][b]) for key in row))
        loop_seconds = time.perf_counter() - started
    return {"sets": BOOTSTRAP_SETS, "scores_per_set": labels.size, "resamples": resamples,
            "vectorised_seconds": vectorised_seconds, "loop_seconds": loop_seconds,
            "speedup": loop_seconds / vectorised_seconds, "max_abs_difference": largest}


# --- 7: on a CUDA GPU: ViT-L/14 fp16 extraction, GPU search and probe ------------------------

GPU_ENCODER = "random-clip:ViT-L/14"
GPU_SIZES = {"full": {"jpegs": 4096, "batch": 256, "bank": 720_000, "queries": 2_000, "probe_rows": 720_000},
             "quick": {"jpegs": 1024, "batch": 128, "bank": 72_000, "queries": 2_000, "probe_rows": 72_000}}


def gpu_benchmarks(work: Path, mode: str, device: str = "cuda") -> dict:
    """ViT-L/14 (random weights, the paper backbone's shape) fp16 extraction on CUDA:
    model-only images/s on preloaded host tensors (each batch copied to the GPU, features
    copied back, as ``Encoder.encode`` does) and on GPU-resident tensors, end-to-end
    ``extract_features`` images/s with 0 and several DataLoader workers, their ratio; the torch
    nearest-neighbour search on the GPU; a linear-probe epoch on the GPU."""
    from ufd_lib.classifiers.linear_probe import LinearProbe
    from ufd_lib.classifiers.nn_search import exact_topk
    from ufd_lib.devices import torch_threads

    size = GPU_SIZES[mode]
    out = {"gpu": torch.cuda.get_device_name(device), "encoder": GPU_ENCODER, "images": size["jpegs"],
           "batch_size": size["batch"]}
    log(f"gpu: writing {size['jpegs']} JPEGs, loading {GPU_ENCODER} on {out['gpu']}")
    paths = write_jpegs(work / "gpu-jpegs", size["jpegs"])
    encoder = load_encoder(GPU_ENCODER, device)
    out["precision"] = str(encoder.dtype)
    transform = evaluation_transform(encoder.mean, encoder.std)
    log("gpu: decoding the JPEGs into one pinned tensor")
    with torch_threads(1):  # tiny per-image ops: more threads only wait on each other
        host = torch.stack([load_tensor(path, transform) for path in paths]).pin_memory()
    log("gpu: model-only passes")
    resident = host.to(device)

    def model_only(tensors: torch.Tensor) -> float:
        torch.cuda.synchronize()
        started = time.perf_counter()
        for start in range(0, len(tensors), size["batch"]):
            encoder.encode(tensors[start : start + size["batch"]])
        torch.cuda.synchronize()
        return time.perf_counter() - started

    model_only(host[: size["batch"]])  # warm-up: kernels, cuBLAS handles, allocator
    n = len(paths)
    out["model_only_images_per_s"] = n / min(model_only(host) for _ in range(2))
    out["model_only_gpu_resident_images_per_s"] = n / min(model_only(resident) for _ in range(2))
    workers = min(12, max(1, (os.cpu_count() or 2) - 2))
    reference = None
    for count in (0, workers):
        log(f"gpu: end-to-end extraction, {count} DataLoader workers")
        cache = open_cache(encoder, Perturbation(), work / f"cache-gpu-{count}")
        started = time.perf_counter()
        features, kept, report_ = extract_features(encoder, paths, cache, batch_size=size["batch"],
                                                   num_workers=count, progress=False)
        out[f"end_to_end_images_per_s_workers{count}"] = n / (time.perf_counter() - started)
        assert kept.all() and report_.images_encoded == n
        reference = features if reference is None else reference
        out["workers_results_identical"] = bool(np.array_equal(reference, features))
    out["workers"] = workers
    out["efficiency_workers0"] = out["end_to_end_images_per_s_workers0"] / out["model_only_images_per_s"]
    out["efficiency"] = out[f"end_to_end_images_per_s_workers{workers}"] / out["model_only_images_per_s"]
    log("gpu: fp16 (CUDA) vs fp32 (CPU) features of the first 32 images")
    cpu_features = load_encoder(GPU_ENCODER, "cpu").encode(host[:32]).double()
    gpu_features = torch.from_numpy(reference[:32]).double()
    out["fp16_vs_cpu_fp32_cosine_min"] = float(torch.nn.functional.cosine_similarity(cpu_features, gpu_features).min())
    del host, resident
    torch.cuda.empty_cache()

    log(f"gpu: exact kNN, {size['queries']} queries x {size['bank']} bank (float16 memmap), torch backend")
    write_bank(work / "gpu-bank.npy", size["bank"])
    bank = np.load(work / "gpu-bank.npy", mmap_mode="r")
    queries = np.random.default_rng(2).standard_normal((size["queries"], DIM), dtype=np.float32)
    exact_topk(queries[:16], bank[:65536], NN_K, device=device)
    started = time.perf_counter()
    similarities, _ = exact_topk(queries, bank, NN_K, device=device)
    out["nn_seconds"] = time.perf_counter() - started
    cpu_similarities, _ = exact_topk(queries[:50], bank, NN_K, device="cpu")
    out["nn_max_abs_similarity_difference_vs_cpu"] = float(np.abs(cpu_similarities - similarities[:50]).max())
    out["nn_queries"], out["nn_bank_rows"] = size["queries"], size["bank"]

    log(f"gpu: linear probe, 1 epoch on {size['probe_rows']} x {DIM}")
    rng = np.random.default_rng(3)
    features = rng.standard_normal((size["probe_rows"], DIM), dtype=np.float32)
    labels = rng.integers(0, 2, size["probe_rows"])
    probe = LinearProbe(max_epochs=1, device=device)
    started = time.perf_counter()
    probe.fit(features, labels, features[:4000], labels[:4000])
    out["probe_seconds_per_epoch"] = time.perf_counter() - started
    out["probe_rows"] = size["probe_rows"]
    return out


# --- report ------------------------------------------------------------------------------------

def gib(n: float) -> str:
    return f"{n / 2**30:.2f} GiB"


def report(results: dict) -> str:
    e, ev, nn, fp, pr = (results.get(key) for key in ("extraction", "evaluate", "nn", "forward_passes", "probe"))
    lines = [f"ufd benchmarks ({results['mode']}) on {results['machine']}", ""]
    if e:
        lines += [
            f"1. extraction pipeline efficiency ({EXTRACTION_ENCODER}, {e['images']} JPEGs 256x256, "
            f"batch {e['batch_size']}, best of {e['rounds']}):",
            f"   model-only {e['model_only_images_per_s']:.2f} img/s; end-to-end "
            f"{e['end_to_end_images_per_s_workers0']:.2f} img/s with decoding in-process (workers 0), "
            f"{e['end_to_end_images_per_s_workers1']:.2f} with 1 worker",
            f"   efficiency = {e['efficiency_workers0']:.3f} (workers 0), {e['efficiency_workers1']:.3f} (workers 1)   "
            "[target >= 0.9]",
        ]
    if ev:
        lines += [
            f"2. repeated ufd evaluate (kNN, smoke benchmark, {ev['encoder']}): first {ev['first']['seconds']:.1f} s "
            f"({ev['first']['images_encoded']} encoded), repeat {ev['repeat']['seconds']:.2f} s "
            f"({ev['repeat']['images_encoded']} encoded, {ev['repeat']['images_from_cache']} from cache)",
            f"   speed-up = {ev['speedup']:.1f}x   [target >= 20x, zero encoded]",
        ]
    if nn:
        lines += [
            f"3. exact kNN, {nn['queries']} queries x {nn['bank_rows']} x {DIM} bank (float16 memmap), k={nn['k']}; "
            f"bank float32 size {gib(nn['bank_float32_bytes'])}:",
        ]
        for method, label in (("ours", "ours (faiss backend, blocks)"), ("ours-torch", "ours (torch backend, CPU)"),
                              ("faiss", "faiss IndexFlatIP, float32 in RAM"), ("sklearn", "sklearn brute cosine")):
            if method not in nn:
                continue
            m = nn[method]
            runs = ", ".join(f"{t:.1f}" for t in m["all_runs_seconds"])
            lines.append(f"   {label:36s} {m['seconds']:7.2f} s search (runs: {runs}; "
                         f"+{m['setup_seconds']:.1f} s setup), peak RSS +{gib(m['peak_rss_increase_bytes'])} "
                         f"({m['peak_over_bank_float32']:.2f}x bank fp32), "
                         f"max |sim diff| vs faiss {m['max_abs_similarity_difference_vs_faiss']:.1e}")
        lines += [f"   ours / faiss time = {nn['ours_over_faiss_time']:.2f}   [target <= 1.2] "
                  f"({nn['ours_over_faiss_time_with_setup']:.2f} counting faiss's float32 load and index build); "
                  f"ours peak = {nn['ours']['peak_over_bank_float32']:.2f}x bank fp32   [target <= 2]",
                  f"   sklearn / ours time = {nn['sklearn_over_ours_time']:.2f}   [target >= 2]"]
    if fp:
        s, p = fp["smoke"], fp["paper"]
        lines += [
            "4. backbone forward passes for Tables 2+3 and the JPEG and blur sweeps (counted, not timed):",
            f"   smoke profile: ours {s['ours']['total']:,} (tables {s['ours']['tables']:,}, "
            f"sweeps {s['ours']['sweeps']:,}; "
            f"formula check {'ok' if s['formula_matches_count'] else 'MISMATCH'}); released procedure "
            f"{s['released'][1]['total']:,} with 1 probe epoch, {s['released'][100]['total']:,} with 100 "
            f"-> {s['ratio_released_over_ours'][1]:.1f}x .. {s['ratio_released_over_ours'][100]:.1f}x",
            f"   paper sizes:   ours {p['ours']['total']:,}; released {p['released'][1]['total']:,} (1 epoch) .. "
            f"{p['released'][100]['total']:,} (100 epochs) -> {p['ratio_released_over_ours'][1]:.1f}x .. "
            f"{p['ratio_released_over_ours'][100]:.1f}x",
        ]
    if pr:
        lines.append(f"5. linear probe on {pr['rows']:,} cached {DIM}-d features (batch {pr['batch_size']}, CPU): "
                     f"{pr['seconds_per_epoch']:.2f} s per epoch with {pr['default_threads']} threads, "
                     f"{pr['seconds_per_epoch_one_thread']:.2f} s with 1 thread")
    if e:
        line = (f"6. bf16 vs fp32 on CPU ({EXTRACTION_ENCODER}, model only): speed ratio {e['bf16_speedup']:.2f}x, "
                f"cosine min {e['bf16_cosine_min']:.5f} mean {e['bf16_cosine_mean']:.5f} "
                f"(float16 storage alone: min {e['float16_storage_cosine_min']:.6f})")
        lines.append(line)
        b = results.get("bf16_smoke")
        if b:
            for name in ("knn_k1", "linear"):
                lines.append(f"   smoke metrics {name}: mean AP {b['fp32'][name]['mean_ap']:.4f} (fp32) vs "
                             f"{b['bf16'][name]['mean_ap']:.4f} (bf16); mean acc {b['fp32'][name]['mean_acc']:.4f} vs "
                             f"{b['bf16'][name]['mean_acc']:.4f}")
    g = results.get("gpu")
    if g:
        w = g["workers"]
        lines += [
            f"7. on {g['gpu']} ({g['encoder']}, {g['precision']}, {g['images']} JPEGs 256x256, "
            f"batch {g['batch_size']}):",
            f"   model-only {g['model_only_images_per_s']:.0f} img/s from pinned host tensors "
            f"({g['model_only_gpu_resident_images_per_s']:.0f} from GPU-resident ones); end-to-end "
            f"{g[f'end_to_end_images_per_s_workers{w}']:.0f} img/s with {w} workers, "
            f"{g['end_to_end_images_per_s_workers0']:.0f} with 0",
            f"   efficiency = {g['efficiency']:.3f} ({w} workers), {g['efficiency_workers0']:.3f} (workers 0); "
            f"features identical across worker counts: {g['workers_results_identical']}",
            f"   min cosine of the stored fp16 features to fp32 CPU features (32 images): "
            f"{g['fp16_vs_cpu_fp32_cosine_min']:.6f}",
            f"   exact kNN on the GPU, {g['nn_queries']} queries x {g['nn_bank_rows']} bank: {g['nn_seconds']:.2f} s "
            f"(max |sim diff| vs CPU {g['nn_max_abs_similarity_difference_vs_cpu']:.1e}); "
            f"linear probe epoch on {g['probe_rows']:,} rows: {g['probe_seconds_per_epoch']:.2f} s",
        ]
    r = results.get("reading")
    if r:
        lines += reading_report(r)
    bs = results.get("bootstrap")
    if bs:
        lines.append(f"9. stratified bootstrap, {bs['resamples']} resamples of {bs['sets']} sets x "
                     f"{bs['scores_per_set']} scores (AP, accuracies, AUC, released best-threshold accuracy), one "
                     f"thread: vectorised {bs['vectorised_seconds']:.1f} s, per-resample loop with scikit-learn "
                     f"{bs['loop_seconds']:.1f} s = {bs['speedup']:.1f}x; largest difference "
                     f"{bs['max_abs_difference']:.1e}")
    return "\n".join(lines)


def reading_report(r: dict) -> list[str]:
    e, h, u, b = r["repeat_evaluation"], r["host_pipeline"], r["help"], r["bank_similarity"]
    lines = [
        f"8. issue 13, side by side ({h['cores']} cores):",
        f"   repeat evaluation of {e['files']:,} files (null model; first run {e['first_run_seconds']:.1f} s): "
        f"{e['second_files_hashed']} hashed, {e['second_files_recognised']:,} recognised, "
        f"{e['second_images_encoded']} encoded, image files opened {e['second_image_files_opened']}   [target 0] "
        f"(directories opened to stat their files by name: {e['second_directories_opened']})",
        f"   kernel counters of the repeat: rchar {e['second_rchar'] / 2**20:.1f} MiB (the cache folder, chunks and "
        f"memo, is {e['cache_folder_bytes'] / 2**20:.1f} MiB; the images {e['image_tree_bytes'] / 2**20:.1f} MiB), "
        f"read_bytes {e['second_read_bytes'] / 2**20:.1f} MiB",
        f"   repeat {e['second_run_seconds']:.3f} s (discovery {e['discovery_seconds']:.3f} + extraction "
        f"{e['extraction_seconds']:.3f}) vs os.walk + stat {e['walk_stat_seconds']:.3f} s "
        f"= {e['second_over_walk_stat']:.2f}x   [target <= 2]",
    ]
    for name, case in h["cases"].items():
        over, steady, fixed = case["over_floor"], case["steady_over_floor"], case["fixed_cpu_seconds"]

        def figures(run: str) -> str:
            return f"{over[run]:.2f}x" + "".join(f", {label} {table[run]:.2f}{unit}" for label, table, unit in (
                ("steady", steady, "x"), ("fixed", fixed, " CPU s")) if run in table)

        lines.append(f"   host pipeline {name} ({case['images']} images, batches of {h['batch_size']}; "
                     f"steady: the next {(STEADY_MULTIPLE - 1) * case['images']}), images per CPU second ÷ floor "
                     f"({case['floor_cpu']:.0f}), medians of {h['rounds']}: model on the CPU: in-process "
                     f"{figures('in_process')}, {h['workers']} kept worker(s) "
                     f"{figures('workers')}; on a free device (the host's share): in-process "
                     f"{figures('in_process_host')}, kept workers {figures('workers_host')}   [target >= 0.8]; "
                     f"workers started by the extraction {figures('workers_host_own')}; starting the kept workers "
                     f"(first extraction, {h['batch_size']} images) {case['start_cpu_seconds']:.2f} CPU s, "
                     f"{case['start_cpu_seconds'] - h['batch_size'] / case['floor_cpu']:.2f} beyond the floor's "
                     "for them")
    lines += [
        f"   ufd --help {u['help_seconds'] * 1000:.0f} ms / python -c 'import argparse' "
        f"{u['import_argparse_seconds'] * 1000:.0f} ms = {u['ratio']:.2f}   [target <= 3]",
        f"   fake_bank_similarity, {b['rows']:,} x {DIM} float16 memmap bank, {b['queries']} queries: "
        f"{b['seconds']:.1f} s, peak RSS +{gib(b['peak_rss_increase_bytes'])} = {b['peak_over_bank_float32']:.2f}x "
        f"the bank's float32 size {gib(b['bank_float32_bytes'])}   [target <= 1]",
    ]
    return lines


def to_jsonable(value):
    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [to_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smaller sizes (about 2 minutes)")
    parser.add_argument("--json", type=Path, default=None, help="also write all numbers to this JSON file")
    parser.add_argument("--workdir", type=Path, default=None, help="scratch directory (default: a temporary one)")
    parser.add_argument("--nn-torch", action="store_true",
                        help="also time nn_search's torch backend on CPU (one more full search)")
    parser.add_argument("--only", nargs="+", default=None,
                        choices=("extraction", "evaluate", "nn", "forward_passes", "probe", "reading", "bootstrap",
                                 "gpu"),
                        help="sections to run (default: all but gpu; gpu needs CUDA)")
    parser.add_argument("--nn-worker", nargs=4, metavar=("METHOD", "BANK", "QUERIES", "OUT"), help=argparse.SUPPRESS)
    parser.add_argument("--bank-worker", nargs=3, metavar=("BANK", "QUERIES", "OUT"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.bank_worker:
        bank, queries, out = args.bank_worker
        bank_similarity_worker(Path(bank), int(queries), Path(out))
        return 0
    if args.nn_worker:
        method, bank, queries, out = args.nn_worker
        nn_worker(method, Path(bank), Path(queries), Path(out))
        return 0

    from ufd_lib.data.smoke_benchmark import generate_smoke_benchmark
    from ufd_lib.runs.profiles import get_profile

    mode = "quick" if args.quick else "full"
    size = SIZES[mode]
    selected = set(args.only or ("extraction", "evaluate", "nn", "forward_passes", "probe", "reading", "bootstrap"))
    if "gpu" in selected and not torch.cuda.is_available():
        parser.error("--only gpu needs a CUDA GPU; none is visible to torch")
    work = args.workdir or Path(tempfile.mkdtemp(prefix="ufd-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    os.environ["UFD_CACHE_DIR"] = str(work / "cache-default")
    results = {"mode": mode, "machine": f"{platform.machine()}, {os.cpu_count()} CPU cores, torch {torch.__version__}, "
                                        f"{torch.get_num_threads()} threads"}
    started = time.perf_counter()
    try:
        smoke = None
        if selected & {"evaluate", "forward_passes", "extraction"}:
            log(f"generating the smoke benchmark ({size['smoke_per_class']} images per class)")
            smoke = generate_smoke_benchmark(work / "smoke", images_per_class=size["smoke_per_class"])
        if "extraction" in selected:
            results["extraction"] = extraction_benchmarks(work, size)
        if "evaluate" in selected:
            results["evaluate"] = evaluate_benchmarks(work, size, smoke)
        if "extraction" in selected:
            log("bf16 vs fp32 on the smoke metrics")
            results["bf16_smoke"] = {precision: smoke_metrics(smoke, work / "cache-smoke", precision)
                                     for precision in ("fp32", "bf16")}
        if "forward_passes" in selected:
            results["forward_passes"] = forward_pass_counts(work, smoke, get_profile("smoke"), get_profile("paper"))
        if "probe" in selected:
            results["probe"] = probe_benchmark(size)
        if "nn" in selected:
            results["nn"] = nn_benchmarks(work, size, args.nn_torch)
        if "reading" in selected:
            results["reading"] = reading_benchmarks(work, size)
        if "bootstrap" in selected:
            results["bootstrap"] = bootstrap_benchmark(size)
        if "gpu" in selected:
            results["gpu"] = gpu_benchmarks(work, mode)
    finally:
        if args.workdir is None:
            shutil.rmtree(work, ignore_errors=True)
    results["total_seconds"] = time.perf_counter() - started
    print(report(results))
    print(f"\n(total {results['total_seconds']:.0f} s)")
    if args.json:
        args.json.write_text(json.dumps(to_jsonable(results), indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
