"""What the ``ufd`` command line says to a person: closed pipes, warnings, help."""
from __future__ import annotations

import os
import subprocess
import sys

from conftest import REPO_ROOT, TINY_ENCODER, make_image_set


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
