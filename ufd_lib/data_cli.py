"""``ufd data verify`` and ``ufd data fetch``: the command-line door to data_verify and data_fetch.

Exit status: 0 data matches / fetch complete; 1 mismatch or failed download; 2 bad usage: a
malformed or unusable path (a data root that is a file, a fingerprint inside a file, a NUL
byte, ...), an unknown manifest name, or a manifest file that cannot be loaded (not YAML,
not matching the schema, ...), each reported on one line. A data root that does not exist
yet is not bad usage: verify reports its sets as missing (1), fetch creates it.
"""
from __future__ import annotations

import argparse
import sys

from ufd_lib.data_fetch import FetchError, fetch_data
from ufd_lib.data_verify import verify_data
from ufd_lib.image_sets import argument_type, output_directory, output_file
from ufd_lib.manifests import ManifestError, UnknownManifestError, load_manifest, resolve_manifest_names


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``data`` command (with ``verify`` and ``fetch``) to a subparsers object."""
    data = subparsers.add_parser(
        "data",
        help="verify or download the paper's datasets",
        description="Check a data root against data_manifests/*.yaml, or download what it lacks.",
    )
    commands = data.add_subparsers(dest="data_command", metavar="{verify,fetch}", required=True)

    verify = commands.add_parser(
        "verify",
        help="check layout, counts and image files against the manifests",
        description="Exit status 0 when the data matches the manifests, 1 when it does not.",
    )
    _add_common_arguments(verify)
    verify.add_argument(
        "--fingerprint",
        type=argument_type(output_file),
        metavar="PATH",
        help="write a CSV (path,size_bytes,sha256) of every checked image; its SHA-256 is printed",
    )
    verify.set_defaults(func=run_verify)

    fetch = commands.add_parser(
        "fetch",
        help="download, check and extract what the data root lacks",
        description="Exit status 0 when everything is in place, 1 when something could not be fetched.",
    )
    _add_common_arguments(fetch)
    fetch.add_argument(
        "--download-dir",
        type=argument_type(output_directory),
        metavar="DIR",
        help="where archives are downloaded and where a hand-downloaded archive is looked for "
        "(default: DATA_ROOT/downloads)",
    )
    fetch.set_defaults(func=run_fetch)


def _add_common_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data-root", type=argument_type(output_directory), required=True, metavar="DIR",
                        help="the data root")
    parser.add_argument(
        "--manifest",
        dest="manifests",
        action="extend",
        nargs="+",
        metavar="NAME",
        help="manifest name(s), e.g. cnndetection_test univfd_diffusion (default: all)",
    )


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
