"""The paper's datasets as checked data: load ``data_manifests/*.yaml`` and derive from them the
benchmark (the 19 test sets of UnivFD Tables 2/3, in table order), the training set and the
validation set.

Each manifest describes one released dataset: its download sources, the directory (``root``)
it occupies under a data root after extraction, and the image sets it provides. Every manifest
is validated against ``data_manifests/schema.json`` when loaded, so a bad edit fails loudly.

The manifests are looked up in ``$UFD_MANIFEST_DIR`` if set, else in ``data_manifests/`` next
to the ``ufd_lib`` package (the repository checkout).
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Sequence

import yaml

from ufd_lib.image_sets import ImageSetSpec

if TYPE_CHECKING:
    import pandas as pd

MANIFEST_DIR_ENV = "UFD_MANIFEST_DIR"
_REPO_MANIFEST_DIR = Path(__file__).resolve().parent.parent / "data_manifests"
SCHEMA_PATH = _REPO_MANIFEST_DIR / "schema.json"


class ManifestError(ValueError):
    """A manifest file that is missing, unreadable or does not match the schema."""


class UnknownManifestError(ManifestError):
    """A manifest name that names no file in the manifest directory."""


@dataclass(frozen=True)
class Source:
    """One place an archive can be downloaded from.

    kind: "http" (direct URL, resumable) or "gdrive" (Google Drive file id, via gdown).
    size_bytes, sha256: the file's size and checksum from this source; None where unknown.
    """

    kind: str
    url: str | None
    file_id: str | None
    size_bytes: int | None
    sha256: str | None

    def describe(self) -> str:
        if self.kind == "gdrive":
            return f"Google Drive file {self.file_id} (https://drive.google.com/file/d/{self.file_id}/view)"
        return str(self.url)


@dataclass(frozen=True)
class Archive:
    """The archive a manifest is fetched from (zip or tar, recognised by content); sources are
    tried in order."""

    filename: str
    approx_size: str
    sources: tuple[Source, ...]


@dataclass(frozen=True)
class ManualSource:
    """A copy that only a person can fetch (a folder link, or a format fetch does not extract)."""

    url: str
    note: str


@dataclass(frozen=True)
class ImageSetEntry:
    """One image set of a manifest.

    real_dir / fake_dir are relative to the manifest root and hold ``0_real`` / ``1_fake``,
    below each category when ``categories`` is not None. Expected counts are None where the
    manifest says they are unknown.
    """

    manifest: str
    root: str
    key: str
    paper_name: str
    role: str
    paper_table_column: int | None
    generator_family: str
    real_source: str
    real_dir: str
    fake_dir: str
    categories: tuple[str, ...] | None
    expected_real: int | None
    expected_fake: int | None
    expected_per_category: int | None

    def real_path(self, data_root: Path) -> Path:
        return Path(data_root) / self.root / self.real_dir

    def fake_path(self, data_root: Path) -> Path:
        return Path(data_root) / self.root / self.fake_dir

    def image_set(self, data_root: Path, name: str | None = None) -> ImageSetSpec:
        return ImageSetSpec(
            name=name or self.paper_name,
            real_root=self.real_path(data_root),
            fake_root=self.fake_path(data_root),
        )


@dataclass(frozen=True)
class Manifest:
    name: str
    root: str
    archive: Archive
    manual_sources: tuple[ManualSource, ...]
    sets: tuple[ImageSetEntry, ...]
    ignored_dirs: tuple[str, ...]

    def top_level_names(self) -> set[str]:
        """Names expected directly under ``root``: what fetch looks for to strip wrapper folders."""
        names = set(self.ignored_dirs)
        for entry in self.sets:
            for rel in (entry.real_dir, entry.fake_dir):
                parts = PurePosixPath(rel).parts
                if parts:
                    names.add(parts[0])
                elif entry.categories:
                    names.update(entry.categories)
        return names


def manifest_dir() -> Path:
    return Path(os.environ.get(MANIFEST_DIR_ENV) or _REPO_MANIFEST_DIR)


def list_manifests() -> list[str]:
    """Names of all manifests (file names without ``.yaml``), sorted."""
    return sorted(path.stem for path in manifest_dir().glob("*.yaml"))


def resolve_manifest_names(names: Sequence[str] | None) -> list[str]:
    """``names`` without repeats, or all manifests when None/empty; unknown names raise."""
    known = list_manifests()
    if not names:
        return known
    unknown = [name for name in names if name not in known]
    if unknown:
        raise UnknownManifestError(
            f"unknown manifest {unknown[0]!r} (known: {', '.join(known) or 'none'}; "
            f"looked in {manifest_dir()})"
        )
    return list(dict.fromkeys(names))


def load_manifest(name: str) -> Manifest:
    """Load and schema-validate ``<manifest_dir>/<name>.yaml``."""
    resolve_manifest_names([name])
    path = manifest_dir() / f"{name}.yaml"
    return _load(path, path.stat().st_mtime_ns)


@lru_cache(maxsize=None)
def _schema() -> dict:
    return json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))


@lru_cache(maxsize=64)
def _load(path: Path, _mtime_ns: int) -> Manifest:
    import jsonschema  # imported on first use: it takes about a second, and `ufd` imports this module

    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as error:
        raise ManifestError(f"{path}: not valid YAML: {error}") from error
    errors = sorted(jsonschema.Draft202012Validator(_schema()).iter_errors(raw), key=str)
    if errors:
        where = "/".join(str(part) for part in errors[0].absolute_path) or "(top level)"
        raise ManifestError(f"{path}: {where}: {errors[0].message}")
    if raw["name"] != path.stem:
        raise ManifestError(f"{path}: name {raw['name']!r} differs from the file name")
    return _parse(raw)


def _parse(raw: dict) -> Manifest:
    name, root = raw["name"], raw["root"]
    archive = raw["archive"]
    return Manifest(
        name=name,
        root=root,
        archive=Archive(
            filename=archive["filename"],
            approx_size=archive["approx_size"],
            sources=tuple(
                Source(
                    kind=source["kind"],
                    url=source.get("url"),
                    file_id=source.get("file_id"),
                    size_bytes=source["size_bytes"],
                    sha256=source["sha256"],
                )
                for source in archive["sources"]
            ),
        ),
        manual_sources=tuple(
            ManualSource(url=item["url"], note=" ".join(item["note"].split()))
            for item in raw.get("manual_sources", [])
        ),
        sets=tuple(
            ImageSetEntry(
                manifest=name,
                root=root,
                key=entry["key"],
                paper_name=entry["paper_name"],
                role=entry["role"],
                paper_table_column=entry.get("paper_table_column"),
                generator_family=entry["generator_family"],
                real_source=entry["real_source"],
                real_dir=entry["real_dir"],
                fake_dir=entry["fake_dir"],
                categories=tuple(entry["categories"]) if entry["categories"] else None,
                expected_real=entry["images_per_class"]["real"],
                expected_fake=entry["images_per_class"]["fake"],
                expected_per_category=entry.get("images_per_category_per_class"),
            )
            for entry in raw["sets"]
        ),
        ignored_dirs=tuple(item["path"] for item in raw.get("ignored_dirs", [])),
    )


def benchmark_entries() -> list[ImageSetEntry]:
    """All sets with role "test", in the order of the paper's Tables 2/3."""
    entries = [
        entry
        for name in list_manifests()
        for entry in load_manifest(name).sets
        if entry.role == "test"
    ]
    return sorted(entries, key=lambda entry: entry.paper_table_column)


def paper_benchmark(data_root: Path) -> list[ImageSetSpec]:
    """The paper's test sets (19 with the shipped manifests) in table order, named as printed
    in the paper ("ProGAN", ..., "DALL-E"), with their real and fake roots under ``data_root``."""
    return [entry.image_set(data_root) for entry in benchmark_entries()]


def test_set_families() -> dict[str, str]:
    """Paper name of each benchmark test set -> its generator family ("GAN", "face swap",
    "low-level vision", "perceptual loss", "diffusion", "autoregressive")."""
    return {entry.paper_name: entry.generator_family for entry in benchmark_entries()}


def benchmark_metadata() -> pd.DataFrame:
    """One row per benchmark test set, in table order.

    Columns: paper_table_column, paper_name, key, generator_family, real_source, manifest,
    real_dir, fake_dir (the last two relative to the data root, POSIX style).
    """
    import pandas as pd  # only notebooks need this table; keep `ufd data` start-up fast

    return pd.DataFrame(
        [
            {
                "paper_table_column": entry.paper_table_column,
                "paper_name": entry.paper_name,
                "key": entry.key,
                "generator_family": entry.generator_family,
                "real_source": entry.real_source,
                "manifest": entry.manifest,
                "real_dir": str(PurePosixPath(entry.root, entry.real_dir)),
                "fake_dir": str(PurePosixPath(entry.root, entry.fake_dir)),
            }
            for entry in benchmark_entries()
        ]
    )


def _entry(manifest: str, role: str, key: str) -> ImageSetEntry:
    for entry in load_manifest(manifest).sets:
        if entry.role == role and entry.key == key:
            return entry
    raise ManifestError(f"manifest {manifest!r} has no {role} set {key!r}")


def paper_training_set(data_root: Path) -> ImageSetSpec:
    """The ProGAN training set (720k images, 20 LSUN categories) under ``data_root/train/progan``."""
    return _entry("cnndetection_train", "train", "progan").image_set(data_root, "ProGAN train")


def paper_validation_set(data_root: Path, source: str = "released") -> ImageSetSpec:
    """The validation set used for early stopping.

    source="released" (default): ``test/progan``, as UnivFD's released training code does
    (data/datasets.py, data_label "val"). source="cnndetection": CNNDetection's own held-out
    validation set under ``val/progan``.
    """
    if source == "released":
        entry = _entry("cnndetection_test", "test", "progan")
    elif source == "cnndetection":
        entry = _entry("cnndetection_val", "val", "progan")
    else:
        raise ValueError(f"source must be 'released' or 'cnndetection', not {source!r}")
    return entry.image_set(data_root, "ProGAN val")
