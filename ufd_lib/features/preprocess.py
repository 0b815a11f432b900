"""Image decoding and the official evaluation preprocessing.

Order, as in the released robustness code (UniversalFakeDetect ``validate.py``): decode and
convert to RGB → optional Gaussian blur (per channel, full image) → optional JPEG re-encoding
(PIL) → CenterCrop 224 with no resize (smaller images zero-padded) → ToTensor → normalise.

Extraction reads each file once (:func:`load_pixels`: a regular file under the byte limit, its
bytes checked against the digest the cache keys them by), crops it with the project's one centre
crop (:func:`centre_window` / :func:`centre_crop_pixels`) and hands on uint8 (224, 224, 3);
:func:`to_model_input` makes the normalised channels-first float tensor on the encoder's device,
bit for bit what torchvision's ``ToTensor`` + ``Normalize`` give (:func:`load_tensor`, the
reference). Without a perturbation only the crop window is converted to RGB, so memory stays near
the decoded image's own size.

Hostile files: images above ``max_pixels`` are refused from their header before any pixel is
decoded (PIL's own ``Image.MAX_IMAGE_PIXELS`` must be raised for a larger limit, as
``--max-pixels`` does); truncated or corrupt files raise :class:`ImageRejected` with the reason.
EXIF orientation and ICC profiles are not applied, as in the released code.
"""
from __future__ import annotations

import hashlib
import io
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from scipy.ndimage import gaussian_filter
from torchvision import transforms

from ufd_lib import config
from ufd_lib.features.decode_deadline import DECODE_DEADLINE_S, DecodeTooSlow, cpu_deadline
from ufd_lib.hashing import FileRefused, read_regular_file

PREPROCESS_VERSION = 1


# The reason given for a file whose bytes differ from the digest extraction planned with.
CHANGED_SINCE_HASHED = ("changed since it was hashed (its bytes no longer match the planned SHA-256); "
                        "run again to include it")


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

    @property
    def is_identity(self) -> bool:
        """True when :meth:`apply` returns the image unchanged."""
        return not self.blur_sigma > 0 and self.jpeg_quality is None

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


HIGH_DEPTH_MODES = ("I;16", "I;16B", "I;16L", "I;16N", "I", "F")


def to_rgb(image: Image.Image, box: tuple[int, int, int, int] | None = None) -> Image.Image:
    """Any PIL mode → RGB, of the pixels inside ``box`` (left, top, right, bottom; None = all).

    16-bit and float greyscale are scaled to 8 bits first (PIL's direct conversion would clip
    them to white); whether a 32-bit or float image is read as 8- or 16-bit depends on the whole
    image, so a box gives exactly the pixels of converting everything and cropping afterwards.
    """
    part = image if box is None else image.crop(box)
    if image.mode in HIGH_DEPTH_MODES:
        high = 65535.0 if image.mode.startswith("I;16") or _peak(image) > 255 else 255.0
        array = np.asarray(part, dtype=np.float64)
        part = Image.fromarray(np.clip(array / high * 255.0, 0, 255).astype(np.uint8), mode="L")
    return part.convert("RGB")


def _peak(image: Image.Image) -> float:
    """``max(initial=0)`` over all pixels (NaN if any is NaN), read in strips of about 2**20
    pixels so that no full-size array is made."""
    rows = max(1, 2**20 // max(1, image.width))
    strips = (image.crop((0, top, image.width, min(top + rows, image.height))) for top in range(0, image.height, rows))
    return np.max([np.asarray(strip).max(initial=0) for strip in strips], initial=0)


def centre_window(size: tuple[int, int], crop: tuple[int, int]) -> tuple[int, int, int, int]:
    """Box (left, top, right, bottom) of the pixels that torchvision's ``CenterCrop(crop)`` keeps
    from an image of ``size`` (width, height); ``crop`` is (height, width), as torchvision orders it.

    Sides longer than the crop start at ``round((side - crop) / 2)`` (Python's round, halves to
    even, as torchvision); shorter sides are kept whole, since CenterCrop zero-pads them.
    """
    width, height = size
    crop_height, crop_width = crop
    left = int(round((width - crop_width) / 2.0)) if width > crop_width else 0
    top = int(round((height - crop_height) / 2.0)) if height > crop_height else 0
    return left, top, left + min(width, crop_width), top + min(height, crop_height)


def centre_crop_pixels(image: Image.Image, crop: tuple[int, int] = (config.CROP_SIZE, config.CROP_SIZE)) -> np.ndarray:
    """torchvision's ``CenterCrop(crop)`` of an RGB image, as uint8 (height, width, 3) pixels.

    The one centre crop of the project (evaluation, spectra, trained detectors): the window of
    :func:`centre_window`, sides shorter than the crop zero-padded with the image at offset
    ``(crop - side) // 2``, as torchvision pads. An image that already is its window (what
    :func:`decode_image` returns with ``centre_crop``) is not cut again.
    """
    crop_height, crop_width = crop
    window = centre_window(image.size, crop)
    if window != (0, 0, *image.size):
        image = image.crop(window)
    pixels = np.asarray(image, dtype=np.uint8)
    height, width = pixels.shape[:2]
    if (height, width) == (crop_height, crop_width):
        return pixels
    padded = np.zeros((crop_height, crop_width, 3), dtype=np.uint8)
    top, left = (crop_height - height) // 2, (crop_width - width) // 2
    padded[top : top + height, left : left + width] = pixels
    return padded


def decode_image(
    data: bytes, max_pixels: int = config.MAX_IMAGE_PIXELS, centre_crop: tuple[int, int] | None = None
) -> Image.Image:
    """Decode image bytes into an RGB image, or raise :class:`ImageRejected` with the reason.

    centre_crop: (height, width) of a CenterCrop that will follow. When given, only the window it
    reads (:func:`centre_window`) is converted and returned: the same pixels, no full-size copy.
    Decoding has a CPU-time deadline (:mod:`ufd_lib.features.decode_deadline`).
    """
    if not data:
        raise ImageRejected("empty file")
    with warnings.catch_warnings():
        # Warnings while decoding concern metadata PIL skips (corrupt EXIF, TIFF tags, MPO index)
        # or conversions (palette transparency dropped, NaN cast to uint8) that change nothing
        # here; ignoring them makes a file decode the same whatever warning filters are set.
        warnings.simplefilter("ignore")
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            with Image.open(io.BytesIO(data)) as image:
                width, height = image.size
                if width * height > max_pixels:
                    raise ImageRejected(
                        f"decompression bomb: {width}x{height} pixels exceeds the limit of {max_pixels}"
                    )
                with cpu_deadline(DECODE_DEADLINE_S):
                    image.load()
                    return to_rgb(image, None if centre_crop is None else centre_window(image.size, centre_crop))
        except ImageRejected:
            raise
        except DecodeTooSlow:
            raise ImageRejected(f"too slow to decode: more than {DECODE_DEADLINE_S:g} s of CPU time "
                                "(a crafted file, such as a JPEG with very many scans)") from None
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
            raise ImageRejected(f"decompression bomb: {error}") from error
        except UnidentifiedImageError:
            raise ImageRejected(_unidentified_reason(data)) from None
        except Exception as error:  # PIL raises many types for corrupt data
            raise ImageRejected(f"cannot decode: {type(error).__name__}: {error}") from error


def _unidentified_reason(data: bytes) -> str:
    """Why PIL identified no format: the error of the first format whose signature the file
    carries (say a PNG with a broken chunk), else that no format's signature matches."""
    for name in Image.ID:
        factory, accept = Image.OPEN[name]
        try:
            if accept is None or accept(data[:16]) is not True:  # signature check, as Image.open does
                continue
            factory(io.BytesIO(data), "").close()
        except Exception as error:
            return f"cannot decode: {name}: {type(error).__name__}: {error}"
    return "not an image PIL can identify"


def centre_crop_size(transform) -> tuple[int, int] | None:
    """(height, width) of the CenterCrop a transform starts with, or None if it starts otherwise."""
    steps = transform.transforms if isinstance(transform, transforms.Compose) else [transform]
    first = steps[0] if steps else None
    return tuple(first.size) if isinstance(first, transforms.CenterCrop) else None


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


def load_pixels(
    path: Path,
    perturbation: Perturbation = Perturbation(),
    max_pixels: int = config.MAX_IMAGE_PIXELS,
    max_bytes: int | None = None,
    expected_sha256: bytes | None = None,
) -> np.ndarray:
    """Read one file once, check its bytes, decode, perturb, centre-crop → uint8 (224, 224, 3).

    expected_sha256: the digest the caller planned with; the bytes read here are hashed and an
    image whose content differs (the file changed since it was hashed) is rejected, so that its
    pixels are never stored under another image's key. The pixels stay channels-last, as
    decoded: reordering, float conversion and normalisation are left to :func:`to_model_input`,
    on the encoder's device. Raises :class:`ImageRejected`.
    """
    try:
        data = read_regular_file(path, max_bytes)
    except FileRefused as error:
        raise ImageRejected(str(error)) from None
    if expected_sha256 is not None and hashlib.sha256(data).digest() != expected_sha256:
        raise ImageRejected(CHANGED_SINCE_HASHED)
    crop = (config.CROP_SIZE, config.CROP_SIZE)
    image = perturbation.apply(decode_image(data, max_pixels, crop if perturbation.is_identity else None))
    return centre_crop_pixels(image, crop)


def to_model_input(images: torch.Tensor, mean, std, device: torch.device | str, dtype: torch.dtype,
                   out: torch.Tensor | None = None) -> torch.Tensor:
    """uint8 (n, h, w, 3) pixels → normalised (n, 3, h, w) of ``dtype`` on ``device``.

    The one place where pixels become model input: copied to the device as uint8 (a quarter of
    float32's bytes), converted to float32 channels-first, then ``/ 255``, ``(x - mean) / std``: exactly
    torchvision's ``ToTensor`` + ``Normalize`` (bit for bit on CPU), then cast to the weights'
    dtype. out: float32 (≥ n, 3, h, w) on ``device`` to write into, reused by the caller from
    batch to batch (on CPU a fresh 600 KB per image costs more in page faults than the
    arithmetic). On CPU the work goes image by image, so that each image's three passes stay in
    the processor's cache; elsewhere the whole batch is one pass per operation.
    """
    if images.device.type == "cpu" and torch.device(device).type == "cuda" and not images.is_pinned():
        # A copy into torch's cached page-locked blocks: the transfer below then runs while the
        # device works, and the caller's buffer is free again as soon as this returns.
        images = images.pin_memory()
    images = images.to(device, non_blocking=True)
    count, height, width, channels = images.shape
    if out is None:
        out = torch.empty((count, channels, height, width), dtype=torch.float32, device=images.device)
    out = out[:count]
    mean = torch.as_tensor(mean, dtype=torch.float32, device=images.device).view(-1, 1, 1)
    std = torch.as_tensor(std, dtype=torch.float32, device=images.device).view(-1, 1, 1)
    pairs = zip(images, out) if images.device.type == "cpu" else [(images, out)]
    for source, target in pairs:
        target.copy_(source.movedim(-1, -3))
        target.div_(255).sub_(mean).div_(std)
    return out.to(dtype)


def load_tensor(
    path: Path,
    transform: transforms.Compose,
    perturbation: Perturbation = Perturbation(),
    max_pixels: int = config.MAX_IMAGE_PIXELS,
) -> torch.Tensor:
    """Read, decode, perturb and transform one file with a torchvision ``transform`` → float32
    (3, 224, 224): the reference that :func:`load_pixels` + :func:`to_model_input` reproduce.

    Without a perturbation, a transform that starts with a CenterCrop sees only the window that
    crop reads, so the peak memory is the decoded image, not its RGB conversion (module docstring).
    """
    try:
        data = read_regular_file(path)
    except FileRefused as error:
        raise ImageRejected(str(error)) from None
    centre_crop = centre_crop_size(transform) if perturbation.is_identity else None
    return transform(perturbation.apply(decode_image(data, max_pixels, centre_crop)))
