"""``ufd data verify --benchmark NAME``: a user's copy of a newer benchmark against what its owner
publishes: the archive checksums (MD5 or SHA-256) of the files the manifest names, where those
files lie in the data root, and each set's class counts where the manifest knows them and the
set lies in the owner's layout (``DATA_ROOT/<benchmark>/<adapter arguments>``). Upstream per-image
lists (SPAI, ImagiNet) are read by their adapters, which report every listed file that is absent.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

from ufd_lib.data.benchmark_manifests import load_benchmark_manifest, set_spec_text
from ufd_lib.data.discovery import discover_images
from ufd_lib.data.image_sets import PathArgumentError, parse_set_spec

ARCHIVE_FOLDERS = ("", "{name}", "downloads")  # where an archive is looked for, under the data root


@dataclass
class BenchmarkCheck:
    """One line per check: (what, verdict, detail); ok is False when any verdict is MISMATCH."""

    name: str
    lines: list[tuple[str, str, str]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(verdict != "MISMATCH" for _, verdict, _ in self.lines)

    def summary(self) -> str:
        width = max((len(what) for what, _, _ in self.lines), default=0)
        text = [f"{self.name}:"]
        text += [f"  {what:<{width}}  {verdict:<11} {detail}" for what, verdict, detail in self.lines]
        text.append("Result: matches what the owner publishes, where it could be checked" if self.ok
                    else "Result: DOES NOT MATCH what the owner publishes")
        return "\n".join(text)


def _file_digest(path: Path, algorithm: str) -> str:
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, algorithm).hexdigest()


def verify_benchmark(name: str, data_root: Path) -> BenchmarkCheck:
    """Check ``data_root`` against the benchmark manifest ``name``; raises ManifestError for an
    unknown or broken manifest."""
    manifest = load_benchmark_manifest(name)
    check = BenchmarkCheck(name)
    for file, algorithm, expected in manifest.upstream_checksums:
        found = next((Path(data_root) / folder.format(name=name) / file for folder in ARCHIVE_FOLDERS
                      if (Path(data_root) / folder.format(name=name) / file).is_file()), None)
        if found is None:
            check.lines.append((file, "not present", "nothing to check"))
            continue
        digest = _file_digest(found, algorithm)
        verdict = "OK" if digest == expected else "MISMATCH"
        owner = "" if verdict == "OK" else f", owner's {expected}"
        check.lines.append((file, verdict, f"{algorithm} {digest}{owner}"))
    for entry in manifest.sets:
        text = set_spec_text(entry, data_root)
        if text is None:
            form = f"{entry.key}={manifest.adapter or 'folders'}:{entry.adapter_arguments}"
            check.lines.append((entry.key, "own folders", f"evaluate with --test {form} (your paths)"))
            continue
        try:
            images = discover_images(parse_set_spec(text)).images
        except PathArgumentError:
            check.lines.append((entry.key, "not present", f"looked for {text.split('=', 1)[1]}"))
            continue
        n_real = sum(1 for image in images if image.label == 0)
        counts = (n_real, len(images) - n_real)
        expected = (entry.expected_real, entry.expected_fake)
        known = all(value is not None for value in expected)
        verdict = ("OK" if counts == expected else "MISMATCH") if known else "found"
        check.lines.append((entry.key, verdict, f"{counts[0]} real, {counts[1]} fake"
                            + (f" (expected {expected[0]}, {expected[1]})" if known else " (expected counts unknown)")))
    return check
