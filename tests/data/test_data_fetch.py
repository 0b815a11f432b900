"""fetch_data against an HTTP server on 127.0.0.1 (with Range support): download, resume after a
cut connection, checksum rejection, clear errors when a source fails, and safe extraction."""
from __future__ import annotations

import hashlib
import io
import json
import os
import random
import re
import shutil
import socket
import threading
import time
import zipfile
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import gdown
import pytest
import yaml
from conftest import REPO_ROOT, settle_timestamps
from PIL import Image

from ufd_lib.cli import data as data_cli
from ufd_lib.cli.parser import build_parser
from ufd_lib.data import fetch as data_fetch
from ufd_lib.data import manifests
from ufd_lib.data.fetch import FetchError, fetch_data
from ufd_lib.data.verify import verify_data

DRIVE_ID = "1AbCdEfGhIjKlMnOpQrStUvWxYz012345"


@dataclass
class ServerState:
    files: dict[str, bytes] = field(default_factory=dict)
    requests: list[tuple[str, str | None]] = field(default_factory=list)
    cut_after: dict[str, int] = field(default_factory=dict)  # path -> bytes sent before dropping, once
    trickle: dict[str, float] = field(default_factory=dict)  # path -> seconds between single bytes
    no_length: set[str] = field(default_factory=set)  # paths served without Content-Length, then closed


class RangeHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        state: ServerState = self.server.state
        range_header = self.headers.get("Range")
        state.requests.append((self.path, range_header))
        data = state.files.get(self.path)
        if data is None:
            self.send_error(404)
            return
        start = int(re.fullmatch(r"bytes=(\d+)-", range_header)[1]) if range_header else 0
        if start >= len(data) > 0:
            self.send_response(416)
            self.send_header("Content-Range", f"bytes */{len(data)}")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        self.send_response(206 if range_header else 200)
        if range_header:
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        body = data[start:]
        if self.path in state.no_length:
            self.send_header("Connection", "close")
            self.end_headers()
            self.close_connection = True
            self.wfile.write(body)
            return
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Accept-Ranges", "bytes")
        self.end_headers()
        if self.path in state.trickle:
            for index in range(len(body)):
                try:
                    self.wfile.write(body[index : index + 1])
                    self.wfile.flush()
                except OSError:  # the client gave up
                    return
                time.sleep(state.trickle[self.path])
            return
        cut = state.cut_after.pop(self.path, None)
        if cut is None:
            self.wfile.write(body)
            return
        self.wfile.write(body[:cut])
        self.wfile.flush()
        self.close_connection = True
        self.connection.shutdown(socket.SHUT_RDWR)

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch):
    for variable in ("NO_PROXY", "no_proxy"):  # a configured HTTP proxy must not see the local server
        monkeypatch.setenv(variable, "127.0.0.1,localhost")
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), RangeHandler)
    httpd.state = ServerState()
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield httpd.state, f"http://127.0.0.1:{httpd.server_port}"
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture(autouse=True)
def no_retry_wait(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(data_fetch, "_RETRY_WAIT_S", 0.0)


def _image_bytes(seed: int) -> bytes:
    buffer = io.BytesIO()
    Image.frombytes("RGB", (8, 8), random.Random(seed).randbytes(192)).save(buffer, format="PNG")
    return buffer.getvalue()


def make_release(members: dict[str, bytes] | None = None, wrapper: str = "toy_release/") -> bytes:
    """A zip of the toy release: flat/{0_real,1_fake} (2 each), cats/{a,b}/{0_real,1_fake} (1 each)."""
    if members is None:
        members, seed = {}, 0
        for label in ("0_real", "1_fake"):
            for name in ("flat/{}/0.png", "flat/{}/1.png", "cats/a/{}/0.png", "cats/b/{}/0.png"):
                seed += 1
                members[wrapper + name.format(label)] = _image_bytes(seed)
        members[wrapper + "README.txt"] = b"toy"
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buffer.getvalue()


def _http(url: str, data: bytes | None = None, *, sha256: str | None = "auto") -> dict:
    if sha256 == "auto":
        sha256 = hashlib.sha256(data).hexdigest()
    return {"kind": "http", "url": url, "size_bytes": len(data) if data is not None else None,
            "sha256": sha256, "provenance": "test server"}


def _gdrive() -> dict:
    return {"kind": "gdrive", "file_id": DRIVE_ID, "size_bytes": None, "sha256": None, "provenance": "test"}


@pytest.fixture
def use_manifest(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """Write the toy manifest with the given download sources and point the library at it."""
    directory = tmp_path / "manifests"
    directory.mkdir()
    monkeypatch.setenv(manifests.MANIFEST_DIR_ENV, str(directory))

    def write(*sources: dict) -> None:
        manifest = {
            "name": "toy",
            "title": "Toy dataset",
            "description": "Generated by the tests.",
            "citations": [{"kind": "paper", "text": "none"}],
            "root": "toy",
            "archive": {"filename": "toy.zip", "format": "zip", "approx_size": "a few kB", "sources": list(sources)},
            "manual_sources": [{"kind": "box_folder", "url": "https://example.org/box", "note": "a folder link"}],
            "sets": [
                {"key": "flat", "paper_name": "Flat", "role": "test", "paper_table_column": 1,
                 "generator_family": "GAN", "real_source": "test", "real_dir": "flat", "fake_dir": "flat",
                 "categories": None, "images_per_class": {"real": 2, "fake": 2}, "count_note": "test"},
                {"key": "cats", "paper_name": "Cats", "role": "test", "paper_table_column": 2,
                 "generator_family": "GAN", "real_source": "test", "real_dir": "cats", "fake_dir": "cats",
                 "categories": ["a", "b"], "images_per_class": {"real": 2, "fake": 2},
                 "images_per_category_per_class": 1, "count_note": "test"},
            ],
            "differences_from_paper": [],
        }
        (directory / "toy.yaml").write_text(yaml.safe_dump(manifest, sort_keys=False))

    return write


def test_fetch_downloads_verifies_and_extracts(server, use_manifest, tmp_path: Path) -> None:
    state, base = server
    release = make_release()
    state.files["/toy.zip"] = release
    use_manifest(_http(base + "/toy.zip", release))
    data_root = tmp_path / "data"

    done = fetch_data(data_root, ["toy"])

    assert done["toy"].startswith("fetched")
    assert verify_data(data_root, ["toy"]).ok  # content too: every image opens
    assert (data_root / "toy" / "README.txt").exists()  # the wrapper folder was stripped
    assert (data_root / "downloads" / "toy.zip").read_bytes() == release
    assert not (data_root / "downloads" / "toy.zip.part").exists()
    assert sorted(p.name for p in data_root.iterdir()) == ["downloads", "toy"]  # no staging left

    assert fetch_data(data_root, ["toy"])["toy"].startswith("already present")
    assert len(state.requests) == 1


def test_resume_after_cut_connection(server, use_manifest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    state, base = server
    monkeypatch.setattr(data_fetch, "_CHUNK", 256)  # the chunk being read when the cut comes is lost
    release = make_release()
    half = len(release) // 2
    state.files["/toy.zip"] = release
    state.cut_after["/toy.zip"] = half
    use_manifest(_http(base + "/toy.zip", release))

    fetch_data(tmp_path / "data", ["toy"])

    (first, second) = state.requests
    assert first == ("/toy.zip", None)
    resumed_at = int(re.fullmatch(r"bytes=(\d+)-", second[1])[1])
    assert half - 256 < resumed_at <= half
    assert (tmp_path / "data" / "downloads" / "toy.zip").read_bytes() == release
    assert verify_data(tmp_path / "data", ["toy"]).ok


def test_resume_of_an_earlier_interrupted_run(server, use_manifest, tmp_path: Path) -> None:
    state, base = server
    release = make_release()
    state.files["/toy.zip"] = release
    use_manifest(_http(base + "/toy.zip", release))
    downloads = tmp_path / "dl"
    downloads.mkdir()
    (downloads / "toy.zip.part").write_bytes(release[:1000])

    fetch_data(tmp_path / "data", ["toy"], download_dir=downloads)

    assert state.requests == [("/toy.zip", "bytes=1000-")]
    assert (downloads / "toy.zip").read_bytes() == release


def test_wrong_checksum_is_rejected_and_not_extracted(server, use_manifest, tmp_path: Path) -> None:
    state, base = server
    release = make_release()
    state.files["/toy.zip"] = release
    use_manifest(_http(base + "/toy.zip", release, sha256="0" * 64))
    data_root, downloads = tmp_path / "data", tmp_path / "dl"

    with pytest.raises(FetchError) as caught:
        fetch_data(data_root, ["toy"], download_dir=downloads)

    message = str(caught.value)
    assert "SHA-256" in message and "rejected" in message
    assert f"save it as {downloads / 'toy.zip'}" in message
    assert not (data_root / "toy").exists()
    assert not (downloads / "toy.zip").exists()
    assert (downloads / "toy.zip.rejected").read_bytes() == release


def test_unreachable_sources_say_what_to_download_and_where(
    server, use_manifest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _, base = server

    def drive_down(**kwargs):
        raise gdown.exceptions.FileURLRetrievalError("Too many users have viewed or downloaded this file")

    monkeypatch.setattr(gdown, "download", drive_down)
    use_manifest(_http(base + "/gone.zip", None, sha256=None), _gdrive())
    data_root, downloads = tmp_path / "data", tmp_path / "dl"

    with pytest.raises(FetchError) as caught:
        fetch_data(data_root, ["toy"], download_dir=downloads)

    message = str(caught.value)
    assert "could not obtain toy.zip" in message
    assert base + "/gone.zip" in message and "404" in message
    assert f"https://drive.google.com/file/d/{DRIVE_ID}/view" in message and "Too many users" in message
    assert f"save it as {downloads / 'toy.zip'}" in message
    assert "https://example.org/box" in message  # manual sources are listed too
    assert not (data_root / "toy").exists()

    args = ["data", "fetch", "--data-root", str(data_root), "--download-dir", str(downloads), "--manifest", "toy"]
    assert _cli(args) == 1
    assert "could not obtain toy.zip" in capsys.readouterr().err


def test_drive_source_goes_through_gdown(use_manifest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    release = make_release(wrapper="")
    calls = []

    def fake_download(*, id, output, quiet, resume):
        calls.append(id)
        Path(output).write_bytes(release)
        return output

    monkeypatch.setattr(gdown, "download", fake_download)
    use_manifest(_gdrive())
    data_root = tmp_path / "data"

    fetch_data(data_root, ["toy"])

    assert calls == [DRIVE_ID]
    assert verify_data(data_root, ["toy"]).ok
    sidecar = data_root / "downloads" / "toy.zip.verified.json"
    assert hashlib.sha256(release).hexdigest() in sidecar.read_text()


def test_hand_placed_archive_is_used_without_network(server, use_manifest, tmp_path: Path) -> None:
    state, base = server
    release = make_release(wrapper="")
    use_manifest(_http(base + "/toy.zip", release))  # the server does not have it: 404 if asked
    downloads = tmp_path / "dl"
    downloads.mkdir()
    (downloads / "toy.zip").write_bytes(release)

    fetch_data(tmp_path / "data", ["toy"], download_dir=downloads)

    assert state.requests == []
    assert verify_data(tmp_path / "data", ["toy"]).ok


def test_hand_placed_archive_with_wrong_checksum_is_left_alone(server, use_manifest, tmp_path: Path) -> None:
    _, base = server
    release = make_release()
    use_manifest(_http(base + "/toy.zip", release))
    downloads = tmp_path / "dl"
    downloads.mkdir()
    (downloads / "toy.zip").write_bytes(release[:-1] + b"!")

    with pytest.raises(FetchError, match="matches no source"):
        fetch_data(tmp_path / "data", ["toy"], download_dir=downloads)
    assert (downloads / "toy.zip").exists()
    assert not (tmp_path / "data" / "toy").exists()


def test_existing_directory_is_never_overwritten(server, use_manifest, tmp_path: Path) -> None:
    state, base = server
    release = make_release()
    state.files["/toy.zip"] = release
    use_manifest(_http(base + "/toy.zip", release))
    mine = tmp_path / "data" / "toy" / "flat" / "0_real" / "mine.png"
    mine.parent.mkdir(parents=True)
    mine.write_bytes(_image_bytes(99))

    with pytest.raises(FetchError, match="exists but does not match"):
        fetch_data(tmp_path / "data", ["toy"])
    assert mine.read_bytes() == _image_bytes(99)
    assert state.requests == []


def test_malicious_archive_is_not_extracted(server, use_manifest, tmp_path: Path) -> None:
    state, base = server
    evil = make_release({"toy_release/flat/0_real/0.png": _image_bytes(1), "toy_release/../../evil.txt": b"x"})
    state.files["/toy.zip"] = evil
    use_manifest(_http(base + "/toy.zip", evil))
    data_root = tmp_path / "data"

    with pytest.raises(FetchError, match="refused"):
        fetch_data(data_root, ["toy"])
    assert sorted(p.name for p in data_root.iterdir()) == ["downloads"]  # no dataset, no staging left
    assert not list(tmp_path.rglob("evil.txt"))


def _cli(argv: list[str]) -> int:
    return data_cli.run(build_parser().parse_args(argv))


def test_cli_fetch_exit_codes(server, use_manifest, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    state, base = server
    release = make_release()
    state.files["/toy.zip"] = release
    use_manifest(_http(base + "/toy.zip", release))

    assert _cli(["data", "fetch", "--data-root", str(tmp_path / "data"), "--manifest", "toy"]) == 0
    assert _cli(["data", "fetch", "--data-root", str(tmp_path / "data"), "--manifest", "toy", "nope"]) == 2
    err = capsys.readouterr().err
    assert "--manifest" in err and "'nope'" in err


def _swap_classes_in_place(archive: Path) -> None:
    """Rename every 0_real member to 1_fake and back, writing into the same file (same inode,
    same size): the zip stays valid, the labels are swapped."""
    data = archive.read_bytes()
    swapped = data.replace(b"0_real", b"\0TMP\0\0").replace(b"1_fake", b"0_real").replace(b"\0TMP\0\0", b"1_fake")
    assert len(swapped) == len(data) and swapped != data
    with archive.open("r+b") as handle:
        handle.write(swapped)


@pytest.mark.parametrize("pinned", [True, False], ids=["pinned", "unpinned"])
def test_archive_swapped_in_place_at_the_same_size_is_refused(server, use_manifest, tmp_path: Path, pinned) -> None:
    state, base = server
    release = make_release()
    state.files["/toy.zip"] = release
    use_manifest(_http(base + "/toy.zip", release, sha256="auto" if pinned else None))
    data_root = tmp_path / "data"
    fetch_data(data_root, ["toy"])
    archive = data_root / "downloads" / "toy.zip"
    inode = archive.stat().st_ino
    shutil.rmtree(data_root / "toy")
    _swap_classes_in_place(archive)
    assert archive.stat().st_ino == inode and archive.stat().st_size == len(release)

    with pytest.raises(FetchError, match="changed since"):
        fetch_data(data_root, ["toy"])
    assert not (data_root / "toy").exists()


@pytest.mark.parametrize("pinned", [True, False], ids=["pinned", "unpinned"])
def test_archive_edited_in_place_with_its_mtime_set_back_is_refused(server, use_manifest, tmp_path: Path,
                                                                     pinned) -> None:
    """Same size, same inode, same mtime: only the ctime (which no user can set back) tells."""
    state, base = server
    release = make_release()
    state.files["/toy.zip"] = release
    use_manifest(_http(base + "/toy.zip", release, sha256="auto" if pinned else None))
    data_root = tmp_path / "data"
    fetch_data(data_root, ["toy"])
    archive = data_root / "downloads" / "toy.zip"
    before = archive.stat()
    shutil.rmtree(data_root / "toy")
    settle_timestamps()
    _swap_classes_in_place(archive)
    os.utime(archive, ns=(before.st_atime_ns, before.st_mtime_ns))
    after = archive.stat()
    assert (after.st_size, after.st_mtime_ns, after.st_ino) == (before.st_size, before.st_mtime_ns, before.st_ino)

    with pytest.raises(FetchError, match="changed since"):
        fetch_data(data_root, ["toy"])
    assert not (data_root / "toy").exists()


def test_an_archive_hashed_in_the_second_it_was_written_is_hashed_again(server, use_manifest, tmp_path: Path,
                                                                         monkeypatch) -> None:
    """A record whose identity was racy when hashed (as on a coarse clock) is not reused."""
    state, base = server
    release = make_release()
    state.files["/toy.zip"] = release
    use_manifest(_http(base + "/toy.zip", release, sha256="auto"))
    data_root = tmp_path / "data"
    fetch_data(data_root, ["toy"])
    shutil.rmtree(data_root / "toy")
    sidecar = data_root / "downloads" / "toy.zip.verified.json"
    record = json.loads(sidecar.read_text())
    sidecar.write_text(json.dumps({**record, "hashed_from_ns": record["ctime_ns"]}))  # hashed as it was written
    settle_timestamps()
    hashed = []
    real_hash = data_fetch.file_sha256
    monkeypatch.setattr(data_fetch, "file_sha256", lambda path: hashed.append(path) or real_hash(path))
    fetch_data(data_root, ["toy"])
    assert len(hashed) == 1  # once, then the now-old identity is trusted right before extraction
    assert (data_root / "toy").is_dir()


def test_a_server_sending_more_than_the_pinned_size_is_cut_off_while_streaming(server, use_manifest,
                                                                              tmp_path: Path) -> None:
    state, base = server
    release = make_release()
    state.files["/toy.zip"] = release * 40  # no Content-Length: only the pinned size can stop it
    state.no_length.add("/toy.zip")
    use_manifest(_http(base + "/toy.zip", release))
    with pytest.raises(FetchError, match=f"more than the {len(release)} bytes expected"):
        fetch_data(tmp_path / "data", ["toy"], retries=0)
    part = tmp_path / "data" / "downloads" / "toy.zip.part"
    assert not part.exists() or part.stat().st_size == 0


def test_a_trickling_server_is_given_up_on_not_waited_for_forever(server, use_manifest, tmp_path: Path,
                                                                  monkeypatch) -> None:
    state, base = server
    release = make_release()
    state.files["/toy.zip"] = release
    state.trickle["/toy.zip"] = 0.05  # a byte every 50 ms: no single read ever times out
    use_manifest(_http(base + "/toy.zip", release))
    monkeypatch.setattr(data_fetch, "RATE_GRACE_S", 0.5)
    started = time.monotonic()
    with pytest.raises(FetchError, match="too slow"):
        fetch_data(tmp_path / "data", ["toy"], retries=1, timeout_s=5)
    assert time.monotonic() - started < 10


def test_zip_bomb_is_refused_not_extracted(server, use_manifest, tmp_path: Path) -> None:
    state, base = server
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("flat/0_real/0.png", bytes(8 << 20))  # 8 MiB of zeros, about 8 kB compressed
    bomb = buffer.getvalue()
    assert len(bomb) * data_fetch.MAX_EXPANSION_RATIO < 8 << 20
    state.files["/toy.zip"] = bomb
    use_manifest(_http(base + "/toy.zip", bomb))
    data_root = tmp_path / "data"

    with pytest.raises(FetchError, match="expand to more than"):
        fetch_data(data_root, ["toy"])
    assert sorted(p.name for p in data_root.iterdir()) == ["downloads"]


@pytest.mark.parametrize("body", [b"<!DOCTYPE html><html><body>Quota exceeded</body></html>\n", "cut"],
                         ids=["html-page", "cut-short"])
def test_unpinned_download_must_be_a_complete_archive(server, use_manifest, tmp_path: Path, body) -> None:
    state, base = server
    release = make_release()
    state.files["/toy.zip"] = release[:-40] if body == "cut" else body
    use_manifest(_http(base + "/toy.zip", None, sha256=None))
    data_root = tmp_path / "data"

    with pytest.raises(FetchError, match="rejected, it is not a zip archive|rejected, it is cut short"):
        fetch_data(data_root, ["toy"])
    downloads = data_root / "downloads"
    assert not (downloads / "toy.zip").exists() and (downloads / "toy.zip.rejected").exists()
    assert not (data_root / "toy").exists()


def test_hand_placed_html_page_does_not_count_as_present(use_manifest, tmp_path: Path) -> None:
    use_manifest(_gdrive())
    downloads = tmp_path / "dl"
    downloads.mkdir()
    (downloads / "toy.zip").write_bytes(b"<html><head><title>Google Drive - Virus scan warning</title></head></html>")

    with pytest.raises(FetchError, match="HTML"):
        fetch_data(tmp_path / "data", ["toy"], download_dir=downloads)
    assert not (tmp_path / "data" / "toy").exists()


def test_archive_changed_between_verification_and_extraction_is_refused(
    server, use_manifest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    state, base = server
    release = make_release()
    state.files["/toy.zip"] = release
    use_manifest(_http(base + "/toy.zip", release))
    verified_then_swapped = data_fetch._obtain_archive

    def obtain(*args):
        archive = verified_then_swapped(*args)
        _swap_classes_in_place(archive)
        return archive

    monkeypatch.setattr(data_fetch, "_obtain_archive", obtain)
    with pytest.raises(FetchError, match="was verified but"):
        fetch_data(tmp_path / "data", ["toy"])
    assert not (tmp_path / "data" / "toy").exists()


def test_dry_run_lists_downloads_with_sizes_and_total(server, use_manifest, tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    state, base = server
    release = make_release()
    use_manifest(_http(base + "/toy.zip", release))
    data_root = tmp_path / "data"

    assert _cli(["data", "fetch", "--data-root", str(data_root), "--dry-run"]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    size = f"{len(release) / 1e6:.2f} MB"
    assert out == [f"toy: download {data_root / 'downloads' / 'toy.zip'} ({size})",
                   f"    from {base}/toy.zip", f"total to download: 1 archive(s), {size}"]
    assert state.requests == [] and not data_root.exists()  # nothing fetched, nothing created


def test_dry_run_says_what_is_present_and_what_size_is_unknown(use_manifest, tmp_path: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    use_manifest(_gdrive())
    assert _cli(["data", "fetch", "--data-root", str(tmp_path / "data"), "--dry-run"]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert out[0].endswith("toy.zip (size: a few kB)") and out[1].startswith("    from Google Drive file ")
    assert out[-1] == "total to download: 1 archive(s); size not stated for toy"


def test_dry_run_totals_the_sizes_the_manifests_state(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """The shipped manifests: every source URL, and a total of their approximate sizes."""
    assert _cli(["data", "fetch", "--data-root", str(tmp_path / "data"), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "    from https://huggingface.co/datasets/sywang/CNNDetection/resolve/" in out
    assert out.strip().splitlines()[-1] == ("total to download: 4 archive(s), about 91.83 GB for 3 of them; "
                                            "size not stated for univfd_diffusion")


def test_fetch_help_lists_the_manifests_with_sizes(server, use_manifest, capsys: pytest.CaptureFixture[str]) -> None:
    _, base = server
    release = make_release()
    use_manifest(_http(base + "/toy.zip", release))
    with pytest.raises(SystemExit) as done:
        build_parser().parse_args(["data", "fetch", "--help"])
    assert done.value.code == 0
    assert f"  toy: {len(release)} bytes [flat, cats]" in capsys.readouterr().out


def test_building_the_parser_reads_no_manifest() -> None:
    """`ufd --help` stays light: the fetch help's manifest list is read only when printed."""
    import subprocess
    import sys

    code = ("import sys; from ufd_lib.cli.parser import build_parser; build_parser().format_help(); "
            "print(sorted(m for m in ('yaml', 'jsonschema', 'numpy', 'torch') if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                            cwd=REPO_ROOT)
    assert result.stdout.strip() == "[]"


def test_two_fetches_at_once_take_turns(server, use_manifest, tmp_path: Path) -> None:
    state, base = server
    release = make_release()
    state.files["/toy.zip"] = release
    state.trickle["/toy.zip"] = 0.0005  # slow enough for the two to overlap
    use_manifest(_http(base + "/toy.zip", release))
    results, errors = [], []

    def fetch() -> None:
        try:
            results.append(fetch_data(tmp_path / "data", ["toy"]))
        except Exception as error:  # noqa: BLE001 - collected for the assertion
            errors.append(error)

    threads = [threading.Thread(target=fetch) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert errors == [] and len(results) == 2
    assert sorted(result["toy"].split(" ")[0] for result in results) == ["already", "fetched"]
