"""``artifacts.jsonl``: the append-only record of what the notebooks of a run saved, one JSON
object a line. Tables and figures: ``{"kind": "table" | "figure", "name", "caption",
"notebook", ...}``; notices: ``{"kind": "notice", "notebook", "text"}`` (a substitution, such
as other weights used or a step skipped)."""
from __future__ import annotations

import json
from pathlib import Path

ARTIFACTS = "artifacts.jsonl"


def append_entry(output_dir: Path, entry: dict) -> None:
    """Append one record (one line, written in one call)."""
    with open(Path(output_dir) / ARTIFACTS, "a") as handle:
        handle.write(json.dumps(entry) + "\n")


def read_artifacts(output_dir: Path) -> list[dict]:
    """Recorded entries in first-recorded order: the last record of each table or figure name
    wins; a notice is kept once per notebook and text."""
    path = Path(output_dir) / ARTIFACTS
    if not path.exists():
        return []
    latest: dict[tuple, dict] = {}
    for line in path.read_text().splitlines():
        if not line.strip():
            continue
        entry = json.loads(line)
        key = (entry["kind"], entry["notebook"], entry["text"]) if entry["kind"] == "notice" else (
            entry["kind"], entry["name"])
        latest[key] = entry
    return list(latest.values())
