"""Download and extract what a data root lacks, as described by the manifests.

For each manifest: skip it if its layout and counts already verify; otherwise obtain its
archive in the download directory (reusing one that is there, else trying its sources in
order), check size and SHA-256 where the manifest knows them, extract it safely and verify the
result. HTTP downloads go to ``<archive>.part`` and resume with Range requests after an
interruption; Google Drive downloads go through gdown. Fetch never writes into an existing
dataset directory.

An archive is trusted only as it was verified: its SHA-256 is recorded in
``<archive>.verified.json`` together with the file's identity (size, mtime_ns, ctime_ns, inode,
device) taken before it was hashed, and the record is reused only while all five still match
and were not racy when it was hashed (:mod:`ufd_lib.racy_timestamps`), so an archive edited in
place (even at the same size, with its mtime set back: the ctime cannot be) is hashed again,
and then refused if its hash differs from the pinned one or from the one first recorded. The
check is repeated immediately before extraction. An archive
from a source without a pinned checksum must at least be a complete archive of the declared
format (not an HTML error page, not cut short). Extraction refuses duplicate or unsafe
members and caps the expansion: at the manifest's ``extracted_size_bytes`` where declared,
else at :data:`MAX_EXPANSION_RATIO` times the archive's size.
"""
from __future__ import annotations

import json
import os
import shutil
import tarfile
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import requests
import urllib3
from filelock import FileLock
from tqdm import tqdm

from ufd_lib.atomic_files import atomic_write_text
from ufd_lib.data.manifests import Manifest, Source, load_manifest, resolve_manifest_names
from ufd_lib.data.safe_extract import ArchiveError, safe_extract
from ufd_lib.data.verify import verify_manifests
from ufd_lib.hashing import file_sha256
from ufd_lib.racy_timestamps import is_racy

_CHUNK = 1 << 20
# Where a manifest declares no extracted size: the released archives hold PNG and JPEG files,
# which are already compressed and expand by about 1x; 4x leaves room, a zip bomb has 1000x.
MAX_EXPANSION_RATIO = 4
_RETRY_WAIT_S = 2.0
# A download must average at least MIN_RATE_BYTES_S once RATE_GRACE_S have passed (a server
# sending a byte every few seconds never trips the per-read timeout), and may never exceed the
# size its source pins, or MAX_DOWNLOAD_BYTES where none is pinned and the server names none.
MIN_RATE_BYTES_S = 16 * 1024
RATE_GRACE_S = 60.0
MAX_DOWNLOAD_BYTES = 1 << 40
_TRANSIENT = (
    requests.ConnectionError,
    requests.Timeout,
    requests.exceptions.ChunkedEncodingError,
    urllib3.exceptions.ProtocolError,  # the body read socket read by socket (a cut connection)
    urllib3.exceptions.ReadTimeoutError,
)


class FetchError(RuntimeError):
    """A dataset that could not be fetched; the message says what to do by hand."""


class _IncompleteDownload(IOError):
    pass


def fetch_data(
    data_root: Path,
    manifest_names: Sequence[str] | None = None,
    download_dir: Path | None = None,
    *,
    retries: int = 3,
    timeout_s: float = 60.0,
    manifest_directory: Path | None = None,
) -> dict[str, str]:
    """Fetch the named manifests (all when None) into ``data_root``.

    download_dir: where archives are downloaded, and where a hand-downloaded archive is looked
    for (default ``data_root/downloads``). Archives are kept after extraction.
    retries: extra attempts per HTTP download after a dropped connection, each resuming.
    manifest_directory: where the manifests are read (default :func:`~ufd_lib.data.manifests.manifest_dir`).
    Returns {manifest name: what was done}. Raises FetchError, after trying every manifest,
    if any could not be fetched.
    """
    data_root = Path(data_root)
    download_dir = Path(download_dir) if download_dir is not None else data_root / "downloads"
    done: dict[str, str] = {}
    failures: list[str] = []
    for name in resolve_manifest_names(manifest_names, manifest_directory):
        try:
            manifest = load_manifest(name, manifest_directory)
            done[name] = _fetch_manifest(manifest, data_root, download_dir, retries, timeout_s)
        except FetchError as error:
            failures.append(str(error))
        else:
            tqdm.write(f"{name}: {done[name]}")
    if failures:
        raise FetchError("\n\n".join(failures))
    return done


@dataclass(frozen=True)
class PlannedFetch:
    """What ``fetch`` would do for one manifest.

    action: "present" (verifies already), "blocked" (its folder exists but does not match),
    "extract" (the archive is in the download directory), or "download".
    size_bytes: the archive's exact size where a source declares it, else None (then
    approx_size, the manifest's words, and approx_size_bytes, the size they start with, are all
    that is known). sources: where it would be downloaded from, in the order tried.
    """

    manifest: str
    action: str
    archive: Path
    size_bytes: int | None
    approx_size: str
    approx_size_bytes: int | None = None
    sources: tuple[str, ...] = ()


def fetch_plan(data_root: Path, manifest_names: Sequence[str] | None = None,
               download_dir: Path | None = None) -> list[PlannedFetch]:
    """What :func:`fetch_data` would do, without downloading or writing anything (layout and
    counts are checked, image content is not)."""
    data_root = Path(data_root)
    download_dir = Path(download_dir) if download_dir is not None else data_root / "downloads"
    plan = []
    for name in resolve_manifest_names(manifest_names):
        manifest = load_manifest(name)
        archive = download_dir / manifest.archive.filename
        if verify_manifests(data_root, [manifest], check_content=False).ok:
            action = "present"
        elif (data_root / manifest.root).exists():
            action = "blocked"
        else:
            action = "extract" if archive.exists() else "download"
        size = next((s.size_bytes for s in manifest.archive.sources if s.size_bytes is not None), None)
        plan.append(PlannedFetch(name, action, archive, size, manifest.archive.approx_size,
                                 manifest.archive.approx_size_bytes,
                                 tuple(source.describe() for source in manifest.archive.sources)))
    return plan


def _fetch_manifest(manifest: Manifest, data_root: Path, download_dir: Path, retries: int, timeout_s: float) -> str:
    """Fetch one manifest's data; fetches of one archive into one download folder take turns
    (a lock beside the archive), so that two at once never share a ``.part`` file."""
    if verify_manifests(data_root, [manifest], check_content=False).ok:
        return "already present (layout and counts verified)"
    download_dir.mkdir(parents=True, exist_ok=True)
    with FileLock(download_dir / f".{manifest.archive.filename}.lock"):
        return _fetch_manifest_alone(manifest, data_root, download_dir, retries, timeout_s)


def _fetch_manifest_alone(manifest: Manifest, data_root: Path, download_dir: Path, retries: int,
                          timeout_s: float) -> str:
    before = verify_manifests(data_root, [manifest], check_content=False)
    if before.ok:
        return "already present (layout and counts verified)"
    root = data_root / manifest.root
    if root.exists():
        problems = "; ".join(p for check in before.sets for p in check.problems[:3])
        raise FetchError(
            f"{manifest.name}: {root} exists but does not match the manifest ({problems}). Fetch does not "
            f"write into an existing directory: inspect it with `ufd data verify --data-root {data_root} "
            f"--manifest {manifest.name}`, move it aside, and fetch again."
        )
    archive = _obtain_archive(manifest, data_root, download_dir, retries, timeout_s)
    _extract(archive, manifest, data_root)
    after = verify_manifests(data_root, [manifest], check_content=False)
    if not after.ok:
        problems = "; ".join(p for check in after.sets for p in check.problems[:3])
        raise FetchError(
            f"{manifest.name}: extracted {archive.name} into {root}, but it does not match the manifest "
            f"({problems}). Check data_manifests/{manifest.name}.yaml against the release."
        )
    return f"fetched and extracted into {root}"


# --- obtaining the archive ------------------------------------------------------------------


def _obtain_archive(manifest: Manifest, data_root: Path, download_dir: Path, retries: int, timeout_s: float) -> Path:
    target = download_dir / manifest.archive.filename
    if target.exists():
        problem = _check_present(target, manifest)
        if problem:
            raise FetchError(
                f"{manifest.name}: {target} is present but {problem}. Delete it, or replace it with a good "
                f"copy, and fetch again."
            )
        return target
    _sidecar(target).unlink(missing_ok=True)  # a record of an archive that is gone describes nothing
    download_dir.mkdir(parents=True, exist_ok=True)
    tried: list[str] = []
    for source in manifest.archive.sources:
        try:
            if source.kind == "http":
                _download_http(source, target, retries, timeout_s)
            else:
                _download_gdrive(source, target)
        except Exception as error:  # any failure of one source means: try the next one
            tried.append(f"{source.describe()}: {type(error).__name__}: {error}")
            continue
        problem = _check_downloaded(target, source, manifest.archive.format)
        if problem is None:
            return target
        rejected = target.with_name(target.name + ".rejected")
        os.replace(target, rejected)
        tried.append(f"{source.describe()}: downloaded file rejected, {problem}; kept as {rejected} for inspection")
    raise FetchError(_by_hand_message(manifest, target, data_root, download_dir, tried))


def _by_hand_message(manifest: Manifest, target: Path, data_root: Path, download_dir: Path, tried: list[str]) -> str:
    archive = manifest.archive
    lines = [f"{manifest.name}: could not obtain {archive.filename} ({archive.approx_size}).", "Tried:"]
    lines += [f"  - {attempt}" for attempt in tried]
    lines.append("Download it by hand from one of:")
    for source in archive.sources:
        checksum = f" (sha256 {source.sha256})" if source.sha256 else " (checksum unknown)"
        lines.append(f"  - {source.describe()}{checksum}")
    lines.append(
        f"and save it as {target}, then run `ufd data fetch --data-root {data_root} "
        f"--manifest {manifest.name} --download-dir {download_dir}` again."
    )
    if manifest.manual_sources:
        lines.append("Other copies (not used automatically):")
        lines += [f"  - {item.url}: {item.note}" for item in manifest.manual_sources]
    return "\n".join(lines)


def _download_http(source: Source, target: Path, retries: int, timeout_s: float) -> None:
    """Download ``source.url`` to ``target`` through ``target.part``, resuming after drops."""
    part = target.with_name(target.name + ".part")
    for attempt in range(retries + 1):
        if attempt:
            time.sleep(_RETRY_WAIT_S * attempt)
        try:
            _download_http_once(source.url, part, source.size_bytes, timeout_s, target.name)
            break
        except (*_TRANSIENT, _IncompleteDownload) as error:
            last_error = error
    else:
        raise FetchError(
            f"download still incomplete after {retries + 1} attempts ({last_error}); {part} is kept "
            f"and the next fetch resumes it"
        )
    os.replace(part, target)


def _download_http_once(url: str, part: Path, expected_size: int | None, timeout_s: float, label: str) -> None:
    offset = part.stat().st_size if part.exists() else 0
    if expected_size is not None and offset == expected_size:
        return
    # Byte offsets must count bytes on disk, so ask for the file as stored, never re-encoded.
    headers = {"Accept-Encoding": "identity"}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    with requests.get(url, headers=headers, stream=True, timeout=timeout_s) as response:
        if response.status_code == 416 and offset:
            return  # nothing left to send: the part file is complete (the checksum decides)
        response.raise_for_status()
        if offset and response.status_code == 206:
            if not response.headers.get("Content-Range", "").startswith(f"bytes {offset}-"):
                raise FetchError(
                    f"the server resumed at the wrong offset ({response.headers.get('Content-Range')}); "
                    f"delete {part} to start over"
                )
            mode = "ab"
        else:
            offset, mode = 0, "wb"  # the server ignored the Range header: start over
        length = response.headers.get("Content-Length")
        total = offset + int(length) if length is not None else expected_size
        cap = expected_size if expected_size is not None else (total or MAX_DOWNLOAD_BYTES)
        with part.open(mode) as out, tqdm(
            total=total, initial=offset, unit="B", unit_scale=True, desc=label, disable=None
        ) as bar:
            _stream(response, out, offset, cap, bar.update)
    if total is not None and part.stat().st_size < total:
        raise _IncompleteDownload(f"connection ended at byte {part.stat().st_size} of {total}")


def _stream(response: requests.Response, out, offset: int, cap: int, progress) -> None:
    """Copy the body to ``out`` (which holds ``offset`` bytes), one socket read at a time, so
    that the byte cap and the minimum rate are checked between reads. Raises FetchError (the
    part file removed) past ``cap`` bytes, _IncompleteDownload (resumable) when too slow."""
    started, received = time.monotonic(), 0
    while True:
        chunk = response.raw.read1(_CHUNK, decode_content=True)
        if not chunk:
            return
        received += len(chunk)
        if offset + received > cap:
            out.truncate(0)
            raise FetchError(f"the server sent more than the {cap} bytes expected; the download was discarded")
        out.write(chunk)
        progress(len(chunk))
        elapsed = time.monotonic() - started
        if elapsed > RATE_GRACE_S and received < MIN_RATE_BYTES_S * elapsed:
            raise _IncompleteDownload(f"too slow: {received} bytes in {elapsed:.0f} s "
                                      f"(at least {MIN_RATE_BYTES_S} bytes/s expected)")


def _download_gdrive(source: Source, target: Path) -> None:
    # gdown handles Drive's confirmation pages and keeps its own resumable temporary file.
    import gdown  # imported on first use: only Drive sources need it

    output = gdown.download(id=source.file_id, output=str(target), quiet=False, resume=True)
    if output is None or not target.is_file():
        raise FetchError("gdown returned no file")


# --- checking the archive -------------------------------------------------------------------


def _sidecar(archive: Path) -> Path:
    return archive.with_name(archive.name + ".verified.json")


def _identity(archive: Path) -> dict[str, int]:
    """What must not change for a recorded hash to stay valid: size, mtime_ns, ctime_ns, inode, device."""
    info = archive.stat()
    return {"size_bytes": info.st_size, "mtime_ns": info.st_mtime_ns, "ctime_ns": info.st_ctime_ns,
            "inode": info.st_ino, "device": info.st_dev}


def _read_record(archive: Path) -> dict | None:
    try:
        record = json.loads(_sidecar(archive).read_text())
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) and isinstance(record.get("sha256"), str) else None


def _record(archive: Path, record: dict) -> None:
    atomic_write_text(_sidecar(archive), json.dumps(record))


def _current_sha256(archive: Path, record: dict | None) -> tuple[str, dict]:
    """(the archive's SHA-256, the record to keep of it): the recorded one while the file's
    identity is unchanged and was not racy when it was hashed, else hashed now, with the
    identity taken before the read."""
    identity = _identity(archive)
    if (record is not None and all(record.get(key) == value for key, value in identity.items())
            and isinstance(record.get("hashed_from_ns"), int)
            and not is_racy(identity["ctime_ns"], record["hashed_from_ns"])):
        return record["sha256"], record
    hashed_from_ns = time.time_ns()
    sha256 = file_sha256(archive)
    return sha256, {"sha256": sha256, **identity, "hashed_from_ns": hashed_from_ns}


def _kind_problem(archive: Path, archive_format: str) -> str | None:
    """None if ``archive`` is a complete archive of the declared format ("zip" or "tar"), else
    what it is instead. Reads the zip's central directory (every member must lie within the
    file), or every tar header."""
    with archive.open("rb") as handle:
        head = handle.read(512)
    if head.lstrip()[:1] == b"<":
        return f"it is not a {archive_format} archive but looks like an HTML or XML page (an error or sign-in page?)"
    size = archive.stat().st_size
    try:
        if archive_format == "zip":
            if not zipfile.is_zipfile(archive):
                return "it is not a zip archive (no central directory: not a zip, or cut short)"
            with zipfile.ZipFile(archive) as zf:
                if any(info.header_offset + info.compress_size > size for info in zf.infolist()):
                    return "it is cut short (its members extend past the end of the file)"
        else:
            with tarfile.open(archive, "r:*") as tf:
                tf.getmembers()
    except (zipfile.BadZipFile, tarfile.TarError, OSError, EOFError) as error:
        return f"it is not a readable {archive_format} archive ({type(error).__name__}: {error})"
    return None


def _check_downloaded(archive: Path, source: Source, archive_format: str) -> str | None:
    """None if the freshly downloaded file matches what ``source`` promises, else the problem."""
    size = archive.stat().st_size
    if source.size_bytes is not None and size != source.size_bytes:
        return f"size {size} bytes, expected {source.size_bytes}"
    sha256, current = _current_sha256(archive, None)
    if source.sha256 is not None and sha256 != source.sha256:
        return f"SHA-256 {sha256}, expected {source.sha256}"
    if source.sha256 is None:
        problem = _kind_problem(archive, archive_format)
        if problem:
            return problem
        tqdm.write(f"{archive.name}: sha256 {sha256} (no checksum pinned in the manifest for this source)")
    _record(archive, current)
    return None


def _check_present(archive: Path, manifest: Manifest) -> str | None:
    """None if an archive already in the download dir is acceptable, else the problem.

    It must match the size and checksum of one source; where some source's checksum is
    unknown, a file that matches none of the known ones is accepted with a warning, since it
    may come from that source, provided it is a complete archive of the declared format and
    its hash is the one recorded when it was first accepted (if it was).
    """
    size = archive.stat().st_size
    record = _read_record(archive)
    sha256, current = _current_sha256(archive, record)
    sources = manifest.archive.sources
    if any(s.sha256 == sha256 and s.size_bytes in (None, size) for s in sources):
        _record(archive, current)
        return None
    if record is not None and record["sha256"] != sha256:
        return (f"its SHA-256 ({sha256}) is not the one recorded when it was verified ({record['sha256']}), "
                f"so it changed since (if you replaced it on purpose, delete {_sidecar(archive)})")
    if any(s.sha256 is None and s.size_bytes in (None, size) for s in sources):
        problem = _kind_problem(archive, manifest.archive.format)
        if problem:
            return problem
        tqdm.write(f"{archive.name}: sha256 {sha256} could not be checked (no checksum pinned for its source)")
        _record(archive, current)
        return None
    expected = ", ".join(f"{s.sha256} ({s.describe()})" for s in sources)
    return f"its size ({size} bytes) or SHA-256 ({sha256}) matches no source (expected {expected})"


def expansion_limit(manifest: Manifest, archive: Path) -> int:
    """The most, in bytes, the archive's members may expand to: the manifest's declared
    ``extracted_size_bytes``, else MAX_EXPANSION_RATIO times the archive's size."""
    declared = manifest.archive.extracted_size_bytes
    return declared if declared is not None else MAX_EXPANSION_RATIO * archive.stat().st_size


# --- extracting -----------------------------------------------------------------------------


def _extract(archive: Path, manifest: Manifest, data_root: Path) -> None:
    root = data_root / manifest.root
    problem = _check_present(archive, manifest)  # again, right before use: it may have changed since
    if problem:
        raise FetchError(f"{manifest.name}: {archive} was verified but {problem}; nothing was extracted. "
                         f"Delete it, or replace it with a good copy, and fetch again.")
    staging = root.with_name(f".{root.name}.extracting")
    if staging.exists():
        shutil.rmtree(staging)  # left by an interrupted fetch of this manifest
    try:
        safe_extract(archive, staging, expansion_limit(manifest, archive))
        content = _content_dir(staging, manifest)
        os.replace(content, root)
    except ArchiveError as error:
        raise FetchError(
            f"{manifest.name}: {error}. If the archive is damaged, delete {archive} and fetch again."
        ) from error
    finally:
        if staging.exists():
            shutil.rmtree(staging)


def _content_dir(staging: Path, manifest: Manifest) -> Path:
    """The folder inside the extracted archive that holds the manifest's top-level names,
    found by descending through single wrapper folders (e.g. ``CNN_synth_testset/``).

    A folder counts as the content when it holds at least two expected names (or the only
    one), so a wrapper that happens to share a name with a category (``train/``) is still
    descended into.
    """
    expected = manifest.top_level_names()
    enough = min(2, len(expected))
    folder = staging
    while True:
        entries = [e for e in folder.iterdir() if not e.name.startswith(".") and e.name != "__MACOSX"]
        if sum(e.name in expected for e in entries) >= enough:
            return folder
        if len(entries) == 1 and entries[0].is_dir():
            folder = entries[0]
            continue
        raise ArchiveError(
            f"unrecognised layout: expected some of {sorted(expected)} at the top of the archive or "
            f"inside a single wrapper folder, found {sorted(e.name for e in entries)}"
        )
