"""Every setting the pipeline shares, in one place.

Paths can be moved with environment variables so that a CI job, a notebook and the command
line all agree without passing flags around:

- ``UFD_CACHE_DIR``: feature cache (default ``~/.cache/ufd/features``).
- ``UFD_WEIGHTS_DIR``: CLIP checkpoints (default ``~/.cache/clip``, where ``clip.load`` puts them).
- ``UFD_OFFLINE=1``: never try to download weights.
- ``UFD_CACHE_CHUNK_IMAGES``: images per cache chunk, the unit of work that extraction
  claims, commits and, when interrupted, loses (default 1024).
- ``UFD_MAX_IMAGE_BYTES``: image files larger than this many bytes are refused before they
  are read (default 256 MiB; ``--max-bytes`` overrides it).
"""
from __future__ import annotations

import os
from collections.abc import Sequence
from itertools import compress
from operator import methodcaller
from pathlib import Path

DEFAULT_ENCODER = "clip:ViT-L/14"

# CLIP normalisation, as in the official evaluation (UniversalFakeDetect validate.py).
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

# Centre crop 224 on the native image, no resize (official evaluation since 18 Aug 2023).
CROP_SIZE = 224

# What counts as an image file, everywhere (discovery, `ufd predict` folders, `ufd data verify`):
# a regular file whose last suffix, in any case, is one of these.
IMAGE_EXTENSIONS = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".webp"})
_IMAGE_SUFFIXES = tuple(sorted(IMAGE_EXTENSIONS))
# The released loader's own rule, used by `--sampling official` (UniversalFakeDetect validate.py,
# recursively_read): the text between the first and second dot of the name, case-sensitive.
OFFICIAL_IMAGE_EXTENSIONS = ("png", "jpg", "JPEG", "jpeg", "bmp")
REAL_DIR = "0_real"
FAKE_DIR = "1_fake"

# Released evaluation sampling: 1000 per class, 100 when a class has fewer, seed 0.
SAMPLING_MODES = ("all", "official")  # every decodable image, or the released cap
PRECISIONS = ("auto", "fp32", "bf16", "fp16")  # encoder compute precision of an extraction

OFFICIAL_MAX_PER_CLASS = 1000
OFFICIAL_FALLBACK_PER_CLASS = 100
OFFICIAL_SAMPLING_SEED = 0

# Images above this many pixels are refused as decompression bombs (PIL's own default).
MAX_IMAGE_PIXELS = 89_478_485

# Image files above this many bytes are refused unread (a 24-bit 8K TIFF is about 100 MiB).
MAX_IMAGE_BYTES = 256 * 2**20

# Most DataLoader decoding processes chosen by default (extract.default_workers).
MAX_DEFAULT_WORKERS = 8

# Features are stored as float16: half the disk of float32, within fp16 model precision.
FEATURE_STORE_DTYPE = "float16"
CACHE_CHUNK_IMAGES = 1024

# Linear probe recipe of the released training code.
PROBE_LR = 1e-4
PROBE_BATCH_SIZE = 256
PROBE_MAX_EPOCHS = 100
PROBE_PATIENCE = 5
PROBE_MIN_DELTA = 0.001
PROBE_MIN_LR = 1e-6
PROBE_INIT_STD = 0.02
PROBE_VAL_FRACTION = 0.1

# Decision thresholds: probability of fake for the probe, cosine margin for nearest neighbour.
PROBE_THRESHOLD = 0.5
KNN_THRESHOLD = 0.0


def is_image_name(name: str) -> bool:
    """Whether a file name counts as an image: its last suffix, any case, is in IMAGE_EXTENSIONS.

    The suffix is ``os.path.splitext``'s, found without calling it (discovery asks this of every
    file): the text from the last dot, which does not count when only dots precede it in the
    file name, so ``.png`` and ``..png`` have no suffix while ``a..png`` has ``.png``.
    """
    dot = name.rfind(".")
    return dot > 0 and name[dot:].lower() in IMAGE_EXTENSIONS and (
        name[dot - 1] not in (".", os.sep) or name[:dot].rpartition(os.sep)[2].strip(".") != "")


def image_names(names: Sequence[str]) -> list[str]:
    """The names of a directory listing that pass :func:`is_image_name`, in their order.

    Discovery asks this of every file of a tree, so the suffix test runs without Python work
    per name (``name.lower().endswith(suffix)``, which for names not starting with a dot is the
    same test); only names starting with a dot go through :func:`is_image_name`.
    """
    passes = list(map(methodcaller("endswith", _IMAGE_SUFFIXES), names))  # lower case: no new strings
    if not all(passes):
        passes = [hit or name.lower().endswith(_IMAGE_SUFFIXES) for hit, name in zip(passes, names)]
    passing = list(compress(names, passes))
    if any(map(methodcaller("startswith", "."), passing)):
        passing = [name for name in passing if not name.startswith(".") or is_image_name(name)]
    return passing


def is_official_image_name(name: str) -> bool:
    """Whether the released loader reads a file of this name: ``name.split('.')[1]`` is one of
    OFFICIAL_IMAGE_EXTENSIONS (so ``a.PNG``, ``a.webp`` and ``a.v2.png`` are not read, ``a.png.txt``
    is; a name without a dot makes the release fail, and is not read here)."""
    parts = name.split(".")
    return len(parts) > 1 and parts[1] in OFFICIAL_IMAGE_EXTENSIONS


def cache_dir() -> Path:
    """Root of the feature cache."""
    return Path(os.environ.get("UFD_CACHE_DIR", Path.home() / ".cache" / "ufd" / "features"))


def weights_dir() -> Path:
    """Directory where official CLIP checkpoints are looked for and downloaded to."""
    return Path(os.environ.get("UFD_WEIGHTS_DIR", Path.home() / ".cache" / "clip"))


def _positive_int_from_env(name: str, default: int) -> int:
    text = os.environ.get(name, "")
    if not text:
        return default
    if not text.isdigit() or int(text) < 1:
        raise ValueError(f"{name} must be a positive integer, got {text!r}")
    return int(text)


def cache_chunk_images() -> int:
    """Images per cache chunk (``UFD_CACHE_CHUNK_IMAGES``, default :data:`CACHE_CHUNK_IMAGES`)."""
    return _positive_int_from_env("UFD_CACHE_CHUNK_IMAGES", CACHE_CHUNK_IMAGES)


def max_image_bytes() -> int:
    """Largest image file read, in bytes (``UFD_MAX_IMAGE_BYTES``, default :data:`MAX_IMAGE_BYTES`)."""
    return _positive_int_from_env("UFD_MAX_IMAGE_BYTES", MAX_IMAGE_BYTES)


def env_flag(name: str) -> bool:
    """Whether the environment variable ``name`` is set to a true value (anything but empty,
    ``0``, ``false`` or ``False``). The one reader of on/off switches such as ``UFD_OFFLINE``."""
    return os.environ.get(name, "") not in ("", "0", "false", "False")


def offline() -> bool:
    """Whether downloads are forbidden (``UFD_OFFLINE=1``)."""
    return env_flag("UFD_OFFLINE")
