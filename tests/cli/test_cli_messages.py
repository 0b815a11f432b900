"""What the ``ufd`` command line says to a person: closed pipes, warnings, help."""
from __future__ import annotations

import os
import subprocess
import sys

from conftest import REPO_ROOT, TINY_ENCODER, make_image_set, subcommand_parsers, ufd


def test_predict_into_a_closed_pipe_exits_0_quietly(tmp_path):
    """``ufd predict ... | head -1``: the reader is gone before the scores are written."""
    folder = make_image_set(tmp_path / "images", 2, 2)
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "UFD_CACHE_DIR": str(tmp_path / "cache")}
    process = subprocess.Popen(
        [sys.executable, "-m", "ufd_lib", "predict", "--encoder", TINY_ENCODER, "--device", "cpu", "--quiet", folder],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, cwd=tmp_path,
    )
    process.stdout.close()
    stderr = process.stderr.read().decode()
    assert process.wait(timeout=300) == 0, stderr
    assert "Broken pipe" not in stderr and "Exception ignored" not in stderr


def test_a_warning_is_one_line_naming_the_command_and_a_short_mean_is_announced(capsys, tmp_path):
    """A set without fakes: its warning is one line without Python's source echo, and the mean
    row's AP covers one set where the accuracies cover two."""
    both = make_image_set(tmp_path / "both", 3, 3)
    reals = make_image_set(tmp_path / "reals", 3, 0)
    code, stdout, stderr = ufd(
        capsys, "evaluate", "--encoder", TINY_ENCODER, "--device", "cpu", "--quiet", "--cache-dir", tmp_path / "cache",
        "--classifier", "knn", "--train", f"train={both}", "--test", f"both={both}", "--test", f"r={reals}",
        "--out", tmp_path / "out",
    )
    assert code == 0, stderr
    warning_lines = [line for line in stderr.splitlines() if "no fake images" in line]
    assert warning_lines and all(line.startswith("ufd evaluate: warning: set r: no fake images")
                                 for line in warning_lines)
    assert "UserWarning" not in stderr and ".py:" not in stderr
    [note] = [line for line in stdout.splitlines() if line.startswith("note: the mean row averages")]
    assert "AP% over 1" in note and "of the 2 test sets" in note and "acc% over" not in note


def test_every_command_has_a_description_and_shows_its_own_options_first():
    from ufd_lib.cli.parser import build_parser

    for name, parser in subcommand_parsers(build_parser()).items():
        assert parser.description, f"ufd {name} --help has no description"
        text = parser.format_help()
        if "--encoder ENCODER" in text and name != "reproduce":
            shared = text.index("options shared by the commands that encode images:")
            own = {"evaluate": "--classifier", "train-probe": "--augmented-views", "predict": "--bank",
                   "extract": "--precision", "calibrate": "--calib"}[name]
            assert text.index(f"  {own}") < shared < text.index("  --encoder ENCODER"), name
            usage = parser.format_usage()
            assert usage.index(f"{own}") < usage.index("[--encoder ENCODER]"), name


def test_predict_offers_no_sampling(capsys):
    from ufd_lib.cli.parser import build_parser

    assert build_parser().parse_args(["predict", "x.png"]).sampling == "all"  # banks: every image
    assert "--sampling" not in subcommand_parsers(build_parser())["predict"].format_help()
    assert "--sampling" in subcommand_parsers(build_parser())["evaluate"].format_help()
    code, _, stderr = ufd(capsys, "predict", "--sampling", "official", "x.png")
    assert code == 2 and "--sampling" in stderr


def test_predict_with_the_released_probe_on_other_weights_cautions_in_one_line(capsys, tmp_path):
    folder = make_image_set(tmp_path / "images", 1, 1)
    code, stdout, stderr = ufd(capsys, "predict", "--encoder", TINY_ENCODER, "--device", "cpu", "--quiet",
                               "--cache-dir", tmp_path / "cache", folder)
    assert code == 0 and len(stdout.splitlines()) == 2
    [caution] = stderr.splitlines()
    assert caution.startswith("ufd predict: warning: the released probe was trained on the features of OpenAI's")
    assert "random-clip:tiny: RANDOM weights" in caution and "not UnivFD's" in caution
