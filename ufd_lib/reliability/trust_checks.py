"""Checks of what ufd trusts (``docs/threat_model.md``): directory links inside a set, racy
file identities on a coarse-timestamp file system, probes that overflow float32, a torn run
log and names that could run in a spreadsheet."""
from __future__ import annotations

import hashlib
import os
import time
import warnings
from contextlib import contextmanager
from pathlib import Path

from ufd_lib.reliability import fault_injection as faults
from ufd_lib.reliability.check import Check


def check_directory_links(work: Path) -> Check:
    """A set holding a link to ``/`` and a link back to itself: only the set's own images are
    found, each link listed as skipped with the reason."""
    from ufd_lib.data.discovery import DIRECTORY_LINK, discover_images
    from ufd_lib.data.image_sets import ImageSetSpec

    for folder in ("0_real", "1_fake"):
        faults.make_workload(work / "set" / folder, decodable=2, broken=0, seed=len(folder))
    os.symlink("/", work / "set" / "0_real" / "rootfs")
    os.symlink(work / "set", work / "set" / "1_fake" / "loop")
    found = discover_images(ImageSetSpec("linked", work / "set", work / "set"))
    inside = all(Path(path).parent.parent == work / "set" for path, _ in found.images)
    reasons = dict(found.skipped)
    links = (work / "set" / "0_real" / "rootfs", work / "set" / "1_fake" / "loop")
    fine = [inside and len(found.images) == 4 and reasons.get(str(link)) == DIRECTORY_LINK for link in links]
    return Check("directory links inside a set (to / and a loop)", 2, sum(fine), None,
                 f"not followed; {len(found.images)} images found, each link in skipped.csv: {DIRECTORY_LINK}")


def _whole_seconds(result: os.stat_result) -> os.stat_result:
    fields = list(result) + [float(int(getattr(result, name))) for name in ("st_atime", "st_mtime", "st_ctime")]
    fields += [getattr(result, name) // 10**9 * 10**9 for name in ("st_atime_ns", "st_mtime_ns", "st_ctime_ns")]
    return os.stat_result(fields)


@contextmanager
def _coarse_timestamps():
    """``os.stat`` and ``os.fstat`` answer in whole seconds, as on ext3 or ext4 with 128-byte inodes."""
    real_stat, real_fstat = os.stat, os.fstat
    os.stat = lambda *a, **k: _whole_seconds(real_stat(*a, **k))
    os.fstat = lambda *a, **k: _whole_seconds(real_fstat(*a, **k))
    try:
        yield
    finally:
        os.stat, os.fstat = real_stat, real_fstat


def check_racy_identities(work: Path) -> Check:
    """On simulated 1-second timestamps, a same-size rewrite in place in the second a file was
    hashed keeps its whole identity: the next run must hash it again, not serve the old digest."""
    from ufd_lib.features.extraction.digest_memo import DigestMemo, regular_identity
    from ufd_lib.features.extraction.extract import plan_digests

    image = work / "images" / "a.png"
    image.parent.mkdir(parents=True, exist_ok=True)
    with _coarse_timestamps():
        time.sleep(1 - time.time() % 1 + 0.01)
        image.write_bytes(b"first version")
        before = regular_identity(image)
        plan_digests([image], DigestMemo(work), 1 << 20)
        with open(image, "r+b") as handle:
            handle.write(b"other")
        same_identity = regular_identity(image) == before
        digests, hashed, _ = plan_digests([image], DigestMemo(work), 1 << 20)
    fine = same_identity and hashed == 1 and digests == [hashlib.sha256(b"other version").digest()]
    return Check("same-second rewrite on a 1-second-timestamp file system (simulated)", 1, int(fine), None,
                 "identity unchanged, hashed again on the next run (git's racily clean rule)")


def check_overflowing_probes(work: Path) -> Check:
    """Finite probe weights that overflow float32 (3e38 each; 1e300 in float64): refused at load."""
    import torch

    from ufd_lib.classifiers.linear_probe import LinearProbe, ProbeFileError

    fine, message = 0, ""
    for name, value, dtype in (("float32", 3e38, torch.float32), ("float64", 1e300, torch.float64)):
        path = work / f"{name}.pth"
        torch.save({"weight": torch.full((1, 768), value, dtype=dtype), "bias": torch.zeros(1, dtype=dtype)}, path)
        try:
            LinearProbe.load(path)
        except ProbeFileError as error:
            fine += "overflow float32" in str(error)
            message = str(error).split(": ", 1)[-1]
    return Check("probe weights that overflow float32", 2, fine, None, f"refused at load: {message}")


def check_torn_artifact_log(work: Path) -> Check:
    """A run log whose last line a full disk tore: read with a warning, healed by the next record."""
    from ufd_lib.report.artifact_log import ARTIFACTS, append_entry, read_artifacts

    first = {"kind": "table", "name": "ap", "caption": "AP", "notebook": "03"}
    second = {"kind": "figure", "name": "bars", "caption": "bars", "notebook": "03"}
    append_entry(work, first)
    with open(work / ARTIFACTS, "a") as handle:
        handle.write('{"kind": "fig')
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        read_before = read_artifacts(work)
        append_entry(work, second)
        read_after = read_artifacts(work)
    fine = read_before == [first] and read_after == [first, second] and len(caught) == 2
    return Check("torn last line of the run log (artifacts.jsonl)", 1, int(fine), None,
                 "skipped with a warning, cut off before the next record")


def check_formula_cells(work: Path) -> Check:
    """Set and file names a spreadsheet would run (``=``, ``+``, ``-``, ``@``): written quoted."""
    import pandas as pd

    from ufd_lib.evaluation.scoring import EvaluationResult
    from ufd_lib.report.provenance import write_evaluation

    names = ["=1+1", "+1", "-1", "@SUM(A1)"]
    result = EvaluationResult(metrics=pd.DataFrame({"test_set": names, "ap": [0.5] * 4}),
                              scores=pd.DataFrame({"test_set": names, "path": names, "label": [0] * 4,
                                                   "score": [0.5] * 4}),
                              skipped=pd.DataFrame({"test_set": [], "path": [], "reason": []}))
    write_evaluation(result, {}, work)
    written = pd.read_csv(work / "metrics.csv")["test_set"].tolist()
    fine = sum(cell == "'" + name for cell, name in zip(written, names))
    return Check("names that would start a spreadsheet formula", len(names), fine, None,
                 "written with a leading ' in every CSV cell")
