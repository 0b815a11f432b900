"""Does the host keep a GPU busy? End-to-end extraction ÷ model-only, swept over worker counts.

    .venv/bin/python benchmarks/gpu_feeding.py                       # on a CUDA machine: ViT-L/14 fp16, 16,384 images
    .venv/bin/python benchmarks/gpu_feeding.py --json "$OUT/gpu.json" # also keep every number
    .venv/bin/python benchmarks/gpu_feeding.py --device cpu --encoder random-clip:tiny --images 256 --workers 0 1
                                                                     # a dry run of the script itself, anywhere

One run, in this order:

1. ``--images`` 256×256 JPEGs (quality 90) are written by one process per host core (a few
   seconds for 16,384 on 16 cores), into a temporary folder removed afterwards.
2. The encoder is built on the device (``random-clip:ViT-L/14``: the paper backbone's shape,
   random weights, fp16 on CUDA as ``clip.load`` leaves it).
3. *Model only*: the images, decoded and cropped beforehand into one uint8 tensor on the
   device, go through :func:`ufd_lib.features.preprocess.to_model_input` and ``Encoder.encode``
   in batches of ``--batch-size``: the most the device can do with this model, model-input
   preparation included, no host work at all. Best of two passes, after a warm-up batch.
4. *End to end*: :func:`ufd_lib.features.extraction.extract.extract_features` into an empty cache
   (hashing every file, planning, claims, reading, decoding, cropping, the ring of uint8
   batches, the copy to the device, the model, the cache writes and the final load), once per
   worker count of ``--workers`` (default: 0, 4, 8, the default rule's count and one per core
   but one), with the workers kept as a ``ufd`` command keeps them: a first extraction of one
   batch starts them (its time is reported apart), the measured one finds them running.
5. The features of every worker count are compared with those of the first: identical or not.

Efficiency = end-to-end images/s ÷ model-only images/s; the issue's target is ≥ 0.9 at the
best worker count. No test runs this; ``benchmarks/README.md`` records what it printed.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from multiprocessing import Pool
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from ufd_lib.features.encoders import load_encoder  # noqa: E402
from ufd_lib.features.extraction.decoding_workers import kept_decoding_workers  # noqa: E402
from ufd_lib.features.extraction.extract import default_workers, extract_features, open_cache  # noqa: E402
from ufd_lib.features.preprocess import Perturbation, load_pixels, to_model_input  # noqa: E402


def _write_jpeg(args: tuple[str, int]) -> None:
    """Worker: one 256×256 JPEG of smooth random colour with noise (PIL's resize does the smoothing)."""
    from PIL import Image

    path, seed = args
    rng = np.random.default_rng(seed)
    coarse = Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).resize((256, 256), Image.BICUBIC)
    noisy = np.asarray(coarse, dtype=np.int16) + rng.integers(-8, 9, (256, 256, 3), dtype=np.int16)
    Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8)).save(path, quality=90)


def write_jpegs(folder: Path, count: int) -> list[Path]:
    """``count`` JPEGs in ``folder``, written by one process per core."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = [folder / f"{index:06d}.jpg" for index in range(count)]
    with Pool(len(os.sched_getaffinity(0))) as pool:
        pool.map(_write_jpeg, [(str(path), index) for index, path in enumerate(paths)], chunksize=64)
    return paths


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def model_only(encoder, pixels: torch.Tensor, batch_size: int) -> float:
    """Images/s of model-input preparation + ``encode`` over uint8 (n, 224, 224, 3) already on
    the device; best of two passes after a warm-up batch."""
    def one_pass(images: torch.Tensor) -> float:
        synchronize(encoder.device)
        started = time.perf_counter()
        for start in range(0, len(images), batch_size):
            encoder.encode(to_model_input(images[start : start + batch_size], encoder.mean, encoder.std,
                                          encoder.device, encoder.dtype))
        synchronize(encoder.device)
        return time.perf_counter() - started

    one_pass(pixels[:batch_size])
    return len(pixels) / min(one_pass(pixels) for _ in range(2))


def run(arguments: argparse.Namespace, work: Path) -> dict:
    device = torch.device(arguments.device)
    started = time.perf_counter()
    paths = write_jpegs(work / "jpegs", arguments.images)
    result = {"images": len(paths), "jpeg_writing_seconds": time.perf_counter() - started,
              "host_cores": len(os.sched_getaffinity(0)), "encoder": arguments.encoder,
              "batch_size": arguments.batch_size, "device": str(device),
              "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
              "torch": torch.__version__}
    print(f"{len(paths)} JPEGs written in {result['jpeg_writing_seconds']:.1f} s on {result['host_cores']} cores",
          flush=True)
    started = time.perf_counter()
    encoder = load_encoder(arguments.encoder, device)
    result["encoder_build_seconds"] = time.perf_counter() - started
    result["weights_dtype"] = str(encoder.dtype)
    print(f"{arguments.encoder} built on {device} in {result['encoder_build_seconds']:.1f} s "
          f"({result['weights_dtype']})", flush=True)

    pixels = torch.from_numpy(np.stack([load_pixels(path) for path in paths])).to(device)
    result["model_only_images_per_s"] = model_only(encoder, pixels, arguments.batch_size)
    del pixels
    print(f"model only: {result['model_only_images_per_s']:.0f} images/s", flush=True)

    counts = arguments.workers or sorted({0, 4, 8, default_workers(device), max(1, result["host_cores"] - 1)})
    reference, sweep = None, []
    for count in counts:
        with kept_decoding_workers():  # as in a ufd command: started by its first set, kept for the next
            started = time.perf_counter()
            extract_features(encoder, paths[: arguments.batch_size], open_cache(encoder, Perturbation(),
                             work / f"start-{count}"), batch_size=arguments.batch_size, num_workers=count,
                             progress=False)
            start_seconds = time.perf_counter() - started
            cache = open_cache(encoder, Perturbation(), work / f"cache-{count}")
            started = time.perf_counter()
            features, kept, report = extract_features(encoder, paths, cache, batch_size=arguments.batch_size,
                                                      num_workers=count, progress=False)
            seconds = time.perf_counter() - started
        assert kept.all() and report.images_encoded == len(paths)
        reference = features if reference is None else reference
        row = {"workers": count, "first_batch_seconds": start_seconds, "seconds": seconds,
               "images_per_s": len(paths) / seconds,
               "efficiency": len(paths) / seconds / result["model_only_images_per_s"],
               "features_identical_to_first": bool(np.array_equal(features, reference))}
        sweep.append(row)
        print(f"end to end, {count:2d} workers: {row['images_per_s']:.0f} images/s = {row['efficiency']:.2f} of "
              f"model only   [target >= 0.9] (first batch, starting the workers: {start_seconds:.2f} s)", flush=True)
    result["sweep"] = sweep
    result["best_efficiency"] = max(row["efficiency"] for row in sweep)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--encoder", default="random-clip:ViT-L/14")
    parser.add_argument("--images", type=int, default=16_384)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--workers", type=int, nargs="+", help="DataLoader worker counts to sweep")
    parser.add_argument("--json", type=Path, help="also write every number here")
    arguments = parser.parse_args(argv)
    if arguments.device.startswith("cuda") and not torch.cuda.is_available():
        parser.error("--device cuda needs a CUDA GPU; none is visible to torch (use --device cpu for a dry run)")
    with tempfile.TemporaryDirectory(prefix="ufd-gpu-feeding-") as folder:
        result = run(arguments, Path(folder))
    if arguments.json:
        arguments.json.parent.mkdir(parents=True, exist_ok=True)
        arguments.json.write_text(json.dumps(result, indent=2))
    print(f"best efficiency {result['best_efficiency']:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
