"""Augmented training views for the linear probe, encoded once through the feature cache.

The released recipe (UniversalFakeDetect ``data/datasets.py``) augments every training image
afresh each epoch: resize the shorter side to 256 (bilinear), Gaussian blur with p=0.5 and
sigma ~ U[0, 3], JPEG re-encoding with p=0.5 and quality ~ U{30..100}, RandomCrop 224, random
horizontal flip, CLIP normalisation. With a frozen backbone that means encoding every image
every epoch. We instead encode a fixed number V of augmented views per training image, each
view its own feature-cache setting (so every image-view pair is encoded once, ever), and the
probe samples one view per image per epoch (:meth:`LinearProbe.fit` with ``views``). V = 0,
the unaugmented centre crop, is the fast default.

View v of an image is a deterministic function of (decoded pixels, v, seed): re-extraction,
sharded extraction and DataLoader workers all produce the same view. JPEG uses PIL (the
released code defaults to OpenCV; the protocol allows either).
"""
from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass, replace

import numpy as np
from PIL import Image
from torchvision.transforms import InterpolationMode
from torchvision.transforms import functional as TF

from ufd_lib import config
from ufd_lib.data.discovery import LabelledImage
from ufd_lib.features.encoders import Encoder
from ufd_lib.features.extraction.extract import ExtractionReport
from ufd_lib.features.feature_sets import ExtractionOptions, FeatureSet, featurize_images
from ufd_lib.features.preprocess import gaussian_blur, jpeg_reencode

AUGMENTATION_VERSION = 1


@dataclass(frozen=True)
class TrainingAugmentation:
    """The training augmentation of the released code, shared by the probe's cached views
    (:class:`AugmentedView`) and the trained detector (Wang et al. 2020's Blur+JPEG 0.5, the
    recipe UnivFD copied): a decoded RGB image → its 224 × 224 training crop.

    resize: shorter side in pixels before the crop (bilinear; None = no resize, the detector's);
    blur_sigma_max: sigma ~ U[0, max] pixels; jpeg_quality_range: inclusive (low, high) of the
    uniform integer PIL quality; images smaller than the crop are zero-padded, centred, first.
    """

    resize: int | None = 256
    blur_prob: float = 0.5
    blur_sigma_max: float = 3.0
    jpeg_prob: float = 0.5
    jpeg_quality_range: tuple[int, int] = (30, 100)
    flip_prob: float = 0.5

    def __post_init__(self):
        if self.resize is not None and self.resize < config.CROP_SIZE:
            raise ValueError(f"resize must be at least the crop size {config.CROP_SIZE}, got {self.resize}")
        if not all(0.0 <= p <= 1.0 for p in (self.blur_prob, self.jpeg_prob, self.flip_prob)):
            raise ValueError("blur_prob, jpeg_prob and flip_prob must be in [0, 1]")
        if not self.blur_sigma_max >= 0:
            raise ValueError(f"blur_sigma_max must be >= 0, got {self.blur_sigma_max}")
        low, high = self.jpeg_quality_range
        if not 1 <= low <= high <= 100:
            raise ValueError(f"jpeg_quality_range must satisfy 1 <= low <= high <= 100, got {self.jpeg_quality_range}")

    def as_dict(self) -> dict:
        return {**asdict(self), "jpeg_quality_range": list(self.jpeg_quality_range)}

    def apply(self, image: Image.Image, rng: np.random.Generator) -> Image.Image:
        """Resize → blur (p) → JPEG (p) → pad → random crop 224 → flip (p), drawing from ``rng``
        in that order (PIL RGB in and out)."""
        if self.resize is not None:
            image = TF.resize(image, self.resize, interpolation=InterpolationMode.BILINEAR)
        if rng.random() < self.blur_prob:
            sigma = rng.uniform(0.0, self.blur_sigma_max)
            if sigma > 0:
                image = gaussian_blur(image, sigma)
        if rng.random() < self.jpeg_prob:
            low, high = self.jpeg_quality_range
            image = jpeg_reencode(image, int(rng.integers(low, high + 1)))
        if image.width < config.CROP_SIZE or image.height < config.CROP_SIZE:  # CenterCrop pads, centred
            image = TF.center_crop(image, [max(image.height, config.CROP_SIZE), max(image.width, config.CROP_SIZE)])
        left = int(rng.integers(image.width - config.CROP_SIZE + 1))
        top = int(rng.integers(image.height - config.CROP_SIZE + 1))
        image = TF.crop(image, top, left, config.CROP_SIZE, config.CROP_SIZE)
        if rng.random() < self.flip_prob:
            image = TF.hflip(image)
        return image


@dataclass(frozen=True)
class AugmentedView:
    """View ``view`` (0, 1, ...) of the released training augmentation, applied to a decoded
    RGB image; returns the 224 × 224 crop (the evaluation centre crop is then a no-op).

    Duck-types :class:`ufd_lib.features.preprocess.Perturbation` (``apply``, ``as_dict``,
    ``is_identity``), so it is passed as ``perturbation`` to extraction and its parameters are
    part of the cache key. augmentation: the recipe (the released one by default).
    """

    view: int
    seed: int = 0
    augmentation: TrainingAugmentation = TrainingAugmentation()

    def __post_init__(self):
        if self.view < 0 or self.seed < 0:
            raise ValueError(f"view and seed must be >= 0, got view {self.view}, seed {self.seed}")

    def as_dict(self) -> dict:
        return {"augmentation": "univfd-train", "version": AUGMENTATION_VERSION, "view": self.view,
                "seed": self.seed, **self.augmentation.as_dict(), "jpeg_encoder": "PIL",
                "interpolation": "bilinear", "random_crop": config.CROP_SIZE}

    @property
    def is_identity(self) -> bool:
        """Never: the view needs the whole decoded image, not only the evaluation centre crop."""
        return False

    def _rng(self, image: Image.Image) -> np.random.Generator:
        """The random stream of this view of ``image``: seeded by the SHA-256 of its pixels."""
        content = hashlib.sha256(f"{image.mode} {image.size}".encode() + image.tobytes()).digest()
        return np.random.default_rng([int.from_bytes(content, "big"), self.view, self.seed])

    def apply(self, image: Image.Image) -> Image.Image:
        return self.augmentation.apply(image, self._rng(image))


def featurize_views(encoder: Encoder, train: FeatureSet, options: ExtractionOptions, n_views: int,
                    seed: int = 0, report: ExtractionReport | None = None) -> np.ndarray:
    """Features of views 0 .. n_views − 1 of every image of ``train`` (a set already featurized
    unaugmented, so every file decodes) → float16 (n_views, n, d), rows in ``train``'s order.

    Float16 is what the cache stores (lossless here, half the memory of float32). Each view is
    its own cache setting, so a larger ``n_views`` encodes only the new views. ``options`` as
    for the unaugmented features; its perturbation is replaced by the view. When ``report`` is
    given, the extraction's counts are added to it.
    """
    if n_views < 1:
        raise ValueError(f"n_views must be at least 1 (0 views means the unaugmented features), got {n_views}")
    images = [LabelledImage(path, int(label)) for path, label in zip(train.paths, train.labels)]
    views = []
    for view in range(n_views):
        view_options = replace(options, perturbation=AugmentedView(view, seed), strict=True)
        features = featurize_images(encoder, f"{train.name} view {view}", images, view_options, report).features
        views.append(features.astype(np.float16))
    return np.stack(views)
