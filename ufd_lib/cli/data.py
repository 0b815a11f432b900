"""``ufd data verify`` and ``ufd data fetch``: the command-line door to :mod:`ufd_lib.data.verify`
and :mod:`ufd_lib.data.fetch`.

Exit status: 0 data matches / fetch complete; 1 mismatch or failed download; 2 bad usage: a
malformed or unusable path (a data root that is a file, a fingerprint inside a file, a NUL
byte, ...), an unknown manifest name, or a manifest file that cannot be loaded (not YAML,
not matching the schema, ...), each reported on one line. A data root that does not exist
yet is not bad usage: verify says so on one line (1), fetch creates it. ``fetch --dry-run``
lists what would be downloaded, with sizes and the total, and exits 0.
"""
from __future__ import annotations

import argparse
import sys

from ufd_lib.cli import data_benchmarks
from ufd_lib.data.fetch import FetchError, PlannedFetch, fetch_data, fetch_plan
from ufd_lib.data.manifests import ManifestError, UnknownManifestError, load_manifest, resolve_manifest_names
from ufd_lib.data.verify import verify_data


def _usage_error(command: str, error: ManifestError) -> int:
    flag = "--manifest: " if isinstance(error, UnknownManifestError) else ""
    print(f"ufd data {command}: error: {flag}{error}", file=sys.stderr)
    return 2


def run_verify(args: argparse.Namespace) -> int:
    try:
        report = verify_data(args.data_root, args.manifests, args.fingerprint)
    except ManifestError as error:
        return _usage_error("verify", error)
    print(report.summary())
    return 0 if report.ok else 1


def _size_text(size_bytes: int) -> str:
    return f"{size_bytes / 1e9:.2f} GB" if size_bytes >= 1e8 else f"{size_bytes / 1e6:.2f} MB"


def plan_summary(plan: list[PlannedFetch]) -> str:
    """The dry run's report: one line per manifest (with, for a download, each source URL on a
    line of its own), then the total to download: exact where every size is declared, else
    "about" the sum of exact and approximate sizes, naming the archives whose size is not stated."""
    words = {"present": "already present, nothing to do", "extract": "extract the archive already at",
             "blocked": "its folder exists but does not match; fetch will stop here (see ufd data verify)",
             "download": "download"}
    lines = []
    for item in plan:
        size = _size_text(item.size_bytes) if item.size_bytes is not None else f"size: {item.approx_size}"
        where = f" {item.archive}" if item.action in ("extract", "download") else ""
        suffix = f" ({size})" if item.action == "download" else ""
        lines.append(f"{item.manifest}: {words[item.action]}{where}{suffix}")
        if item.action == "download":
            lines += [f"    from {source}" for source in item.sources]
    downloads = [item for item in plan if item.action == "download"]
    sizes = [item.size_bytes if item.size_bytes is not None else item.approx_size_bytes for item in downloads]
    approximate = any(item.size_bytes is None for item in downloads)
    unstated = [item.manifest for item, size in zip(downloads, sizes) if size is None]
    total = f"total to download: {len(downloads)} archive(s)"
    if len(unstated) < len(downloads):
        total += f", {'about ' if approximate else ''}{_size_text(sum(size for size in sizes if size is not None))}"
        if unstated:
            total += f" for {len(downloads) - len(unstated)} of them"
    if unstated:
        total += f"; size not stated for {', '.join(unstated)}"
    lines.append(total)
    return "\n".join(lines)


def run_fetch(args: argparse.Namespace) -> int:
    try:
        # Every manifest is loaded before anything is downloaded: a broken one is a usage error
        # now, not after hours of fetching the others.
        for name in resolve_manifest_names(args.manifests):
            load_manifest(name)
        if args.dry_run:
            print(plan_summary(fetch_plan(args.data_root, args.manifests, args.download_dir)))
            return 0
        fetch_data(args.data_root, args.manifests, args.download_dir)
    except ManifestError as error:
        return _usage_error("fetch", error)
    except FetchError as error:
        print(f"ufd data fetch: failed\n{error}", file=sys.stderr)
        return 1
    return 0


def run(args: argparse.Namespace) -> int:
    newer = data_benchmarks.run(args)
    if newer is not None:
        return newer
    return run_verify(args) if args.data_command == "verify" else run_fetch(args)
