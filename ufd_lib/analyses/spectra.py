"""Average frequency spectra of high-pass residuals, per generator and per real source (the
paper's spectrum figure, in the manner of Zhang et al. 2019 and Wang et al. 2020).

For each image: centre crop ``size`` × ``size`` (no resize; the evaluation's crop,
:func:`ufd_lib.features.preprocess.centre_window`; smaller images are left out and counted),
greyscale (PIL's ITU-R 601-2 luma, scaled to [0, 1]), residual = image −
``scipy.ndimage.median_filter(image, median_size)``, then the log-magnitude of its 2-D FFT,
centred (zero frequency in the middle). The group's spectrum is the mean of these
log-magnitudes. Frequencies are in cycles per pixel, from −0.5 to 0.5: the periodic trace of a
2× up-sampling layer shows as peaks at ±0.5 (and at ±0.25 for 4×), JPEG's 8×8 blocks at
multiples of 1/8.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.ndimage import median_filter

from ufd_lib import config
from ufd_lib.data.discovery import sample_images
from ufd_lib.features.preprocess import ImageRejected, centre_window, decode_image
from ufd_lib.hashing import FileRefused, read_regular_file

LOG_EPS = 1e-6


def greyscale(image) -> np.ndarray:
    """PIL image → float64 (H, W) luma in [0, 1]."""
    return np.asarray(image.convert("L"), dtype=np.float64) / 255.0


def centre_crop(array: np.ndarray, size: int) -> np.ndarray | None:
    """The central size × size window of an (H, W) array, where the evaluation's centre crop
    takes it (:func:`~ufd_lib.features.preprocess.centre_window`), or None when it is smaller."""
    height, width = array.shape
    if height < size or width < size:
        return None
    left, top, right, bottom = centre_window((width, height), (size, size))
    return array[top:bottom, left:right]


def high_pass_residual(grey: np.ndarray, median_size: int = 3) -> np.ndarray:
    """Image minus its median-filtered version (H, W): keeps fine, non-natural structure."""
    return grey - median_filter(grey, size=median_size, mode="reflect")


def log_spectrum(residual: np.ndarray) -> np.ndarray:
    """log |FFT2| of an (n, n) array, zero frequency moved to the centre (index n // 2)."""
    return np.log(np.abs(np.fft.fftshift(np.fft.fft2(residual))) + LOG_EPS)


def frequencies(size: int) -> np.ndarray:
    """Frequency (cycles per pixel) of each row/column of a centred spectrum of side ``size``."""
    return np.fft.fftshift(np.fft.fftfreq(size))


@dataclass
class Spectrum:
    """Mean log-magnitude spectrum (size, size) of a group; n_images used, n_skipped left out."""

    name: str
    spectrum: np.ndarray
    n_images: int
    n_skipped: int


def mean_spectrum(name: str, images, size: int = config.CROP_SIZE, median_size: int = 3) -> Spectrum:
    """Average residual spectrum of image files (paths) or of greyscale arrays (H, W) in [0, 1]."""
    total, used, skipped = np.zeros((size, size)), 0, 0
    for item in images:
        if isinstance(item, np.ndarray):
            grey = item.astype(np.float64)
        else:
            try:
                # Decoding only the window keeps huge images cheap; it is the same pixels.
                grey = greyscale(decode_image(read_regular_file(item, config.max_image_bytes()),
                                              centre_crop=(size, size)))
            except (ImageRejected, FileRefused):
                skipped += 1
                continue
        crop = centre_crop(grey, size)
        if crop is None:
            skipped += 1
            continue
        total += log_spectrum(high_pass_residual(crop, median_size))
        used += 1
    return Spectrum(name, total / used if used else np.full((size, size), np.nan), used, skipped)


def spectrum_groups(benchmark, per_class: int | None, seed: int = 0, sampling: str = "all") -> dict[str, list[str]]:
    """Image groups whose spectra the paper compares: the training fakes and reals (``training
    fake``, ``training real``), the fakes of every test set (``<set> fake``), and each distinct
    real folder once (``<set> real``, or ``<folder> real`` for a real folder shared by several
    sets, e.g. ``laion real``).
    Each group holds up to ``per_class`` image paths (strings), drawn reproducibly. Fakes first, then reals."""
    fakes: dict[str, list[str]] = {}
    reals: dict[str, list[str]] = {}
    seen_real_roots: set[Path] = set()
    training = sample_images(benchmark.train, per_class, seed, sampling)
    fakes["training fake"] = [i.path for i in training if i.label == 1]
    reals["training real"] = [i.path for i in training if i.label == 0]
    for spec in benchmark.test_sets:
        images = sample_images(spec, per_class, seed, sampling)
        fakes[f"{spec.name} fake"] = [i.path for i in images if i.label == 1]
        root = Path(spec.real_root).resolve()
        if root in seen_real_roots:
            continue
        seen_real_roots.add(root)
        shared = Path(spec.real_root) != Path(spec.fake_root)
        reals[f"{Path(spec.real_root).name if shared else spec.name} real"] = [i.path for i in images if i.label == 0]
    return {**fakes, **reals}


def spectrum_peaks(spectra: list[Spectrum], exclude_radius: float = 0.05) -> pd.DataFrame:
    """The strongest off-centre frequency of each spectrum: group, fx, fy (cycles per pixel),
    contrast (log-magnitude above the spectrum's median), n_images. Frequencies within
    ``exclude_radius`` of zero are ignored (the median filter leaves little there anyway)."""
    rows = []
    for item in spectra:
        size = item.spectrum.shape[0]
        f = frequencies(size)
        fy, fx = np.meshgrid(f, f, indexing="ij")
        masked = np.where(np.hypot(fx, fy) > exclude_radius, item.spectrum, -np.inf)
        row, column = np.unravel_index(np.nanargmax(masked), masked.shape) if item.n_images else (0, 0)
        rows.append({"group": item.name, "fx": abs(float(fx[row, column])), "fy": abs(float(fy[row, column])),
                     "contrast": float(item.spectrum[row, column] - np.nanmedian(item.spectrum)),
                     "n_images": item.n_images, "n_skipped": item.n_skipped})
    return pd.DataFrame(rows)
