"""How detection decays with time (notebook 12): the paper's detectors on the newer benchmarks
that are present, each result beside its generator's release date (from the benchmark
manifests) and its set's bias card.

newer benchmark sets present → features → fitted detectors → AP / AUC / accuracy per set,
with release date, in-the-wild flag, metadata_auc and the symmetric control's AP.
"""
from __future__ import annotations

import hashlib
from functools import partial
from pathlib import Path

import pandas as pd
from sklearn.metrics import roc_auc_score

from ufd_lib import config
from ufd_lib.data.benchmark_manifests import benchmark_sets, set_spec_text
from ufd_lib.data.bias_card import BiasCard
from ufd_lib.data.image_sets import ImageSetSpec, PathArgumentError, parse_set_spec
from ufd_lib.data.per_file_list import file_list_bytes, set_file_list
from ufd_lib.evaluation.scoring import EvaluationResult
from ufd_lib.features.extraction.digest_memo import memo_sha256


def newer_test_sets(given: list[str], data_root: Path | None) -> tuple[list[ImageSetSpec], pd.DataFrame]:
    """The newer benchmark sets to evaluate and a table of every manifest set, present or absent.

    given: ``KEY=ADAPTER:PATH[:PATH]`` specifications (a KEY that is a manifest set's key takes its
    release date); data_root: where else to look, as ``data_root/<benchmark>/<adapter arguments>``
    for sets whose arguments name no folder of the user's (None: nowhere). Columns of the table:
    benchmark, key, generator, release_date, in_the_wild, status ("present" or "absent") and spec
    (the adapter and paths read). Raises PathArgumentError for a bad ``given`` specification.
    """
    chosen: dict[str, ImageSetSpec] = {}
    for text in given:
        spec = parse_set_spec(text)
        chosen[spec.name] = spec
    rows = []
    for entry in benchmark_sets():
        if entry.key not in chosen and data_root is not None:
            candidate = set_spec_text(entry, Path(data_root))
            try:
                if candidate is not None:
                    chosen[entry.key] = parse_set_spec(candidate)
            except PathArgumentError:
                pass  # not in this copy
        spec = chosen.get(entry.key)
        rows.append({"benchmark": entry.benchmark, "key": entry.key, "generator": entry.generator,
                     "release_date": entry.release_date, "in_the_wild": entry.in_the_wild,
                     "status": "present" if spec else "absent",
                     "spec": f"{spec.adapter or 'univfd'}:{':'.join(map(str, spec.adapter_paths))}" if spec else ""})
    known = {row["key"] for row in rows}
    for name, spec in chosen.items():
        if name not in known:
            rows.append({"benchmark": "(given)", "key": name, "generator": "unknown", "release_date": None,
                         "in_the_wild": False, "status": "present", "spec": spec.adapter or "univfd"})
    return list(chosen.values()), pd.DataFrame(rows)


def file_list_hashes(specs: list[ImageSetSpec], cache_root: Path | None) -> dict[str, str]:
    """Set name -> SHA-256 of its per-file list (:func:`ufd_lib.data.per_file_list.set_file_list`):
    which copy of the data a result was computed on. Hashes come through the file-identity memo
    of the feature cache at ``cache_root`` (None: the default cache), so images already encoded
    are not read again."""
    sha256s = partial(memo_sha256, directory=cache_root or config.cache_dir())
    return {spec.name: hashlib.sha256(file_list_bytes(set_file_list(spec, sha256s))).hexdigest() for spec in specs}


def absent_benchmarks(sets: pd.DataFrame) -> list[str]:
    """Benchmarks of the manifests none of whose sets is present (``sets``: :func:`newer_test_sets`)."""
    present = set(sets.loc[sets["status"] == "present", "benchmark"])
    return sorted(set(sets["benchmark"]) - present - {"(given)"})


DECAY_NOTE = ("ap, auc, acc: average precision, ROC AUC and accuracy at the classifier's own threshold, percent. "
              "release_date: the generator's first public release, from the benchmark manifest (empty: unknown or "
              "several generators). metadata_auc / flagged: the set's bias card. control_ap: AP on the set re-encoded "
              "alike (JPEG quality 90 for both classes), for flagged sets; the drop from ap is what format gave.")


def roc_auc(result: EvaluationResult, test_set: str) -> float:
    """ROC AUC of one test set's scores (fake positive); NaN when a class is absent."""
    scores = result.scores[result.scores["test_set"] == test_set]
    if scores["label"].nunique() < 2:
        return float("nan")
    return float(roc_auc_score(scores["label"], scores["score"]))


def decay_table(results: dict[str, EvaluationResult], sets: pd.DataFrame, cards: dict[str, BiasCard],
                controls: dict[str, str]) -> pd.DataFrame:
    """One row per (present set, method): AP, AUC and accuracy in percent, the set's release date
    and in-the-wild flag (from ``sets``, :func:`newer_test_sets`), its metadata_auc and flag
    (``cards``), the AP on its symmetric control (``controls``: set -> control set name; NaN
    when none was made) and, where ``sets`` has that column, the SHA-256 of the per-file list of
    the images it read. Sorted by release date (undated last)."""
    present = sets[sets["status"] == "present"].set_index("key")
    rows = []
    for method, result in results.items():
        metrics = result.metrics.set_index("test_set")
        for key in present.index:
            if key not in metrics.index:
                continue
            control = controls.get(key)
            rows.append({
                "set": key, "method": method, "release_date": present.at[key, "release_date"],
                "in_the_wild": bool(present.at[key, "in_the_wild"]),
                "ap": metrics.at[key, "ap"] * 100, "auc": roc_auc(result, key) * 100,
                "acc": metrics.at[key, "acc"] * 100,
                "metadata_auc": cards[key].metadata_auc if key in cards else float("nan"),
                "flagged": cards[key].flagged if key in cards else False,
                "control_ap": metrics.at[control, "ap"] * 100 if control in metrics.index else float("nan"),
                "file_list_sha256": present.at[key, "file_list_sha256"] if "file_list_sha256" in present else "",
            })
    table = pd.DataFrame(rows)
    if table.empty:
        return table
    table["release"] = pd.to_datetime(table["release_date"], format="mixed", errors="coerce")
    return table.sort_values(["release", "set", "method"], na_position="last").drop(columns="release")
