"""Augmented training views: the released recipe, deterministic per (pixels, view, seed), each
view its own cache setting, encoded once; and ``ufd train-probe --augmented-views``."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import TINY_ENCODER, make_image_set, png_bytes, ufd
from torchvision.transforms import InterpolationMode
from torchvision.transforms import functional as TF

from ufd_lib.data.image_sets import ImageSetSpec
from ufd_lib.features.augmentation import AugmentedView, TrainingAugmentation, featurize_views
from ufd_lib.features.extraction.extract import ExtractionReport, cache_setting, extract_features, open_cache
from ufd_lib.features.feature_sets import ExtractionOptions, featurize
from ufd_lib.features.preprocess import Perturbation, decode_image, evaluation_transform, load_tensor


def recipe_view(index: int, **recipe) -> AugmentedView:
    """View ``index`` of the released recipe with ``recipe``'s fields changed."""
    return AugmentedView(index, augmentation=TrainingAugmentation(**recipe))


def test_a_view_is_a_function_of_the_pixels_the_view_and_the_seed(tmp_path):
    first = tmp_path / "a.png"
    first.write_bytes(png_bytes(seed=1, size=(300, 260)))
    copy = tmp_path / "copy.png"
    copy.write_bytes(first.read_bytes())
    transform = evaluation_transform()

    def view(path, index, seed=0):
        return load_tensor(path, transform, AugmentedView(index, seed))

    reference = view(first, 0)
    assert reference.shape == (3, 224, 224)
    np.random.seed(123)  # global random state must play no part
    torch.manual_seed(123)
    assert torch.equal(view(copy, 0), reference), "same bytes, same view"
    assert not torch.equal(view(first, 1), reference), "another view"
    assert not torch.equal(view(first, 0, seed=1), reference), "another seed"


def test_without_blur_or_jpeg_a_view_is_a_window_of_the_resized_image():
    """Shorter side resized to 256 (bilinear), then a 224 window, mirrored when flipped."""
    image = decode_image(png_bytes(seed=2, size=(300, 260)))
    resized = np.asarray(TF.resize(image, 256, interpolation=InterpolationMode.BILINEAR))
    assert resized.shape[:2] == (256, 295)
    offsets = set()
    for index in range(6):
        for flip in (0.0, 1.0):
            crop = np.asarray(recipe_view(index, blur_prob=0.0, jpeg_prob=0.0, flip_prob=flip).apply(image))
            crop = crop[:, ::-1] if flip else crop
            corner = np.argwhere((resized[:256 - 224 + 1, :295 - 224 + 1] == crop[0, 0]).all(axis=2))
            matches = [(top, left) for top, left in corner
                       if np.array_equal(resized[top:top + 224, left:left + 224], crop)]
            assert len(matches) == 1
            offsets.add(matches[0])
    assert len(offsets) > 1, "crops move from view to view"


def test_blur_and_jpeg_are_applied_with_their_probability():
    image = decode_image(png_bytes(seed=3, size=(256, 256)))
    plain = [np.asarray(recipe_view(i, blur_prob=0.0, jpeg_prob=0.0).apply(image)) for i in range(4)]
    degraded = [np.asarray(recipe_view(i, blur_prob=1.0, jpeg_prob=1.0).apply(image)) for i in range(4)]
    # same random stream: the same crop and flip, but always blurred and re-encoded
    assert all(not np.array_equal(p, d) for p, d in zip(plain, degraded))
    roughness = lambda images: np.mean([np.abs(np.diff(i.astype(int), axis=1)).mean() for i in images])  # noqa: E731
    assert roughness(degraded) < 0.8 * roughness(plain), "blurred, re-encoded noise is smoother"


def test_each_view_has_its_own_cache_key(tiny_encoder):
    keys = [cache_setting(tiny_encoder, perturbation) for perturbation in
            (Perturbation(), AugmentedView(0), AugmentedView(1), AugmentedView(0, seed=1),
             recipe_view(0, blur_prob=0.1), recipe_view(0, jpeg_quality_range=(50, 100)))]
    assert len({repr(key) for key in keys}) == len(keys)
    assert AugmentedView(0).as_dict()["version"] >= 1


def test_the_released_views_keep_their_cache_key():
    """One recipe shared with the trained detector; the probe's views keep the key they always
    had, so cached views stay valid."""
    assert AugmentedView(2, seed=1).as_dict() == {
        "augmentation": "univfd-train", "version": 1, "view": 2, "seed": 1, "resize": 256, "blur_prob": 0.5,
        "blur_sigma_max": 3.0, "jpeg_prob": 0.5, "jpeg_quality_range": [30, 100], "flip_prob": 0.5,
        "jpeg_encoder": "PIL", "interpolation": "bilinear", "random_crop": 224}


def test_without_resize_a_small_image_is_zero_padded_centred():
    """The detector's recipe (no resize): an image under 224 pixels is padded as CenterCrop pads
    it, so the only 224 crop is the whole padded canvas."""
    image = decode_image(png_bytes(seed=4, size=(101, 80)))
    recipe = TrainingAugmentation(resize=None, blur_prob=0.0, jpeg_prob=0.0, flip_prob=0.0)
    crop = np.asarray(recipe.apply(image, np.random.default_rng(0)))
    expected = np.zeros((224, 224, 3), np.uint8)
    left, top = (224 - 101) // 2, (224 - 80) // 2
    expected[top:top + 80, left:left + 101] = np.asarray(image)
    np.testing.assert_array_equal(crop, expected)


@pytest.mark.parametrize("bad", [dict(view=-1), dict(view=0, seed=-1)])
def test_bad_view_parameters_are_refused(bad):
    with pytest.raises(ValueError):
        AugmentedView(**bad)


@pytest.mark.parametrize("bad", [dict(resize=200), dict(blur_prob=1.5), dict(blur_sigma_max=-1.0),
                                 dict(jpeg_quality_range=(90, 30))])
def test_bad_recipe_parameters_are_refused(bad):
    with pytest.raises(ValueError):
        TrainingAugmentation(**bad)


def test_views_are_encoded_once_and_follow_the_training_rows(tmp_path, tiny_encoder):
    root = make_image_set(tmp_path / "train", 3, 3)
    options = ExtractionOptions(cache_root=tmp_path / "cache", progress=False, batch_size=4)
    train = featurize(tiny_encoder, ImageSetSpec("train", root, root), options)
    report = ExtractionReport()
    views = featurize_views(tiny_encoder, train, options, 2, report=report)
    assert views.shape == (2, 6, 768) and views.dtype == np.float16
    assert report.images_encoded == 12 and report.images_from_cache == 0
    assert not np.array_equal(views[0], views[1])

    again = ExtractionReport()
    more = featurize_views(tiny_encoder, train, options, 3, report=again)
    assert again.images_encoded == 6 and again.images_from_cache == 12, "only the new view is encoded"
    np.testing.assert_array_equal(more[:2], views)

    paths = train.paths[::-1]  # another order, a fresh cache and a DataLoader worker: the same view
    cache = open_cache(tiny_encoder, AugmentedView(1), tmp_path / "fresh")
    direct, kept, _ = extract_features(tiny_encoder, paths, cache, perturbation=AugmentedView(1), num_workers=1,
                                       batch_size=4, progress=False)
    assert kept.all()
    np.testing.assert_array_equal(direct[::-1].astype(np.float16), views[1])


@pytest.fixture
def train_probe(tmp_path):
    root = make_image_set(tmp_path / "train", 6, 6)
    return ["train-probe", "--encoder", TINY_ENCODER, "--device", "cpu", "--quiet", "--cache-dir", tmp_path / "cache",
            "--train", f"train={root}", "--out", tmp_path / "probe.pth"]


@pytest.mark.parametrize("value", ["-1", "two", "1.5", ""])
def test_bad_augmented_views_exit_2_with_one_line(capsys, train_probe, value):
    code, _, stderr = ufd(capsys, *train_probe, "--augmented-views", value)
    assert code == 2
    assert stderr.count("\n") == 1 and "--augmented-views" in stderr


def test_augmented_views_cannot_be_combined_with_a_test_time_degradation(capsys, train_probe):
    code, _, stderr = ufd(capsys, *train_probe, "--augmented-views", "2", "--blur-sigma", "1")
    assert code == 2 and "--augmented-views" in stderr


def test_train_probe_on_augmented_views(capsys, train_probe, tmp_path):
    code, stdout, stderr = ufd(capsys, *train_probe, "--augmented-views", "2")
    assert code == 0, stderr
    assert "2 augmented views each" in stdout
    settings = [p for p in (tmp_path / "cache").iterdir() if p.is_dir()]
    assert len(settings) == 3, "the unaugmented features (for validation) and two views"
    augmented = torch.load(tmp_path / "probe.pth", weights_only=True)["weight"]
    code, stdout, stderr = ufd(capsys, *train_probe)
    assert code == 0, stderr
    assert "views each" not in stdout
    assert not torch.equal(torch.load(tmp_path / "probe.pth", weights_only=True)["weight"], augmented)
