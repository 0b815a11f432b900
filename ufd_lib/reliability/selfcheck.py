"""``ufd selfcheck``: the reliability report. Faults injected and survived, hostile inputs
tried and refused, and every result compared with a clean run.

Each check runs real code paths on generated data in a scratch folder (random-weight
``random-clip:tiny``, CPU, offline) and counts its cases and how many ended as they must:
the correct result (bit for bit equal to an uninterrupted run where there is one) or a
clear refusal (the error type and message the user would see). The report is a Markdown
table; its figures go into the README.
"""
from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from ufd_lib.reliability import fault_injection as faults
from ufd_lib.reliability.cache_checks import (
    check_concurrency,
    check_damaged_chunks,
    check_kills,
    check_non_finite_features,
    check_orphans_removed,
    check_symlinked_chunks,
    check_unwritable_cache,
    check_write_deaths,
    check_wrong_type_records,
    check_wrong_width,
)
from ufd_lib.reliability.check import Check
from ufd_lib.reliability.checkpoint_checks import (
    check_mismatched_state_dicts,
    check_non_finite_weights,
    check_pickle_payloads,
    check_torchscript_payload,
)
from ufd_lib.reliability.input_checks import (
    check_command_lines,
    check_files_changed_after_planning,
    check_hostile_archives,
    check_hostile_data_root,
    check_hostile_images,
    check_inputs_that_are_not_images,
    check_non_finite_encoder_output,
)
from ufd_lib.reliability.output_checks import (
    check_full_disk_evaluate,
    check_metric_edge_cases,
    check_non_finite_scores,
)
from ufd_lib.reliability.trust_checks import (
    check_directory_links,
    check_formula_cells,
    check_overflowing_probes,
    check_racy_identities,
    check_torn_artifact_log,
)


def _timed(function: Callable[[], Check]) -> Check:
    started = time.perf_counter()
    check = function()
    check.seconds = time.perf_counter() - started
    return check


def run_selfcheck(command_line: Callable[[list[str]], int], work: Path | None = None, *, trials: int = 20,
                  rounds: int = 3, fuzz: int = 300, seed: int = 0) -> list[Check]:
    """Run every check in ``work`` (a temporary folder, removed afterwards, when None).
    command_line: the ``ufd`` entry point (``argv -> exit status``) whose usage errors are fuzzed."""
    scratch = Path(tempfile.mkdtemp(prefix="ufd-selfcheck-")) if work is None else Path(work)
    try:
        workload = faults.make_workload(scratch / "workload")
        reference = faults.reference_run(workload, scratch / "reference")
        return [
            _timed(lambda: check_kills(workload, scratch / "kills", reference, trials, seed)),
            _timed(lambda: check_write_deaths(workload, scratch / "write-deaths", reference)),
            _timed(lambda: check_concurrency(workload, scratch / "concurrency", reference, rounds)),
            _timed(lambda: check_damaged_chunks(workload, scratch / "damage", scratch / "reference" / "cache",
                                                reference)),
            _timed(lambda: check_wrong_type_records(workload, _fresh(scratch / "records"),
                                                    scratch / "reference" / "cache", reference)),
            _timed(lambda: check_wrong_width(workload, _fresh(scratch / "widths"), scratch / "reference" / "cache",
                                             reference)),
            _timed(lambda: check_symlinked_chunks(workload, _fresh(scratch / "links"),
                                                  scratch / "reference" / "cache", reference)),
            _timed(lambda: check_orphans_removed(workload, scratch / "orphans", reference)),
            _timed(lambda: check_non_finite_features(workload, _fresh(scratch / "non-finite-cache"),
                                                     scratch / "reference" / "cache", reference)),
            _timed(lambda: check_unwritable_cache(_fresh(scratch / "unwritable"))),
            _timed(lambda: check_pickle_payloads(_fresh(scratch / "pickles"))),
            _timed(lambda: check_torchscript_payload(_fresh(scratch / "torchscript"))),
            _timed(lambda: check_non_finite_weights(_fresh(scratch / "non-finite-weights"))),
            _timed(lambda: check_mismatched_state_dicts(_fresh(scratch / "mismatched"))),
            _timed(lambda: check_hostile_images(_fresh(scratch / "images"), fuzz, seed)),
            _timed(lambda: check_command_lines(command_line, _fresh(scratch / "cli"), fuzz, seed)),
            _timed(check_metric_edge_cases),
            _timed(lambda: check_hostile_archives(_fresh(scratch / "archives"))),
            _timed(lambda: check_hostile_data_root(_fresh(scratch / "data-root"))),
            _timed(lambda: check_full_disk_evaluate(command_line, _fresh(scratch / "full-disk"))),
            _timed(lambda: check_non_finite_scores(_fresh(scratch / "non-finite-scores"))),
            _timed(lambda: check_files_changed_after_planning(_fresh(scratch / "changed-files"))),
            _timed(lambda: check_inputs_that_are_not_images(_fresh(scratch / "not-images"))),
            _timed(lambda: check_non_finite_encoder_output(_fresh(scratch / "non-finite-output"))),
            _timed(lambda: check_directory_links(_fresh(scratch / "directory-links"))),
            _timed(lambda: check_racy_identities(_fresh(scratch / "racy"))),
            _timed(lambda: check_overflowing_probes(_fresh(scratch / "overflowing-probes"))),
            _timed(lambda: check_torn_artifact_log(_fresh(scratch / "torn-log"))),
            _timed(lambda: check_formula_cells(_fresh(scratch / "formula-cells"))),
        ]
    finally:
        if work is None:
            shutil.rmtree(scratch, ignore_errors=True)


def _fresh(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def report_markdown(checks: list[Check]) -> str:
    lines = ["| check | cases | ended as they must | differences from a clean run | seconds | detail |",
             "|---|---|---|---|---|---|"]
    for c in checks:
        differences = "n/a" if c.differences is None else str(c.differences)
        lines.append(f"| {c.name} | {c.cases} | {c.as_expected} | {differences} | {c.seconds:.0f} | {c.detail} |")
    total = sum(c.cases for c in checks)
    good = sum(c.as_expected for c in checks)
    verdict = "PASSED" if all(c.passed for c in checks) else "FAILED"
    lines += ["", f"{verdict}: {good} of {total} cases ended as they must."]
    return "\n".join(lines)
