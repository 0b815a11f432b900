"""Notebook 12's tables: which manifest sets are present (given, or found under a data root in
the owner's layout), which benchmarks are absent, and results sorted by release date beside the
bias card and the control."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from conftest import write_image

from ufd_lib.analyses.todays_generators import absent_benchmarks, decay_table, newer_test_sets
from ufd_lib.data.bias_card import BiasCard
from ufd_lib.evaluation.scoring import EvaluationResult


def test_sets_are_found_in_the_owners_layout_and_the_rest_reported_absent(tmp_path: Path) -> None:
    write_image(tmp_path / "wildrf" / "test" / "reddit" / "0_real" / "a.jpg", seed=1)
    write_image(tmp_path / "wildrf" / "test" / "reddit" / "1_fake" / "b.jpg", seed=2)
    write_image(tmp_path / "mine" / "0_real" / "c.png", seed=3)
    write_image(tmp_path / "mine" / "1_fake" / "d.png", seed=4)
    specs, sets = newer_test_sets([f"genimage_sd14=univfd:{tmp_path / 'mine'}"], tmp_path)
    assert {spec.name for spec in specs} == {"wildrf_reddit", "genimage_sd14"}
    present = sets[sets["status"] == "present"].set_index("key")
    assert present.at["genimage_sd14", "release_date"] == "2022-08-22" and present.at["wildrf_reddit", "in_the_wild"]
    absent = absent_benchmarks(sets)
    assert "wildrf" not in absent and "genimage" not in absent and {"synthbuster", "chameleon"} <= set(absent)


def _result(names: list[str]) -> EvaluationResult:
    rows, scores = [], []
    for name in names:
        labels, values = np.array([0, 0, 1, 1]), np.array([0.1, 0.6, 0.4, 0.9])
        rows.append({"test_set": name, "ap": 0.8, "acc": 0.5})
        scores += [{"test_set": name, "path": f"{name}{i}", "label": int(label), "score": value}
                   for i, (label, value) in enumerate(zip(labels, values))]
    return EvaluationResult(pd.DataFrame(rows), pd.DataFrame(scores), pd.DataFrame())


def test_decay_table_sorts_by_release_date_and_carries_the_bias_card() -> None:
    sets = pd.DataFrame([
        {"benchmark": "b", "key": "late", "release_date": "2024-08-01", "in_the_wild": False, "status": "present"},
        {"benchmark": "b", "key": "undated", "release_date": None, "in_the_wild": True, "status": "present"},
        {"benchmark": "b", "key": "early", "release_date": "2021-05", "in_the_wild": False, "status": "present"},
    ])
    card = BiasCard("early", 1.0, True, pd.DataFrame(), pd.DataFrame())
    table = decay_table({"LC": _result(["late", "undated", "early", "early (re-encoded)"])}, sets,
                        {"early": card}, {"early": "early (re-encoded)"})
    assert table["set"].tolist() == ["early", "late", "undated"]
    assert table["auc"].tolist() == [75.0] * 3 and table["ap"].tolist() == [80.0] * 3
    assert table["flagged"].tolist() == [True, False, False] and table["control_ap"].iloc[0] == 80.0
    assert np.isnan(table["control_ap"].iloc[1])
