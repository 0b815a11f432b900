"""Notebook 01's inventory: a test set far smaller than the paper's evaluation is flagged."""
from __future__ import annotations

from conftest import make_image_set

from ufd_lib.analyses.inventory import data_inventory
from ufd_lib.data.image_sets import Benchmark, ImageSetSpec


def test_inventory_flags_test_sets_smaller_than_the_papers_protocol(tmp_path):
    make_image_set(tmp_path / "SAN", 3, 3)
    make_image_set(tmp_path / "Guided", 3, 3)
    make_image_set(tmp_path / "known", 3, 3)
    specs = [ImageSetSpec(name, tmp_path / name, tmp_path / name) for name in ("SAN", "Guided", "known")]
    benchmark = Benchmark(train=specs[0], val=specs[0], test_sets=specs, families={},
                          expected_counts={"known": (3, 3)})
    status = data_inventory(benchmark)["status"]
    assert status.iloc[2:].tolist() == ["smaller than the paper's (100 a class)",
                                        "smaller than the paper's (1000 a class)", "ok"]
