"""Residual spectra: up-sampling artefacts show at the frequency they should, natural-looking
images do not, and the groups cover each generator and each real source once."""
from __future__ import annotations

import numpy as np
import pytest
from conftest import make_image_set
from PIL import Image
from scipy import ndimage

from ufd_lib.analyses.spectra import (
    centre_crop,
    frequencies,
    high_pass_residual,
    mean_spectrum,
    spectrum_groups,
    spectrum_peaks,
)
from ufd_lib.data.image_sets import ImageSetSpec


def smooth_images(n: int, size: int = 256, seed: int = 0) -> list[np.ndarray]:
    """Greyscale (size, size) images in [0, 1] with natural-looking, non-periodic content."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        image = ndimage.gaussian_filter(rng.random((size, size)), 2)
        out.append((image - image.min()) / np.ptp(image))
    return out


def with_phase_gain(image: np.ndarray, period: int, gain: float = 1.15) -> np.ndarray:
    """One pixel phase of every period × period cell brightened, as an uneven transposed
    convolution of stride ``period`` leaves it."""
    out = image.copy()
    out[::period, ::period] *= gain
    return out


def value_at(spectrum: np.ndarray, fy: float, fx: float) -> float:
    f = frequencies(spectrum.shape[0])
    return spectrum[np.argmin(np.abs(f - fy)), np.argmin(np.abs(f - fx))]


def test_frequencies_are_centred_in_cycles_per_pixel():
    f = frequencies(8)
    assert f[4] == 0 and f[0] == -0.5 and f[-1] == 0.375


def test_residual_of_flat_and_linear_images_is_zero():
    flat = np.full((32, 32), 0.4)
    ramp = np.add.outer(np.arange(32), np.arange(32)) / 64
    assert np.allclose(high_pass_residual(flat), 0)
    assert np.allclose(high_pass_residual(ramp)[1:-1, 1:-1], 0)


@pytest.mark.parametrize("period, peak", [(2, 0.5), (4, 0.25)])
def test_upsampling_artefact_peaks_at_its_frequency(period, peak):
    clean = mean_spectrum("clean", smooth_images(6))
    artefact = mean_spectrum("artefact", [with_phase_gain(image, period) for image in smooth_images(6)])
    found = spectrum_peaks([artefact]).iloc[0]
    grid = {i / period for i in range(period // 2 + 1)}  # multiples of 1/period up to 0.5
    assert {found["fx"], found["fy"]} <= grid and max(found["fx"], found["fy"]) > 0, \
        "the strongest frequency is on the artefact's grid"
    # the artefact raises that frequency far above what the clean images have there
    assert value_at(artefact.spectrum, 0.0, peak) - value_at(clean.spectrum, 0.0, peak) > 2.0
    assert found["contrast"] > spectrum_peaks([clean]).iloc[0]["contrast"] + 2.0


def test_mean_spectrum_reads_files_and_counts_what_it_leaves_out(tmp_path):
    good = tmp_path / "good.png"
    Image.fromarray((smooth_images(1)[0] * 255).astype(np.uint8)).save(good)
    small = tmp_path / "small.png"
    Image.fromarray(np.zeros((100, 100), np.uint8)).save(small)
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not an image")
    result = mean_spectrum("files", [good, small, broken])
    assert result.n_images == 1 and result.n_skipped == 2
    assert result.spectrum.shape == (224, 224) and np.isfinite(result.spectrum).all()


def test_centre_crop_takes_the_middle():
    array = np.arange(36).reshape(6, 6)
    np.testing.assert_array_equal(centre_crop(array, 2), [[14, 15], [20, 21]])
    assert centre_crop(array, 7) is None


def test_groups_have_each_generator_and_each_real_folder_once(tmp_path):
    from types import SimpleNamespace

    train = make_image_set(tmp_path / "train", 3, 3, categories=["cat", "dog"])
    gan = make_image_set(tmp_path / "gan", 2, 2)
    laion = make_image_set(tmp_path / "laion", 4, 0)
    ldm, glide = make_image_set(tmp_path / "ldm", 0, 4), make_image_set(tmp_path / "glide", 0, 4)
    benchmark = SimpleNamespace(
        train=ImageSetSpec("progan", train, train),
        test_sets=[ImageSetSpec("gan", gan, gan), ImageSetSpec("ldm", laion, ldm), ImageSetSpec("glide", laion, glide)],
    )
    groups = spectrum_groups(benchmark, per_class=3)
    assert list(groups) == ["training fake", "gan fake", "ldm fake", "glide fake",
                            "training real", "gan real", "laion real"]
    assert [len(groups[name]) for name in groups] == [3, 2, 3, 3, 3, 2, 3]
    assert all("1_fake" in p for name in groups if name.endswith("fake") for p in groups[name])
    assert all("0_real" in p for name in groups if name.endswith("real") for p in groups[name])
