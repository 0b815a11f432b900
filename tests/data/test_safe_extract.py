"""safe_extract: good archives extract; malicious ones are refused whole, with nothing written
outside the target and no partial target left behind."""
from __future__ import annotations

import io
import stat
import tarfile
import zipfile
from pathlib import Path

import pytest

from ufd_lib.data.safe_extract import ArchiveError, UnsafeArchiveError, safe_extract

FILES = {"release/a/0_real/x.png": b"real bytes", "release/a/1_fake/y.png": b"fake bytes", "release/README": b"hi"}


@pytest.fixture
def work(tmp_path: Path) -> Path:
    """Directory that will contain the target; after a refusal it must stay empty."""
    (tmp_path / "work").mkdir()
    return tmp_path / "work"


def _tar(path: Path, members: list[tuple[tarfile.TarInfo, bytes | None]], mode: str = "w") -> Path:
    with tarfile.open(path, mode) as tf:
        for info, data in members:
            if data is not None:
                info.size = len(data)
            tf.addfile(info, io.BytesIO(data) if data is not None else None)
    return path


def _file(name: str, data: bytes = b"payload") -> tuple[tarfile.TarInfo, bytes]:
    return tarfile.TarInfo(name), data


def _link(name: str, target: str, kind: bytes) -> tuple[tarfile.TarInfo, None]:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = target
    return info, None


def _zip(path: Path, members: list[tuple[zipfile.ZipInfo | str, bytes]]) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for info, data in members:
            zf.writestr(info, data)
    return path


def _read_tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


@pytest.mark.parametrize("mode,suffix", [("w", ".tar"), ("w:gz", ".tar.gz"), ("w:bz2", ".tar.bz2"),
                                         ("w:xz", ".tar.xz")])
def test_tar_formats_extract(tmp_path: Path, work: Path, mode: str, suffix: str) -> None:
    archive = _tar(tmp_path / f"good{suffix}", [_file(n, d) for n, d in FILES.items()], mode)
    assert safe_extract(archive, work / "target") == work / "target"
    assert _read_tree(work / "target") == FILES
    assert [p.name for p in work.iterdir()] == ["target"]


def test_zip_extracts(tmp_path: Path, work: Path) -> None:
    archive = _zip(tmp_path / "good.zip", list(FILES.items()))
    safe_extract(archive, work / "target")
    assert _read_tree(work / "target") == FILES


def _assert_refused(archive: Path, work: Path, member: str) -> None:
    with pytest.raises(UnsafeArchiveError) as caught:
        safe_extract(archive, work / "target")
    assert caught.value.member == member
    assert repr(member) in str(caught.value)
    assert list(work.iterdir()) == []  # no target, no temporary directory, nothing else


def test_tar_absolute_path_refused(tmp_path: Path, work: Path) -> None:
    victim = tmp_path / "victim.txt"
    archive = _tar(tmp_path / "abs.tar", [_file("ok.txt"), _file(str(victim))])
    _assert_refused(archive, work, str(victim))
    assert not victim.exists()


def test_tar_dotdot_traversal_refused(tmp_path: Path, work: Path) -> None:
    archive = _tar(tmp_path / "dotdot.tar", [_file("ok.txt"), _file("sub/../../victim.txt")])
    _assert_refused(archive, work, "sub/../../victim.txt")
    assert not (tmp_path / "victim.txt").exists()


def test_tar_symlink_escaping_refused(tmp_path: Path, work: Path) -> None:
    archive = _tar(tmp_path / "symlink.tar", [_link("escape", str(tmp_path), tarfile.SYMTYPE)])
    _assert_refused(archive, work, "escape")


def test_tar_hardlink_escaping_refused(tmp_path: Path, work: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("do not touch")
    archive = _tar(tmp_path / "hardlink.tar", [_link("copy", str(secret), tarfile.LNKTYPE)])
    _assert_refused(archive, work, "copy")
    assert secret.read_text() == "do not touch"


def test_tar_symlink_then_file_through_it_refused(tmp_path: Path, work: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    archive = _tar(
        tmp_path / "through.tar",
        [_link("data", str(outside), tarfile.SYMTYPE), _file("data/planted.txt")],
    )
    _assert_refused(archive, work, "data")
    assert list(outside.iterdir()) == []


def test_tar_relative_symlink_chain_refused(tmp_path: Path, work: Path) -> None:
    # Each link alone looks local; together "a/b" would resolve above the target.
    archive = _tar(
        tmp_path / "chain.tar",
        [_link("a", ".", tarfile.SYMTYPE), _link("a/b", "..", tarfile.SYMTYPE), _file("a/b/victim.txt")],
    )
    _assert_refused(archive, work, "a")
    assert not (tmp_path / "victim.txt").exists()


def test_tar_device_file_refused(tmp_path: Path, work: Path) -> None:
    info = tarfile.TarInfo("dev/null-ish")
    info.type = tarfile.CHRTYPE
    info.devmajor, info.devminor = 1, 3
    archive = _tar(tmp_path / "device.tar", [_file("ok.txt"), (info, None)])
    _assert_refused(archive, work, "dev/null-ish")


def test_zip_absolute_path_refused(tmp_path: Path, work: Path) -> None:
    victim = tmp_path / "victim.txt"
    archive = _zip(tmp_path / "abs.zip", [("ok.txt", b"x"), (zipfile.ZipInfo(str(victim)), b"evil")])
    _assert_refused(archive, work, str(victim))
    assert not victim.exists()


@pytest.mark.parametrize("name", ["../victim.txt", "sub/../../victim.txt", "..\\victim.txt"])
def test_zip_traversal_refused(tmp_path: Path, work: Path, name: str) -> None:
    archive = _zip(tmp_path / "dotdot.zip", [("ok.txt", b"x"), (zipfile.ZipInfo(name), b"evil")])
    _assert_refused(archive, work, name)
    assert not (tmp_path / "victim.txt").exists()


def test_zip_symlink_refused(tmp_path: Path, work: Path) -> None:
    info = zipfile.ZipInfo("escape")
    info.external_attr = (stat.S_IFLNK | 0o777) << 16
    archive = _zip(tmp_path / "symlink.zip", [(info, str(tmp_path).encode()), ("escape/planted.txt", b"evil")])
    _assert_refused(archive, work, "escape")


def test_corrupt_member_leaves_no_partial_target(tmp_path: Path, work: Path) -> None:
    archive = _zip(tmp_path / "corrupt.zip", [("first.txt", b"A" * 1000), ("second.txt", b"B" * 1000)])
    data = bytearray(archive.read_bytes())
    second = data.find(b"B" * 100)
    data[second : second + 10] = b"C" * 10  # stored member: CRC check fails on extraction
    archive.write_bytes(bytes(data))
    with pytest.raises(ArchiveError, match="nothing was extracted"):
        safe_extract(archive, work / "target")
    assert list(work.iterdir()) == []


def test_truncated_and_foreign_files_are_archive_errors(tmp_path: Path, work: Path) -> None:
    good = _tar(tmp_path / "good.tar.gz", [_file(n, d) for n, d in FILES.items()], "w:gz")
    truncated = tmp_path / "truncated.tar.gz"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    seven_zip = tmp_path / "data.7z"
    seven_zip.write_bytes(b"7z\xbc\xaf\x27\x1c" + bytes(100))
    for archive in (truncated, seven_zip):
        with pytest.raises(ArchiveError):
            safe_extract(archive, work / "target")
        assert list(work.iterdir()) == []


def test_existing_target_is_not_touched(tmp_path: Path, work: Path) -> None:
    archive = _zip(tmp_path / "good.zip", list(FILES.items()))
    (work / "target").mkdir()
    (work / "target" / "mine.txt").write_text("keep")
    with pytest.raises(FileExistsError):
        safe_extract(archive, work / "target")
    assert _read_tree(work / "target") == {"mine.txt": b"keep"}


@pytest.mark.parametrize("second", ["release/a/0_real/x.png", "release/a/./0_real/x.png", "release//a/0_real/x.png"])
def test_zip_duplicate_member_refused(tmp_path: Path, work: Path, second: str) -> None:
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # zipfile warns "Duplicate name" while writing the attack
        archive = _zip(tmp_path / "dup.zip", [*FILES.items(), (second, b"the label-swapping copy")])
    _assert_refused(archive, work, second)


def test_tar_duplicate_member_refused(tmp_path: Path, work: Path) -> None:
    archive = _tar(tmp_path / "dup.tar", [*(_file(n, d) for n, d in FILES.items()), _file("release/README", b"2nd")])
    _assert_refused(archive, work, "release/README")


@pytest.mark.parametrize("kind", ["zip", "tar.gz"])
def test_expansion_beyond_max_bytes_refused(tmp_path: Path, work: Path, kind: str) -> None:
    members = {"release/a/0_real/zeros.png": bytes(1 << 20), "release/a/1_fake/y.png": b"fake bytes"}
    if kind == "zip":
        with zipfile.ZipFile(tmp_path / "bomb.zip", "w", zipfile.ZIP_DEFLATED) as zf:
            for name, data in members.items():
                zf.writestr(name, data)
        archive = tmp_path / "bomb.zip"
    else:
        archive = _tar(tmp_path / "bomb.tar.gz", [_file(n, d) for n, d in members.items()], "w:gz")
    total = sum(map(len, members.values()))
    with pytest.raises(ArchiveError, match=f"more than {total - 1} bytes"):
        safe_extract(archive, work / "target", max_bytes=total - 1)
    assert list(work.iterdir()) == []
    safe_extract(archive, work / "target", max_bytes=total)  # exactly the declared size is allowed
    assert _read_tree(work / "target") == members
