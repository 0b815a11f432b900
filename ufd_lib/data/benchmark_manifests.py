"""Newer benchmarks (GenImage, Synthbuster, SPAI, Chameleon, WildRF, ...) as checked metadata:
``data_manifests/benchmarks/*.yaml``, each validated against ``$defs/benchmark_manifest`` of
``data_manifests/schema.json`` when loaded.

Unlike the paper's manifests these describe data that ufd never downloads: where the owner
publishes it, its licence, the layout adapter that reads a user's copy where it lies
(:mod:`ufd_lib.data.adapters`), each set's generator and its release date, expected counts,
known defects and whatever checksums the owner publishes. A set is evaluated as
``--test KEY=ADAPTER:PATH[:PATH]`` with the user's own paths.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from ufd_lib.data.manifests import ManifestError, load_checked_yaml, manifest_dir

BENCHMARK_FOLDER = "benchmarks"
# A word of a set's adapter_arguments that stands for a user's folder: capitals, digits and
# underscores with at least one underscore (REAL_RAISE, GENERATOR_DIR), or CSV.
_PLACEHOLDER = re.compile(r"[A-Z0-9]*_[A-Z0-9_]*|CSV")


@dataclass(frozen=True)
class BenchmarkSet:
    """One test set of a newer benchmark. release_date: "YYYY-MM" or "YYYY-MM-DD", None where
    unknown; expected counts None where unknown; adapter_arguments: what follows ``ADAPTER:``,
    relative to the benchmark's root (upper-case words stand for the user's folders)."""

    benchmark: str
    key: str
    generator: str
    generator_family: str
    release_date: str | None
    real_source: str
    adapter: str | None
    adapter_arguments: str
    expected_real: int | None
    expected_fake: int | None
    in_the_wild: bool


@dataclass(frozen=True)
class BenchmarkManifest:
    name: str
    title: str
    license_name: str
    redistribution: str
    adapter: str | None
    adapter_example: str
    in_the_wild: bool
    known_defects: tuple[str, ...]
    upstream_checksums: tuple[tuple[str, str, str], ...]
    sets: tuple[BenchmarkSet, ...]


def benchmark_manifest_dir() -> Path:
    return manifest_dir() / BENCHMARK_FOLDER


def list_benchmark_manifests() -> list[str]:
    """Names of the newer benchmarks' manifests, sorted (empty when the folder is absent)."""
    return sorted(path.stem for path in benchmark_manifest_dir().glob("*.yaml"))


def load_benchmark_manifest(name: str) -> BenchmarkManifest:
    """Load and schema-check ``benchmarks/<name>.yaml``; raises ManifestError (one line)."""
    if name not in list_benchmark_manifests():
        raise ManifestError(f"unknown benchmark manifest {name!r} (known: {', '.join(list_benchmark_manifests())})")
    path = benchmark_manifest_dir() / f"{name}.yaml"
    raw = load_checked_yaml(path, "benchmark_manifest")
    if raw["name"] != name:
        raise ManifestError(f"{path}: name: {raw['name']!r} differs from the file name")
    adapter = raw["adapter"]["name"]
    return BenchmarkManifest(
        name=name,
        title=raw["title"],
        license_name=raw["license"]["name"],
        redistribution=raw["redistribution"],
        adapter=adapter,
        adapter_example=raw["adapter"]["example"],
        in_the_wild=raw["in_the_wild"],
        known_defects=tuple(item["text"] for item in raw["known_defects"]),
        upstream_checksums=tuple((c["file"], c["algorithm"], c["value"]) for c in raw["upstream_checksums"]),
        sets=tuple(
            BenchmarkSet(
                benchmark=name, key=entry["key"], generator=entry["generator"],
                generator_family=entry["generator_family"], release_date=entry["release_date"],
                real_source=entry["real_source"], adapter=adapter, adapter_arguments=entry["adapter_arguments"],
                expected_real=entry["images_per_class"]["real"], expected_fake=entry["images_per_class"]["fake"],
                in_the_wild=raw["in_the_wild"],
            )
            for entry in raw["sets"]
        ),
    )


def benchmark_sets() -> list[BenchmarkSet]:
    """Every set of every newer benchmark, by benchmark then in manifest order."""
    return [entry for name in list_benchmark_manifests() for entry in load_benchmark_manifest(name).sets]


def names_own_folders(arguments: str) -> bool:
    """Whether a set's adapter_arguments hold a placeholder for a user's folder (REAL_RAISE, CSV)."""
    return any(_PLACEHOLDER.fullmatch(word) for part in arguments.split(":") for word in part.split("/"))


def set_spec_text(entry: BenchmarkSet, data_root: Path) -> str | None:
    """``KEY=ADAPTER:PATHS`` of a set in the owner's layout under ``data_root/<benchmark>``, or None
    when its arguments name the user's own folders or the benchmark has no adapter."""
    if entry.adapter is None or names_own_folders(entry.adapter_arguments):
        return None
    paths = ":".join(str(Path(data_root) / entry.benchmark / part) for part in entry.adapter_arguments.split(":"))
    return f"{entry.key}={entry.adapter}:{paths}"
