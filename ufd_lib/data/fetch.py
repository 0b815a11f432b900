"""Download and extract what a data root lacks, as described by the manifests.

For each manifest: skip it if its layout and counts already verify; otherwise obtain its
archive in the download directory (reusing one that is there, else trying its sources in
order), check size and SHA-256 where the manifest knows them, extract it safely and verify the
result. HTTP downloads go to ``<archive>.part`` and resume with Range requests after an
interruption; Google Drive downloads go through gdown. Fetch never writes into an existing
dataset directory.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from pathlib import Path
from typing import Sequence

import requests
from tqdm import tqdm

from ufd_lib.data.verify import verify_data
from ufd_lib.data.manifests import Manifest, Source, load_manifest, resolve_manifest_names
from ufd_lib.data.safe_extract import ArchiveError, safe_extract

_CHUNK = 1 << 20
_RETRY_WAIT_S = 2.0
_TRANSIENT = (
    requests.ConnectionError,
    requests.Timeout,
    requests.exceptions.ChunkedEncodingError,
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
) -> dict[str, str]:
    """Fetch the named manifests (all when None) into ``data_root``.

    download_dir: where archives are downloaded, and where a hand-downloaded archive is looked
    for (default ``data_root/downloads``). Archives are kept after extraction.
    retries: extra attempts per HTTP download after a dropped connection, each resuming.
    Returns {manifest name: what was done}. Raises FetchError, after trying every manifest,
    if any could not be fetched.
    """
    data_root = Path(data_root)
    download_dir = Path(download_dir) if download_dir is not None else data_root / "downloads"
    done: dict[str, str] = {}
    failures: list[str] = []
    for name in resolve_manifest_names(manifest_names):
        try:
            done[name] = _fetch_manifest(load_manifest(name), data_root, download_dir, retries, timeout_s)
        except FetchError as error:
            failures.append(str(error))
        else:
            tqdm.write(f"{name}: {done[name]}")
    if failures:
        raise FetchError("\n\n".join(failures))
    return done


def _fetch_manifest(manifest: Manifest, data_root: Path, download_dir: Path, retries: int, timeout_s: float) -> str:
    before = verify_data(data_root, [manifest.name], check_content=False)
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
    after = verify_data(data_root, [manifest.name], check_content=False)
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
        problem = _check_downloaded(target, source)
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
        with part.open(mode) as out, tqdm(
            total=total, initial=offset, unit="B", unit_scale=True, desc=label, disable=None
        ) as bar:
            for chunk in response.iter_content(_CHUNK):
                out.write(chunk)
                bar.update(len(chunk))
    if total is not None and part.stat().st_size < total:
        raise _IncompleteDownload(f"connection ended at byte {part.stat().st_size} of {total}")


def _download_gdrive(source: Source, target: Path) -> None:
    # gdown handles Drive's confirmation pages and keeps its own resumable temporary file.
    import gdown  # imported on first use: only Drive sources need it

    output = gdown.download(id=source.file_id, output=str(target), quiet=False, resume=True)
    if output is None or not target.is_file():
        raise FetchError("gdown returned no file")


# --- checking the archive -------------------------------------------------------------------


def _sidecar(archive: Path) -> Path:
    return archive.with_name(archive.name + ".verified.json")


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f, tqdm(
        total=path.stat().st_size, unit="B", unit_scale=True, desc=f"sha256 {path.name}", disable=None
    ) as bar:
        for chunk in iter(lambda: f.read(_CHUNK), b""):
            digest.update(chunk)
            bar.update(len(chunk))
    return digest.hexdigest()


def _record(archive: Path, sha256: str) -> None:
    _sidecar(archive).write_text(json.dumps({"sha256": sha256, "size_bytes": archive.stat().st_size}))


def _check_downloaded(archive: Path, source: Source) -> str | None:
    """None if the freshly downloaded file matches what ``source`` promises, else the problem."""
    size = archive.stat().st_size
    if source.size_bytes is not None and size != source.size_bytes:
        return f"size {size} bytes, expected {source.size_bytes}"
    sha256 = _sha256(archive)
    if source.sha256 is not None and sha256 != source.sha256:
        return f"SHA-256 {sha256}, expected {source.sha256}"
    if source.sha256 is None:
        tqdm.write(f"{archive.name}: sha256 {sha256} (no checksum pinned in the manifest for this source)")
    _record(archive, sha256)
    return None


def _check_present(archive: Path, manifest: Manifest) -> str | None:
    """None if an archive already in the download dir is acceptable, else the problem.

    It must match the size and checksum of one source; where some source's checksum is
    unknown, a file that matches none of the known ones is accepted with a warning, since it
    may come from that source.
    """
    size = archive.stat().st_size
    record = json.loads(_sidecar(archive).read_text()) if _sidecar(archive).exists() else None
    sha256 = record["sha256"] if record and record["size_bytes"] == size else _sha256(archive)
    sources = manifest.archive.sources
    if any(s.sha256 == sha256 and s.size_bytes in (None, size) for s in sources):
        _record(archive, sha256)
        return None
    if any(s.sha256 is None and s.size_bytes in (None, size) for s in sources):
        tqdm.write(f"{archive.name}: sha256 {sha256} could not be checked (no checksum pinned for its source)")
        _record(archive, sha256)
        return None
    expected = ", ".join(f"{s.sha256} ({s.describe()})" for s in sources)
    return f"its size ({size} bytes) or SHA-256 ({sha256}) matches no source (expected {expected})"


# --- extracting -----------------------------------------------------------------------------


def _extract(archive: Path, manifest: Manifest, data_root: Path) -> None:
    root = data_root / manifest.root
    staging = root.with_name(f".{root.name}.extracting")
    if staging.exists():
        shutil.rmtree(staging)  # left by an interrupted fetch of this manifest
    try:
        safe_extract(archive, staging)
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
