"""What every ``ufd`` command shares: argument types, the device check, the extraction flags and
the :class:`~ufd_lib.features.feature_sets.ExtractionOptions` they make.

This module is imported to build the parser, so it imports nothing heavy at module level:
``ufd --help`` and usage errors load neither torch nor numpy.
"""
from __future__ import annotations

import argparse
import dataclasses
import os
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from ufd_lib import config
from ufd_lib.cli.paths import output_directory
from ufd_lib.data.image_sets import ImageSetSpec, PathArgumentError, parse_set_spec
from ufd_lib.features.encoders.registry import encoder_usage
from ufd_lib.messages import escape_control

T = TypeVar("T")


class UsageError(Exception):
    """Bad input from the user: exit status 2 with a one-line message."""


class Parser(argparse.ArgumentParser):
    """argparse with a one-line error (no usage dump): ``ufd evaluate: error: ... (see --help)``."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {escape_control(message)} (see `{self.prog} --help`)\n")


def argument_type(check: Callable[[str], T]) -> Callable[[str], T]:
    """``check`` as an argparse ``type=``: its PathArgumentError becomes argparse's usage error
    ("argument --out: '...' lies inside '...', which is not a directory"), exit status 2."""

    def parse(text: str) -> T:
        try:
            return check(text)
        except PathArgumentError as error:
            raise argparse.ArgumentTypeError(str(error)) from None

    parse.__name__ = check.__name__
    return parse


set_spec = argument_type(parse_set_spec)
set_spec.__name__ = "set_spec"


def int_at_least(minimum: int):
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


positive_int = int_at_least(1)
non_negative_int = int_at_least(0)

# Upper bounds of the extraction flags: a batch beyond this only allocates until memory runs
# out, and more decoding processes than CPU cores only compete for them.
MAX_BATCH_SIZE = 4096


def usable_cores() -> int:
    """CPU cores this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def batch_size(text: str) -> int:
    """argparse type for ``--batch-size``: 1..:data:`MAX_BATCH_SIZE`."""
    value = positive_int(text)
    if value > MAX_BATCH_SIZE:
        raise argparse.ArgumentTypeError(f"{text!r} must be at most {MAX_BATCH_SIZE}")
    return value


def worker_count(text: str) -> int:
    """argparse type for ``--workers``: 0 up to the CPU cores this process may use."""
    value = non_negative_int(text)
    if value > usable_cores():
        raise argparse.ArgumentTypeError(f"{text!r} must be at most {usable_cores()}, the CPU cores this machine "
                                         "lets ufd use")
    return value


def non_negative_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not value >= 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"{text!r} must be a finite number >= 0")
    return value


def device_problem(text: str) -> str | None:
    """Why ``text`` is not a device this machine has (``None`` when it is): ``auto``, ``cpu``,
    ``cuda`` or ``cuda:N``. Checked before any model loads."""
    if text in ("auto", "cpu"):
        return None
    import torch  # only a CUDA device needs torch to check

    try:
        device = torch.device(text)
    except RuntimeError:
        device = None
    if device is None or device.type not in ("cpu", "cuda"):
        return "expected auto, cpu, cuda or cuda:N"
    if device.type == "cuda" and not torch.cuda.is_available():
        return "CUDA is not available on this machine"
    if device.type == "cuda" and (device.index or 0) >= torch.cuda.device_count():
        return f"this machine has {torch.cuda.device_count()} CUDA device(s)"
    return None


def device_argument(text: str) -> str:
    """argparse type for ``--device`` (see :func:`device_problem`)."""
    problem = device_problem(text)
    if problem is not None:
        raise argparse.ArgumentTypeError(f"{text!r}: {problem}")
    return text


def jpeg_quality(text: str) -> int:
    value = positive_int(text)
    if value > 100:
        raise argparse.ArgumentTypeError(f"{text!r} must be in 1..100")
    return value


def layer_list(text: str) -> tuple[int, ...] | str:
    """``--layers``: ``all``, or comma-separated block numbers ``0,8,16,24`` → sorted unique ints
    (whether they exist is checked once the encoder, and so its depth, is known)."""
    if text.strip().lower() == "all":
        return "all"
    try:
        layers = sorted({int(part) for part in text.split(",")})
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r}: expected 'all' or comma-separated layer numbers such as 0,8,16,24") from None
    if layers[0] < 0:
        raise argparse.ArgumentTypeError(f"{text!r}: layer numbers start at 0 (the stream entering block 1)")
    return tuple(layers)


SHARED_OPTIONS = "options shared by the commands that encode images"


def shared_options_last(parser: argparse.ArgumentParser) -> None:
    """List the shared options (:func:`add_extraction_flags`) after the command's own in the usage
    line too, as the help lists their group; call it once the command's own options are added."""
    shared = {action for group in parser._action_groups if group.title == SHARED_OPTIONS
              for action in group._group_actions}
    parser._actions.sort(key=lambda action: action in shared)  # stable: each part keeps its order


def add_extraction_flags(parser: argparse.ArgumentParser, sampling: bool = True) -> None:
    """The flags of every command that encodes images: encoder, cache, perturbation, sampling
    (only with ``sampling``; otherwise every image, ``all``), device and decoding. They form their
    own group, shown in the help after the command's own options."""
    own_options = parser
    parser = own_options.add_argument_group(SHARED_OPTIONS)
    parser.add_argument("--encoder", default=config.DEFAULT_ENCODER, help=f"one of: {encoder_usage()}")
    parser.add_argument("--cache-dir", type=argument_type(output_directory), default=None,
                        help="feature cache (default $UFD_CACHE_DIR or ~/.cache/ufd/features)")
    parser.add_argument("--jpeg-quality", type=jpeg_quality, default=None,
                        help="re-encode each image as JPEG at this quality (1..100)")
    parser.add_argument("--blur-sigma", type=non_negative_float, default=0.0,
                        help="Gaussian blur sigma in pixels before JPEG and crop")
    if sampling:
        parser.add_argument("--sampling", choices=config.SAMPLING_MODES, default="all",
                            help="all images (default) or the released code's cap of 1000 per class (100 if fewer), "
                            "seed 0")
    else:
        own_options.set_defaults(sampling="all")
    parser.add_argument("--strict", action="store_true",
                        help="stop at the first undecodable image instead of skipping it")
    parser.add_argument("--device", type=device_argument, default="auto",
                        help="auto (CUDA when present), cpu, cuda, cuda:1, ...")
    parser.add_argument("--batch-size", type=batch_size, default=64,
                        help="images encoded per forward pass (default 64)")
    parser.add_argument("--workers", type=worker_count, default=None,
                        help="DataLoader decoding processes (default: none on CPU; on CUDA one per core but one, "
                        "at most 8)")
    parser.add_argument("--max-pixels", type=positive_int, default=config.MAX_IMAGE_PIXELS,
                        help="refuse images with more pixels than this (decompression bombs)")
    parser.add_argument("--max-bytes", type=positive_int, default=None,
                        help="refuse image files larger than this many bytes, unread "
                        "(default $UFD_MAX_IMAGE_BYTES or 256 MiB)")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    parser.add_argument("--allow-pickled-lists", action="store_true",
                        help="accept a released-style .pickle file list as a REAL or FAKE root (read as plain "
                        "strings only; refused by default because unpickling can run code)")
    parser.add_argument("--allow-torchscript", action="store_true",
                        help="load a TorchScript CLIP archive that is not one of OpenAI's published checkpoints "
                        "(loading runs the code inside the archive; refused by default; only for a file you trust)")


def allow_pickled_lists(args: argparse.Namespace) -> None:
    """Mark every image set of ``args`` (``--train``, ``--test``, ``--set``, ...) as allowed to
    name released-style pickled file lists (``--allow-pickled-lists``)."""
    for key, value in vars(args).items():
        if isinstance(value, ImageSetSpec):
            setattr(args, key, dataclasses.replace(value, allow_pickled_lists=True))
        elif isinstance(value, list) and any(isinstance(item, ImageSetSpec) for item in value):
            setattr(args, key, [dataclasses.replace(item, allow_pickled_lists=True)
                                if isinstance(item, ImageSetSpec) else item for item in value])


def extraction_options(args: argparse.Namespace):
    """The :class:`~ufd_lib.features.feature_sets.ExtractionOptions` of the extraction flags."""
    from PIL import Image

    from ufd_lib.features.feature_sets import ExtractionOptions
    from ufd_lib.features.preprocess import Perturbation

    if args.max_pixels > Image.MAX_IMAGE_PIXELS:  # PIL checks its own limit too, while decoding some formats
        Image.MAX_IMAGE_PIXELS = args.max_pixels
    return ExtractionOptions(
        perturbation=Perturbation(args.blur_sigma, args.jpeg_quality),
        sampling=args.sampling, batch_size=args.batch_size, num_workers=args.workers,
        strict=args.strict, max_pixels=args.max_pixels, max_bytes=args.max_bytes,
        cache_root=args.cache_dir, progress=not args.quiet,
    )


def settings(args: argparse.Namespace) -> dict:
    """The parsed flags as JSON-ready values, for ``run.json``."""
    return {key: str(value) if isinstance(value, Path) else value
            for key, value in vars(args).items() if key != "command_module"}
