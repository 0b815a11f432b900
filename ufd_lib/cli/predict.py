"""``ufd predict``: the score of each image and its label, by the released linear probe (the
default), a probe file, or nearest neighbour to cached banks (``--bank``)."""
from __future__ import annotations

import json
import os
import stat
import sys
import unicodedata
import warnings
from pathlib import Path

import numpy as np

from ufd_lib.classifiers.linear_probe import LinearProbe
from ufd_lib.classifiers.nearest_neighbour import NearestNeighbourClassifier
from ufd_lib.classifiers.released import RELEASED_PROBE, released_probe_caution
from ufd_lib.cli.args import UsageError, extraction_options
from ufd_lib.cli.calibrate import calibrated
from ufd_lib.data.discovery import image_files_under
from ufd_lib.evaluation.metrics import MetricError
from ufd_lib.evaluation.scoring import fake_scores
from ufd_lib.features.encoders import load_encoder
from ufd_lib.features.extraction.decoding_workers import kept_decoding_workers
from ufd_lib.features.extraction.extract import extract_features, open_cache
from ufd_lib.features.feature_sets import featurize

_ESCAPES = {"\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t"}


def text_field(text: str) -> str:
    """``text`` as one tab-separated field on one line: backslash, tab, newline and the other
    control characters escaped (``\\``, ``\t``, ``\n``, ``\x1b``), the rest as it is."""
    return "".join(_ESCAPES.get(char) or (f"\\x{ord(char):02x}" if unicodedata.category(char) == "Cc" else char)
                   for char in text)


def _predict_paths(inputs: list[Path]) -> list[Path]:
    paths = []
    for item in inputs:
        try:
            if item.is_dir():
                paths += image_files_under(item)
            elif item.is_file():
                paths.append(item)
            elif os.path.lexists(item):
                raise UsageError(f"{str(item)!r}: {_kind(item)}, not an image file or a folder")
            else:
                raise UsageError(f"{str(item)!r}: no such file or directory")
        except OSError as error:  # a name too long for the file system, a folder we may not read
            raise UsageError(f"{str(item)!r}: {error.strerror or error}") from None
    return paths


def _kind(path: Path) -> str:
    """What a path that is neither a regular file nor a folder is, in words."""
    found = os.stat(path) if os.path.exists(path) else os.lstat(path)
    kinds = ((stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
             (stat.S_ISSOCK, "a socket"), (stat.S_ISLNK, "a dangling symbolic link"))
    return next((name for test, name in kinds if test(found.st_mode)), "not a regular file")


def _probe_path(args) -> Path | None:
    """The probe file --probe names ('released', the default, is the one shipped with ufd); None
    with --bank. Checked before any model loads."""
    if args.bank:
        if args.probe is not None:
            raise UsageError("--bank (nearest neighbour) and --probe (linear probe) exclude each other; give one")
        return None
    path = RELEASED_PROBE if args.probe in (None, "released") else Path(args.probe)
    if not path.is_file():
        raise UsageError(f"--probe {str(path)!r}: no such file (give 'released' or a .pth from `ufd train-probe`)")
    return path


def _classifier(args, probe_path: Path | None, encoder, options):
    """Nearest neighbour to the --bank sets (features through the cache), or the probe."""
    if probe_path is None:
        banks = [featurize(encoder, spec, options) for spec in args.bank]
        features = np.concatenate([bank.features for bank in banks])
        labels = np.concatenate([bank.labels for bank in banks])
        if not {0, 1} <= set(labels.tolist()):
            raise UsageError("--bank: the banks need real (0_real) and fake (1_fake) images; "
                             f"found {int((labels == 0).sum())} real, {int((labels == 1).sum())} fake")
        return NearestNeighbourClassifier(k=args.k, device=args.device).fit(features, labels)
    probe = LinearProbe.load(probe_path)
    if probe.n_features_in_ != encoder.embed_dim:
        which = "the released probe (for CLIP ViT-L/14)" if probe_path == RELEASED_PROBE else str(probe_path)
        raise UsageError(f"--probe {args.probe or 'released'}: {which} takes {probe.n_features_in_}-d features, "
                         f"--encoder {encoder.name} gives {encoder.embed_dim}-d")
    caution = released_probe_caution(encoder) if probe_path == RELEASED_PROBE else None
    if caution:
        warnings.warn(caution, stacklevel=2)
    return probe


@kept_decoding_workers()
def run(args) -> int:
    paths = _predict_paths(args.images)
    if not paths:
        raise UsageError("no images in " + ", ".join(repr(str(item)) for item in args.images))
    probe_path = _probe_path(args)
    options = extraction_options(args)
    encoder = load_encoder(args.encoder, args.device, args.allow_torchscript)
    classifier = calibrated(_classifier(args, probe_path, encoder, options), args.calibration, probe_path)
    cache = open_cache(encoder, options.perturbation, options.cache_root)
    features, kept, report = extract_features(encoder, paths, cache, options)
    scores, threshold = fake_scores(classifier, features)
    if not np.isfinite(scores).all():
        bad = int((~np.isfinite(scores)).sum())
        raise MetricError(f"{bad} of {len(scores)} scores are NaN or infinite: the "
                          f"{'nearest-neighbour search' if args.bank else 'probe'} output is broken "
                          "(weights that overflow float32?); nothing was printed")
    kept_paths = [p for p, keep in zip(paths, kept) if keep]
    score_name = "cosine_margin" if args.bank else "probability_fake"
    for path, score in zip(kept_paths, scores):
        label = "fake" if score > threshold else "real"
        if args.json:
            print(json.dumps({"path": str(path), score_name: float(score), "label": label}))
        else:
            print(f"{text_field(str(path))}\t{score:.6f}\t{label}")
    for path, reason in report.skipped:
        print(f"ufd: skipped {text_field(str(path))}: {text_field(str(reason))}", file=sys.stderr)
    return 1 if report.skipped else 0
