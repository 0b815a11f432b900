"""Provenance: the library versions and settings behind a result, and the files of one
``ufd evaluate`` run (metrics.csv, scores.csv, skipped.csv, run.json)."""
from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import platform
import subprocess
import sys
from importlib import metadata
from pathlib import Path

from filelock import FileLock

from ufd_lib.atomic_files import atomic_write_files
from ufd_lib.evaluation.metrics import mean_coverage
from ufd_lib.evaluation.scoring import EvaluationResult
from ufd_lib.features.encoders import Encoder
from ufd_lib.features.extraction.extract import ExtractionReport
from ufd_lib.report.csv_cells import spreadsheet_safe


def library_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for package in ("ufd", "torch", "torchvision", "openai-clip", "numpy", "scikit-learn", "pandas", "pillow"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = "not installed"
    return versions


def code_revision(package_dir: Path | None = None) -> str:
    """The git commit of the ufd code that runs, with ``(uncommitted changes)`` when tracked files
    differ from it, or ``not a git checkout`` (an installed wheel, no git, or a package folder
    that is not the top of the repository around it)."""
    package_dir = Path(package_dir or Path(__file__).resolve().parent.parent)
    source = package_dir.parent

    def git(*arguments: str) -> str:
        return subprocess.run(["git", "-C", str(source), *arguments], capture_output=True, text=True,
                              timeout=30, check=True).stdout.strip()

    try:
        if Path(git("rev-parse", "--show-toplevel")).resolve() != source.resolve():
            return "not a git checkout"
        commit = git("rev-parse", "HEAD")
        dirty = git("status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.SubprocessError):
        return "not a git checkout"
    return f"{commit} (uncommitted changes)" if dirty else commit


def json_ready(value):
    """``value`` as JSON types only: dataclasses (an image set) become dicts of their fields,
    paths strings, tuples and sets lists, NumPy scalars numbers; anything else its ``str``."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {field.name: json_ready(getattr(value, field.name)) for field in dataclasses.fields(value)}
    if isinstance(value, dict):
        return {str(key): json_ready(item) for key, item in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [json_ready(item) for item in value]
    if hasattr(value, "item") and callable(value.item) and not isinstance(value, (bool, int, float, str)):
        value = value.item()  # a NumPy scalar
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return str(value)


def run_record(encoder: Encoder, report: ExtractionReport, settings: dict) -> dict:
    """The provenance written to ``run.json`` (JSON types only, see :func:`json_ready`)."""
    return {
        "command": sys.argv,
        "encoder": encoder.name,
        "checkpoint_sha256": encoder.checkpoint_sha256,
        "checkpoint_path": encoder.checkpoint_path,
        "checkpoint_official": encoder.checkpoint_official,
        "device": str(encoder.device),
        "images_encoded": report.images_encoded,
        "images_from_cache": report.images_from_cache,
        "images_skipped": len(report.skipped),
        "files_hashed": report.files_hashed,
        "files_recognised": report.files_recognised,
        "encode_seconds": round(report.encode_seconds, 3),
        "images_per_second": report.images_per_second,
        "settings": json_ready(settings),
        "code": code_revision(),
        "versions": library_versions(),
    }


OUT_LOCK_NAME = ".ufd-out.lock"


def write_evaluation(result: EvaluationResult, record: dict, out_dir: Path) -> None:
    """Write metrics.csv, scores.csv, skipped.csv and run.json into ``out_dir``, all or nothing
    (:func:`ufd_lib.atomic_files.atomic_write_files`), run.json last as the commit record: on a
    full disk the OSError names the file and the results already there stay as they were.

    Floats are written as Python's shortest round-trip text, so reading scores.csv back gives
    the very scores every metric of metrics.csv was computed from. Text cells that could start a
    formula get a leading ``'`` (:mod:`ufd_lib.report.csv_cells`).

    Runs writing to one ``out_dir`` at once commit one after the other (a lock,
    ``<out_dir>/.ufd-out.lock``), so the folder ends holding one run's files, never a mix; and
    run.json names the SHA-256 of the three tables it goes with (``tables_sha256``), so a reader
    can tell a set of one run from a mix, and the test sets the ``mean`` row covers (``mean_covers``).
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    tables = {
        "metrics.csv": spreadsheet_safe(result.metrics).to_csv(index=False).encode(),
        "scores.csv": spreadsheet_safe(result.scores).to_csv(index=False).encode(),
        "skipped.csv": spreadsheet_safe(result.skipped[["test_set", "path", "reason"]]).to_csv(index=False).encode(),
    }
    record = {**record, "mean_covers": mean_coverage(result.metrics) if len(result.metrics) else "no test set",
              "tables_sha256": {name: hashlib.sha256(data).hexdigest() for name, data in tables.items()}}
    files = {out_dir / name: data for name, data in tables.items()}
    files[out_dir / "run.json"] = (json.dumps(json_ready(record), indent=2, allow_nan=False) + "\n").encode()
    with FileLock(out_dir / OUT_LOCK_NAME):
        atomic_write_files(files)
