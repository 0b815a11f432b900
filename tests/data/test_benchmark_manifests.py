"""The newer benchmarks' manifests validate against their part of the schema, name an adapter
ufd has, carry the owner's licence and checksums as published, and never a download link for a
set whose licence forbids redistribution."""
from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest
import yaml

from ufd_lib.data import manifests
from ufd_lib.data.adapters import ADAPTERS
from ufd_lib.data.benchmark_manifests import benchmark_sets, list_benchmark_manifests, load_benchmark_manifest
from ufd_lib.data.manifests import SCHEMA_PATH, ManifestError

FILES = sorted((Path(manifests.__file__).resolve().parent.parent / "data_manifests" / "benchmarks").glob("*.yaml"))


@pytest.fixture(autouse=True)
def shipped_manifests(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(manifests.MANIFEST_DIR_ENV, raising=False)


@pytest.fixture(scope="module")
def validator() -> jsonschema.Draft202012Validator:
    schema = json.loads(SCHEMA_PATH.read_text())
    return jsonschema.Draft202012Validator({"$ref": "#/$defs/benchmark_manifest", "$defs": schema["$defs"]})


def test_at_least_eight_newer_benchmarks_are_shipped() -> None:
    assert len(list_benchmark_manifests()) == len(FILES) >= 8


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.stem)
def test_benchmark_manifest_matches_schema(path: Path, validator) -> None:
    raw = yaml.safe_load(path.read_text())
    assert [error.message for error in validator.iter_errors(raw)] == []
    manifest = load_benchmark_manifest(path.stem)
    assert manifest.adapter is None or manifest.adapter in ADAPTERS
    assert manifest.adapter is None or manifest.adapter_example.split("=", 1)[1].startswith(f"{manifest.adapter}:")
    if manifest.redistribution == "forbidden":
        assert all(item["kind"] == "on_request" for item in raw["published_at"])


def test_owner_checksums_and_known_defects_are_carried() -> None:
    synthbuster = load_benchmark_manifest("synthbuster")
    assert ("synthbuster.zip", "md5", "0695bd328e16ea21c5c9cc2ae1d994ff") in synthbuster.upstream_checksums
    assert any("format bias" in text.lower() for text in load_benchmark_manifest("diffusionforensics").known_defects)
    assert load_benchmark_manifest("chameleon").redistribution == "forbidden"


def test_release_dates_are_dates_or_unknown() -> None:
    dates = [entry.release_date for entry in benchmark_sets() if entry.release_date is not None]
    assert len(dates) >= 20 and all(len(date) in (7, 10) for date in dates)


def test_a_benchmark_manifest_that_breaks_the_schema_is_refused_in_one_line(tmp_path: Path, monkeypatch) -> None:
    (tmp_path / "benchmarks").mkdir()
    raw = yaml.safe_load(FILES[0].read_text())
    raw["sets"][0]["release_date"] = "last spring"
    (tmp_path / "benchmarks" / f"{FILES[0].stem}.yaml").write_text(yaml.safe_dump(raw))
    monkeypatch.setenv(manifests.MANIFEST_DIR_ENV, str(tmp_path))
    with pytest.raises(ManifestError, match=r"sets/0/release_date") as caught:
        load_benchmark_manifest(FILES[0].stem)
    assert "\n" not in str(caught.value)
