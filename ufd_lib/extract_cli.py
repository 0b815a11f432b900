"""``ufd extract``: fill the feature cache for image sets, on one process or sharded with torchrun.

    ufd extract --encoder clip:ViT-L/14 --set train=DATA/train/progan --set progan=DATA/test/progan
    torchrun --nproc_per_node 2 -m ufd_lib extract --encoder ... --set ... --out runs/extract

Every image of every ``--set`` is encoded at most once per setting (encoder, preprocessing,
perturbation, precision); later ``ufd evaluate``/``train-probe`` runs and the notebooks read
the features from the cache. Under torchrun the ranks share the work (:mod:`ufd_lib.sharding`)
and rank 0 prints the summary and writes ``run.json``.

Exit status: 0 done (unusable files are skipped and counted); 1 an encoder or image error;
2 bad usage, reported on one line before any encoder loads: a malformed flag, a ``--set``
whose directories do not exist, an ``--out`` or ``--cache-dir`` that is a file or lies inside
one, a ``--device`` that is not cpu/cuda[:N] or not present, fp16 without CUDA.
"""
from __future__ import annotations

import argparse
import json
import sys
import time

import torch

from . import sharding
from .cli import UsageError, _add_extraction_flags, _options, _set_spec, _settings
from .discovery import collect_images
from .encoders import load_encoder
from .evaluation import run_record
from .extract import PRECISIONS, fill_cache, open_cache
from .image_sets import argument_type, output_directory


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``extract`` command to a subparsers object."""
    extract = subparsers.add_parser(
        "extract",
        help="fill the feature cache (torchrun for several processes)",
        description="Encode every image of the given sets that the feature cache lacks. Run it under "
        "'torchrun --nproc_per_node N -m ufd_lib extract ...' to shard the work over N processes.",
    )
    _add_extraction_flags(extract)
    extract.add_argument("--set", dest="sets", type=_set_spec, action="append", required=True,
                         metavar="NAME=REAL[:FAKE]", help="an image set to encode (repeatable)")
    extract.add_argument("--precision", choices=PRECISIONS, default="auto",
                         help="auto (default: the encoder as loaded, fp16 CLIP on CUDA, fp32 on CPU), fp32, "
                         "bf16 (autocast; faster on CPUs with AVX512-BF16/AMX, own cache key), fp16 (CUDA)")
    extract.add_argument("--out", type=argument_type(output_directory), default=None,
                         help="directory for run.json (optional)")
    extract.set_defaults(func=cmd_extract)


def _check_before_loading(args, device: str) -> None:
    """Raise UsageError for what would otherwise fail only after the encoder has loaded
    (ViT-L/14: about a gigabyte) or deep inside torch with a traceback."""
    names = [spec.name for spec in args.sets]
    repeated = next((name for name in names if names.count(name) > 1), None)
    if repeated is not None:
        raise UsageError(f"--set: the name {repeated!r} is given more than once")
    try:
        parsed = torch.device(device)
    except RuntimeError:
        parsed = None
    if parsed is None or parsed.type not in ("cpu", "cuda"):
        raise UsageError(f"--device {args.device!r}: expected auto, cpu, cuda or cuda:N")
    if parsed.type == "cuda" and not torch.cuda.is_available():
        raise UsageError(f"--device {args.device!r}: CUDA is not available on this machine")
    if parsed.type == "cuda" and (parsed.index or 0) >= torch.cuda.device_count():
        raise UsageError(f"--device {args.device!r}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    if args.precision == "fp16" and parsed.type != "cuda":
        raise UsageError("--precision fp16 needs CUDA; on CPU use bf16 (autocast) or fp32")


def cmd_extract(args) -> int:
    options = _options(args)
    started = time.perf_counter()
    rank, world_size, local_rank = sharding.environment()
    device = sharding.rank_device(args.device, local_rank, world_size)
    _check_before_loading(args, device)
    world = sharding.init_world(device)
    try:
        encoder = load_encoder(args.encoder, device)
        paths, per_set = [], {}
        for spec in args.sets:
            images = collect_images(spec, options.sampling)
            per_set[spec.name] = len(images)
            paths += [image.path for image in images]
        cache = open_cache(encoder, options.perturbation, options.cache_root, args.precision)
        _, _, report = fill_cache(
            encoder, paths, cache, perturbation=options.perturbation, batch_size=options.batch_size,
            num_workers=options.num_workers, strict=options.strict, max_pixels=options.max_pixels,
            progress=options.progress, description="+".join(per_set), precision=args.precision, world=world,
        )
    finally:
        sharding.close_world(world)
    if not world.is_main:
        return 0
    record = run_record(encoder, report, _settings(args))
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
