"""Hostile image files: huge-but-legitimate images decoded in bounded memory, malformed EXIF,
ICC profiles and palettes either ignored or refused with a reason, bombs refused from their
header, and a fuzz test over the whole loading path that never crashes the process."""
from __future__ import annotations

import io
import multiprocessing
import struct
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image, ImageCms
from torchvision import transforms

from ufd_lib import config
from ufd_lib.features.preprocess import ImageRejected, Perturbation, decode_image, evaluation_transform, load_tensor

TRANSFORM = evaluation_transform()


def noise(mode: str = "RGB", size: tuple[int, int] = (40, 24), seed: int = 0) -> Image.Image:
    """Random pixels in any PIL mode; size is (width, height)."""
    width, height = size
    rgba = np.random.default_rng(seed).integers(0, 256, (height, width, 4), dtype=np.uint8)
    return Image.fromarray(rgba, mode="RGBA").convert(mode)


def encode(image: Image.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def load_bytes(data: bytes, directory: Path, perturbation: Perturbation = Perturbation()) -> torch.Tensor:
    path = directory / "image"
    path.write_bytes(data)
    return load_tensor(path, TRANSFORM, perturbation)


# --- Crop before converting: the same tensor as converting the whole image ---------------------


def high_depth(mode: str, size: tuple[int, int], seed: int) -> Image.Image:
    """32-bit integer or float greyscale whose 8- or 16-bit reading is decided by one corner
    pixel outside the centre crop: cropping before measuring the range would change every value."""
    width, height = size
    rng = np.random.default_rng(seed)
    if mode == "I;16":
        return Image.fromarray(rng.integers(0, 65536, (height, width), dtype=np.uint16))
    array = rng.integers(0, 256, (height, width)).astype(np.int32 if mode == "I" else np.float32)
    array[0, 0] = {"I": 70_000, "F": 1e5, "F-nan": np.nan}[mode]
    return Image.fromarray(array, mode=mode[0])


def palette_with_transparency(size: tuple[int, int], seed: int) -> Image.Image:
    """P mode whose index 0 is white, so padding before converting to RGB would show."""
    width, height = size
    rng = np.random.default_rng(seed)
    image = Image.fromarray(rng.integers(0, 200, (height, width), dtype=np.uint8), mode="P")
    image.putpalette([255, 255, 255] + rng.integers(0, 256, 597).tolist())
    image.info["transparency"] = 3
    return image


def image_in_mode(mode: str, size: tuple[int, int], seed: int) -> Image.Image:
    if mode in ("I;16", "I", "F", "F-nan"):
        return high_depth(mode, size, seed)
    return palette_with_transparency(size, seed) if mode == "P" else noise(mode, size, seed)


MODES = [
    ("RGB", "PNG"), ("RGB", "JPEG"), ("RGBA", "PNG"), ("RGBA", "WEBP"), ("L", "PNG"), ("LA", "PNG"), ("1", "PNG"),
    ("P", "PNG"), ("P", "GIF"), ("CMYK", "JPEG"), ("CMYK", "TIFF"), ("YCbCr", "TIFF"), ("LAB", "TIFF"),
    ("I;16", "PNG"), ("I;16", "TIFF"), ("I", "TIFF"), ("F", "TIFF"), ("F-nan", "TIFF"),
]
# (width, height): smaller, equal and larger than 224, and both at once; odd margins, which
# CenterCrop rounds half to even (225 → 0, 227 → 2, 229 → 2, 231 → 4).
SIZES = [(1, 1), (224, 224), (225, 225), (227, 229), (231, 233), (100, 60), (300, 223), (600, 2), (257, 511),
         (223, 300)]


@pytest.mark.parametrize("mode, fmt", MODES, ids=[f"{mode}-{fmt}" for mode, fmt in MODES])
def test_cropping_before_converting_gives_the_same_tensor(mode, fmt, tmp_path):
    crop = transforms.CenterCrop(config.CROP_SIZE)
    for seed, size in enumerate(SIZES):
        image = image_in_mode(mode, size, seed)
        data = encode(image, fmt)
        with Image.open(io.BytesIO(data)) as reopened:
            assert reopened.mode == image.mode  # the file reaches the decoder in the mode under test
        window_only = crop(decode_image(data, centre_crop=(config.CROP_SIZE, config.CROP_SIZE)))
        assert np.array_equal(np.asarray(window_only), np.asarray(crop(decode_image(data)))), size
    assert torch.equal(load_bytes(data, tmp_path), TRANSFORM(decode_image(data)))


def test_perturbations_still_see_the_whole_image(tmp_path):
    data = encode(noise("RGB", (300, 260), 1), "PNG")
    blurred = load_bytes(data, tmp_path, Perturbation(blur_sigma=3.0))
    assert torch.equal(blurred, TRANSFORM(Perturbation(blur_sigma=3.0).apply(decode_image(data))))
    crop_first = noise("RGB", (300, 260), 1).crop((38, 18, 262, 242))
    assert not torch.allclose(blurred, TRANSFORM(Perturbation(blur_sigma=3.0).apply(crop_first)), atol=1e-3)


# --- Huge but legitimate images: bounded peak memory -------------------------------------------


def _status_bytes(key: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) * 1024
    raise KeyError(key)


def _peak_memory_of_loading(path: Path, warm_up: Path, connection) -> None:
    """In a forked child: send the increase of peak resident memory (bytes) while loading ``path``."""
    torch.set_num_threads(1)
    load_tensor(warm_up, TRANSFORM)  # torch's first-call allocations are not the image's
    try:
        Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current RSS
    except OSError:
        connection.send(None)
        return
    before = _status_bytes("VmRSS")
    tensor = load_tensor(path, TRANSFORM)
    connection.send((_status_bytes("VmHWM") - before, tensor.numpy()))


def huge_gradient(mode: str, size: tuple[int, int]) -> np.ndarray:
    """uint8 (height, width) or (height, width, 3): horizontal and vertical ramps, compressible."""
    width, height = size
    ramp_x, ramp_y = (np.arange(width) % 256).astype(np.uint8), (np.arange(height) % 256).astype(np.uint8)
    if mode == "L":
        return np.broadcast_to(ramp_x, (height, width)).copy()
    array = np.empty((height, width, 3), dtype=np.uint8)
    array[..., 0], array[..., 1], array[..., 2] = ramp_x, ramp_y[:, None], 128
    return array


@pytest.mark.skipif(sys.platform != "linux", reason="peak memory is read from /proc/self (Linux)")
@pytest.mark.timeout(60)
@pytest.mark.parametrize("mode, size, fmt", [("L", (9000, 9000), "PNG"), ("RGB", (6000, 4000), "JPEG")],
                         ids=["grey-png-81Mpx", "rgb-jpeg-24Mpx"])
def test_huge_legitimate_images_load_in_bounded_memory(mode, size, fmt, tmp_path):
    """Peak memory is the 8-bit decoded image (PIL keeps RGB in 4 bytes a pixel), not a float
    or a full-size RGB copy: at most 1.5x width x height x channels."""
    assert size[0] * size[1] <= config.MAX_IMAGE_PIXELS
    array = huge_gradient(mode, size)
    path, warm_up = tmp_path / f"huge.{fmt.lower()}", tmp_path / "small.png"
    Image.fromarray(array).save(path, format=fmt, **({"compress_level": 1} if fmt == "PNG" else {"quality": 95}))
    Image.fromarray(array[:300, :300]).save(warm_up)
    fork = multiprocessing.get_context("fork")  # the child inherits the imports: no 7 s torch import
    receiver, sender = fork.Pipe(duplex=False)
    child = fork.Process(target=_peak_memory_of_loading, args=(path, warm_up, sender))
    child.start()
    sender.close()
    try:
        result = receiver.recv()
    except EOFError:
        pytest.fail(f"the measuring process died (exit code {child.join() or child.exitcode})")
    child.join()
    if result is None:
        pytest.skip("/proc/self/clear_refs is not writable here")
    peak, tensor = result
    decoded = array.nbytes
    assert peak <= 1.5 * decoded, f"peak +{peak} bytes, {peak / decoded:.2f}x the {decoded} decoded bytes"
    top, left = (size[1] - 224) // 2, (size[0] - 224) // 2  # even margins
    window = array[top : top + 224, left : left + 224]
    assert tensor.shape == (3, 224, 224)
    if fmt == "PNG":
        assert np.array_equal(tensor, TRANSFORM(Image.fromarray(window).convert("RGB")).numpy())


# --- Malformed metadata and palettes -----------------------------------------------------------


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_chunks(png: bytes):
    """(kind, payload) of every chunk of a PNG file."""
    position = 8
    while position < len(png):
        (length,) = struct.unpack(">I", png[position : position + 4])
        yield png[position + 4 : position + 8], png[position + 8 : position + 8 + length]
        position += 12 + length


def png_with(png: bytes, *chunks: tuple[bytes, bytes], replace: dict | None = None) -> bytes:
    """The PNG with ``chunks`` inserted before the first IDAT and payloads in ``replace`` swapped
    (kind → payload; None drops the chunk). CRCs are valid, so only the content is hostile."""
    replace = replace or {}
    out = [png[:8]]
    for kind, data in png_chunks(png):
        if kind == b"IDAT" and chunks:
            out.extend(png_chunk(*chunk) for chunk in chunks)
            chunks = ()
        data = replace.get(kind, data)
        if data is not None:
            out.append(png_chunk(kind, data))
    return b"".join(out)


def palette_png(plte: bytes | None, trns: bytes | None = None) -> bytes:
    """A P-mode PNG that uses every index 0..255, with the given PLTE and tRNS payloads."""
    image = Image.fromarray((np.arange(40 * 24) % 256).astype(np.uint8).reshape(24, 40)).convert("P")
    image.putpalette([(i * 7) % 256 for i in range(768)])
    extra = [(b"tRNS", trns)] if trns is not None else []
    return png_with(encode(image, "PNG"), *extra, replace={b"PLTE": plte})


def jpeg_segment(marker: int, payload: bytes) -> bytes:
    return struct.pack(">HH", marker, len(payload) + 2) + payload


def jpeg_with(*segments: bytes, base: bytes | None = None) -> bytes:
    """A JPEG with the given marker segments right after SOI."""
    base = base or CLEAN["JPEG"]
    return base[:2] + b"".join(segments) + base[2:]


def tiff_ifd(entries, offset: int, order: str = "<") -> bytes:
    """An IFD at ``offset`` from (tag, type, count, value) entries. An int value fills the 4-byte
    field (a SHORT its first two bytes); bytes longer than 4 are stored after the IFD."""
    entries = sorted(entries)
    data_at = offset + 2 + 12 * len(entries) + 4
    fields, data = [struct.pack(order + "H", len(entries))], b""
    for tag, kind, count, value in entries:
        if isinstance(value, bytes) and len(value) > 4:
            field = struct.pack(order + "I", data_at + len(data))
            data += value + b"\0" * (len(value) % 2)
        elif isinstance(value, bytes):
            field = value.ljust(4, b"\0")
        else:
            field = struct.pack(order + ("HH" if kind == 3 else "I"), *((value, 0) if kind == 3 else (value,)))
        fields.append(struct.pack(order + "HHI", tag, kind, count) + field)
    return b"".join(fields) + struct.pack(order + "I", 0) + data


def tiff_grey(extra=(), override: dict | None = None) -> bytes:
    """An uncompressed 32x16 8-bit greyscale TIFF, with extra tags or some replaced (None drops)."""
    width, height = 32, 16
    pixels = np.random.default_rng(1).integers(0, 256, width * height, dtype=np.uint8).tobytes()
    tags = {256: (3, 1, width), 257: (3, 1, height), 258: (3, 1, 8), 259: (3, 1, 1), 262: (3, 1, 1),
            273: (4, 1, 8), 277: (3, 1, 1), 278: (3, 1, height), 279: (4, 1, len(pixels))}
    tags.update(override or {})
    entries = [(tag, *spec) for tag, spec in tags.items() if spec is not None] + list(extra)
    return b"II*\0" + struct.pack("<I", 8 + len(pixels)) + pixels + tiff_ifd(entries, 8 + len(pixels))


def exif_tiff(entries, next_ifd: int = 0) -> bytes:
    """A little-endian EXIF block (TIFF header and one IFD at offset 8) pointing on to ``next_ifd``."""
    ifd = bytearray(tiff_ifd(entries, 8))
    ifd[2 + 12 * len(entries) : 6 + 12 * len(entries)] = struct.pack("<I", next_ifd)
    return b"II*\0" + struct.pack("<I", 8) + bytes(ifd)


def gif_with_global_palette(entries: int | None) -> bytes:
    """The clean GIF with its global colour table dropped (None) or cut to ``entries`` (a power of 2)."""
    gif = bytearray(CLEAN["GIF"])
    table = 3 * 2 ** ((gif[10] & 7) + 1) if gif[10] & 0x80 else 0
    rest = gif[13 + table :]
    if entries is None:
        gif[10] &= 0x78
        return bytes(gif[:13] + rest)
    gif[10] = (gif[10] & 0x78) | 0x80 | (entries.bit_length() - 2)
    return bytes(gif[:13] + gif[13 : 13 + 3 * entries] + rest)


def bmp_colours_used(count: int) -> bytes:
    """The clean 8-bit BMP claiming ``count`` palette entries (biClrUsed)."""
    bmp = bytearray(CLEAN["BMP"])
    bmp[46:50] = struct.pack("<I", count)
    return bytes(bmp)


def camera_exif() -> Image.Exif:
    """A well-formed EXIF block of the kind cameras write: orientation, make, resolution."""
    exif = Image.Exif()
    exif.update({0x0112: 6, 0x010F: "camera", 0x011A: 72.0, 0x0128: 2})
    return exif


SRGB = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
XYZ = ImageCms.ImageCmsProfile(ImageCms.createProfile("XYZ")).tobytes()
CLEAN = {
    "JPEG": encode(noise(), "JPEG", quality=95),
    "PNG": encode(noise(), "PNG"),
    "GIF": encode(noise("P"), "GIF"),
    "BMP": encode(noise("P"), "BMP"),
    "WEBP": encode(noise(), "WEBP", lossless=True),
}
EXIF_HEADER = b"Exif\0\0"

# Metadata that is never applied: the file decodes to exactly the pixels of its clean original.
IGNORED_METADATA = {
    "jpeg-exif-truncated-ifd": jpeg_with(jpeg_segment(0xFFE1, EXIF_HEADER + b"II*\0" + struct.pack("<IH", 8, 20))),
    "jpeg-exif-ifd-offset-beyond-data": jpeg_with(jpeg_segment(0xFFE1, EXIF_HEADER + b"II*\0\xf0\xff\xff\xff")),
    "jpeg-exif-value-offsets-beyond-data": jpeg_with(jpeg_segment(0xFFE1, EXIF_HEADER + exif_tiff(
        [(0x010F, 2, 100_000, 0x7FFFFFF0), (0x011A, 5, 1, 0xFFFFFF00), (0x0128, 3, 1, 2),
         (0x8769, 4, 1, 0xFFFFFFF8)]))),
    "jpeg-exif-ifd-loop": jpeg_with(jpeg_segment(0xFFE1, EXIF_HEADER + exif_tiff(
        [(0x8769, 4, 1, 8), (0x8825, 4, 1, 8)], next_ifd=8))),
    "jpeg-exif-zero-resolution": jpeg_with(jpeg_segment(0xFFE1, EXIF_HEADER + exif_tiff(
        [(0x011A, 5, 1, bytes(8)), (0x0128, 3, 1, 2)]))),
    "jpeg-exif-unknown-types": jpeg_with(jpeg_segment(0xFFE1, EXIF_HEADER + exif_tiff(
        [(0x0112, 99, 1, 6), (0x011A, 0, 5, 1), (0x9999, 13, 0xFFFFFFFF, 0)]))),
    "jpeg-exif-not-tiff": jpeg_with(jpeg_segment(0xFFE1, EXIF_HEADER + bytes(range(200)))),
    "jpeg-exif-empty": jpeg_with(jpeg_segment(0xFFE1, EXIF_HEADER)),
    "jpeg-exif-split-over-two-segments": jpeg_with(jpeg_segment(0xFFE1, EXIF_HEADER + b"II*\0"),
                                                   jpeg_segment(0xFFE1, EXIF_HEADER + struct.pack("<IH", 8, 1))),
    "jpeg-exif-orientation-not-applied": jpeg_with(jpeg_segment(0xFFE1, EXIF_HEADER + exif_tiff([(0x0112, 3, 1, 6)]))),
    "jpeg-mpo-index-garbage": jpeg_with(jpeg_segment(0xFFE2, b"MPF\0" + bytes(range(100)))),
    "jpeg-mpo-second-image-beyond-eof": jpeg_with(jpeg_segment(0xFFE2, b"MPF\0" + exif_tiff(
        [(0xB000, 7, 4, b"0100"), (0xB001, 4, 1, 2),
         (0xB002, 7, 32, struct.pack("<IIIHH", 0x20030000, 1000, 0, 0, 0)
                         + struct.pack("<IIIHH", 0, 5000, 0x7FFFFFF0, 0, 0))]))),
    "jpeg-photoshop-resource-truncated": jpeg_with(jpeg_segment(
        0xFFED, b"Photoshop 3.0\0" + b"8BIM\x03\xed\0\0\xff\xff\xff\xff\1\2")),
    "jpeg-icc-garbage": jpeg_with(jpeg_segment(0xFFE2, b"ICC_PROFILE\0\1\1" + bytes(range(256)))),
    "jpeg-icc-truncated-profile": jpeg_with(jpeg_segment(0xFFE2, b"ICC_PROFILE\0\1\1" + SRGB[:300])),
    "jpeg-icc-chunks-missing": jpeg_with(jpeg_segment(0xFFE2, b"ICC_PROFILE\0\1\3" + SRGB[:300])),
    "jpeg-icc-chunk-numbers-zero": jpeg_with(jpeg_segment(0xFFE2, b"ICC_PROFILE\0\0\0" + SRGB)),
    "jpeg-icc-duplicate-chunks": jpeg_with(jpeg_segment(0xFFE2, b"ICC_PROFILE\0\1\2" + SRGB[:300]),
                                           jpeg_segment(0xFFE2, b"ICC_PROFILE\0\1\2" + SRGB[300:])),
    "jpeg-icc-valid-not-applied": jpeg_with(jpeg_segment(0xFFE2, b"ICC_PROFILE\0\1\1" + XYZ)),
    "png-exif-garbage": png_with(CLEAN["PNG"], (b"eXIf", bytes(range(256)) * 3)),
    "png-exif-offset-beyond-data": png_with(CLEAN["PNG"], (b"eXIf", b"MM\0*\xff\xff\xff\xf0")),
    "png-exif-empty": png_with(CLEAN["PNG"], (b"eXIf", b"")),
    "png-icc-not-zlib": png_with(CLEAN["PNG"], (b"iCCP", b"icc\0\0" + bytes(range(100)))),
    "png-icc-garbage-profile": png_with(CLEAN["PNG"], (b"iCCP", b"icc\0\0" + zlib.compress(bytes(range(256)) * 4))),
    "png-icc-truncated-profile": png_with(CLEAN["PNG"], (b"iCCP", b"icc\0\0" + zlib.compress(SRGB[: len(SRGB) // 2]))),
    "png-icc-truncated-zlib-stream": png_with(CLEAN["PNG"], (b"iCCP", b"icc\0\0" + zlib.compress(SRGB)[:50])),
    "png-icc-valid-not-applied": png_with(CLEAN["PNG"], (b"iCCP", b"xyz\0\0" + zlib.compress(XYZ))),
    "png-trns-longer-than-rgb-needs": png_with(CLEAN["PNG"], (b"tRNS", bytes(300))),
}
CLEAN_ORIGINAL = {name: CLEAN[name.split("-")[0].upper()] for name in IGNORED_METADATA}

# Broken palettes and TIFF tags, and metadata PIL refuses: the outcome each file must have
# (None: decoded to a valid tensor).
MALFORMED = {
    "png-palette-shorter-than-indices": (palette_png(bytes(range(6))), None),
    "png-palette-not-whole-entries": (palette_png(bytes(range(7))), None),
    "png-palette-empty": (palette_png(b""), None),
    "png-palette-missing": (palette_png(None), None),
    "png-palette-over-256-entries": (palette_png(bytes(i % 256 for i in range(900))), "invalid palette size"),
    "png-trns-longer-than-palette": (palette_png(bytes(range(12)), trns=bytes(300)), None),
    "png-trns-single-entry": (palette_png(bytes(range(6)), trns=b"\0"), None),
    "png-trns-greyscale-truncated": (png_with(encode(noise("L"), "PNG"), (b"tRNS", b"\0")), "Truncated tRNS chunk"),
    "png-icc-unknown-compression": (png_with(CLEAN["PNG"], (b"iCCP", b"icc\0\7" + zlib.compress(SRGB))),
                                    "PNG: .*Unknown compression method 7 in iCCP chunk"),
    "png-icc-name-unterminated": (png_with(CLEAN["PNG"], (b"iCCP", b"icc")), "PNG: .*iCCP"),
    "png-icc-empty": (png_with(CLEAN["PNG"], (b"iCCP", b"")), "cannot decode: PNG: "),
    "png-icc-zlib-bomb": (png_with(CLEAN["PNG"], (b"iCCP", b"icc\0\0" + zlib.compress(bytes(4_000_000), 9))),
                          "Decompressed data too large"),
    "jpeg-icc-marker-without-numbers": (jpeg_with(jpeg_segment(0xFFE2, b"ICC_PROFILE\0")), "cannot decode: JPEG: "),
    "jpeg-cmyk-icc-garbage": (encode(noise("CMYK"), "JPEG", icc_profile=b"garbage" * 30), None),
    "webp-exif-and-icc-garbage": (encode(noise(), "WEBP", exif=bytes(range(256)), icc_profile=b"\0garbage" * 10), None),
    "gif-global-palette-missing": (gif_with_global_palette(None), None),
    "gif-global-palette-2-entries": (gif_with_global_palette(2), None),
    "bmp-palette-shorter-than-indices": (bmp_colours_used(2), None),
    "bmp-palette-huge": (bmp_colours_used(1_000_000), "Unsupported BMP Palette size"),
    "tiff-tag-unknown-type": (tiff_grey(extra=[(0x9999, 99, 4, 7)]), None),
    "tiff-tag-data-beyond-eof": (tiff_grey(extra=[(270, 2, 0x7FFFFFF0, 0xFFFFFF00)]), None),
    "tiff-exif-ifd-beyond-eof": (tiff_grey(extra=[(34665, 4, 1, 0xFFFFFFF0)]), None),
    "tiff-exif-ifd-loop": (tiff_grey(extra=[(34665, 4, 1, 8), (34853, 4, 1, 8)]), None),
    "tiff-icc-garbage": (tiff_grey(extra=[(34675, 7, 40, b"\xde\xad" * 20)]), None),
    "tiff-resolution-zero-denominator": (tiff_grey(extra=[(282, 5, 1, bytes(8)), (296, 3, 1, 2)]), None),
    "tiff-orientation-out-of-range": (tiff_grey(extra=[(274, 3, 1, 99)]), None),
    "tiff-palette-colormap-short": (tiff_grey(override={262: (3, 1, 3)}, extra=[(320, 3, 6, bytes(range(12)))]), None),
    "tiff-palette-colormap-missing": (tiff_grey(override={262: (3, 1, 3)}), "cannot decode: TIFF: "),
    "tiff-bits-per-sample-3": (tiff_grey(override={258: (3, 1, 3)}), "TIFF: .*unknown pixel mode"),
    "tiff-compression-unknown": (tiff_grey(override={259: (3, 1, 12345)}), "cannot decode: TIFF: "),
    "tiff-width-missing": (tiff_grey(override={256: None}), "TIFF: .*Missing dimensions"),
    "tiff-strip-beyond-eof": (tiff_grey(override={273: (4, 1, 0x7FFFFF00)}), "image file is truncated"),
}


@pytest.mark.filterwarnings("error")  # PIL's metadata warnings must not turn a good file into a rejection
@pytest.mark.timeout(30)
@pytest.mark.parametrize("name", sorted(IGNORED_METADATA))
def test_malformed_or_unapplied_metadata_leaves_the_pixels_alone(name, tmp_path):
    data, clean = IGNORED_METADATA[name], CLEAN_ORIGINAL[name]
    assert data != clean
    assert np.array_equal(np.asarray(decode_image(data)), np.asarray(decode_image(clean)))
    assert torch.equal(load_bytes(data, tmp_path), load_bytes(clean, tmp_path))


@pytest.mark.filterwarnings("error")
@pytest.mark.timeout(30)
@pytest.mark.parametrize("name", sorted(MALFORMED))
def test_malformed_palettes_tags_and_profiles_decode_or_are_rejected_with_a_reason(name, tmp_path):
    data, reason = MALFORMED[name]
    if reason is None:
        tensor = load_bytes(data, tmp_path)
        assert tensor.shape == (3, 224, 224) and tensor.dtype == torch.float32 and torch.isfinite(tensor).all()
        assert np.array_equal(np.asarray(decode_image(data)), np.asarray(decode_image(data)))  # no uninitialised memory
    else:
        with pytest.raises(ImageRejected, match=reason):
            load_bytes(data, tmp_path)


# --- Bombs and fuzzing -------------------------------------------------------------------------


def test_bomb_header_refused_before_decoding():
    png = bytearray(CLEAN["PNG"])
    png[16:24] = (60_000).to_bytes(4, "big") + (60_000).to_bytes(4, "big")  # IHDR width, height
    png[29:33] = zlib.crc32(bytes(png[12:29])).to_bytes(4, "big")
    with pytest.raises(ImageRejected, match="decompression bomb"):
        decode_image(bytes(png))


FUZZ_SEEDS = {
    **{fmt: encode(noise("P" if fmt == "GIF" else "RGB"), fmt)
       for fmt in ("PNG", "JPEG", "BMP", "WEBP", "GIF", "TIFF")},
    "jpeg-exif-icc": encode(noise(), "JPEG", exif=camera_exif(), icc_profile=SRGB),
    "png-exif-icc-text": png_with(CLEAN["PNG"],
                                  (b"eXIf", exif_tiff([(0x0112, 3, 1, 6), (0x011A, 5, 1, bytes(range(8)))])),
                                  (b"iCCP", b"srgb\0\0" + zlib.compress(SRGB)), (b"tEXt", b"Comment\0hello")),
    "png-palette-trns": palette_png(bytes(range(48)), trns=bytes(range(16))),
    "tiff-tags": tiff_grey(extra=[(274, 3, 1, 6), (282, 5, 1, bytes(range(8))), (34675, 7, 40, SRGB[:40])]),
    "webp-exif-icc": encode(noise(), "WEBP", exif=exif_tiff([(0x0112, 3, 1, 6)]), icc_profile=SRGB),
    **{name: IGNORED_METADATA[name] for name in ("jpeg-exif-ifd-loop", "jpeg-mpo-second-image-beyond-eof")},
    **{name: MALFORMED[name][0] for name in ("gif-global-palette-2-entries", "bmp-palette-shorter-than-indices")},
}


@pytest.mark.timeout(120)
@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.sampled_from(sorted(FUZZ_SEEDS)), cut=st.integers(0, 400), insert=st.binary(max_size=16),
       at=st.integers(0, 10_000), flips=st.lists(st.tuples(st.integers(0, 10_000), st.integers(1, 255)), max_size=6))
def test_mutated_images_load_or_are_rejected(seed, cut, insert, at, flips, tmp_path):
    """Bit flips, an insertion and a cut tail anywhere, metadata included, through the whole
    loading path: a finite float32 (3, 224, 224) tensor or ImageRejected, nothing else."""
    data = bytearray(FUZZ_SEEDS[seed])
    data[at % len(data) : at % len(data)] = insert
    for position, mask in flips:
        data[position % len(data)] ^= mask
    data = bytes(data[: max(0, len(data) - cut)])
    path = tmp_path / "fuzzed"
    path.write_bytes(data)
    try:
        tensor = load_tensor(path, TRANSFORM, max_pixels=200_000)
    except ImageRejected as rejection:
        assert str(rejection)
    else:
        assert tensor.shape == (3, 224, 224) and tensor.dtype == torch.float32 and torch.isfinite(tensor).all()
