"""Per-file lists that make two copies of a dataset comparable: the sorted relative paths,
sizes and SHA-256 of the images a copy holds, as a CSV ``path,size_bytes,sha256`` (POSIX paths
relative to the data root), and the comparison of a copy against such a list.

How each file is hashed is the caller's: by default every image is read
(:func:`ufd_lib.hashing.file_sha256`); the command line passes the feature cache's file-identity
memo (:func:`ufd_lib.features.extraction.digest_memo.memo_sha256`, a stage the data stage may
not import), so that a second build of an unchanged copy reads no image bytes.
"""
from __future__ import annotations

import csv
import hashlib
import io
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from ufd_lib.atomic_files import atomic_write_bytes
from ufd_lib.data.benchmark_manifests import list_benchmark_manifests
from ufd_lib.data.discovery import collect_images, image_files_under
from ufd_lib.data.image_sets import ImageSetSpec
from ufd_lib.data.manifests import load_manifest
from ufd_lib.hashing import file_sha256

HEADER = ("path", "size_bytes", "sha256")


class FileListError(ValueError):
    """A per-file list that cannot be read; the message is one line naming the file."""


def covered_files(data_root: Path, manifest_name: str | None = None) -> list[Path]:
    """The images under ``data_root`` a list covers: all of them (no manifest, or a newer
    benchmark's manifest, whose copy is the data root itself), or those below the folders of the
    named paper manifest's sets (``root/real_dir``, ``root/fake_dir``), sorted. Raises
    ManifestError for a name that is neither."""
    data_root = Path(data_root)
    if manifest_name is None or manifest_name in list_benchmark_manifests():
        return image_files_under(data_root)
    manifest = load_manifest(manifest_name)
    folders = {data_root / manifest.root / rel for entry in manifest.sets for rel in (entry.real_dir, entry.fake_dir)}
    return sorted({path for folder in folders if folder.is_dir() for path in image_files_under(folder)}, key=str)


def _read_each(paths: Sequence[Path]) -> list[str]:
    return [file_sha256(path) for path in paths]


def build_file_list(data_root: Path, files: list[Path],
                    sha256s: Callable[[Sequence[Path]], list[str]] = _read_each) -> dict[str, tuple[int, str]]:
    """relative POSIX path -> (size in bytes, hex SHA-256) of each file; ``sha256s`` maps the
    files to their hex digests (default: read each)."""
    digests = sha256s(files)
    return {PurePosixPath(Path(path).relative_to(data_root)).as_posix(): (Path(path).stat().st_size, digest)
            for path, digest in zip(files, digests)}


def file_list_bytes(entries: dict[str, tuple[int, str]]) -> bytes:
    """The list as CSV bytes (UTF-8, header, rows sorted by path); its SHA-256 names the list."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(HEADER)
    writer.writerows((path, size, digest) for path, (size, digest) in sorted(entries.items()))
    return buffer.getvalue().encode("utf-8")


def write_file_list(out: Path, entries: dict[str, tuple[int, str]]) -> str:
    """Write the CSV atomically; returns the SHA-256 of the file written, which names the list
    (``sha256sum`` reproduces it)."""
    data = file_list_bytes(entries)
    atomic_write_bytes(Path(out), data)
    return hashlib.sha256(data).hexdigest()


def set_file_list(spec: ImageSetSpec, sha256s: Callable[[Sequence[Path]], list[str]] = _read_each
                  ) -> dict[str, tuple[int, str]]:
    """The per-file list of the images a set reads (by its layout or adapter), paths relative to
    the deepest folder holding all of them, so two copies of the set give the same list."""
    paths = [Path(image.path) for image in collect_images(spec)]
    if not paths:
        return {}
    root = Path(os.path.commonpath([str(path.parent) for path in paths]))
    return build_file_list(root, paths, sha256s)


def read_file_list(path: Path) -> dict[str, tuple[int, str]]:
    """The entries of a list written by :func:`write_file_list`; raises FileListError."""
    try:
        rows = list(csv.reader(Path(path).read_text(encoding="utf-8").splitlines()))
    except (OSError, UnicodeDecodeError) as error:
        raise FileListError(f"{path}: cannot be read: {error}") from None
    if not rows or tuple(rows[0]) != HEADER:
        raise FileListError(f"{path}: not a per-file list (header {','.join(HEADER)} expected)")
    try:
        return {row[0]: (int(row[1]), row[2]) for row in rows[1:]}
    except (IndexError, ValueError):
        raise FileListError(f"{path}: a row is not path,size_bytes,sha256") from None


@dataclass
class FileListComparison:
    """A copy against a per-file list: paths (relative, POSIX) missing from the copy, extra in
    it, and present in both with another size or SHA-256."""

    list_path: Path
    list_sha256: str
    missing: list[str] = field(default_factory=list)
    extra: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    matched: int = 0

    @property
    def ok(self) -> bool:
        return not (self.missing or self.extra or self.changed)

    def summary(self, max_listed: int = 10) -> str:
        lines = [f"Against {self.list_path} (sha256 {self.list_sha256}): {self.matched} files match, "
                 f"{len(self.missing)} missing, {len(self.extra)} extra, {len(self.changed)} changed"]
        for title, items in (("missing", self.missing), ("extra", self.extra), ("changed", self.changed)):
            lines += [f"  {title}: {item}" for item in items[:max_listed]]
            if len(items) > max_listed:
                lines.append(f"  {title}: ... and {len(items) - max_listed} more")
        lines.append("Result: the copy matches the list" if self.ok else "Result: THE COPY DIFFERS from the list")
        return "\n".join(lines)


def compare_with_list(data_root: Path, list_path: Path, manifest_name: str | None = None,
                      sha256s: Callable[[Sequence[Path]], list[str]] = _read_each) -> FileListComparison:
    """Compare the images of ``data_root`` (as :func:`covered_files` chooses them) with a list."""
    expected = read_file_list(list_path)
    found = build_file_list(Path(data_root), covered_files(data_root, manifest_name), sha256s)
    comparison = FileListComparison(Path(list_path), file_sha256(list_path))
    comparison.missing = sorted(set(expected) - set(found))
    comparison.extra = sorted(set(found) - set(expected))
    both = sorted(set(expected) & set(found))
    comparison.changed = [path for path in both if expected[path] != found[path]]
    comparison.matched = len(both) - len(comparison.changed)
    return comparison
