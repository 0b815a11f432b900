"""``ufd extract``: fill the feature cache for image sets, on one process or sharded with torchrun.

    ufd extract --encoder clip:ViT-L/14 --set train=DATA/train/progan --set progan=DATA/test/progan
    torchrun --nproc_per_node 2 -m ufd_lib extract --encoder ... --set ... --out runs/extract

Every image of every ``--set`` is encoded at most once per setting (encoder, preprocessing,
perturbation, precision); later ``ufd evaluate``/``train-probe`` runs and the notebooks read
the features from the cache. ``--layers`` also caches the CLS token of those blocks of a CLIP ViT
(:mod:`ufd_lib.features.extraction.layer_caches`), from the same forward pass; before encoding,
the command prints the most disk the request can take. ``--export DIR`` then writes each set's
features as ``.npy`` arrays with a ``.csv`` index (:mod:`ufd_lib.features.export`).
Under torchrun the ranks share the work (:mod:`ufd_lib.features.extraction.sharding`) and rank 0
prints the summary and writes ``run.json``.

Exit status: 0 done (unusable files are skipped and counted); 1 an encoder or image error;
2 bad usage, reported on one line before any encoder loads: a malformed flag, a ``--set``
whose directories do not exist, an ``--out``, ``--export`` or ``--cache-dir`` that is a file or
lies inside one, a ``--device`` that is not cpu/cuda[:N] or not present, fp16 without CUDA; and,
once the encoder is loaded, ``--layers`` it does not have.
"""
from __future__ import annotations

import dataclasses
import json
import sys
import time

import numpy as np

from ufd_lib.cli.args import UsageError, device_problem, extraction_options, settings
from ufd_lib.data.discovery import collect_images
from ufd_lib.features.encoders import load_encoder
from ufd_lib.features.extraction import sharding
from ufd_lib.features.extraction.extract import fill_cache, open_cache
from ufd_lib.features.extraction.layer_caches import human_bytes, layer_caches, stored_bytes
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


def requested_layers(encoder, request: tuple[int, ...] | str) -> tuple[int, ...]:
    """``--layers`` for this encoder: ``all`` → every layer 0..depth; ValueError (exit status 2)
    naming the encoder when it has no per-layer features or not those layers."""
    if request == "all":
        if encoder.layer_tokens is None:
            raise ValueError(f"--layers: the encoder {encoder.name} has no per-layer features (only CLIP ViTs have)")
        return tuple(range(encoder.layer_tokens.depth + 1))
    try:
        return encoder.check_layers(request) if request else ()
    except ValueError as error:
        raise ValueError(f"--layers: {error}") from None


def disk_estimate(encoder, cache, layers: tuple[int, ...], images: int) -> tuple[int, str]:
    """(bytes, one line): the most a request for ``images`` images can add to the cache, the
    final features and each layer's, as if none were cached yet."""
    total = stored_bytes(images, encoder.embed_dim, cache.setting)
    what = f"final {encoder.embed_dim}-d"
    if layers:
        stores = layer_caches(cache, layers, encoder.layer_tokens.width)
        total += sum(stored_bytes(images, store.dim, store.setting) for store in stores.values())
        what += f" + {len(layers)} layer{'s' if len(layers) > 1 else ''} × {encoder.layer_tokens.width}-d"
    return total, (f"ufd extract: {images} images × ({what}), float16: at most {human_bytes(total)} "
                   f"({total} bytes) added to {cache.directory.parent}, less what is cached already")


def run(args) -> int:
    options = extraction_options(args)
    started = time.perf_counter()
    rank, world_size, local_rank = sharding.environment()
    device = sharding.rank_device(args.device, local_rank, world_size)
    _check_before_loading(args, device)
    world = sharding.init_world(device)
    try:
        encoder = load_encoder(args.encoder, device, args.allow_torchscript)
        layers = requested_layers(encoder, args.layers)
        options = dataclasses.replace(options, layers=layers)
        images, per_set = [], {}
        for spec in args.sets:
            found = collect_images(spec, options.sampling)
            per_set[spec.name] = len(found)
            images += found
        cache = open_cache(encoder, options.perturbation, options.cache_root, args.precision)
        estimate, line = disk_estimate(encoder, cache, layers, len(images))
        if world.is_main:
            print(line, flush=True)
        kept, digests, report = fill_cache(encoder, [image.path for image in images], cache, options,
                                           description="+".join(per_set), precision=args.precision, world=world)
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
        "layers": list(layers),
        "estimated_bytes_at_most": estimate,
    })
    if args.export is not None:
        record["exported"] = [str(path) for path in _export(args.export, encoder, cache, layers, per_set, images,
                                                            kept, digests)]
    for path, reason in report.skipped:
        print(f"ufd extract: skipped {path}: {reason}", file=sys.stderr)
    record["skipped"] = [{"path": path, "reason": reason} for path, reason in report.skipped]
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "run.json").write_text(json.dumps(record, indent=2, default=str) + "\n")
    speed = f"{report.images_per_second:.1f} images/s" if report.images_per_second else "nothing to encode"
    print(f"encoded {report.images_encoded} images ({speed}, {report.precision}, world size {report.world_size}), "
          f"{report.images_from_cache} from cache, {len(report.skipped)} skipped; cache {cache.directory}"
          + (f"; record in {args.out / 'run.json'}" if args.out is not None else "")
          + (f"; exported to {args.export}" if args.export is not None else ""))
    return 0


def _export(directory, encoder, cache, layers, per_set: dict[str, int], images, kept: np.ndarray, digests) -> list:
    """Each set's features from the cache to ``directory`` (:func:`ufd_lib.features.export.export_feature_set`);
    ``images``, ``kept`` and ``digests`` run over the sets in ``per_set``'s order."""
    from ufd_lib.features.export import export_feature_set
    from ufd_lib.features.feature_sets import FeatureSet

    stores = layer_caches(cache, layers, encoder.layer_tokens.width) if layers else {}
    written, start = [], 0
    for name, count in per_set.items():
        mine = [i for i in range(start, start + count) if kept[i]]
        start += count
        keys = [digests[i] for i in mine]
        paths, labels = [images[i].path for i in mine], np.array([images[i].label for i in mine], dtype=int)
        final = FeatureSet(name, cache.load(keys), labels, paths)
        by_layer = {layer: FeatureSet(name, store.load(keys), labels, paths) for layer, store in stores.items()}
        written += export_feature_set(directory, final, by_layer)
    return written
