"""``ufd extract``: fill the feature cache for image sets, on one process or sharded with torchrun.

    ufd extract --encoder clip:ViT-L/14 --set train=DATA/train/progan --set progan=DATA/test/progan
    torchrun --nproc_per_node 2 -m ufd_lib extract --encoder ... --set ... --out runs/extract

Every image of every ``--set`` is encoded at most once per setting (encoder, preprocessing,
perturbation, precision); later ``ufd evaluate``/``train-probe`` runs and the notebooks read
the features from the cache. Under torchrun the ranks share the work (:mod:`ufd_lib.features.extraction.sharding`)
and rank 0 prints the summary and writes ``run.json``.

Exit status: 0 done (unusable files are skipped and counted); 1 an encoder or image error;
2 bad usage, reported on one line before any encoder loads: a malformed flag, a ``--set``
whose directories do not exist, an ``--out`` or ``--cache-dir`` that is a file or lies inside
one, a ``--device`` that is not cpu/cuda[:N] or not present, fp16 without CUDA.
"""
from __future__ import annotations

import json
import sys
import time

from ufd_lib.cli.args import UsageError, device_problem, extraction_options, settings
from ufd_lib.data.discovery import collect_images
from ufd_lib.features.encoders import load_encoder
from ufd_lib.features.extraction import sharding
from ufd_lib.features.extraction.extract import fill_cache, open_cache
from ufd_lib.report.provenance import run_record


def _check_before_loading(args, device: str) -> None:
    """Raise UsageError for what would otherwise fail only after the encoder has loaded
    (ViT-L/14: about a gigabyte) or deep inside torch with a traceback."""
    names = [spec.name for spec in args.sets]
    repeated = next((name for name in names if names.count(name) > 1), None)
    if repeated is not None:
        raise UsageError(f"--set: the name {repeated!r} is given more than once")
    problem = device_problem(device)
    if problem is not None:
        raise UsageError(f"--device {args.device!r}: {problem}")
    if args.precision == "fp16" and not device.startswith("cuda"):
        raise UsageError("--precision fp16 needs CUDA; on CPU use bf16 (autocast) or fp32")


def run(args) -> int:
    options = extraction_options(args)
    started = time.perf_counter()
    rank, world_size, local_rank = sharding.environment()
    device = sharding.rank_device(args.device, local_rank, world_size)
    _check_before_loading(args, device)
    world = sharding.init_world(device)
    try:
        encoder = load_encoder(args.encoder, device, args.allow_torchscript)
        paths, per_set = [], {}
        for spec in args.sets:
            images = collect_images(spec, options.sampling)
            per_set[spec.name] = len(images)
            paths += [image.path for image in images]
        cache = open_cache(encoder, options.perturbation, options.cache_root, args.precision)
        _, _, report = fill_cache(encoder, paths, cache, options, description="+".join(per_set),
                                  precision=args.precision, world=world)
    finally:
        sharding.close_world(world)
    if not world.is_main:
        return 0
    record = run_record(encoder, report, settings(args))
    record.update({
        "precision": report.precision,
        "world_size": report.world_size,
        "wall_seconds": round(time.perf_counter() - started, 3),
        "images_listed": per_set,
        "cache_directory": str(cache.directory),
    })
    for path, reason in report.skipped:
        print(f"ufd extract: skipped {path}: {reason}", file=sys.stderr)
    record["skipped"] = [{"path": path, "reason": reason} for path, reason in report.skipped]
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "run.json").write_text(json.dumps(record, indent=2, default=str) + "\n")
    speed = f"{report.images_per_second:.1f} images/s" if report.images_per_second else "nothing to encode"
    print(f"encoded {report.images_encoded} images ({speed}, {report.precision}, world size {report.world_size}), "
          f"{report.images_from_cache} from cache, {len(report.skipped)} skipped; cache {cache.directory}"
          + (f"; record in {args.out / 'run.json'}" if args.out is not None else ""))
    return 0
