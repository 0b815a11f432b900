"""A small synthetic benchmark, generated at run time, laid out like the paper's data.

THIS IS NOT THE PAPER'S DATA. Real images are random crops of a handful of natural
photographs that ship inside scikit-learn, matplotlib and scikit-image; fake images are made
by simple numpy/scipy image processes that imitate the *kind* of artefact each generator
family leaves (periodic up-sampling traces, over-smoothed denoising, blocky tokens). Its only
purpose is to let the whole pipeline (CLIP features -> nearest neighbour / linear probe ->
metrics) run offline on CPU in minutes. Numbers measured on it say nothing about UnivFD.

The layout copies the real data exactly, so every stage reads it through the same code:

    train/progan/<category>/{0_real,1_fake}/000000.png    (CNNDetection training set)
    val/progan/<category>/{0_real,1_fake}/
    train/ldm/{0_real,1_fake}/, val/ldm/{0_real,1_fake}/  (a diffusion-like training set, standing
                                                           in for the paper's LAION/LDM one)
    test/<gan>/<category>/{0_real,1_fake}/                (CNNDetection test sets with a
    test/<gan>/{0_real,1_fake}/                            category level, and without)
    diffusion_datasets/{imagenet,laion}/0_real/           (UnivFD: reals shared by ...)
    diffusion_datasets/<generator>/1_fake/                (... one fake folder per generator)
    smoke_benchmark.json                                  (parameters, version, counts)

Generation is deterministic given the parameters: every folder draws from its own numpy
Generator seeded by (seed, folder path), so folders do not depend on each other's order.
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
import zlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Callable

import matplotlib.cbook
import numpy as np
import skimage.data
from PIL import Image
from scipy import ndimage
from sklearn.datasets import load_sample_image

from ufd_lib.data.image_sets import ImageSetSpec

GENERATOR_VERSION = 2
MANIFEST_NAME = "smoke_benchmark.json"

# Three disjoint photo pools stand in for the paper's three real-image sources, so that
# "LSUN", "ImageNet" and "LAION" reals never share content.
_PHOTO_LOADERS: dict[str, Callable[[], np.ndarray]] = {
    "china": lambda: load_sample_image("china.jpg"),
    "flower": lambda: load_sample_image("flower.jpg"),
    "coffee": skimage.data.coffee,
    "chelsea": skimage.data.chelsea,
    "astronaut": skimage.data.astronaut,
    "rocket": skimage.data.rocket,
    "grace_hopper": lambda: np.asarray(
        Image.open(matplotlib.cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)).convert("RGB")
    ),
}
_REAL_SOURCES: dict[str, tuple[str, ...]] = {
    "lsun": ("china", "flower", "coffee"),
    "imagenet": ("chelsea", "astronaut"),
    "laion": ("rocket", "grace_hopper"),
}


@dataclass(frozen=True)
class SmokeBenchmark:
    """A generated smoke benchmark (synthetic; not the paper's data).

    root: directory holding the tree and ``smoke_benchmark.json``.
    train, val: the ProGAN-style training and validation sets (name "progan").
    other_training: name → (training set, validation set) of training data other than ProGAN:
    ``ldm``, LAION-style reals and fakes of the ``ldm_200`` test set's process (the paper's
    Sec. 6.4 setting, where LDM is seen and the GANs are not).
    test_sets: CNNDetection-style sets, then UnivFD-style diffusion/autoregressive sets.
    families: test set name -> generator family name (keys of ``family_descriptions``).
    family_descriptions: family -> plain-English description of its process and artefacts.
    """

    root: Path
    train: ImageSetSpec
    val: ImageSetSpec
    test_sets: list[ImageSetSpec]
    families: dict[str, str]
    family_descriptions: dict[str, str]
    other_training: dict[str, tuple[ImageSetSpec, ImageSetSpec]]


# --- fake-image processes. Each maps a float32 (H, W, 3) image in [0, 1] to another. ---


def _box_downsample(image: np.ndarray, factor: int) -> np.ndarray:
    """(H, W, C) -> (H / factor, W / factor, C) by averaging factor x factor blocks."""
    height, width, channels = image.shape
    blocks = image.reshape(height // factor, factor, width // factor, factor, channels)
    return blocks.mean(axis=(1, 3))


def _bicubic_resize(image: np.ndarray, size: int) -> np.ndarray:
    """float32 (H, W, C) -> (size, size, C), each channel resized bicubically by PIL."""
    channels = [Image.fromarray(image[:, :, c], "F") for c in range(image.shape[2])]
    return np.stack([np.asarray(channel.resize((size, size), Image.BICUBIC)) for channel in channels], axis=2)


@dataclass(frozen=True)
class _GanUpsampling:
    """Synthesise from a 2**stages-times smaller image through stride-2 transposed convolutions.

    The kernel is a bilinear tent perturbed by ``unevenness`` (seeded by ``kernel_seed``), so the
    four output phases get different gains: the periodic "checkerboard" of real GAN decoders,
    visible as peaks at multiples of half the sampling frequency. ``detail`` adds back that
    fraction of the source's high-pass so outputs are not merely blurred.
    """

    stages: int
    kernel_size: int
    unevenness: float
    detail: float
    kernel_seed: int

    family = "gan_upsampling"

    def kernel(self) -> np.ndarray:
        """float64 (k, k) kernel, scaled so the mean gain over the 4 output phases is 1."""
        offsets = np.arange(self.kernel_size) - (self.kernel_size - 1) / 2
        tent = np.maximum(0.0, 1.0 - np.abs(offsets) / 2)
        wobble = np.random.default_rng(self.kernel_seed).uniform(-1, 1, (self.kernel_size,) * 2)
        kernel = np.outer(tent, tent) * (1 + self.unevenness * wobble)
        return kernel * 4 / kernel.sum()

    def __call__(self, image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        factor = 2**self.stages
        kernel = self.kernel()[:, :, None]
        x = _box_downsample(image, factor)
        for _ in range(self.stages):
            inserted = np.zeros((2 * x.shape[0], 2 * x.shape[1], 3), np.float32)
            inserted[::2, ::2] = x
            x = ndimage.correlate(inserted, kernel, mode="reflect")
        high_pass = image - ndimage.gaussian_filter(image, (factor / 2, factor / 2, 0))
        return x + self.detail * high_pass


@dataclass(frozen=True)
class _DiffusionDenoise:
    """Add Gaussian noise, then remove it by over-smoothing, optionally at a reduced resolution.

    latent_factor > 1 works on a downsampled "latent" and decodes by cubic up-sampling followed by
    an unsharp mask of strength ``decoder_sharpen``; ``upsampler_noise`` > 0 adds a second,
    full-resolution noise/smooth pass like a cascaded up-sampler. Units: noise std in [0, 1]
    intensity, ``smoothing`` in pixels of the working resolution.
    """

    latent_factor: int
    noise_std: float
    smoothing: float
    decoder_sharpen: float = 0.0
    upsampler_noise: float = 0.0

    family = "diffusion_denoise"

    def __call__(self, image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        x = _box_downsample(image, self.latent_factor)
        x = x + self.noise_std * rng.standard_normal(x.shape, np.float32)
        x = ndimage.gaussian_filter(x, (self.smoothing, self.smoothing, 0))
        if self.latent_factor > 1:
            x = _bicubic_resize(x, image.shape[0])
            x = x + self.decoder_sharpen * (x - ndimage.gaussian_filter(x, (1, 1, 0)))
        if self.upsampler_noise:
            x = x + self.upsampler_noise * rng.standard_normal(x.shape, np.float32)
            x = ndimage.gaussian_filter(x, (0.8, 0.8, 0))
        return x


@dataclass(frozen=True)
class _VqTokens:
    """Encode each 8x8 patch as one token, a quantised mean colour plus one codebook shape.

    The codebook holds ``codebook_size`` unit-norm 8x8 edge and ramp atoms drawn with
    ``codebook_seed``; per-channel coefficients are rounded to steps of ``coefficient_step``
    and means to ``mean_levels`` levels, then a light blur stands in for the decoder. Leaves
    8-pixel block seams and posterised colour.
    """

    codebook_size: int
    mean_levels: int
    coefficient_step: float
    codebook_seed: int

    family = "vq_tokens"
    patch = 8

    def codebook(self) -> np.ndarray:
        """float32 (codebook_size, 64) mean-free atoms of unit L2 norm."""
        rng = np.random.default_rng(self.codebook_seed)
        n, p = self.codebook_size, self.patch
        yy, xx = np.mgrid[0:p, 0:p] - (p - 1) / 2
        angle = rng.uniform(0, np.pi, (n, 1, 1))
        along = np.cos(angle) * xx + np.sin(angle) * yy
        offset = rng.uniform(-p / 3, p / 3, (n, 1, 1))
        width = rng.uniform(0.3, 3.0, (n, 1, 1))
        is_edge = rng.random((n, 1, 1)) < 0.7
        atoms = np.where(is_edge, np.tanh((along - offset) / width), along).reshape(n, -1)
        atoms -= atoms.mean(axis=1, keepdims=True)
        return (atoms / np.linalg.norm(atoms, axis=1, keepdims=True)).astype(np.float32)

    def __call__(self, image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        p = self.patch
        h, w = image.shape[0] // p, image.shape[1] // p
        patches = image.reshape(h, p, w, p, 3).transpose(0, 2, 4, 1, 3).reshape(h * w, 3, p * p)
        means = patches.mean(axis=2, keepdims=True)
        residual = patches - means
        atoms = self.codebook()
        luminance_scores = residual.mean(axis=1) @ atoms.T
        token = np.abs(luminance_scores).argmax(axis=1)
        chosen = atoms[token][:, None, :]
        coefficient = (residual * chosen).sum(axis=2, keepdims=True)
        coefficient = np.round(coefficient / self.coefficient_step) * self.coefficient_step
        levels = self.mean_levels - 1
        decoded = np.round(means * levels) / levels + coefficient * chosen
        x = decoded.reshape(h, w, 3, p, p).transpose(0, 3, 1, 4, 2).reshape(image.shape)
        return ndimage.gaussian_filter(x, (0.5, 0.5, 0))


_Generator = _GanUpsampling | _DiffusionDenoise | _VqTokens

FAMILY_DESCRIPTIONS: dict[str, str] = {
    "gan_upsampling": (
        "Synthetic stand-in for GANs, not any of the paper's generators. A source photo crop is "
        "box-downsampled 2x or 4x and rebuilt through stride-2 transposed convolutions whose "
        "kernel gives the four output phases slightly different gains, then part of the source's "
        "fine detail is added back. The artefact is a faint periodic checkerboard: peaks in the "
        "Fourier spectrum at half the sampling frequency. Each test set uses its own kernel, "
        "depth and strength; the training set's generator is the 'progan' variant, so the other "
        "GAN test sets are unseen members of the seen family."
    ),
    "diffusion_denoise": (
        "Synthetic stand-in for diffusion models, not the paper's guided, LDM or Glide models. A "
        "source crop, optionally downsampled to a 'latent' resolution, gets Gaussian noise that is "
        "then removed by over-smoothing; latents are decoded by cubic up-sampling with a little "
        "sharpening, and a cascaded variant adds a second noisy full-resolution pass. The "
        "artefacts are waxy, over-smooth texture with a faint low-frequency noise residual and no "
        "periodic up-sampling peaks. This family is never seen in training."
    ),
    "vq_tokens": (
        "Synthetic stand-in for autoregressive token models such as DALL-E, not the real one. "
        "Each 8x8 patch becomes one token: its mean colour rounded to a few levels plus the best "
        "of a small fixed codebook of edge and ramp shapes, then lightly blurred as a decoder "
        "would. The artefacts are 8-pixel block seams, posterised colour and simplified edges. "
        "This family is never seen in training."
    ),
}


@dataclass(frozen=True)
class _TestSetRecipe:
    """How to build one test set.

    real_source: photo pool of the reals and of the fakes' source crops.
    categories: CNNDetection-style category level, or () for none.
    shared_real: UnivFD-style; reals live in diffusion_datasets/<real_source>/0_real.
    """

    name: str
    generator: _Generator
    real_source: str
    categories: tuple[str, ...] = ()
    shared_real: bool = False


_PROGAN = _GanUpsampling(stages=2, kernel_size=3, unevenness=0.25, detail=0.5, kernel_seed=1)
_LDM = _DiffusionDenoise(2, 0.04, 0.6, decoder_sharpen=1.5)
OTHER_TRAINING_SET = "ldm"


def _test_recipes(train_categories: tuple[str, ...]) -> tuple[_TestSetRecipe, ...]:
    """The test sets, named as in the paper's tables (ProGAN's test set reuses its categories)."""
    return (
        _TestSetRecipe("progan", _PROGAN, "lsun", train_categories),
        _TestSetRecipe("stylegan", _GanUpsampling(1, 4, 0.15, 0.6, 2), "lsun", ("bedroom", "car", "cat")),
        _TestSetRecipe("cyclegan", _GanUpsampling(2, 4, 0.2, 0.3, 4), "lsun", ("horse", "zebra")),
        _TestSetRecipe("biggan", _GanUpsampling(1, 3, 0.3, 0.4, 3), "lsun"),
        _TestSetRecipe("gaugan", _GanUpsampling(1, 3, 0.2, 0.5, 5), "lsun"),
        _TestSetRecipe("stargan", _GanUpsampling(2, 3, 0.35, 0.3, 6), "lsun"),
        _TestSetRecipe("guided", _DiffusionDenoise(1, 0.10, 1.0), "imagenet", shared_real=True),
        _TestSetRecipe("ldm_200", _LDM, "laion", shared_real=True),
        _TestSetRecipe(
            "glide_100_27", _DiffusionDenoise(4, 0.08, 1.0, upsampler_noise=0.03), "laion", shared_real=True
        ),
        _TestSetRecipe("dalle", _VqTokens(256, 12, 0.35, 7), "laion", shared_real=True),
    )


# --- the tree ---


@dataclass(frozen=True)
class _Folder:
    """One folder of images to write: relative path, count, photo pool, generator (None = real)."""

    relative: str
    count: int
    real_source: str
    generator: _Generator | None


def _plan(
    images_per_class: int, train_categories: tuple[str, ...]
) -> tuple[list[_Folder], dict[str, dict[str, int]]]:
    """Every folder of the benchmark, and per-set counts {set: {"real": n, "fake": n}}."""
    folders: list[_Folder] = []
    counts: dict[str, dict[str, int]] = {}
    val_per_class = max(4, images_per_class // 4)
    for split, per_class in (("train", images_per_class), ("val", val_per_class)):
        for category in train_categories:
            base = f"{split}/progan/{category}"
            folders.append(_Folder(f"{base}/0_real", per_class, "lsun", None))
            folders.append(_Folder(f"{base}/1_fake", per_class, "lsun", _PROGAN))
        total = per_class * len(train_categories)
        counts[split] = {"real": total, "fake": total}
    # The diffusion-like training set: twice a test set's images, no category level.
    for split, per_class in (("train", 2 * images_per_class), ("val", val_per_class)):
        base = f"{split}/{OTHER_TRAINING_SET}"
        folders.append(_Folder(f"{base}/0_real", per_class, "laion", None))
        folders.append(_Folder(f"{base}/1_fake", per_class, "laion", _LDM))
        counts[f"{split}_{OTHER_TRAINING_SET}"] = {"real": per_class, "fake": per_class}
    shared_done: set[str] = set()
    for recipe in _test_recipes(train_categories):
        counts[recipe.name] = {"real": images_per_class, "fake": images_per_class}
        if recipe.shared_real:
            if recipe.real_source not in shared_done:
                shared_done.add(recipe.real_source)
                real = f"diffusion_datasets/{recipe.real_source}/0_real"
                folders.append(_Folder(real, images_per_class, recipe.real_source, None))
            fake = f"diffusion_datasets/{recipe.name}/1_fake"
            folders.append(_Folder(fake, images_per_class, recipe.real_source, recipe.generator))
            continue
        # A category level splits the set's images as evenly as possible, first ones get extra.
        categories = recipe.categories or ("",)
        share, extra = divmod(images_per_class, len(categories))
        for index, category in enumerate(categories):
            base = "/".join(part for part in ("test", recipe.name, category) if part)
            count = share + (index < extra)
            folders.append(_Folder(f"{base}/0_real", count, recipe.real_source, None))
            folders.append(_Folder(f"{base}/1_fake", count, recipe.real_source, recipe.generator))
    return folders, counts


def _specs(root: Path, train_categories: tuple[str, ...]) -> SmokeBenchmark:
    """The benchmark's set specifications under ``root``; pure path arithmetic, touches nothing."""
    test_sets, families = [], {}
    for recipe in _test_recipes(train_categories):
        if recipe.shared_real:
            real_root = root / "diffusion_datasets" / recipe.real_source
            fake_root = root / "diffusion_datasets" / recipe.name
        else:
            real_root = fake_root = root / "test" / recipe.name
        test_sets.append(ImageSetSpec(recipe.name, real_root, fake_root))
        families[recipe.name] = recipe.generator.family
    return SmokeBenchmark(
        root=root,
        train=ImageSetSpec("progan", root / "train" / "progan", root / "train" / "progan"),
        val=ImageSetSpec("progan", root / "val" / "progan", root / "val" / "progan"),
        test_sets=test_sets,
        families=families,
        family_descriptions=dict(FAMILY_DESCRIPTIONS),
        other_training={OTHER_TRAINING_SET: tuple(
            ImageSetSpec(OTHER_TRAINING_SET, root / split / OTHER_TRAINING_SET, root / split / OTHER_TRAINING_SET)
            for split in ("train", "val"))},
    )


@lru_cache(maxsize=None)
def _photo(name: str) -> np.ndarray:
    """uint8 (H, W, 3) bundled photograph; read-only, shared between calls."""
    photo = np.ascontiguousarray(_PHOTO_LOADERS[name]()[:, :, :3])
    photo.setflags(write=False)
    return photo


def _random_crop(rng: np.random.Generator, source: str, size: int) -> np.ndarray:
    """float32 (size, size, 3) in [0, 1]: a random square crop of a random photo of the pool,
    resized (never up-sampled when the photo allows), maybe mirrored, with mild colour jitter."""
    pool = _REAL_SOURCES[source]
    photo = _photo(pool[rng.integers(len(pool))])
    height, width = photo.shape[:2]
    shortest = min(height, width)
    side = int(rng.integers(min(size, shortest), shortest + 1))
    top, left = int(rng.integers(height - side + 1)), int(rng.integers(width - side + 1))
    crop = Image.fromarray(photo[top : top + side, left : left + side]).resize((size, size), Image.BICUBIC)
    image = np.asarray(crop, np.float32) / 255
    if rng.random() < 0.5:
        image = image[:, ::-1]
    gain = rng.uniform(0.92, 1.08) * rng.uniform(0.97, 1.03, 3)
    return image * gain.astype(np.float32)


def _folder_rng(seed: int, relative: str) -> np.random.Generator:
    """The folder's own random stream, so folders can be written in any order or in parallel."""
    return np.random.default_rng([seed, zlib.crc32(relative.encode())])


def _write_png(path: Path, image: np.ndarray) -> None:
    """Save a float (H, W, 3) image in [0, 1] (clipped) as an 8-bit RGB PNG."""
    pixels = np.clip(image * 255 + 0.5, 0, 255).astype(np.uint8)
    # Fast zlib level with the run-length strategy (3): PNG encoding dominates generation time.
    Image.fromarray(pixels, "RGB").save(path, format="PNG", compress_level=1, compress_type=3)


def _write_folder(tree: Path, folder: _Folder, image_size: int, seed: int) -> None:
    """Write ``folder.count`` images of side ``image_size`` into ``tree / folder.relative``.

    Each fake starts from its own fresh crop, drawn from the fake folder's stream, so it never
    shares content with a real image of its set.
    """
    rng = _folder_rng(seed, folder.relative)
    directory = tree / folder.relative
    directory.mkdir(parents=True)
    for index in range(folder.count):
        image = _random_crop(rng, folder.real_source, image_size)
        if folder.generator is not None:
            image = folder.generator(image, rng)
        _write_png(directory / f"{index:06d}.png", image)


def _read_manifest(root: Path) -> dict | None:
    """The parsed ``smoke_benchmark.json`` under ``root``, or None when absent or unreadable."""
    try:
        return json.loads((root / MANIFEST_NAME).read_text())
    except (OSError, ValueError):
        return None


def generate_smoke_benchmark(
    root: Path | str,
    *,
    images_per_class: int = 40,
    train_categories: tuple[str, ...] = ("airplane", "bird", "car", "cat"),
    image_size: int = 256,
    seed: int = 0,
) -> SmokeBenchmark:
    """Generate (or reuse) the synthetic smoke benchmark at ``root``; NOT the paper's data.

    images_per_class: images of each class per training category, and per test set (a test set
        with a category level splits them over its categories; shared real folders hold this
        many). Validation holds max(4, images_per_class // 4) per class and category. The
        diffusion-like training set holds twice images_per_class per class, its validation set
        max(4, images_per_class // 4).
    image_size: side in pixels of every (square, RGB, PNG) image; a multiple of 8 (the token
        patch), at least 32.
    seed: everything is a deterministic function of the parameters.

    If ``root/smoke_benchmark.json`` records the same parameters and generator version, nothing
    is written. Otherwise the tree is built in a temporary sibling directory and renamed into
    place, so ``root`` never holds a partial tree; an existing benchmark at ``root`` is replaced,
    but any other non-empty directory there is refused with ``FileExistsError``.
    """
    root = Path(root)
    train_categories = tuple(train_categories)
    if image_size < 32 or image_size % 8:
        raise ValueError(f"image_size must be a multiple of 8 and at least 32, got {image_size}")
    if not train_categories or len(set(train_categories)) != len(train_categories):
        raise ValueError(f"train_categories must be distinct and non-empty, got {train_categories}")
    smallest = max(3, len(train_categories))
    if images_per_class < smallest:
        raise ValueError(f"images_per_class must be at least {smallest} to fill every category folder")
    parameters = {
        "images_per_class": images_per_class,
        "train_categories": list(train_categories),
        "image_size": image_size,
        "seed": seed,
    }
    benchmark = _specs(root, train_categories)
    wanted = {"generator_version": GENERATOR_VERSION, "parameters": parameters}

    def is_current() -> bool:
        manifest = _read_manifest(root)
        return manifest is not None and all(manifest.get(key) == value for key, value in wanted.items())

    if is_current():
        return benchmark
    if root.exists() and (not root.is_dir() or any(root.iterdir())) and _read_manifest(root) is None:
        raise FileExistsError(f"{root} exists and is not a smoke benchmark; refusing to replace it")

    root.parent.mkdir(parents=True, exist_ok=True)
    folders, counts = _plan(images_per_class, train_categories)
    staging = Path(tempfile.mkdtemp(prefix=f".{root.name}.partial-", dir=root.parent))
    try:
        for name in _PHOTO_LOADERS:  # load once, before the worker threads share the cache
            _photo(name)
        pool = ThreadPoolExecutor(max_workers=min(4, os.cpu_count() or 1))
        try:
            list(pool.map(lambda folder: _write_folder(staging, folder, image_size, seed), folders))
        finally:
            pool.shutdown(cancel_futures=True)
        manifest = {
            **wanted,
            "counts": counts,
            "note": "Synthetic smoke benchmark generated by ufd_lib.data.smoke_benchmark; not the paper's data.",
        }
        # Written last inside the staging tree: a manifest at root always describes a full tree.
        (staging / MANIFEST_NAME).write_text(json.dumps(manifest, indent=2) + "\n")
        _install(staging, root)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    if not is_current():
        raise RuntimeError(f"{root} changed while the smoke benchmark was being generated")
    return benchmark


def _install(staging: Path, root: Path) -> None:
    """Rename the finished ``staging`` tree to ``root``, retiring an older benchmark there.

    A concurrent generator may win the race; its identical tree is then kept and ours dropped.
    """
    retired = None
    if root.exists():
        retired = Path(tempfile.mkdtemp(prefix=f".{root.name}.old-", dir=root.parent))
        os.replace(root, retired / "tree")
    try:
        os.rename(staging, root)
    except OSError:
        if root.exists():
            shutil.rmtree(staging, ignore_errors=True)
        else:
            if retired is not None:
                os.replace(retired / "tree", root)
            raise
    if retired is not None:
        shutil.rmtree(retired, ignore_errors=True)
