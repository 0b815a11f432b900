"""``ufd selfcheck`` rows for a feature cache that never serves anything wrong: each damages a
copy of a clean run's cache (or kills a writer), runs an extraction, and must end equal to it."""
from __future__ import annotations

import pytest

from ufd_lib.reliability import cache_checks, selfcheck
from ufd_lib.reliability import fault_injection as faults


@pytest.fixture(scope="module")
def clean_run(tmp_path_factory):
    """A small workload (two groups) and its uninterrupted cache: (workload, cache root, rows)."""
    work = tmp_path_factory.mktemp("clean")
    workload = faults.make_workload(work / "workload", decodable=16, broken=1)
    rows = faults.reference_run(workload, work / "reference")
    assert len(rows) == 16
    return workload, work / "reference" / "cache", rows


@pytest.mark.parametrize("check, cases", [
    (selfcheck.check_wrong_type_records, len(cache_checks.WRONG_TYPE_RECORDS)),
    (selfcheck.check_wrong_width, 2),
    (selfcheck.check_symlinked_chunks, 3),
    (selfcheck.check_non_finite_features, 5),
])
def test_damaged_cache_rows_pass(clean_run, tmp_path, check, cases):
    workload, cache_root, rows = clean_run
    result = check(workload, tmp_path, cache_root, rows)
    assert (result.cases, result.as_expected, result.differences) == (cases, cases, 0), result
    assert result.passed


def test_orphans_row_passes(clean_run, tmp_path):
    workload, _, rows = clean_run
    result = selfcheck.check_orphans_removed(workload, tmp_path, rows)
    assert (result.cases, result.as_expected, result.differences) == (2, 2, 0), result

