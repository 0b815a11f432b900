"""The ``ufd`` command line. Every subcommand calls the same functions as the notebooks."""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import torch
from PIL import Image

from . import config
from .augmentation import featurize_views
from .discovery import SAMPLING_MODES
from .encoders import EncoderUnavailable, load_encoder
from .evaluation import (
    ExtractionOptions, evaluate_sets, fake_scores, featurize, run_record, write_evaluation,
)
from .extract import ExtractionError, ExtractionReport, extract_features, open_cache
from .image_sets import (
    PathArgumentError, SpecError, argument_type, existing_directory, existing_file, output_directory, output_file,
    parse_set_spec,
)
from .knn import NearestNeighbourClassifier
from .linear_probe import LinearProbe, ProbeFileError
from .metrics import MetricError
from .preprocess import Perturbation
from .reproduce import ReproduceError


class UsageError(Exception):
    """Bad input from the user: exit status 2 with a one-line message."""


class _Parser(argparse.ArgumentParser):
    """argparse with a one-line error (no usage dump): ``ufd evaluate: error: ... (see --help)``."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see `{self.prog} --help`)\n")


def _set_spec(text: str):
    try:
        return parse_set_spec(text)
    except SpecError as error:
        raise argparse.ArgumentTypeError(str(error)) from error


def _int_at_least(minimum: int):
    """argparse type: an integer >= ``minimum``."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"{text!r} must be at least {minimum}")
        return value

    return parse


_positive_int = _int_at_least(1)
_non_negative_int = _int_at_least(0)


def _non_negative_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not value >= 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"{text!r} must be a finite number >= 0")
    return value


def _device(text: str) -> str:
    """``auto``, ``cpu``, ``cuda`` or ``cuda:N`` that this machine has; checked before any model loads."""
    if text == "auto":
        return text
    try:
        device = torch.device(text)
    except RuntimeError:
        device = None
    if device is None or device.type not in ("cpu", "cuda"):
        raise argparse.ArgumentTypeError(f"{text!r}: expected auto, cpu, cuda or cuda:N")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise argparse.ArgumentTypeError(f"{text!r}: CUDA is not available on this machine")
    if device.type == "cuda" and (device.index or 0) >= torch.cuda.device_count():
        raise argparse.ArgumentTypeError(f"{text!r}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    return text


def _jpeg_quality(text: str) -> int:
    value = _positive_int(text)
    if value > 100:
        raise argparse.ArgumentTypeError(f"{text!r} must be in 1..100")
    return value


def _add_extraction_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--encoder", default=config.DEFAULT_ENCODER,
                        help="clip:ViT-L/14 (default), clip:/path/to/checkpoint.pt, random-clip:tiny|small|ViT-B/32|...")
    parser.add_argument("--cache-dir", type=argument_type(output_directory), default=None,
                        help="feature cache (default $UFD_CACHE_DIR or ~/.cache/ufd/features)")
    parser.add_argument("--jpeg-quality", type=_jpeg_quality, default=None, help="re-encode each image as JPEG at this quality (1..100)")
    parser.add_argument("--blur-sigma", type=_non_negative_float, default=0.0, help="Gaussian blur sigma in pixels before JPEG and crop")
    parser.add_argument("--sampling", choices=SAMPLING_MODES, default="all",
                        help="all images (default) or the released code's cap of 1000 per class (100 if fewer), seed 0")
    parser.add_argument("--strict", action="store_true", help="stop at the first undecodable image instead of skipping it")
    parser.add_argument("--device", type=_device, default="auto", help="auto (CUDA when present), cpu, cuda, cuda:1, ...")
    parser.add_argument("--batch-size", type=_positive_int, default=64)
    parser.add_argument("--workers", type=int, default=0, help="DataLoader decoding processes (default 0: decode in the main process)")
    parser.add_argument("--max-pixels", type=_positive_int, default=config.MAX_IMAGE_PIXELS,
                        help="refuse images with more pixels than this (decompression bombs)")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    parser.add_argument("--allow-pickled-lists", action="store_true",
                        help="accept a released-style .pickle file list as a REAL or FAKE root (read as plain "
                        "strings only; refused by default because unpickling can run code)")


def _options(args) -> ExtractionOptions:
    if args.workers < 0:
        raise UsageError(f"--workers must be >= 0, got {args.workers}")
    if args.max_pixels > Image.MAX_IMAGE_PIXELS:  # PIL checks its own limit too, while decoding some formats
        Image.MAX_IMAGE_PIXELS = args.max_pixels
    return ExtractionOptions(
        perturbation=Perturbation(args.blur_sigma, args.jpeg_quality),
        sampling=args.sampling, batch_size=args.batch_size, num_workers=args.workers,
        strict=args.strict, max_pixels=args.max_pixels, cache_root=args.cache_dir, progress=not args.quiet,
    )


def _settings(args) -> dict:
    return {key: str(value) if isinstance(value, Path) else value
            for key, value in vars(args).items() if key != "func"}


def _fit_classifier(args, encoder, options, report):
    if args.classifier == "knn":
        if args.train is None:
            raise UsageError("--classifier knn needs --train NAME=REAL[:FAKE] for its feature banks")
        train = featurize(encoder, args.train, options, report)
        return NearestNeighbourClassifier(k=args.k, device=args.device).fit(train.features, train.labels)
    if args.probe is not None:
        probe = LinearProbe.load(args.probe)
        if probe.n_features_in_ != encoder.embed_dim:
            raise UsageError(f"--probe {args.probe}: takes {probe.n_features_in_}-d features, "
                             f"{encoder.name} gives {encoder.embed_dim}-d")
        return probe
    if args.train is None:
        raise UsageError("--classifier linear needs --probe PATH or --train NAME=REAL[:FAKE]")
    train = featurize(encoder, args.train, options, report)
    return LinearProbe(device=args.device).fit(train.features, train.labels)


def cmd_evaluate(args) -> int:
    options = _options(args)
    if args.k < 1:
        raise UsageError(f"--k must be >= 1, got {args.k}")
    encoder = load_encoder(args.encoder, args.device)
    report = ExtractionReport()
    classifier = _fit_classifier(args, encoder, options, report)
    test_sets = [featurize(encoder, spec, options, report) for spec in args.test]
    result = evaluate_sets(classifier, test_sets)
    write_evaluation(result, run_record(encoder, report, _settings(args)), args.out)
    print(result.metrics.to_string(index=False, float_format=lambda v: f"{v:.4f}"))
    print(f"\nencoded {report.images_encoded} images, {report.images_from_cache} from cache, "
          f"{len(report.skipped)} skipped; results in {args.out}")
    return 0


def cmd_train_probe(args) -> int:
    options = _options(args)
    if args.augmented_views and options.perturbation != Perturbation():
        raise UsageError("--augmented-views augments the original images; it cannot be combined with "
                         "--blur-sigma or --jpeg-quality")
    encoder = load_encoder(args.encoder, args.device)
    train = featurize(encoder, args.train, options)
    validation = featurize(encoder, args.val, options) if args.val else None
    views = featurize_views(encoder, train, options, args.augmented_views) if args.augmented_views else None
    probe = LinearProbe(device=args.device)
    if validation is None:
        probe.fit(train.features, train.labels, views=views)
    else:
        probe.fit(train.features, train.labels, validation.features, validation.labels, views=views)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    probe.save(args.out)
    best = max(probe.history_, key=lambda row: row["val_acc"])
    augmented = f" ({args.augmented_views} augmented views each)" if args.augmented_views else ""
    print(f"trained on {len(train.labels)} images{augmented} for {len(probe.history_)} epochs; "
          f"best validation accuracy {best['val_acc']:.4f} (epoch {best['epoch']}); saved {args.out}")
    return 0


def _predict_paths(inputs: list[Path]) -> list[Path]:
    paths = []
    for item in inputs:
        if item.is_dir():
            paths += sorted((p for p in item.rglob("*") if p.suffix.lower() in config.IMAGE_EXTENSIONS and p.is_file()), key=str)
        elif item.is_file():
            paths.append(item)
        else:
            raise UsageError(f"{str(item)!r}: no such file or directory")
    return paths


def cmd_predict(args) -> int:
    paths = _predict_paths(args.images)
    probe = LinearProbe.load(args.probe)
    options = _options(args)
    encoder = load_encoder(args.encoder, args.device)
    cache = open_cache(encoder, options.perturbation, options.cache_root)
    features, kept, report = extract_features(
        encoder, paths, cache, perturbation=options.perturbation, batch_size=options.batch_size,
        num_workers=options.num_workers, strict=options.strict, max_pixels=options.max_pixels,
        progress=options.progress,
    )
    probabilities, threshold = fake_scores(probe, features)
    kept_paths = [p for p, keep in zip(paths, kept) if keep]
    for path, probability in zip(kept_paths, probabilities):
        label = "fake" if probability > threshold else "real"
        if args.json:
            print(json.dumps({"path": str(path), "probability_fake": float(probability), "label": label}))
        else:
            print(f"{path}\t{probability:.6f}\t{label}")
    for path, reason in report.skipped:
        print(f"ufd: skipped {path}: {reason}", file=sys.stderr)
    return 1 if report.skipped else 0


def cmd_reproduce(args) -> int:
    from .reproduce import reproduce

    index = reproduce(args.profile, args.data_root, args.only, args.output_dir, args.cache_dir,
                      log=lambda message: print(message, flush=True))
    print(f"index page: {index}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="ufd", description="UnivFD replication: fake image detection in frozen CLIP feature space.")
    subparsers = parser.add_subparsers(dest="command", required=True)

    evaluate = subparsers.add_parser("evaluate", help="score test sets and compute AP and accuracies")
    _add_extraction_flags(evaluate)
    evaluate.add_argument("--classifier", choices=("knn", "linear"), required=True)
    evaluate.add_argument("--train", type=_set_spec, default=None, metavar="NAME=REAL[:FAKE]")
    evaluate.add_argument("--k", type=int, default=1, help="nearest neighbours averaged per bank (knn)")
    evaluate.add_argument("--probe", type=argument_type(existing_file), default=None,
                          help="linear probe in the official format (linear)")
    evaluate.add_argument("--test", type=_set_spec, action="append", required=True, metavar="NAME=REAL[:FAKE]")
    evaluate.add_argument("--out", type=argument_type(output_directory), required=True, help="output directory")
    evaluate.set_defaults(func=cmd_evaluate)

    train_probe = subparsers.add_parser("train-probe", help="train the linear probe on cached features")
    _add_extraction_flags(train_probe)
    train_probe.add_argument("--train", type=_set_spec, required=True, metavar="NAME=REAL[:FAKE]")
    train_probe.add_argument("--val", type=_set_spec, default=None, metavar="NAME=REAL[:FAKE]",
                             help="validation set for early stopping (default: 10%% of --train, stratified)")
    train_probe.add_argument("--augmented-views", type=_non_negative_int, default=0, metavar="N",
                             help="train on N cached augmented views per image (the released blur, JPEG, crop "
                                  "and flip), one sampled per image each epoch; 0 (default): the unaugmented "
                                  "centre crop, encoding each image once")
    train_probe.add_argument("--out", type=argument_type(output_file), required=True,
                             help="where to save the probe (.pth)")
    train_probe.set_defaults(func=cmd_train_probe)

    predict = subparsers.add_parser("predict", help="probability that each image is fake")
    _add_extraction_flags(predict)
    predict.add_argument("--probe", type=argument_type(existing_file), required=True)
    predict.add_argument("--json", action="store_true", help="JSON lines instead of tab-separated text")
    predict.add_argument("images", type=Path, nargs="+", metavar="IMAGE_OR_DIR")
    predict.set_defaults(func=cmd_predict)

    reproduce = subparsers.add_parser("reproduce", help="run the numbered notebooks with papermill")
    reproduce.add_argument("--profile", choices=("smoke", "paper"), required=True)
    reproduce.add_argument("--data-root", type=argument_type(existing_directory), default=None,
                           help="datasets root (paper profile)")
    reproduce.add_argument("--only", nargs="+", default=None, metavar="NAME", help="notebooks by name or number, e.g. 03")
    reproduce.add_argument("--output-dir", type=argument_type(output_directory), default=None,
                           help="default runs/<profile>")
    reproduce.add_argument("--cache-dir", type=argument_type(output_directory), default=None)
    reproduce.set_defaults(func=cmd_reproduce)

    from . import data_cli, extract_cli, selfcheck_cli

    data_cli.register(subparsers)
    extract_cli.register(subparsers)
    selfcheck_cli.register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "allow_pickled_lists", False):
        os.environ["UFD_ALLOW_PICKLED_LISTS"] = "1"  # read by ufd_lib.file_lists, for this run
    try:
        return args.func(args)
    except (EncoderUnavailable, ExtractionError, MetricError, ReproduceError, OSError) as error:
        print(f"ufd {args.command}: error: {error}", file=sys.stderr)
        return 1
    except (UsageError, SpecError, PathArgumentError, ProbeFileError, ValueError) as error:
        message = " ".join(str(error).split())  # one line, whatever the library put in it
        print(f"ufd {args.command}: error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"ufd {args.command}: interrupted; finished work is kept in the cache", file=sys.stderr)
        return 130
