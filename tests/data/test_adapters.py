"""Layout adapters find exactly the files each benchmark's layout assigns to each class of its
test split, through the same ``NAME=ADAPTER:PATH[:PATH]`` door as every other set."""
from __future__ import annotations

from pathlib import Path

import pytest
from conftest import write_image

from ufd_lib.data.adapters import ADAPTERS, describe_adapters
from ufd_lib.data.discovery import discover_images
from ufd_lib.data.image_sets import SpecError, parse_set_spec


def _tree(root: Path, relatives: list[str]) -> list[str]:
    for seed, relative in enumerate(relatives):
        write_image(root / relative, seed=seed)
    return sorted(str(root / relative) for relative in relatives)


def _classes(text: str) -> tuple[list[str], list[str], list[tuple[str, str]]]:
    found = discover_images(parse_set_spec(text))
    real = [image.path for image in found.images if image.label == 0]
    fake = [image.path for image in found.images if image.label == 1]
    return real, fake, found.skipped


def test_genimage_reads_val_nature_as_real_and_val_ai_as_fake_never_train(tmp_path: Path) -> None:
    gen = tmp_path / "stable_diffusion_v_1_4"
    real = _tree(gen, ["imagenet_ai_0419_sdv4/val/nature/n01_1.JPEG", "imagenet_ai_0419_sdv4/val/nature/sub/n02.png"])
    fake = _tree(gen, ["imagenet_ai_0419_sdv4/val/ai/001_sdv4_00000.png", "val/ai/002.png"])
    _tree(gen, ["imagenet_ai_0419_sdv4/train/nature/n03.JPEG", "imagenet_ai_0419_sdv4/train/ai/003.png",
                "imagenet_ai_0419_sdv4/val/readme.png", "nature/val/x.png", "val/nature.png"])
    assert _classes(f"sd14=genimage:{gen}")[:2] == (real, fake)


def test_folders_takes_everything_below_each_folder(tmp_path: Path) -> None:
    real = _tree(tmp_path / "RAISE", ["r1.png", "sub/r2.jpg"])
    fake = _tree(tmp_path / "synthbuster" / "dalle3", ["a.png", "0_real/b.png"])
    spec = parse_set_spec(f"dalle3=folders:{tmp_path / 'RAISE'}:{tmp_path / 'synthbuster' / 'dalle3'}")
    assert (spec.real_root, spec.fake_root) == (tmp_path / "RAISE", tmp_path / "synthbuster" / "dalle3")
    assert _classes(f"dalle3=folders:{tmp_path / 'RAISE'}:{tmp_path / 'synthbuster' / 'dalle3'}")[:2] == (real, fake)


@pytest.mark.parametrize("adapter", ["wildrf", "aigibench"])
def test_test_split_adapters_read_only_the_test_folder(tmp_path: Path, adapter: str) -> None:
    real = _tree(tmp_path, ["test/reddit/0_real/a.jpg", "test/twitter/0_real/b.jpg"])
    fake = _tree(tmp_path, ["test/reddit/1_fake/c.jpg", "test/facebook/1_fake/d.png"])
    _tree(tmp_path, ["train/0_real/e.jpg", "train/1_fake/f.jpg", "val/0_real/g.jpg", "test/reddit/h.jpg"])
    assert _classes(f"wild={adapter}:{tmp_path}")[:2] == (real, fake)
    # One platform (or generator) folder inside the test split.
    assert _classes(f"reddit={adapter}:{tmp_path / 'test' / 'reddit'}")[:2] == (real[:1], fake[1:])


def test_spai_csv_keeps_test_rows_and_reports_absent_files(tmp_path: Path) -> None:
    real = _tree(tmp_path / "images", ["coco/1.jpg"])
    fake = _tree(tmp_path / "images", ["flux/2.png", "flux/3.png"])
    _tree(tmp_path / "images", ["flux/train_only.png", "unlisted.png"])
    listing = tmp_path / "lists" / "spai_test.csv"
    listing.parent.mkdir()
    listing.write_text("image,class,split\ncoco/1.jpg,0,test\nflux/2.png,1,test\nflux/3.png,1,test\n"
                       "flux/train_only.png,1,train\nflux/gone.png,1,test\n")
    found_real, found_fake, skipped = _classes(f"spai=spai:{listing}:{tmp_path / 'images'}")
    assert (found_real, found_fake) == (real, fake)
    assert skipped == [(str(tmp_path / "images" / "flux" / "gone.png"), f"listed at {listing}:6 but absent")]


def test_imaginet_annotations_default_to_the_lists_folder(tmp_path: Path) -> None:
    real = _tree(tmp_path, ["imagenet/val/a.JPEG"])
    fake = _tree(tmp_path, ["sd/b.png", "mj/c.png"])
    listing = tmp_path / "test_annotations.txt"
    listing.write_text("./imagenet/val/a.JPEG,0,0,4,8\n./sd/b.png,1,0,2,3\n./mj/c.png,1,0,1,1\n")
    assert _classes(f"imaginet=imaginet:{listing}")[:2] == (real, sorted(fake))


def test_univfd_adapter_is_the_default_layout(tmp_path: Path) -> None:
    _tree(tmp_path, ["cat/0_real/a.png", "cat/1_fake/b.png", "loose.png"])
    assert _classes(f"x=univfd:{tmp_path}")[:2] == _classes(f"x={tmp_path}")[:2]
    assert len(_classes(f"x=univfd:{tmp_path}")[0]) == 1


@pytest.mark.parametrize(
    ("form", "message"),
    [
        ("x=folders:{root}", "takes folders:REAL_DIR:FAKE_DIR"),
        ("x=genimage:{root}/nowhere", "does not exist"),
        ("x=spai:{root}", "spai file"),
        ("x=genimage:{root}:{root}", "takes genimage:GEN_DIR"),
    ],
)
def test_bad_adapter_arguments_are_one_line_usage_errors(tmp_path: Path, form: str, message: str) -> None:
    with pytest.raises(SpecError, match=message):
        parse_set_spec(form.format(root=tmp_path))


def test_a_directory_named_like_an_adapter_keeps_the_old_meaning(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    _tree(tmp_path, ["folders/0_real/a.png", "other/1_fake/b.png"])
    spec = parse_set_spec("x=folders:other")
    assert spec.adapter is None and (spec.real_root, spec.fake_root) == (Path("folders"), Path("other"))


def test_every_adapter_is_described() -> None:
    text = describe_adapters()
    assert all(f"{name}:" in text for name in ADAPTERS)


def test_list_with_an_unknown_class_is_a_usage_error_naming_the_line(tmp_path: Path) -> None:
    _tree(tmp_path, ["a.png"])
    listing = tmp_path / "test.csv"
    listing.write_text("image,class,split\na.png,maybe,test\n")
    with pytest.raises(SpecError, match=r"test\.csv:2: class 'maybe'"):
        discover_images(parse_set_spec(f"x=spai:{listing}"))
