"""Fault injection: extractions killed with SIGKILL anywhere, and two processes sharing one cache.

The machinery lives in :mod:`ufd_lib.reliability.fault_injection` (``ufd selfcheck`` runs it longer);
here each scenario runs a few times and must end with the cache bit for bit equal to one
uninterrupted run's.
"""
from __future__ import annotations

import pytest

from ufd_lib.reliability import fault_injection as faults


@pytest.fixture(scope="module")
def workload(tmp_path_factory):
    return faults.make_workload(tmp_path_factory.mktemp("workload"))


@pytest.fixture(scope="module")
def reference(workload, tmp_path_factory):
    rows = faults.reference_run(workload, tmp_path_factory.mktemp("reference"))
    assert len(rows) == workload.decodable
    return rows


def test_killed_runs_resume_to_the_uninterrupted_result(workload, reference, tmp_path):
    records = faults.kill_and_resume(workload, tmp_path, reference, trials=4, seed=1)
    assert all(record["identical"] for record in records), records
    assert any(record["killed"] and 0 < record["committed_when_killed"] < len(reference) for record in records), \
        "no kill landed in the middle of a run"


def test_death_in_each_step_of_writing_a_chunk_is_recovered(workload, reference, tmp_path):
    records = faults.die_in_every_write(workload, tmp_path, reference, calls=4)
    assert all(record["died"] for record in records), records
    assert all(record["identical"] for record in records), records
    assert all(record["chunk_leftovers"] == 0 for record in records), records


def test_two_processes_share_the_work_without_repeating_it(workload, reference, tmp_path):
    result = faults.concurrent_extractions(workload, tmp_path, reference, processes=2)
    assert result["all_finished"] and result["identical"]
    assert result["duplicated"] <= faults.GROUP_IMAGES, result
    assert min(result["encoded"]) > 0, "both processes took part"


def test_a_group_held_by_a_live_process_is_waited_for_not_redone(workload, reference, tmp_path):
    """A claim held by another process makes extraction wait; it then finds the group committed."""
    from ufd_lib.features.extraction.work_claims import GroupClaims

    first = faults.run_extraction(workload, tmp_path / "cache", tmp_path / "first.json", delay=0)
    assert first == {"encoded": workload.decodable, "skipped": workload.broken}
    again = faults.run_extraction(workload, tmp_path / "cache", tmp_path / "again.json", delay=0)
    assert again == {"encoded": 0, "skipped": workload.broken}
    claims = GroupClaims(faults.cache_folder(tmp_path / "cache"))
    assert claims.try_claim("some-group") and not GroupClaims(claims.folder.parent).try_claim("some-group")
    claims.release("some-group")
    assert GroupClaims(claims.folder.parent).try_claim("some-group")
