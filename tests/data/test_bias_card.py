"""The bias card reads metadata, not pixels: a set whose reals are JPEG q75 and fakes PNG is
separated by metadata alone (metadata_auc near 1, flagged), a set whose classes share format,
quality and size is not (near 0.5); JPEG quality is recovered from the quantisation tables."""
from __future__ import annotations

from pathlib import Path

import pytest
from conftest import write_image
from PIL import Image

from ufd_lib.data.bias_card import bias_card, estimate_jpeg_quality
from ufd_lib.data.image_sets import parse_set_spec


def _set(root: Path, real_suffix: str, fake_suffix: str, n: int = 40, quality: int = 75) -> Path:
    for i in range(n):
        for folder, suffix, seed in (("0_real", real_suffix, i), ("1_fake", fake_suffix, 1000 + i)):
            path = write_image(root / folder / f"{i}{suffix}", seed=seed, size=(48, 40))
            if suffix == ".jpg":
                Image.open(path).save(path, format="JPEG", quality=quality)
    return root


@pytest.mark.parametrize("quality", [30, 50, 75, 90, 95])
def test_jpeg_quality_is_read_from_the_quantisation_tables(tmp_path: Path, quality: int) -> None:
    path = write_image(tmp_path / "a.png", seed=1)
    Image.open(path).save(tmp_path / "a.jpg", format="JPEG", quality=quality)
    with Image.open(tmp_path / "a.jpg") as image:
        assert estimate_jpeg_quality(image.quantization) == quality


def test_format_biased_set_is_flagged(tmp_path: Path) -> None:
    card = bias_card(parse_set_spec(f"biased={_set(tmp_path, '.jpg', '.png')}"))
    assert card.metadata_auc > 0.95 and card.flagged
    real, fake = card.distributions.set_index("class").loc[["real", "fake"]].to_dict("records")
    assert (real["share_jpeg"], fake["share_png"], real["jpeg_quality_median"]) == (1.0, 1.0, 75)


def test_unbiased_set_is_near_chance(tmp_path: Path) -> None:
    card = bias_card(parse_set_spec(f"fair={_set(tmp_path, '.jpg', '.jpg')}"))
    assert abs(card.metadata_auc - 0.5) < 0.2 and not card.flagged
