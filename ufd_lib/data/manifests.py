"""The paper's datasets as checked data: load ``data_manifests/*.yaml`` and derive from them the
benchmark (the 19 test sets of UnivFD Tables 2/3, in table order), the training set and the
validation set.

Each manifest describes one released dataset: its download sources, the directory (``root``)
it occupies under a data root after extraction, and the image sets it provides. Every manifest
is validated against ``data_manifests/schema.json`` when loaded, so a bad edit fails loudly:
whatever is wrong with the file (unreadable, not UTF-8, not YAML, a duplicated key, an alias
of a list or mapping, a schema violation, a path that leaves the data root) raises
:class:`ManifestError` with one line naming the file and, where there is one, the field.

The manifests are looked up in ``$UFD_MANIFEST_DIR`` if set, else in ``data_manifests/`` next
to the ``ufd_lib`` package (the repository checkout).
"""
from __future__ import annotations

import json
import os
import re
import stat
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Sequence

import yaml

from ufd_lib.data.image_sets import ImageSetSpec
from ufd_lib.messages import escape_control, one_line

if TYPE_CHECKING:
    import pandas as pd

MANIFEST_DIR_ENV = "UFD_MANIFEST_DIR"
# The shipped manifests are under 20 kB; a file a thousand times larger is not one.
MAX_MANIFEST_BYTES = 1 << 20
# The repository's top-level data_manifests/, shipped inside the package (ufd_lib/data_manifests).
SHIPPED_MANIFEST_DIR = Path(str(resources.files("ufd_lib").joinpath("data_manifests")))
SCHEMA_PATH = SHIPPED_MANIFEST_DIR / "schema.json"


class ManifestError(ValueError):
    """A manifest file that is missing, unreadable or does not match the schema; the message
    is one line that starts with the file's path."""


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
    """The archive a manifest is fetched from; sources are tried in order.

    format: "zip" or "tar" as declared (extraction recognises the content; an archive from a
    source without a pinned checksum must be of this format). extracted_size_bytes: the total
    size of its members, the most extraction lets it expand to; None where unknown.
    """

    filename: str
    approx_size: str
    sources: tuple[Source, ...]
    format: str = "zip"
    extracted_size_bytes: int | None = None

    @property
    def approx_size_bytes(self) -> int | None:
        """The size ``approx_size`` starts with ("about 19 GB (...)" → 19e9 bytes, decimal
        units), or None when it starts with none ("unknown (...)")."""
        found = _LEADING_SIZE.match(self.approx_size)
        if found is None:
            return None
        return round(float(found.group(1)) * _SIZE_UNITS[found.group(2).upper()])


_LEADING_SIZE = re.compile(r"\s*(?:about\s+|~)?(\d+(?:\.\d+)?)\s*([kmgt]b)\b", re.IGNORECASE)
_SIZE_UNITS = {"KB": 1e3, "MB": 1e6, "GB": 1e9, "TB": 1e12}


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


def manifest_dir(directory: Path | None = None) -> Path:
    """``directory`` when given, else ``$UFD_MANIFEST_DIR``, else the manifests shipped with ufd."""
    return Path(directory or os.environ.get(MANIFEST_DIR_ENV) or SHIPPED_MANIFEST_DIR)


def list_manifests(directory: Path | None = None) -> list[str]:
    """Names of all manifests (file names without ``.yaml``), sorted.

    Raises ManifestError when the manifest directory is missing or holds no manifest: an empty
    benchmark, or a `ufd data verify` that checks nothing and passes, would hide the mistake.
    """
    from_env = directory is None and os.environ.get(MANIFEST_DIR_ENV)
    directory = manifest_dir(directory)
    where = f"{directory} (from ${MANIFEST_DIR_ENV})" if from_env else str(directory)
    if not directory.is_dir():
        raise ManifestError(escape_control(f"manifest directory {where} does not exist or is not a directory"))
    names = sorted(path.stem for path in directory.glob("*.yaml"))
    if not names:
        raise ManifestError(escape_control(f"manifest directory {where} holds no *.yaml manifest"))
    return names


def resolve_manifest_names(names: Sequence[str] | None, directory: Path | None = None) -> list[str]:
    """``names`` without repeats, or all manifests (of :func:`manifest_dir`) when None/empty;
    unknown names raise."""
    known = list_manifests(directory)
    if not names:
        return known
    unknown = [name for name in names if name not in known]
    if unknown:
        raise UnknownManifestError(
            f"unknown manifest {unknown[0]!r} (known: {', '.join(known)}; "
            f"looked in {str(manifest_dir(directory))!r})"
        )
    return list(dict.fromkeys(names))


def load_manifest(name: str, directory: Path | None = None) -> Manifest:
    """Load and schema-validate ``<manifest_dir(directory)>/<name>.yaml``."""
    resolve_manifest_names([name], directory)
    path = manifest_dir(directory) / f"{name}.yaml"
    return _load(path, _read_bytes(path))


def _read_bytes(path: Path) -> bytes:
    """A manifest file's bytes: a regular file of at most MAX_MANIFEST_BYTES."""
    try:
        info = path.stat()
        if not stat.S_ISREG(info.st_mode):  # a directory named x.yaml; a FIFO or /dev/zero would never end
            raise ManifestError(escape_control(f"{path}: not a regular file"))
        if info.st_size > MAX_MANIFEST_BYTES:
            raise ManifestError(escape_control(f"{path}: {info.st_size} bytes; "
                                               f"a manifest is at most {MAX_MANIFEST_BYTES}"))
        return path.read_bytes()
    except OSError as error:  # a dangling link, no permission
        raise ManifestError(escape_control(f"{path}: cannot be read: {error.strerror or error}")) from None


def load_checked_yaml(path: Path, definition: str) -> dict:
    """A YAML file read as strictly as a manifest (a regular file of bounded size, UTF-8, no
    repeated key, aliases of text only) and validated against the schema's
    ``$defs/<definition>``; raises ManifestError with one line naming the file and the field."""
    path = Path(path)
    raw = _read_yaml(path, _read_bytes(path))
    _check(path, raw, _definition_validator(definition))
    return raw


# Long enough for any schema message about one field; a whole repr'd section is cut.
_MAX_MESSAGE_CHARS = 300


class _ManifestLoader(yaml.SafeLoader):
    """``yaml.safe_load`` (plain data only, no Python tags), stricter in two ways a manifest
    never needs: a repeated key is an error rather than a silent overwrite, and an alias may
    repeat only a scalar (``count_note: *wang_counts``), never a list or mapping, so a few lines
    cannot expand into billions of nodes ("billion laughs")."""

    def compose_node(self, parent, index):
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            node = self.anchors.get(event.anchor)
            if node is not None and not isinstance(node, yaml.ScalarNode):
                raise yaml.composer.ComposerError(
                    None, None, f"alias *{event.anchor} repeats a list or mapping; only text may be repeated",
                    event.start_mark,
                )
        return super().compose_node(parent, index)

    def construct_mapping(self, node, deep=False):
        if isinstance(node, yaml.MappingNode):
            seen = set()
            for key_node, _ in node.value:
                if isinstance(key_node, yaml.ScalarNode):
                    key = self.construct_object(key_node)
                    if key in seen:
                        raise yaml.constructor.ConstructorError(
                            None, None, f"duplicate key {key!r}", key_node.start_mark
                        )
                    seen.add(key)
        return super().construct_mapping(node, deep=deep)


def _read_yaml(path: Path, content: bytes):
    try:
        text = content.decode("utf-8")
    except UnicodeDecodeError as error:
        raise ManifestError(
            escape_control(f"{path}: not UTF-8 text (byte 0x{content[error.start]:02x} at offset {error.start})")
        ) from None
    try:
        return yaml.load(text, Loader=_ManifestLoader)
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = ": ".join(part for part in (error.context, error.problem) if part) or str(error)
        raise ManifestError(escape_control(f"{path}: not valid YAML{where}: "
                                           f"{one_line(problem, _MAX_MESSAGE_CHARS)}")) from None
    except yaml.YAMLError as error:
        raise ManifestError(escape_control(f"{path}: not valid YAML: {one_line(error, _MAX_MESSAGE_CHARS)}")) from None
    except RecursionError:
        raise ManifestError(escape_control(f"{path}: not valid YAML: nested too deeply")) from None
    except Exception as error:
        # PyYAML's safe constructors raise plain ValueError, KeyError, AttributeError... for a
        # malformed scalar (`2001-13-45`, `!!bool maybe`, an int of 5,000 digits); any failure
        # here is the file's.
        raise ManifestError(
            escape_control(f"{path}: not valid YAML: a value cannot be read "
                           f"({type(error).__name__}: {one_line(error, _MAX_MESSAGE_CHARS)})")
        ) from None


@lru_cache(maxsize=None)
def _validator():
    import jsonschema  # imported on first use: it takes about a second, and `ufd` imports this module

    return jsonschema.Draft202012Validator(json.loads(SCHEMA_PATH.read_text(encoding="utf-8")))


@lru_cache(maxsize=None)
def _definition_validator(definition: str):
    import jsonschema

    schema = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
    return jsonschema.Draft202012Validator({"$ref": f"#/$defs/{definition}", "$defs": schema["$defs"]})


def _check(path: Path, raw, validator) -> None:
    """Raise ManifestError naming the file and field of the most relevant schema violation."""
    from jsonschema.exceptions import best_match

    error = best_match(validator.iter_errors(raw))
    if error is not None:
        where = "/".join(str(part) for part in error.absolute_path) or "(top level)"
        described = error.validator == "pattern" and "description" in error.schema
        hint = f" ({error.schema['description']})" if described else ""
        raise ManifestError(escape_control(f"{path}: {where}: {one_line(error.message + hint, _MAX_MESSAGE_CHARS)}"))


@lru_cache(maxsize=64)
def _load(path: Path, content: bytes) -> Manifest:
    """Keyed on the file's bytes (not its mtime, which can miss an edit within one clock tick)."""
    raw = _read_yaml(path, content)
    _check(path, raw, _validator())
    if raw["name"] != path.stem:
        raise ManifestError(escape_control(f"{path}: name: {raw['name']!r} differs from the file name"))
    # Beyond the schema's patterns: the dataset must lie below the data root, and the archive
    # must be a file in the download directory, not the directory or its parent.
    if PurePosixPath(raw["root"]) == PurePosixPath("."):
        raise ManifestError(escape_control(f"{path}: root: {raw['root']!r} is the data root itself; "
                                           "name a folder below it"))
    if set(raw["archive"]["filename"]) == {"."}:
        raise ManifestError(escape_control(f"{path}: archive/filename: {raw['archive']['filename']!r} "
                                           "is not a file name"))
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
            format=archive["format"],
            extracted_size_bytes=_count(archive.get("extracted_size_bytes")),
            sources=tuple(
                Source(
                    kind=source["kind"],
                    url=source.get("url"),
                    file_id=source.get("file_id"),
                    size_bytes=_count(source["size_bytes"]),
                    sha256=source["sha256"],
                )
                for source in archive["sources"]
            ),
        ),
        manual_sources=tuple(
            ManualSource(url=item["url"], note=one_line(item["note"]))
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
                expected_real=_count(entry["images_per_class"]["real"]),
                expected_fake=_count(entry["images_per_class"]["fake"]),
                expected_per_category=_count(entry.get("images_per_category_per_class")),
            )
            for entry in raw["sets"]
        ),
        ignored_dirs=tuple(item["path"] for item in raw.get("ignored_dirs", [])),
    )


def _count(value: int | float | None) -> int | None:
    """A count as an int: JSON Schema's "integer" also admits 3.0."""
    return None if value is None else int(value)


def describe_manifests() -> str:
    """One line per manifest: its name, its archive's size (exact where a source declares it,
    else the manifest's approximate words) and its image sets; or one line saying why they cannot
    be listed."""
    try:
        manifests = [load_manifest(name) for name in list_manifests()]
    except ManifestError as error:
        return f"(the manifests cannot be listed: {error})"
    lines = ["manifests (name: archive size [image sets]):"]
    for manifest in manifests:
        size = next((s.size_bytes for s in manifest.archive.sources if s.size_bytes is not None), None)
        shown = f"{size} bytes" if size is not None else manifest.archive.approx_size
        lines.append(f"  {manifest.name}: {shown} [{', '.join(entry.key for entry in manifest.sets)}]")
    return "\n".join(lines)


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
