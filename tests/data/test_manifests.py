"""The shipped manifests validate against the schema, and the benchmark derived from them is
the paper's: 19 test sets, in table order, with the paper's names, families and folders."""
from __future__ import annotations

import copy
import json
from pathlib import Path

import jsonschema
import pytest
import yaml

from ufd_lib.data import manifests
from ufd_lib.data.manifests import (
    SCHEMA_PATH,
    ManifestError,
    UnknownManifestError,
    benchmark_metadata,
    list_manifests,
    load_manifest,
    paper_benchmark,
    paper_training_set,
    paper_validation_set,
)

PAPER_ORDER = [
    "ProGAN", "CycleGAN", "BigGAN", "StyleGAN", "GauGAN", "StarGAN", "Deepfakes", "SITD", "SAN",
    "CRN", "IMLE", "Guided", "LDM_200", "LDM_200_cfg", "LDM_100", "Glide_100_27", "Glide_50_27",
    "Glide_100_10", "DALL-E",
]
SHIPPED = ["cnndetection_test", "cnndetection_train", "cnndetection_val", "univfd_diffusion"]
MANIFEST_FILES = sorted((Path(manifests.__file__).resolve().parent.parent / "data_manifests").glob("*.yaml"))


@pytest.fixture(autouse=True)
def shipped_manifests(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(manifests.MANIFEST_DIR_ENV, raising=False)


@pytest.fixture(scope="module")
def validator() -> jsonschema.Draft202012Validator:
    schema = json.loads(SCHEMA_PATH.read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def test_shipped_manifests_are_listed() -> None:
    assert list_manifests() == SHIPPED


@pytest.mark.parametrize("path", MANIFEST_FILES, ids=lambda p: p.stem)
def test_manifest_matches_schema(path: Path, validator: jsonschema.Draft202012Validator) -> None:
    raw = yaml.safe_load(path.read_text())
    assert [e.message for e in validator.iter_errors(raw)] == []
    assert raw["name"] == path.stem
    assert load_manifest(path.stem).name == path.stem


@pytest.mark.parametrize(
    "edit",
    [
        lambda m: m["archive"]["sources"][0].update(sha256="not-a-checksum"),
        lambda m: m["sets"][0].pop("count_note"),
        lambda m: m["sets"][0].update(real_dir="../elsewhere"),
        lambda m: m["sets"][0].update(generator_family="vibes"),
        lambda m: m["sets"][0].pop("paper_table_column"),
        lambda m: m["archive"]["sources"][0].update(kind="ftp"),
    ],
    ids=["bad-checksum", "no-count-note", "dotdot-path", "unknown-family", "test-set-without-column", "unknown-kind"],
)
def test_schema_rejects_broken_manifests(edit, validator: jsonschema.Draft202012Validator) -> None:
    raw = copy.deepcopy(yaml.safe_load((SCHEMA_PATH.parent / "cnndetection_test.yaml").read_text()))
    edit(raw)
    assert list(validator.iter_errors(raw))


def test_invalid_manifest_fails_on_load(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    raw = yaml.safe_load((SCHEMA_PATH.parent / "univfd_diffusion.yaml").read_text())
    raw["sets"][0]["images_per_class"]["real"] = -5
    (tmp_path / "univfd_diffusion.yaml").write_text(yaml.safe_dump(raw))
    monkeypatch.setenv(manifests.MANIFEST_DIR_ENV, str(tmp_path))
    with pytest.raises(ManifestError, match="images_per_class"):
        load_manifest("univfd_diffusion")


def test_unknown_manifest_names_the_known_ones() -> None:
    with pytest.raises(UnknownManifestError, match="cnndetection_test"):
        load_manifest("imagenet_1k")


def test_paper_benchmark_is_19_sets_in_table_order() -> None:
    root = Path("/data")
    benchmark = paper_benchmark(root)
    assert [spec.name for spec in benchmark] == PAPER_ORDER
    by_name = {spec.name: spec for spec in benchmark}
    assert by_name["ProGAN"].real_root == by_name["ProGAN"].fake_root == root / "test" / "progan"
    assert by_name["SITD"].real_root == root / "test" / "seeingdark"
    assert by_name["Guided"].real_root == root / "diffusion_datasets" / "imagenet"
    assert by_name["Guided"].fake_root == root / "diffusion_datasets" / "guided"
    for name in PAPER_ORDER[12:]:
        assert by_name[name].real_root == root / "diffusion_datasets" / "laion"


def test_benchmark_metadata_groups_by_family() -> None:
    table = benchmark_metadata()
    assert list(table["paper_name"]) == PAPER_ORDER
    assert list(table["paper_table_column"]) == list(range(1, 20))
    families = table.groupby("generator_family")["paper_name"].apply(list).to_dict()
    assert families == {
        "GAN": ["ProGAN", "CycleGAN", "BigGAN", "StyleGAN", "GauGAN", "StarGAN"],
        "face swap": ["Deepfakes"],
        "low-level vision": ["SITD", "SAN"],
        "perceptual loss": ["CRN", "IMLE"],
        "diffusion": PAPER_ORDER[11:18],
        "autoregressive": ["DALL-E"],
    }
    # Called through the module: imported bare, pytest would collect it as a test.
    assert manifests.test_set_families() == dict(zip(table["paper_name"], table["generator_family"]))
    sources = dict(zip(table["paper_name"], table["real_source"]))
    assert sources["ProGAN"] == "LSUN" and sources["BigGAN"] == "ImageNet" and sources["GauGAN"] == "COCO"
    assert sources["StarGAN"] == "CelebA" and sources["Guided"] == "ImageNet" and sources["DALL-E"] == "LAION"


def test_training_and_validation_sets() -> None:
    root = Path("/data")
    assert paper_training_set(root).real_root == root / "train" / "progan"
    assert paper_validation_set(root).real_root == root / "test" / "progan"  # released code
    assert paper_validation_set(root, "cnndetection").real_root == root / "val" / "progan"
    with pytest.raises(ValueError):
        paper_validation_set(root, "mine")


def test_training_set_counts_are_the_papers() -> None:
    (entry,) = load_manifest("cnndetection_train").sets
    assert len(entry.categories) == 20
    assert entry.expected_real == entry.expected_fake == 360_000
    assert entry.expected_per_category * len(entry.categories) == 360_000


def test_counts_are_consistent_where_known() -> None:
    for name in SHIPPED:
        for entry in load_manifest(name).sets:
            if entry.categories and entry.expected_per_category is not None:
                total = entry.expected_per_category * len(entry.categories)
                assert entry.expected_real in (None, total) and entry.expected_fake in (None, total)


def test_diffusion_release_has_1k_per_class() -> None:
    for entry in load_manifest("univfd_diffusion").sets:
        assert (entry.expected_real, entry.expected_fake) == (1000, 1000)


def test_every_source_with_a_checksum_is_pinned_and_drive_ids_match_the_readmes() -> None:
    drive_ids = {
        name: [s.file_id for s in load_manifest(name).archive.sources if s.kind == "gdrive"] for name in SHIPPED
    }
    assert drive_ids == {
        "cnndetection_test": ["1z_fD3UKgWQyOTZIBbYSaQ-hz4AzUrLC1"],
        "cnndetection_train": ["1iVNBV0glknyTYGA9bCxT_d0CVTOgGcKh"],
        "cnndetection_val": ["1FU7xF8Wl_F8b0tgL0529qg2nZ_RpdVNL"],
        "univfd_diffusion": ["1FXlGIRh_Ud3cScMgSVDbEWmPDmjcrm1t"],
    }
    for name in SHIPPED:
        for source in load_manifest(name).archive.sources:
            if source.sha256 is not None and source.kind == "http":
                # A checksum only makes sense for an immutable URL: pinned to a revision.
                assert "/resolve/" in source.url and "/resolve/main/" not in source.url


def test_manifest_dir_override(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "univfd_diffusion.yaml").write_text((SCHEMA_PATH.parent / "univfd_diffusion.yaml").read_text())
    monkeypatch.setenv(manifests.MANIFEST_DIR_ENV, str(tmp_path))
    assert list_manifests() == ["univfd_diffusion"]
    assert [spec.name for spec in paper_benchmark(Path("/d"))] == PAPER_ORDER[11:]
