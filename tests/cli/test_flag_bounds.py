"""Extraction flags with upper bounds: absurd values are usage errors before anything loads."""
from __future__ import annotations

import pytest
from conftest import TINY_ENCODER, make_image_set, ufd

from ufd_lib.cli.args import MAX_BATCH_SIZE, usable_cores


@pytest.mark.parametrize(("flag", "value", "bound"), [
    ("--batch-size", str(MAX_BATCH_SIZE + 1), f"at most {MAX_BATCH_SIZE}"),
    ("--batch-size", "10000000000000", f"at most {MAX_BATCH_SIZE}"),
    ("--workers", str(usable_cores() + 1), f"at most {usable_cores()}"),
    ("--workers", str(usable_cores() * 75), "CPU cores"),
])
def test_absurd_batch_sizes_and_worker_counts_exit_2(capsys, tmp_path, flag, value, bound):
    make_image_set(tmp_path / "set", 1, 1)
    code, stdout, stderr = ufd(capsys, "extract", "--encoder", TINY_ENCODER, "--device", "cpu", "--quiet",
                               "--cache-dir", tmp_path / "cache", "--set", f"s={tmp_path / 'set'}", flag, value)
    assert code == 2 and stdout == ""
    assert flag in stderr and bound in stderr and len(stderr.strip().splitlines()) == 1
    assert not (tmp_path / "cache").exists()


def test_the_bounds_themselves_are_accepted():
    from ufd_lib.cli.args import batch_size, worker_count

    assert batch_size(str(MAX_BATCH_SIZE)) == MAX_BATCH_SIZE and worker_count(str(usable_cores())) == usable_cores()
