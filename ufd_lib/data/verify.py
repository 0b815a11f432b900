"""Check a data root against the manifests: layout and image counts per set and class, then
(optionally) the content of every image: unreadable files, duplicated content, and a
fingerprint that lets two labs prove they evaluated the same images.

A set is "OK" when every class folder the manifest names exists, holds images, matches the
expected counts where the manifest knows them, and all its images open with PIL. Extra files
(outside the sets' class folders, or non-images inside them) and duplicated content are
reported but do not by themselves make the data mismatch: they do not change which images a
loader reads, and the releases are not known to be free of them.
"""
from __future__ import annotations

import csv
import hashlib
import io
import os
import stat
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Iterable, Sequence

from PIL import Image, UnidentifiedImageError

from ufd_lib import config
from ufd_lib.atomic_files import atomic_write_bytes
from ufd_lib.data.discovery import image_files_under
from ufd_lib.data.manifests import ImageSetEntry, Manifest, load_manifest, resolve_manifest_names
from ufd_lib.hashing import file_sha256

CLASS_FOLDERS = {"real": "0_real", "fake": "1_fake"}

OK, MISSING, COUNT_MISMATCH, UNREADABLE = "OK", "missing", "count mismatch", "unreadable files"


@dataclass
class SetCheck:
    """The verdict on one image set: status is OK, missing, count mismatch or unreadable files."""

    manifest: str
    key: str
    paper_name: str
    role: str
    status: str
    n_real: int
    n_fake: int
    expected_real: int | None
    expected_fake: int | None
    problems: list[str] = field(default_factory=list)
    next_step: str | None = None


@dataclass
class VerifyReport:
    """Result of :func:`verify_data`. Paths are relative to ``data_root``."""

    data_root: Path
    sets: list[SetCheck]
    extra: list[Path]
    unreadable: list[Path]
    duplicates: list[tuple[Path, ...]]
    content_checked: bool
    not_regular: list[tuple[Path, str]] = field(default_factory=list)
    fingerprint_path: Path | None = None
    fingerprint_digest: str | None = None

    @property
    def ok(self) -> bool:
        """Whether every checked set matches its manifest."""
        return all(check.status == OK for check in self.sets)

    def summary(self, max_listed: int = 10) -> str:
        if not self.data_root.is_dir():
            return (f"Data root {self.data_root} does not exist (or is not a directory); "
                    f"`ufd data fetch --data-root {self.data_root}` downloads the datasets into it")
        lines = [f"Data root: {self.data_root}", ""]
        lines.append(f"{'manifest':<20} {'set':<14} {'role':<5} {'status':<17} {'real':>15} {'fake':>15}")
        for check in self.sets:
            lines.append(
                f"{check.manifest:<20} {check.paper_name:<14} {check.role:<5} {check.status:<17} "
                f"{_count_text(check.n_real, check.expected_real):>15} "
                f"{_count_text(check.n_fake, check.expected_fake):>15}"
            )
            lines.extend(f"    - {problem}" for problem in check.problems[:max_listed])
            if len(check.problems) > max_listed:
                lines.append(f"    - ... and {len(check.problems) - max_listed} more")
            if check.next_step:
                lines.append(f"    next: {check.next_step}")
        listings = [
            ("Extra files (not part of any set; reported only)", [str(p) for p in self.extra]),
            ("Unreadable images", [str(p) for p in self.unreadable]),
            ("Image names that are not regular files (never read; reported only)",
             [f"{p} ({kind})" for p, kind in self.not_regular]),
            ("Duplicated content (same SHA-256; reported only)", [", ".join(map(str, g)) for g in self.duplicates]),
        ]
        for title, items in listings:
            if items:
                lines += ["", f"{title}: {len(items)}"]
                lines += [f"  {item}" for item in items[:max_listed]]
                if len(items) > max_listed:
                    lines.append(f"  ... and {len(items) - max_listed} more")
        if not self.content_checked:
            lines += ["", "Image content was not checked (layout and counts only)."]
        if self.fingerprint_path is not None:
            lines += ["", f"Fingerprint: {self.fingerprint_path} (sha256 {self.fingerprint_digest})"]
        lines += ["", "Result: data matches the manifests" if self.ok else "Result: DATA DOES NOT MATCH the manifests"]
        return "\n".join(lines)


def _count_text(n: int, expected: int | None) -> str:
    return f"{n}/{expected}" if expected is not None else f"{n}/?"


def verify_data(
    data_root: Path,
    manifest_names: Sequence[str] | None = None,
    fingerprint_path: Path | None = None,
    *,
    check_content: bool = True,
    workers: int = 8,
    manifest_directory: Path | None = None,
) -> VerifyReport:
    """Check ``data_root`` against the named manifests (all when None).

    check_content: also read every image once: SHA-256 (for duplicates and the fingerprint)
    and PIL ``Image.verify()`` (for unreadable files). With False only layout and counts are
    checked, which is fast. fingerprint_path: write a CSV ``path,size_bytes,sha256`` of every
    image of the checked sets, sorted by path (relative to data_root, POSIX style); its overall
    digest is the SHA-256 of the CSV file itself (``sha256sum`` reproduces it). Requires
    check_content. workers: threads that read images. manifest_directory: where the manifests are
    read (default :func:`~ufd_lib.data.manifests.manifest_dir`).
    """
    manifests = [load_manifest(name, manifest_directory)
                 for name in resolve_manifest_names(manifest_names, manifest_directory)]
    return verify_manifests(data_root, manifests, fingerprint_path, check_content=check_content, workers=workers)


def verify_manifests(data_root: Path, manifests: Sequence[Manifest], fingerprint_path: Path | None = None, *,
                     check_content: bool = True, workers: int = 8) -> VerifyReport:
    """Check ``data_root`` against loaded manifests; arguments as in :func:`verify_data`."""
    if fingerprint_path is not None and not check_content:
        raise ValueError("a fingerprint needs check_content=True")
    data_root = Path(data_root)
    checks: list[SetCheck] = []
    set_images: list[list[Path]] = []
    extra: list[Path] = []
    not_regular: dict[Path, str] = {}
    for manifest in manifests:
        claimed: set[Path] = set()
        for entry in manifest.sets:
            check, images = _check_layout(data_root, entry)
            checks.append(check)
            set_images.append(images)
            claimed.update(images)
        for path in _extra_files(data_root, manifest, claimed):
            kind = _not_regular(path) if config.is_image_name(path.name) else None
            if kind:
                not_regular[path.relative_to(data_root)] = kind
            else:
                extra.append(path)

    report = VerifyReport(
        data_root=data_root,
        sets=checks,
        extra=sorted(p.relative_to(data_root) for p in extra),
        unreadable=[],
        duplicates=[],
        content_checked=check_content,
        not_regular=sorted(not_regular.items()),
    )
    if check_content:
        all_images = sorted({p for images in set_images for p in images})
        with ThreadPoolExecutor(max_workers=workers) as pool:
            inspected = dict(zip(all_images, pool.map(_inspect, all_images)))
        _add_content_findings(report, set_images, inspected)
        if fingerprint_path is not None:
            report.fingerprint_path = Path(fingerprint_path)
            report.fingerprint_digest = _write_fingerprint(report.fingerprint_path, data_root, inspected)
    for check in report.sets:
        check.next_step = _next_step(check, data_root, manifests)
    return report


def _class_folders(data_root: Path, entry: ImageSetEntry) -> Iterable[tuple[str, Path]]:
    for label, folder in CLASS_FOLDERS.items():
        base = entry.real_path(data_root) if label == "real" else entry.fake_path(data_root)
        for category in entry.categories or (None,):
            yield label, (base / category / folder if category else base / folder)


def _check_layout(data_root: Path, entry: ImageSetEntry) -> tuple[SetCheck, list[Path]]:
    problems: list[str] = []
    counts = {"real": 0, "fake": 0}
    images: list[Path] = []
    missing = mismatch = False
    for label, folder in _class_folders(data_root, entry):
        rel = folder.relative_to(data_root)
        if not folder.is_dir():
            problems.append(f"missing folder {rel}")
            missing = True
            continue
        found = image_files_under(folder)
        images.extend(found)
        counts[label] += len(found)
        if not found:
            problems.append(f"no images in {rel}")
            missing = True
        elif entry.categories and entry.expected_per_category is not None and len(found) != entry.expected_per_category:
            problems.append(f"{rel}: {len(found)} images, expected {entry.expected_per_category}")
            mismatch = True
    for label, expected in (("real", entry.expected_real), ("fake", entry.expected_fake)):
        if not missing and expected is not None and counts[label] != expected:
            problems.append(f"{counts[label]} {label} images in total, expected {expected}")
            mismatch = True
    check = SetCheck(
        manifest=entry.manifest,
        key=entry.key,
        paper_name=entry.paper_name,
        role=entry.role,
        status=MISSING if missing else COUNT_MISMATCH if mismatch else OK,
        n_real=counts["real"],
        n_fake=counts["fake"],
        expected_real=entry.expected_real,
        expected_fake=entry.expected_fake,
        problems=problems,
    )
    return check, images


def _extra_files(data_root: Path, manifest: Manifest, claimed: set[Path]) -> list[Path]:
    root = data_root / manifest.root
    ignored = {root / rel for rel in manifest.ignored_dirs}
    extra = []
    for top, dirs, names in os.walk(root):
        dirs[:] = [d for d in dirs if Path(top, d) not in ignored]
        extra.extend(p for p in (Path(top, name) for name in names) if p not in claimed)
    return extra


def _not_regular(path: Path) -> str | None:
    """What a non-regular entry is ("dangling symlink", "FIFO", ...), or None for a regular file
    (or a link to one). Never opens the entry, so a FIFO cannot block."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return "dangling symlink" if os.path.islink(path) else "vanished"
    except OSError as error:
        return f"cannot be examined: {error.strerror or error}"
    if stat.S_ISREG(mode) or stat.S_ISDIR(mode):
        return None
    return "FIFO" if stat.S_ISFIFO(mode) else "socket" if stat.S_ISSOCK(mode) else "device or special file"


def _inspect(path: Path) -> tuple[str, int, str | None]:
    """(sha256 hex, size in bytes, error text or None) of one image file (a regular file)."""
    try:
        digest, size = file_sha256(path), path.stat().st_size
    except OSError as error:  # removed or made unreadable since it was listed
        return "", 0, f"cannot be read: {error.strerror or error}"
    try:
        with Image.open(path) as image:
            image.verify()
        error = None
    except UnidentifiedImageError:
        error = "not a recognised image format"
    except Exception as exc:  # PIL raises many types for damaged files; all mean "unreadable"
        error = f"{type(exc).__name__}: {exc}"
    return digest, size, error


def _add_content_findings(
    report: VerifyReport,
    set_images: list[list[Path]],
    inspected: dict[Path, tuple[str, int, str | None]],
) -> None:
    data_root = report.data_root
    bad = {p for p, (_, _, error) in inspected.items() if error}
    report.unreadable = sorted(p.relative_to(data_root) for p in bad)
    for check, images in zip(report.sets, set_images):
        unreadable = [p for p in images if p in bad]
        check.problems.extend(
            f"unreadable {p.relative_to(data_root)} ({inspected[p][2]})" for p in unreadable
        )
        if unreadable and check.status == OK:
            check.status = UNREADABLE
    by_digest: dict[str, list[Path]] = defaultdict(list)
    for path, (digest, _, _) in inspected.items():
        if digest:
            by_digest[digest].append(path.relative_to(data_root))
    report.duplicates = sorted(tuple(sorted(group)) for group in by_digest.values() if len(group) > 1)


def _write_fingerprint(path: Path, data_root: Path, inspected: dict[Path, tuple[str, int, str | None]]) -> str:
    rows = sorted(
        (str(PurePosixPath(p.relative_to(data_root))), size, digest)
        for p, (digest, size, _) in inspected.items()
    )
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["path", "size_bytes", "sha256"])
    writer.writerows(rows)
    content = buffer.getvalue().encode("utf-8")
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, content)
    return hashlib.sha256(content).hexdigest()


def _next_step(check: SetCheck, data_root: Path, manifests: list[Manifest]) -> str | None:
    if check.status == OK:
        return None
    fetch = f"`ufd data fetch --data-root {data_root} --manifest {check.manifest}`"
    root = data_root / next(m.root for m in manifests if m.name == check.manifest)
    if check.status == MISSING and not root.exists():
        return f"run {fetch}"
    if check.status == UNREADABLE:
        return f"the listed files are damaged: move {root} aside and run {fetch} to extract a fresh copy"
    return (
        f"this copy differs from the release: move {root} aside and run {fetch}; "
        f"if the release itself changed, correct data_manifests/{check.manifest}.yaml"
    )
