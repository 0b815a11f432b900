"""Preprocessing: RGB conversion, CLIP normalisation, centre crop without resize, zero padding,
blur-then-JPEG, and clear refusals of broken files."""
from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
import torch
from conftest import noise_array, png_bytes
from PIL import Image
from scipy.ndimage import gaussian_filter

from ufd_lib import config
from ufd_lib.features.preprocess import ImageRejected, Perturbation, decode_image, evaluation_transform, load_tensor

MEAN = np.array(config.CLIP_MEAN, dtype=np.float64)
STD = np.array(config.CLIP_STD, dtype=np.float64)


def normalised(rgb) -> np.ndarray:
    """uint8 RGB values (..., 3) → CLIP-normalised values (..., 3)."""
    return (np.asarray(rgb, dtype=np.float64) / 255.0 - MEAN) / STD


def expected_tensor(array: np.ndarray) -> np.ndarray:
    """uint8 (h, w, 3) with h, w >= 224 and even margins → (3, 224, 224) centre crop, normalised."""
    height, width = array.shape[:2]
    top, left = (height - 224) // 2, (width - 224) // 2
    return normalised(array[top : top + 224, left : left + 224]).transpose(2, 0, 1)


def load(path, perturbation=Perturbation(), **kwargs) -> torch.Tensor:
    return load_tensor(path, evaluation_transform(), perturbation, **kwargs)


def save(image: Image.Image, path, **kwargs):
    image.save(path, **kwargs)
    return path


def uniform(mode, size, value) -> Image.Image:
    return Image.new(mode, size, value)


def palette_image(size) -> Image.Image:
    image = Image.new("P", size, 0)
    image.putpalette([10, 20, 30] + [0, 0, 0] * 255)
    return image


def uint16_image(value, size) -> Image.Image:
    return Image.fromarray(np.full((size[1], size[0]), value, dtype=np.uint16))


@pytest.mark.parametrize(
    "make, suffix, rgb",
    [
        (lambda s: uniform("RGB", s, (200, 100, 50)), "png", (200, 100, 50)),
        (lambda s: uniform("L", s, 77), "png", (77, 77, 77)),
        (lambda s: palette_image(s), "png", (10, 20, 30)),
        (lambda s: uniform("RGBA", s, (10, 20, 30, 128)), "png", (10, 20, 30)),
        (lambda s: uniform("LA", s, (77, 0)), "png", (77, 77, 77)),
        (lambda s: uniform("CMYK", s, (0, 255, 255, 0)), "tiff", (255, 0, 0)),
        (lambda s: uniform("CMYK", s, (255, 0, 0, 0)), "jpg", (0, 255, 255)),
        (lambda s: uint16_image(25700, s), "png", (100, 100, 100)),  # 16-bit scaled: 25700/257
        (lambda s: uint16_image(65535, s), "png", (255, 255, 255)),
    ],
    ids=["RGB", "L", "P", "RGBA", "LA", "CMYK-tiff", "CMYK-jpeg", "I;16-mid", "I;16-white"],
)
def test_modes_become_normalised_rgb(make, suffix, rgb, tmp_path):
    path = save(make((256, 240)), tmp_path / f"image.{suffix}", **({"quality": 100} if suffix == "jpg" else {}))
    tensor = load(path)
    assert tensor.shape == (3, 224, 224) and tensor.dtype == torch.float32
    atol = 2.5 / 255 / STD.min() if suffix == "jpg" else 1e-5
    np.testing.assert_allclose(tensor[:, 100, 100].numpy(), normalised(rgb), rtol=0, atol=atol)
    np.testing.assert_allclose(tensor.numpy(), np.broadcast_to(normalised(rgb)[:, None, None], (3, 224, 224)),
                               rtol=0, atol=atol)


def test_16_bit_png_really_is_16_bit(tmp_path):
    """Guard for the test above: the file must reach the decoder as a 16-bit image."""
    path = save(uint16_image(25700, (8, 8)), tmp_path / "deep.png")
    with Image.open(path) as image:
        assert image.mode.startswith("I")


def test_small_images_are_zero_padded_in_pixel_space(tmp_path):
    path = save(uniform("RGB", (100, 60), (255, 255, 255)), tmp_path / "small.png")
    tensor = load(path).numpy()
    white = normalised((255, 255, 255))
    pad = normalised((0, 0, 0))  # (0 - mean) / std
    is_white = np.isclose(tensor, white[:, None, None], atol=1e-5).all(axis=0)
    is_pad = np.isclose(tensor, pad[:, None, None], atol=1e-5).all(axis=0)
    assert (is_white | is_pad).all()
    rows, cols = np.nonzero(is_white)
    assert is_white.sum() == 100 * 60
    assert (rows.min(), rows.max(), cols.min(), cols.max()) == (82, 141, 62, 161)  # centred


def test_one_side_smaller_is_padded_other_side_cropped(tmp_path):
    array = noise_array(1, size=(300, 100))  # width 300, height 100
    path = save(Image.fromarray(array), tmp_path / "wide.png")
    tensor = load(path).numpy()
    np.testing.assert_allclose(tensor[:, 62:162, :], normalised(array[:, 38:262]).transpose(2, 0, 1), atol=1e-5)
    np.testing.assert_allclose(tensor[:, :62, :], np.broadcast_to(normalised((0, 0, 0))[:, None, None], (3, 62, 224)),
                               atol=1e-5)


def test_large_images_are_cropped_at_the_centre_without_resizing(tmp_path):
    array = noise_array(2, size=(300, 260))
    path = save(Image.fromarray(array), tmp_path / "large.png")
    np.testing.assert_allclose(load(path).numpy(), expected_tensor(array), rtol=0, atol=1e-5)


def official_blur_then_jpeg(array: np.ndarray, sigma: float, quality: int) -> np.ndarray:
    """The released robustness code: in-place per-channel gaussian_filter on uint8, then PIL JPEG."""
    blurred = array.copy()
    for channel in range(3):
        gaussian_filter(blurred[:, :, channel], output=blurred[:, :, channel], sigma=sigma)
    buffer = io.BytesIO()
    Image.fromarray(blurred).save(buffer, format="jpeg", quality=quality)
    return np.array(Image.open(io.BytesIO(buffer.getvalue())))


def jpeg_then_blur(array: np.ndarray, sigma: float, quality: int) -> np.ndarray:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="jpeg", quality=quality)
    decoded = np.array(Image.open(io.BytesIO(buffer.getvalue())))
    for channel in range(3):
        gaussian_filter(decoded[:, :, channel], output=decoded[:, :, channel], sigma=sigma)
    return decoded


def test_blur_then_jpeg_on_the_full_image_before_the_crop(tmp_path):
    array = noise_array(3, size=(256, 256))
    path = save(Image.fromarray(array), tmp_path / "x.png")
    tensor = load(path, Perturbation(blur_sigma=1.5, jpeg_quality=40)).numpy()
    np.testing.assert_allclose(tensor, expected_tensor(official_blur_then_jpeg(array, 1.5, 40)), rtol=0, atol=1e-5)
    # The check can fail: the other order, or blurring only the crop, gives other values.
    assert not np.allclose(tensor, expected_tensor(jpeg_then_blur(array, 1.5, 40)), atol=1e-3)
    crop_first = official_blur_then_jpeg(np.ascontiguousarray(array[16:240, 16:240]), 1.5, 40)
    assert not np.allclose(tensor, expected_tensor(crop_first), atol=1e-3)


def test_blur_only_and_jpeg_only(tmp_path):
    array = noise_array(4, size=(224, 224))
    path = save(Image.fromarray(array), tmp_path / "x.png")
    blurred = array.copy()
    for channel in range(3):
        gaussian_filter(blurred[:, :, channel], output=blurred[:, :, channel], sigma=2.0)
    np.testing.assert_allclose(load(path, Perturbation(blur_sigma=2.0)).numpy(), expected_tensor(blurred), atol=1e-5)
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="jpeg", quality=75)
    jpeg = np.array(Image.open(io.BytesIO(buffer.getvalue())))
    np.testing.assert_allclose(load(path, Perturbation(jpeg_quality=75)).numpy(), expected_tensor(jpeg), atol=1e-5)
    np.testing.assert_allclose(load(path).numpy(), expected_tensor(array), atol=1e-5)


@pytest.mark.parametrize("kwargs", [{"blur_sigma": -1.0}, {"blur_sigma": float("nan")}, {"jpeg_quality": 0},
                                    {"jpeg_quality": 101}])
def test_invalid_perturbations_are_refused(kwargs):
    with pytest.raises(ValueError):
        Perturbation(**kwargs)


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_header(width: int, height: int) -> bytes:
    """A small PNG file declaring the given size: a decompression bomb's header, a few bytes of data."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 1024)
    return b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", idat) + png_chunk(b"IEND", b"")


@pytest.mark.parametrize(
    "content, reason",
    [
        (b"", "empty"),
        (png_bytes(5, (64, 64))[:200], "cannot decode"),
        (b"this is a text file, not a picture\n" * 10, "not an image"),
        (png_header(100_000, 100_000), "decompression bomb"),  # far above PIL's limit
        (png_header(10_000, 10_000), "decompression bomb"),  # above the limit, under PIL's hard error
    ],
    ids=["empty", "truncated", "text", "huge-header", "large-header"],
)
def test_broken_files_are_rejected_with_a_reason(content, reason, tmp_path):
    path = tmp_path / "broken.png"
    path.write_bytes(content)
    with pytest.raises(ImageRejected, match=reason):
        load(path)


def test_max_pixels_is_enforced(tmp_path):
    path = tmp_path / "x.png"
    path.write_bytes(png_bytes(6, (64, 64)))
    with pytest.raises(ImageRejected, match="decompression bomb: 64x64 pixels exceeds the limit of 1000"):
        load(path, max_pixels=1000)
    assert load(path, max_pixels=64 * 64).shape == (3, 224, 224)


def test_missing_file_is_rejected(tmp_path):
    with pytest.raises(ImageRejected, match="unreadable"):
        load(tmp_path / "absent.png")


def test_decode_image_returns_rgb():
    image = decode_image(png_bytes(7, (20, 10)))
    assert image.mode == "RGB" and image.size == (20, 10)
    np.testing.assert_array_equal(np.array(image), noise_array(7, (20, 10)))
