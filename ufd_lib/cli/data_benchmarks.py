"""``ufd data adapters``, ``ufd data bias-card``, ``ufd data manifest build`` and
``ufd data verify --against``: the command-line door to the layout adapters, the bias card and
per-file lists.

Exit status: 0 done (or the copy matches the list); 1 the copy differs from the list, or a set
has no readable image; 2 bad usage (a per-file list that cannot be read, an unknown manifest).
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from functools import partial
from pathlib import Path

import pandas as pd

from ufd_lib import config
from ufd_lib.data.adapters import describe_adapters
from ufd_lib.data.benchmark_verify import verify_benchmark
from ufd_lib.data.bias_card import bias_card
from ufd_lib.data.image_sets import PathArgumentError
from ufd_lib.data.manifests import ManifestError
from ufd_lib.data.per_file_list import (
    FileListError,
    build_file_list,
    compare_with_list,
    covered_files,
    write_file_list,
)


def run_adapters(args: argparse.Namespace) -> int:
    print(describe_adapters())
    return 0


def run_bias_card(args: argparse.Namespace) -> int:
    from ufd_lib.analyses.bias_control import symmetric_control

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    try:
        for spec in args.sets:
            card = bias_card(spec)
            row = card.summary_row()
            card.distributions.to_csv(out / f"{spec.name}.distributions.csv", index=False)
            if not args.no_control:
                with tempfile.TemporaryDirectory(prefix="ufd-bias-control-") as work:
                    _, control = symmetric_control(spec, Path(work))
                row["metadata_auc_reencoded"] = control.metadata_auc
            rows.append(row)
    except PathArgumentError as error:
        print(f"ufd data bias-card: error: {error}", file=sys.stderr)
        return 2
    table = pd.DataFrame(rows)
    table.to_csv(out / "bias_card.csv", index=False)
    print(table.to_string(index=False))
    flagged = table.loc[table["flagged"], "set"].tolist()
    if flagged:
        print(f"flagged (metadata alone separates real from fake; a detector's score may be a shortcut): "
              f"{', '.join(flagged)}")
    return 0


def _memo(args: argparse.Namespace):
    """The feature cache's file-identity memo as a hashing function: an unchanged file's bytes
    are not read again."""
    from ufd_lib.features.extraction.digest_memo import memo_sha256

    return partial(memo_sha256, directory=getattr(args, "cache_dir", None) or config.cache_dir())


def run_manifest_build(args: argparse.Namespace) -> int:
    try:
        files = covered_files(args.data_root, args.manifest_name)
    except ManifestError as error:
        print(f"ufd data manifest build: error: --manifest: {error}", file=sys.stderr)
        return 2
    digest = write_file_list(args.out, build_file_list(args.data_root, files, _memo(args)))
    print(f"{len(files)} files listed in {args.out} (sha256 {digest})")
    return 0


def run_verify_against(args: argparse.Namespace) -> int:
    names = args.manifests or [None]
    if len(names) > 1:
        print("ufd data verify: error: --against takes at most one --manifest", file=sys.stderr)
        return 2
    try:
        comparison = compare_with_list(args.data_root, args.against, names[0], _memo(args))
    except (FileListError, ManifestError) as error:
        print(f"ufd data verify: error: {error}", file=sys.stderr)
        return 2
    print(comparison.summary())
    return 0 if comparison.ok else 1


def run_verify_benchmark(args: argparse.Namespace) -> int:
    try:
        check = verify_benchmark(args.benchmark, args.data_root)
    except ManifestError as error:
        print(f"ufd data verify: error: --benchmark: {error}", file=sys.stderr)
        return 2
    print(check.summary())
    return 0 if check.ok else 1


def run(args: argparse.Namespace) -> int | None:
    """The exit status of one of these commands, or None when ``args`` names another."""
    if args.data_command == "adapters":
        return run_adapters(args)
    if args.data_command == "bias-card":
        return run_bias_card(args)
    if args.data_command == "manifest":
        return run_manifest_build(args)
    if args.data_command == "verify" and getattr(args, "against", None) is not None:
        return run_verify_against(args)
    if args.data_command == "verify" and getattr(args, "benchmark", None) is not None:
        return run_verify_benchmark(args)
    return None
