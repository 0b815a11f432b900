"""``artifacts.jsonl``: the append-only record of what the notebooks of a run saved, one JSON
object a line. Tables and figures: ``{"kind": "table" | "figure", "name", "caption",
"notebook", ...}``; notices: ``{"kind": "notice", "notebook", "text"}`` (a substitution, such
as other weights used or a step skipped).

The log heals itself: a last line torn by a full disk or a killed writer (no final newline)
is cut off, with a warning, before the next record is appended; a line that is not a record
is skipped, with a warning naming the file and the line, when the log is read."""
from __future__ import annotations

import json
import os
import warnings
from pathlib import Path

ARTIFACTS = "artifacts.jsonl"
_REQUIRED = {"notice": ("notebook", "text")}
_REQUIRED_OTHERWISE = ("name", "notebook")


def _cut_torn_tail(handle, path: Path) -> None:
    """Truncate ``handle`` (opened ``r+b``) after its last newline when it does not end in one."""
    size = handle.seek(0, os.SEEK_END)
    if size == 0:
        return
    handle.seek(size - 1)
    if handle.read(1) == b"\n":
        return
    start = max(0, size - (1 << 20))
    handle.seek(start)
    tail = handle.read()
    keep = start + tail.rfind(b"\n") + 1 if b"\n" in tail else 0
    warnings.warn(f"{path}: its last record was torn (a full disk or a killed writer); dropped it", stacklevel=3)
    handle.truncate(keep)


def append_entry(output_dir: Path, entry: dict) -> None:
    """Append one record (one line, written in one call), cutting off a torn last line first."""
    path = Path(output_dir) / ARTIFACTS
    line = (json.dumps(entry) + "\n").encode()
    with open(path, "ab") as handle:  # creates the log
        pass
    with open(path, "r+b") as handle:
        _cut_torn_tail(handle, path)
        handle.seek(0, os.SEEK_END)
        handle.write(line)


def _record(line: str) -> dict | None:
    """The record a line holds, or None when it is not one (torn, edited, another shape)."""
    try:
        entry = json.loads(line)
    except ValueError:
        return None
    if not isinstance(entry, dict) or not isinstance(entry.get("kind"), str):
        return None
    required = _REQUIRED.get(entry["kind"], _REQUIRED_OTHERWISE)
    return entry if all(isinstance(entry.get(key), str) for key in required) else None


def read_artifacts(output_dir: Path) -> list[dict]:
    """Recorded entries in first-recorded order: the last record of each table or figure name
    wins; a notice is kept once per notebook and text. Lines that are not records are skipped
    with a warning."""
    path = Path(output_dir) / ARTIFACTS
    if not path.exists():
        return []
    latest: dict[tuple, dict] = {}
    for number, line in enumerate(path.read_text(errors="replace").splitlines(), start=1):
        if not line.strip():
            continue
        entry = _record(line)
        if entry is None:
            warnings.warn(f"{path}, line {number}: not a record (torn or edited); skipped", stacklevel=2)
            continue
        key = (entry["kind"], entry["notebook"], entry["text"]) if entry["kind"] == "notice" else (
            entry["kind"], entry["name"])
        latest[key] = entry
    return list(latest.values())
