"""Image decoding and the official evaluation preprocessing.

Order, as in the released robustness code (UniversalFakeDetect ``validate.py``): decode and
convert to RGB → optional Gaussian blur (per channel, full image) → optional JPEG re-encoding
(PIL) → CenterCrop 224 with no resize (smaller images zero-padded) → ToTensor → normalise.
"""
from __future__ import annotations

import io
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from scipy.ndimage import gaussian_filter
from torchvision import transforms

from . import config

PREPROCESS_VERSION = 1


class ImageRejected(ValueError):
    """An image file that cannot be used; the message is the reason."""


@dataclass(frozen=True)
class Perturbation:
    """Test-time degradation applied to the full image before the crop.

    blur_sigma: Gaussian blur sigma in pixels (0 = none).
    jpeg_quality: PIL JPEG quality 1..100 (None = none).
    """

    blur_sigma: float = 0.0
    jpeg_quality: int | None = None

    def __post_init__(self):
        if not self.blur_sigma >= 0:
            raise ValueError(f"blur sigma must be >= 0, got {self.blur_sigma}")
        if self.jpeg_quality is not None and not 1 <= self.jpeg_quality <= 100:
            raise ValueError(f"JPEG quality must be in 1..100, got {self.jpeg_quality}")

    def as_dict(self) -> dict:
        return asdict(self)

    def apply(self, image: Image.Image) -> Image.Image:
        if self.blur_sigma > 0:
            image = gaussian_blur(image, self.blur_sigma)
        if self.jpeg_quality is not None:
            image = jpeg_reencode(image, self.jpeg_quality)
        return image


def gaussian_blur(image: Image.Image, sigma: float) -> Image.Image:
    """Blur each RGB channel in place on the uint8 array, exactly as the released code does."""
    array = np.array(image)
    for channel in range(3):
        gaussian_filter(array[:, :, channel], output=array[:, :, channel], sigma=sigma)
    return Image.fromarray(array)


def jpeg_reencode(image: Image.Image, quality: int) -> Image.Image:
    buffer = io.BytesIO()
    image.save(buffer, format="jpeg", quality=quality)
    buffer.seek(0)
    with Image.open(buffer) as reopened:
        return Image.fromarray(np.array(reopened))


def to_rgb(image: Image.Image) -> Image.Image:
    """Any PIL mode → RGB. 16-bit and float greyscale are scaled to 8 bits first
    (PIL's direct conversion would clip them to white)."""
    if image.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        array = np.asarray(image, dtype=np.float64)
        high = 65535.0 if image.mode.startswith("I;16") or array.max(initial=0) > 255 else 255.0
        image = Image.fromarray(np.clip(array / high * 255.0, 0, 255).astype(np.uint8), mode="L")
    return image.convert("RGB")


def decode_image(data: bytes, max_pixels: int = config.MAX_IMAGE_PIXELS) -> Image.Image:
    """Decode image bytes into an RGB image, or raise :class:`ImageRejected` with the reason."""
    if not data:
        raise ImageRejected("empty file")
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            with Image.open(io.BytesIO(data)) as image:
                width, height = image.size
                if width * height > max_pixels:
                    raise ImageRejected(
                        f"decompression bomb: {width}x{height} pixels exceeds the limit of {max_pixels}"
                    )
                image.load()
                return to_rgb(image)
        except ImageRejected:
            raise
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
            raise ImageRejected(f"decompression bomb: {error}") from error
        except UnidentifiedImageError:
            raise ImageRejected("not an image PIL can identify") from None
        except Exception as error:  # PIL raises many types for corrupt data
            raise ImageRejected(f"cannot decode: {type(error).__name__}: {error}") from error


def evaluation_transform(mean=config.CLIP_MEAN, std=config.CLIP_STD) -> transforms.Compose:
    """CenterCrop 224 without resizing (zero-pads smaller images), ToTensor, normalise."""
    return transforms.Compose(
        [transforms.CenterCrop(config.CROP_SIZE), transforms.ToTensor(), transforms.Normalize(mean, std)]
    )


def preprocess_settings(mean, std, perturbation: Perturbation) -> dict:
    """Everything about preprocessing that changes features; part of the cache key."""
    return {
        "version": PREPROCESS_VERSION,
        "resize": None,
        "center_crop": config.CROP_SIZE,
        "mean": list(mean),
        "std": list(std),
        "perturbation": perturbation.as_dict(),
    }


def load_tensor(
    path: Path,
    transform: transforms.Compose,
    perturbation: Perturbation = Perturbation(),
    max_pixels: int = config.MAX_IMAGE_PIXELS,
) -> torch.Tensor:
    """Read, decode, perturb and transform one file → float32 (3, 224, 224)."""
    try:
        data = Path(path).read_bytes()
    except OSError as error:
        raise ImageRejected(f"unreadable: {error.strerror or error}") from error
    return transform(perturbation.apply(decode_image(data, max_pixels)))
