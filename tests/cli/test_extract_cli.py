"""``ufd extract``: fills the cache that ``ufd evaluate`` then reads without encoding anything."""
from __future__ import annotations

import json

import pytest
from conftest import TINY_ENCODER, make_image_set, settle_timestamps

from ufd_lib.cli.main import main


@pytest.fixture
def sets(tmp_path):
    root = tmp_path / "data"
    make_image_set(root / "train", 4, 4)
    make_image_set(root / "test", 3, 3, categories=("car", "horse"))
    (root / "test" / "horse" / "1_fake" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    settle_timestamps()
    return {"train": f"train={root / 'train'}", "test": f"test={root / 'test'}"}


def extract_argv(sets, tmp_path, *extra):
    return ["extract", "--encoder", TINY_ENCODER, "--set", sets["train"], "--set", sets["test"],
            "--cache-dir", str(tmp_path / "cache"), "--batch-size", "4", "--device", "cpu", "--quiet", *extra]


def test_extract_writes_a_run_record_and_a_rerun_encodes_nothing(capsys, sets, tmp_path):
    assert main(extract_argv(sets, tmp_path, "--out", str(tmp_path / "run"))) == 0
    out, err = capsys.readouterr()
    assert "encoded 20 images" in out and "1 skipped" in out and "world size 1" in out
    assert "broken.png" in err
    record = json.loads((tmp_path / "run" / "run.json").read_text())
    assert record["images_encoded"] == 20 and record["images_from_cache"] == 0
    assert record["images_per_second"] > 0 and record["precision"] == "fp32" and record["world_size"] == 1
    assert record["images_listed"] == {"train": 8, "test": 13}
    assert record["skipped"][0]["path"].endswith("broken.png")

    assert main(extract_argv(sets, tmp_path, "--out", str(tmp_path / "again"))) == 0
    record = json.loads((tmp_path / "again" / "run.json").read_text())
    assert (record["images_encoded"], record["images_from_cache"]) == (0, 20)
    assert (record["files_hashed"], record["files_recognised"]) == (0, 21), "unchanged files were read again"


def test_the_first_run_record_counts_every_file_hashed(capsys, sets, tmp_path):
    assert main(extract_argv(sets, tmp_path, "--out", str(tmp_path / "run"))) == 0
    record = json.loads((tmp_path / "run" / "run.json").read_text())
    assert (record["files_hashed"], record["files_recognised"]) == (21, 0)


def test_evaluate_after_extract_reads_the_cache(capsys, sets, tmp_path):
    assert main(extract_argv(sets, tmp_path)) == 0
    status = main(["evaluate", "--encoder", TINY_ENCODER, "--classifier", "knn", "--train", sets["train"],
                   "--test", sets["test"], "--cache-dir", str(tmp_path / "cache"), "--device", "cpu", "--quiet",
                   "--out", str(tmp_path / "evaluation")])
    assert status == 0
    record = json.loads((tmp_path / "evaluation" / "run.json").read_text())
    assert record["images_encoded"] == 0 and record["images_from_cache"] == 20


def test_bf16_fills_its_own_cache(capsys, sets, tmp_path):
    assert main(extract_argv(sets, tmp_path, "--out", str(tmp_path / "fp32"))) == 0
    assert main(extract_argv(sets, tmp_path, "--precision", "bf16", "--out", str(tmp_path / "bf16"))) == 0
    fp32 = json.loads((tmp_path / "fp32" / "run.json").read_text())
    bf16 = json.loads((tmp_path / "bf16" / "run.json").read_text())
    assert bf16["precision"] == "bf16" and bf16["images_encoded"] == 20
    assert bf16["cache_directory"] != fp32["cache_directory"]


def test_fp16_on_cpu_is_a_usage_error(capsys, sets, tmp_path):
    assert main(extract_argv(sets, tmp_path, "--precision", "fp16")) == 2
    assert "needs CUDA" in capsys.readouterr().err


@pytest.mark.parametrize("argv", [["extract", "--encoder", TINY_ENCODER],
                                  ["extract", "--set", "x=/no/such/dir"],
                                  ["extract", "--set", "x=.", "--precision", "int8"]])
def test_bad_usage_exits_2(capsys, argv):
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    assert exit_.value.code == 2


def test_max_pixels_above_pils_own_limit_is_honoured(capsys, tmp_path, monkeypatch):
    """PIL refuses images over twice its own limit while opening them; --max-pixels raises it."""
    from conftest import write_image
    from PIL import Image

    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 5_000)
    write_image(tmp_path / "big" / "0_real" / "large.png", seed=1, size=(300, 300))
    argv = ["extract", "--encoder", TINY_ENCODER, "--set", f"big={tmp_path / 'big'}", "--cache-dir",
            str(tmp_path / "cache"), "--device", "cpu", "--quiet"]
    assert main([*argv, "--max-pixels", "50000"]) == 0
    out, err = capsys.readouterr()
    assert "encoded 0 images" in out and "decompression bomb" in err
    assert main([*argv, "--max-pixels", "100000"]) == 0
    assert "encoded 1 images" in capsys.readouterr().out


def test_max_bytes_refuses_larger_files_unread(capsys, tmp_path):
    from conftest import write_image

    small = write_image(tmp_path / "s" / "0_real" / "small.png", seed=1, size=(8, 8))
    write_image(tmp_path / "s" / "0_real" / "large.png", seed=2, size=(64, 64))
    argv = ["extract", "--encoder", TINY_ENCODER, "--set", f"s={tmp_path / 's'}", "--cache-dir",
            str(tmp_path / "cache"), "--device", "cpu", "--quiet", "--max-bytes", str(small.stat().st_size)]
    assert main(argv) == 0
    out, err = capsys.readouterr()
    assert "encoded 1 images" in out and "large.png" in err and "exceeds the limit" in err


@pytest.mark.parametrize("argv", [["--help"], ["evaluate", "--help"], ["evaluate", "--no-such-flag"]])
def test_help_and_usage_errors_import_no_heavy_library(argv):
    """``ufd --help`` and usage errors stay fast: torch, pandas and sklearn are not imported."""
    import subprocess
    import sys

    probe = ("import sys\nfrom ufd_lib.cli.main import main\ntry:\n    main(sys.argv[1:])\nexcept SystemExit:\n"
             "    pass\nprint(sorted({'torch', 'pandas', 'sklearn'} & {m.split('.')[0] for m in sys.modules}))")
    done = subprocess.run([sys.executable, "-c", probe, *argv], capture_output=True, text=True, check=True)
    assert done.stdout.strip().splitlines()[-1] == "[]"
