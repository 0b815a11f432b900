"""The symmetric control re-encodes reals and fakes alike: one format, one quality, no EXIF."""
from __future__ import annotations

from pathlib import Path

from conftest import write_image
from PIL import Image

from ufd_lib.analyses.bias_control import symmetric_control
from ufd_lib.data.image_sets import parse_set_spec


def _biased_set(root: Path, n: int) -> Path:
    for i in range(n):
        real = write_image(root / "0_real" / f"{i}.jpg", seed=i, size=(48, 40))
        Image.open(real).save(real, format="JPEG", quality=75)
        write_image(root / "1_fake" / f"{i}.png", seed=1000 + i, size=(48, 40))
    return root


def test_symmetric_control_gives_both_classes_one_format_and_quality(tmp_path: Path) -> None:
    spec = parse_set_spec(f"biased={_biased_set(tmp_path / 'set', 30)}")
    control, card = symmetric_control(spec, tmp_path / "control")
    assert card.table["format"].eq("JPEG").all() and card.table["jpeg_quality"].eq(90).all()
    assert card.table["has_exif"].eq(False).all()
    assert card.table.groupby("label").size().to_dict() == {0: 30, 1: 30}
    assert control.real_root == tmp_path / "control"
