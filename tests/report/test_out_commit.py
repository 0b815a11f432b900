"""``ufd evaluate --out``: runs finishing together on one folder leave one run's files, never a
mix, and run.json names the tables it goes with."""
from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
import time

import pandas as pd

from ufd_lib.evaluation.scoring import EvaluationResult
from ufd_lib.report.provenance import write_evaluation


def _result(run: int) -> EvaluationResult:
    return EvaluationResult(metrics=pd.DataFrame({"test_set": ["a"], "ap": [run / 1000]}),
                            scores=pd.DataFrame({"test_set": ["a"] * 5, "path": [f"/x/{i}.png" for i in range(5)],
                                                 "label": [0] * 5, "score": [run] * 5}),
                            skipped=pd.DataFrame({"test_set": [], "path": [], "reason": []}))


def _slow_writer(out, renaming) -> None:
    """Commits run 1, pausing after each rename (a slow disk), and says when it began."""
    real_replace = os.replace

    def replace(source, target):
        real_replace(source, target)
        renaming.set()
        time.sleep(0.3)

    os.replace = replace
    write_evaluation(_result(1), {"run": 1}, out)


def test_two_runs_finishing_together_leave_one_runs_files(tmp_path):
    out = tmp_path / "out"
    renaming = multiprocessing.Event()
    slow = multiprocessing.Process(target=_slow_writer, args=(out, renaming))
    slow.start()
    assert renaming.wait(30)
    write_evaluation(_result(2), {"run": 2}, out)  # lands while the slow run is half committed
    slow.join(30)
    assert slow.exitcode == 0
    record = json.loads((out / "run.json").read_text())
    for name, digest in record["tables_sha256"].items():
        assert hashlib.sha256((out / name).read_bytes()).hexdigest() == digest, f"{name} is of another run"
    assert record["run"] == 2 and pd.read_csv(out / "scores.csv")["score"].eq(2).all()


def test_text_cells_never_start_a_spreadsheet_formula(tmp_path):
    from ufd_lib.report.csv_cells import spreadsheet_safe

    result = _result(3)
    result.metrics["test_set"] = ["=HYPERLINK(\"http://x\")"]
    result.scores["path"] = ["@SUM(A1)", "+1", "-2", "/ok.png", "\tx"]
    write_evaluation(result, {"run": 3}, tmp_path)
    metrics, scores = pd.read_csv(tmp_path / "metrics.csv"), pd.read_csv(tmp_path / "scores.csv")
    assert metrics["test_set"].tolist() == ["'=HYPERLINK(\"http://x\")"]
    assert scores["path"].tolist() == ["'@SUM(A1)", "'+1", "'-2", "/ok.png", "'\tx"]
    assert metrics["ap"].tolist() == [0.003]  # numbers stay numbers
    frame = spreadsheet_safe(pd.DataFrame({"-a": [-1.5], "b": ["-x"]}, index=["=i"]))
    assert frame.to_dict("index") == {"'=i": {"'-a": -1.5, "b": "'-x"}}


def test_file_names_whose_bytes_are_not_utf8_are_written_escaped(tmp_path):
    import os

    result = _result(4)
    result.scores["path"] = [os.fsdecode(b"/x/bad\xff\xfe.png")] + ["/x/ok.png"] * 4
    write_evaluation(result, {"run": 4}, tmp_path)
    assert pd.read_csv(tmp_path / "scores.csv")["path"].iloc[0] == "/x/bad\\xff\\xfe.png"
