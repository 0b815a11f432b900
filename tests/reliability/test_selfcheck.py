"""``ufd selfcheck``: the report, its verdict and exit status; the full run is a slow test."""
from __future__ import annotations

import pytest

from ufd_lib.cli.main import main
from ufd_lib.reliability import input_checks, selfcheck


def test_a_failed_case_fails_the_report_and_the_exit_status(monkeypatch, tmp_path, capsys):
    checks = [selfcheck.Check("fine", 3, 3, 0, "ok"), selfcheck.Check("broken", 4, 3, 1, "one differs")]
    monkeypatch.setattr(selfcheck, "run_selfcheck", lambda **options: checks)
    assert main(["selfcheck", "--out", str(tmp_path / "report.md")]) == 1
    report = (tmp_path / "report.md").read_text()
    assert "| broken | 4 | 3 | 1 |" in report and "FAILED: 6 of 7 cases" in report
    assert report.strip() == capsys.readouterr().out.strip()
    checks.pop()
    assert main(["selfcheck"]) == 0 and "PASSED: 3 of 3" in capsys.readouterr().out


@pytest.mark.parametrize("argv", [["--trials", "0"], ["--fuzz", "x"], ["--out", "a\nb"]])
def test_bad_usage_exits_2(argv, capsys):
    try:
        status = main(["selfcheck", *argv])
    except SystemExit as exit_:
        status = exit_.code
    assert status == 2
    assert len([line for line in capsys.readouterr().err.splitlines() if line.strip()]) == 1


def test_metric_edge_cases_check_passes():
    assert selfcheck.check_metric_edge_cases().passed


def test_hostile_archives_are_all_refused(tmp_path):
    check = selfcheck.check_hostile_archives(tmp_path)
    assert (check.cases, check.as_expected) == (4, 4), check.detail


def test_the_zip_bomb_is_one_megabyte_declaring_one_gibibyte(tmp_path):
    import zipfile

    bomb = input_checks._zip_bomb(tmp_path / "bomb.zip", "x.png")
    with zipfile.ZipFile(bomb) as zf:
        assert [info.file_size for info in zf.infolist()] == [1 << 30]
    assert bomb.stat().st_size < 1_100_000


def test_fifo_and_dangling_link_do_not_stop_verify(tmp_path):
    check = selfcheck.check_hostile_data_root(tmp_path)
    assert check.passed, check.detail


@pytest.mark.parametrize("check", ["check_files_changed_after_planning", "check_inputs_that_are_not_images",
                                   "check_non_finite_encoder_output"])
def test_reading_checks_pass(check, tmp_path):
    result = getattr(selfcheck, check)(tmp_path)
    assert result.passed and result.cases >= 3, result


@pytest.mark.slow
def test_full_selfcheck_passes(tmp_path):
    checks = selfcheck.run_selfcheck(main, tmp_path, trials=4, rounds=1, fuzz=60, seed=1)
    assert [c.name for c in checks if not c.passed] == []
    assert sum(c.cases for c in checks) > 130


def test_full_disk_during_evaluate_check_passes(tmp_path):
    check = selfcheck.check_full_disk_evaluate(main, tmp_path)
    assert check.passed and check.cases == 4
    assert "could not write" in check.detail and "scores.csv" in check.detail


def test_non_finite_scores_check_passes(tmp_path):
    check = selfcheck.check_non_finite_scores(tmp_path)
    assert check.passed and check.cases == 2
