"""``ufd data verify`` and ``ufd data fetch``: the command-line door to :mod:`ufd_lib.data.verify` and :mod:`ufd_lib.data.fetch`.

Exit status: 0 data matches / fetch complete; 1 mismatch or failed download; 2 bad usage: a
malformed or unusable path (a data root that is a file, a fingerprint inside a file, a NUL
byte, ...), an unknown manifest name, or a manifest file that cannot be loaded (not YAML,
not matching the schema, ...), each reported on one line. A data root that does not exist
yet is not bad usage: verify reports its sets as missing (1), fetch creates it.
"""
from __future__ import annotations

import argparse
import sys

from ufd_lib.data.fetch import FetchError, fetch_data
from ufd_lib.data.verify import verify_data
from ufd_lib.data.manifests import ManifestError, UnknownManifestError, load_manifest, resolve_manifest_names


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


def run_fetch(args: argparse.Namespace) -> int:
    try:
        # Every manifest is loaded before anything is downloaded: a broken one is a usage error
        # now, not after hours of fetching the others.
        for name in resolve_manifest_names(args.manifests):
            load_manifest(name)
        fetch_data(args.data_root, args.manifests, args.download_dir)
    except ManifestError as error:
        return _usage_error("fetch", error)
    except FetchError as error:
        print(f"ufd data fetch: failed\n{error}", file=sys.stderr)
        return 1
    return 0


def run(args: argparse.Namespace) -> int:
    return run_verify(args) if args.data_command == "verify" else run_fetch(args)
