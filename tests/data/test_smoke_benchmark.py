"""The synthetic smoke benchmark: layout, counts, determinism, safe (re)generation, artefacts."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ufd_lib.data import smoke_benchmark
from ufd_lib.data.discovery import find_class_images
from ufd_lib.data.smoke_benchmark import MANIFEST_NAME, generate_smoke_benchmark

SMALL = dict(images_per_class=8, train_categories=("cat", "dog"), image_size=64, seed=3)
CATEGORY_SETS = {"progan": ("cat", "dog"), "stylegan": ("bedroom", "car", "cat"), "cyclegan": ("horse", "zebra")}
FLAT_SETS = ("biggan", "gaugan", "stargan")
DIFFUSION_SETS = {"guided": "imagenet", "ldm_200": "laion", "glide_100_27": "laion", "dalle": "laion"}


@pytest.fixture(scope="module")
def bench(tmp_path_factory):
    return generate_smoke_benchmark(tmp_path_factory.mktemp("smoke") / "bench", **SMALL)


def _files(root: Path) -> dict[str, Path]:
    return {str(path.relative_to(root)): path for path in sorted(root.rglob("*")) if path.is_file()}


def _gray(path: str) -> np.ndarray:
    return np.asarray(Image.open(path).convert("L"), np.float64)


def _auc(fake: list[float], real: list[float]) -> float:
    """P(statistic of a fake > statistic of a real)."""
    return float(np.mean(np.asarray(fake)[:, None] > np.asarray(real)[None, :]))


def _set_images(spec) -> tuple[list[str], list[str]]:
    return find_class_images(spec.real_root, "0_real"), find_class_images(spec.fake_root, "1_fake")


def test_layout_matches_the_papers_data(bench):
    expected = set()
    for split in ("train", "val"):
        categories = SMALL["train_categories"]
        expected |= {f"{split}/progan/{c}/{label}" for c in categories for label in ("0_real", "1_fake")}
        expected |= {f"{split}/ldm/{label}" for label in ("0_real", "1_fake")}
    for name, categories in CATEGORY_SETS.items():
        expected |= {f"test/{name}/{c}/{label}" for c in categories for label in ("0_real", "1_fake")}
    expected |= {f"test/{name}/{label}" for name in FLAT_SETS for label in ("0_real", "1_fake")}
    expected |= {f"diffusion_datasets/{source}/0_real" for source in ("imagenet", "laion")}
    expected |= {f"diffusion_datasets/{name}/1_fake" for name in DIFFUSION_SETS}

    image_dirs = {str(path.parent.relative_to(bench.root)) for path in bench.root.rglob("*.png")}
    assert image_dirs == expected
    assert {path.name for path in bench.root.iterdir() if path.is_file()} == {MANIFEST_NAME}


def test_specs_point_at_the_right_existing_directories(bench):
    root = bench.root
    assert bench.train.name == bench.val.name == "progan"
    assert bench.train.real_root == bench.train.fake_root == root / "train" / "progan"
    assert bench.val.real_root == bench.val.fake_root == root / "val" / "progan"
    by_name = {spec.name: spec for spec in bench.test_sets}
    assert set(by_name) == set(CATEGORY_SETS) | set(FLAT_SETS) | set(DIFFUSION_SETS)
    for name in (*CATEGORY_SETS, *FLAT_SETS):
        assert by_name[name].real_root == by_name[name].fake_root == root / "test" / name
    for name, source in DIFFUSION_SETS.items():
        assert by_name[name].real_root == root / "diffusion_datasets" / source
        assert by_name[name].fake_root == root / "diffusion_datasets" / name
    ldm_train, ldm_val = bench.other_training["ldm"]
    assert ldm_train.real_root == ldm_train.fake_root == root / "train" / "ldm"
    assert ldm_val.real_root == ldm_val.fake_root == root / "val" / "ldm"
    for spec in (bench.train, bench.val, *bench.test_sets, ldm_train, ldm_val):
        assert spec.real_root.is_dir() and spec.fake_root.is_dir()


def test_counts_names_and_image_format(bench):
    per_class = SMALL["images_per_class"]
    n_categories = len(SMALL["train_categories"])
    counts = json.loads((bench.root / MANIFEST_NAME).read_text())["counts"]
    expected = {"train": per_class * n_categories, "val": max(4, per_class // 4) * n_categories}
    expected |= {spec.name: per_class for spec in bench.test_sets}
    expected |= {"train_ldm": 2 * per_class, "val_ldm": max(4, per_class // 4)}
    keyed = [("train", bench.train), ("val", bench.val)] + [(spec.name, spec) for spec in bench.test_sets]
    keyed += [("train_ldm", bench.other_training["ldm"][0]), ("val_ldm", bench.other_training["ldm"][1])]
    for key, spec in keyed:
        real, fake = _set_images(spec)
        assert len(real) == len(fake) == expected[key] == counts[key]["real"] == counts[key]["fake"]
    for directory in {path.parent for path in bench.root.rglob("*.png")}:
        names = sorted(path.name for path in directory.iterdir())
        assert names == [f"{index:06d}.png" for index in range(len(names))]
    for path in list(bench.root.rglob("*.png"))[::7]:
        with Image.open(path) as image:
            assert (image.format, image.mode, image.size) == ("PNG", "RGB", (64, 64))


def test_fakes_never_copy_real_content(bench):
    for spec in bench.test_sets:
        real, fake = _set_images(spec)
        real_pixels = np.stack([_gray(path) for path in real])
        for path in fake:
            assert np.abs(real_pixels - _gray(path)).mean(axis=(1, 2)).min() > 2.0


def test_generation_is_deterministic(bench, tmp_path):
    again = generate_smoke_benchmark(tmp_path / "other", **SMALL)
    first, second = _files(bench.root), _files(again.root)
    assert first.keys() == second.keys()
    for name, path in first.items():
        assert path.read_bytes() == second[name].read_bytes(), name


def test_second_call_rewrites_nothing(tmp_path):
    root = tmp_path / "bench"
    first = generate_smoke_benchmark(root, **SMALL)
    stamps = {path: path.stat().st_mtime_ns for path in [root, *root.rglob("*")]}
    assert generate_smoke_benchmark(str(root), **SMALL) == first
    assert {path: path.stat().st_mtime_ns for path in [root, *root.rglob("*")]} == stamps


def test_changed_parameters_replace_the_old_benchmark(tmp_path):
    root = tmp_path / "bench"
    old = _files(generate_smoke_benchmark(root, **SMALL).root)
    old_bytes = {name: path.read_bytes() for name, path in old.items()}
    generate_smoke_benchmark(root, **{**SMALL, "seed": 4})
    assert json.loads((root / MANIFEST_NAME).read_text())["parameters"]["seed"] == 4
    new = _files(root)
    assert new.keys() == old.keys()
    assert any(new[name].read_bytes() != content for name, content in old_bytes.items())
    assert sorted(path.name for path in tmp_path.iterdir()) == ["bench"]


def _fail_after(monkeypatch, calls: int) -> None:
    real_write = smoke_benchmark._write_png
    count = {"n": 0}

    def write(path, image):
        count["n"] += 1
        if count["n"] > calls:
            raise RuntimeError("simulated interruption")
        real_write(path, image)

    monkeypatch.setattr(smoke_benchmark, "_write_png", write)


def test_interrupted_generation_leaves_no_tree(tmp_path, monkeypatch):
    _fail_after(monkeypatch, 20)
    with pytest.raises(RuntimeError, match="simulated interruption"):
        generate_smoke_benchmark(tmp_path / "bench", **SMALL)
    assert list(tmp_path.iterdir()) == []


def test_interrupted_regeneration_keeps_the_old_benchmark(tmp_path, monkeypatch):
    root = tmp_path / "bench"
    generate_smoke_benchmark(root, **SMALL)
    before = {name: path.read_bytes() for name, path in _files(root).items()}
    _fail_after(monkeypatch, 20)
    with pytest.raises(RuntimeError, match="simulated interruption"):
        generate_smoke_benchmark(root, **{**SMALL, "seed": 4})
    assert {name: path.read_bytes() for name, path in _files(root).items()} == before
    assert sorted(path.name for path in tmp_path.iterdir()) == ["bench"]


def test_refuses_to_replace_a_directory_it_did_not_make(tmp_path):
    (tmp_path / "photos").mkdir()
    (tmp_path / "photos" / "holiday.png").write_bytes(b"precious")
    with pytest.raises(FileExistsError):
        generate_smoke_benchmark(tmp_path / "photos", **SMALL)
    assert (tmp_path / "photos" / "holiday.png").read_bytes() == b"precious"


@pytest.mark.parametrize(
    "bad", [dict(image_size=24), dict(image_size=100), dict(images_per_class=2), dict(train_categories=("a", "a"))]
)
def test_rejects_unusable_parameters(tmp_path, bad):
    with pytest.raises(ValueError):
        generate_smoke_benchmark(tmp_path / "bench", **{**SMALL, **bad})
    assert list(tmp_path.iterdir()) == []


def test_families_cover_three_described_synthetic_processes(bench):
    assert set(bench.families) == {spec.name for spec in bench.test_sets}
    assert set(bench.families.values()) == set(bench.family_descriptions)
    assert len(set(bench.families.values())) >= 3
    assert bench.families["progan"] == bench.families["biggan"]  # training family has unseen members
    for description in bench.family_descriptions.values():
        assert "synthetic stand-in" in description.lower() and "not" in description.lower()


def _nyquist_peak(path: str) -> float:
    """log ratio of spectral power at the half-sampling-rate peaks to that of their neighbours."""
    image = _gray(path)
    power = np.abs(np.fft.fft2(image - image.mean())) ** 2
    h = image.shape[0] // 2
    peaks = power[h, h] + power[h, 0] + power[0, h]
    neighbours = [power[h + d, h + e] for d in (-2, 2) for e in (-2, 2)]
    neighbours += [power[h + d, 0] for d in (-2, 2)] + [power[0, h + d] for d in (-2, 2)]
    return float(np.log(peaks / 3 / np.mean(neighbours)))


def _block_seams(path: str) -> float:
    """log ratio of horizontal steps across 8-pixel block borders to all horizontal steps."""
    steps = np.abs(np.diff(_gray(path), axis=1))
    return float(np.log(steps[:, 7::8].mean() / steps.mean()))


def _fine_to_coarse(path: str) -> float:
    """mean absolute 1-pixel vertical step over mean 2-pixel step: about 0.5 for smooth images."""
    image = _gray(path)
    return float(np.abs(image[1:] - image[:-1]).mean() / np.abs(image[2:] - image[:-2]).mean())


def test_each_family_leaves_its_artefact(bench):
    # GANs: checkerboard peaks; VQ tokens: block seams; diffusion: over-smoothed fine detail.
    signature = {"gan_upsampling": _nyquist_peak, "vq_tokens": _block_seams, "diffusion_denoise": _fine_to_coarse}
    for spec in bench.test_sets:
        statistic = signature[bench.families[spec.name]]
        real, fake = _set_images(spec)
        auc = _auc([statistic(path) for path in fake], [statistic(path) for path in real])
        if statistic is _fine_to_coarse:
            auc = 1 - auc
        assert auc >= 0.95, spec.name
