"""The bias card's symmetric control: the same set with reals and fakes re-encoded alike (one
format, one JPEG quality, no EXIF), so that what a score owed to file format shows as the drop
between the set and its control. Evaluate a detector on both specs; the control's own
``metadata_auc`` shows what metadata still separates (size, aspect ratio) once format is equal.
"""
from __future__ import annotations

from pathlib import Path

from PIL import Image

from ufd_lib import config
from ufd_lib.data.bias_card import BiasCard, bias_card
from ufd_lib.data.discovery import collect_images
from ufd_lib.data.image_sets import ImageSetSpec

CONTROL_FORMAT = "JPEG"
CONTROL_QUALITY = 90
_SUFFIXES = {"JPEG": ".jpg", "PNG": ".png", "WEBP": ".webp"}


def reencode_alike(spec: ImageSetSpec, out_dir: Path, image_format: str = CONTROL_FORMAT,
                   quality: int = CONTROL_QUALITY) -> ImageSetSpec:
    """Write every readable image of ``spec`` to ``out_dir/{0_real,1_fake}/NNNNNN<suffix>``,
    decoded to RGB and saved in ``image_format`` (JPEG, PNG or WEBP) at ``quality`` without
    metadata; returns the new set (named ``<name> (re-encoded)``). Unreadable files are left out.
    Pixels are unchanged but for the one lossy encoding both classes now share."""
    if image_format not in _SUFFIXES:
        raise ValueError(f"image_format must be one of {', '.join(_SUFFIXES)}, not {image_format!r}")
    out_dir = Path(out_dir)
    for folder in (config.REAL_DIR, config.FAKE_DIR):
        (out_dir / folder).mkdir(parents=True, exist_ok=True)
    for index, image in enumerate(collect_images(spec)):
        folder = config.FAKE_DIR if image.label else config.REAL_DIR
        target = out_dir / folder / f"{index:06d}{_SUFFIXES[image_format]}"
        try:
            with Image.open(image.path) as source:
                source.convert("RGB").save(target, format=image_format, quality=quality)
        except (OSError, ValueError):
            continue
    return ImageSetSpec(f"{spec.name} (re-encoded)", out_dir, out_dir)


def symmetric_control(spec: ImageSetSpec, out_dir: Path, image_format: str = CONTROL_FORMAT,
                      quality: int = CONTROL_QUALITY) -> tuple[ImageSetSpec, BiasCard]:
    """The re-encoded set (:func:`reencode_alike`) and its bias card."""
    control = reencode_alike(spec, out_dir, image_format, quality)
    return control, bias_card(control)
