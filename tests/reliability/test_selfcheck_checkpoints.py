"""The self-check's checkpoint rows: a crafted TorchScript archive, non-finite weights and
state dicts that do not fit are each refused, and the rows say so."""
from __future__ import annotations

import pytest

from ufd_lib.reliability import selfcheck


@pytest.mark.parametrize("check", [selfcheck.check_torchscript_payload, selfcheck.check_non_finite_weights,
                                   selfcheck.check_mismatched_state_dicts])
def test_checkpoint_rows_pass(check, tmp_path):
    row = check(tmp_path)
    assert row.passed, row
    assert not (tmp_path / "payload-ran").exists()


def test_the_payload_row_fails_when_the_archive_is_loaded(tmp_path, monkeypatch):
    """The row can fail: with the opt-in the archive is loaded and its code writes the file."""
    monkeypatch.setenv("UFD_ALLOW_TORCHSCRIPT", "1")
    row = selfcheck.check_torchscript_payload(tmp_path)
    assert not row.passed and (tmp_path / "payload-ran").read_bytes() == b"A" * 8


def test_the_rows_are_in_the_report(monkeypatch, tmp_path):
    ran = []
    for name in ("check_torchscript_payload", "check_non_finite_weights", "check_mismatched_state_dicts"):
        monkeypatch.setattr(selfcheck, name,
                            lambda work, name=name: ran.append(name) or selfcheck.Check(name, 1, 1, None, ""))
    others = [name for name in dir(selfcheck) if name.startswith("check_") and name not in
              ("check_torchscript_payload", "check_non_finite_weights", "check_mismatched_state_dicts")]
    for name in others:
        monkeypatch.setattr(selfcheck, name, lambda *a, name=name, **k: selfcheck.Check(name, 1, 1, None, ""))
    monkeypatch.setattr(selfcheck.faults, "make_workload", lambda *a, **k: None)
    monkeypatch.setattr(selfcheck.faults, "reference_run", lambda *a, **k: None)
    names = [check.name for check in selfcheck.run_selfcheck(lambda argv: 2, tmp_path)]
    assert ran == ["check_torchscript_payload", "check_non_finite_weights", "check_mismatched_state_dicts"]
    assert set(ran) <= set(names)
