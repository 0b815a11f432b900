"""The command-line doors: ufd data adapters, bias-card, manifest build and verify --against."""
from __future__ import annotations

from pathlib import Path

import pytest
from conftest import settle_timestamps, ufd, write_image
from PIL import Image


def _biased(root: Path) -> Path:
    for i in range(12):
        real = write_image(root / "0_real" / f"{i}.jpg", seed=i)
        Image.open(real).save(real, format="JPEG", quality=75)
        write_image(root / "1_fake" / f"{i}.png", seed=100 + i)
    return root


def test_adapters_are_listed(capsys) -> None:
    code, out, _ = ufd(capsys, "data", "adapters")
    assert code == 0 and "genimage:GEN_DIR" in out and "folders:REAL_DIR:FAKE_DIR" in out


def test_bias_card_flags_a_format_biased_set(tmp_path: Path, capsys) -> None:
    root = _biased(tmp_path / "set")
    code, out, err = ufd(capsys, "data", "bias-card", f"biased={root}", "--out", tmp_path / "card")
    assert code == 0, err
    assert "flagged" in out and (tmp_path / "card" / "biased.distributions.csv").is_file()
    assert "metadata_auc_reencoded" in (tmp_path / "card" / "bias_card.csv").read_text()


def test_manifest_build_then_verify_against(tmp_path: Path, capsys) -> None:
    root, listing = _biased(tmp_path / "set"), tmp_path / "l.csv"
    assert ufd(capsys, "data", "manifest", "build", "--data-root", root, "--out", listing)[0] == 0
    assert ufd(capsys, "data", "verify", "--data-root", root, "--against", listing)[0] == 0
    (root / "0_real" / "0.jpg").unlink()
    code, out, _ = ufd(capsys, "data", "verify", "--data-root", root, "--against", listing)
    assert code == 1 and "missing: 0_real/0.jpg" in out
    (tmp_path / "bad.csv").write_text("nope\n")
    assert ufd(capsys, "data", "verify", "--data-root", root, "--against", tmp_path / "bad.csv")[0] == 2


def test_a_second_build_reads_no_image_bytes(tmp_path: Path, capsys, monkeypatch) -> None:
    from ufd_lib.features.extraction import digest_memo

    root = _biased(tmp_path / "set")
    settle_timestamps()  # files written in the memo's own tick are hashed again next time (racy)
    args = ("data", "manifest", "build", "--data-root", root, "--cache-dir", tmp_path / "cache")
    assert ufd(capsys, *args, "--out", tmp_path / "first.csv")[0] == 0

    def no_reading(path):
        raise AssertionError(f"{path} was read again")

    monkeypatch.setattr(digest_memo, "file_sha256", no_reading)
    assert ufd(capsys, *args, "--out", tmp_path / "second.csv")[0] == 0
    assert (tmp_path / "first.csv").read_bytes() == (tmp_path / "second.csv").read_bytes()
    (root / "1_fake" / "3.png").write_bytes(b"changed")  # only this file is read again
    with pytest.raises(AssertionError, match=r"3\.png was read again"):
        ufd(capsys, *args, "--out", tmp_path / "third.csv")


def test_verify_benchmark_checks_the_owners_archive_md5_and_counts(tmp_path: Path, capsys) -> None:
    (tmp_path / "synthbuster.zip").write_bytes(b"not the owner's archive")
    write_image(tmp_path / "wildrf" / "test" / "reddit" / "0_real" / "a.jpg", seed=1)
    code, out, _ = ufd(capsys, "data", "verify", "--data-root", tmp_path, "--benchmark", "synthbuster")
    assert code == 1 and "synthbuster.zip" in out and "MISMATCH" in out and "0695bd328e16ea21c5c9cc2ae1d994ff" in out
    assert "real_RAISE_1k.zip" in out and "not present" in out
    code, out, _ = ufd(capsys, "data", "verify", "--data-root", tmp_path, "--benchmark", "wildrf")
    assert code == 0 and "1 real, 0 fake" in out
    assert ufd(capsys, "data", "verify", "--data-root", tmp_path, "--benchmark", "nonesuch")[0] == 2
