"""A non-editable install: the wheel carries the notebooks, manifests and reported numbers, and
``ufd reproduce`` runs from any directory without the source tree (slow: builds the wheel)."""
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from conftest import REPO_ROOT

REPO = REPO_ROOT


@pytest.mark.slow
def test_wheel_reproduces_from_another_directory(tmp_path):
    subprocess.run([sys.executable, "-m", "pip", "wheel", str(REPO), "--no-deps", "--no-build-isolation",
                    "-q", "-w", str(tmp_path / "wheel")], check=True, cwd=tmp_path)
    wheel = next((tmp_path / "wheel").glob("ufd-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    assert "ufd_lib/notebooks/01_data.ipynb" in names
    assert "ufd_lib/data_manifests/cnndetection_test.yaml" in names
    assert "ufd_lib/evaluation/reported_results.csv" in names
    assert "ufd_lib/classifiers/released/fc_weights.pth" in names
    site = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(site), str(wheel)],
                   check=True)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {**os.environ, "PYTHONPATH": str(site)}  # before the editable checkout on sys.path
    where = subprocess.run([sys.executable, "-c", "import ufd_lib; print(ufd_lib.__file__)"], cwd=elsewhere,
                           env=env, capture_output=True, text=True, check=True).stdout
    assert Path(where.strip()).is_relative_to(site)
    run = subprocess.run([sys.executable, "-m", "ufd_lib", "reproduce", "--profile", "smoke", "--only", "01",
                          "--output-dir", "out", "--cache-dir", "cache"], cwd=elsewhere, env=env,
                         capture_output=True, text=True)
    assert run.returncode == 0, run.stderr[-2000:]
    assert (elsewhere / "out" / "index.html").is_file()
    assert (elsewhere / "out" / "notebooks" / "01_data.ipynb").is_file()
