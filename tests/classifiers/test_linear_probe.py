"""The linear probe: official file format, safe loading, and that it learns."""
from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch

from ufd_lib.classifiers.linear_probe import LinearProbe, ProbeFileError
from ufd_lib.classifiers.released import RELEASED_PROBE


def sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def separable(n: int, d: int = 16, seed: int = 0):
    """Labels from a fixed direction, every point at least 1 from the separating hyperplane."""
    direction = np.random.default_rng(12345).normal(size=d)
    direction /= np.linalg.norm(direction)
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d))
    y = rng.integers(0, 2, n)
    X -= np.outer(X @ direction, direction)
    X += np.outer((2 * y - 1) * rng.uniform(1, 3, n), direction)
    return X.astype(np.float32), y


def probe_with(weight: np.ndarray, bias: float) -> LinearProbe:
    linear = torch.nn.Linear(weight.shape[0], 1)
    with torch.no_grad():
        linear.weight.copy_(torch.as_tensor(weight[None, :], dtype=torch.float32))
        linear.bias.fill_(bias)
    probe = LinearProbe()
    probe._set_linear(linear)
    return probe


def test_learns_a_separable_problem():
    X, y = separable(600, seed=1)
    X_test, y_test = separable(1000, seed=2)
    probe = LinearProbe(lr=1e-2, device="cpu").fit(X, y)
    assert (probe.predict(X_test) == y_test).mean() > 0.95
    assert probe.history_ and {"epoch", "loss", "val_acc", "lr"} <= set(probe.history_[0])


def test_explicit_validation_set_and_seeded_training_is_reproducible():
    X, y = separable(300, seed=3)
    X_val, y_val = separable(100, seed=4)
    first = LinearProbe(lr=1e-2, max_epochs=5, device="cpu").fit(X, y, X_val, y_val)
    second = LinearProbe(lr=1e-2, max_epochs=5, device="cpu").fit(X, y, X_val, y_val)
    assert len(first.history_) == 5
    np.testing.assert_array_equal(first.decision_function(X), second.decision_function(X))


@pytest.mark.parametrize("n", [4, 8, 19])
def test_small_training_set_without_validation_set(n):
    """The held-out split must contain both classes even when 10% is under two images."""
    X, _ = separable(n, seed=n)
    y = np.arange(n) % 2
    probe = LinearProbe(max_epochs=2, device="cpu").fit(X, y)
    assert len(probe.history_) == 2 and probe.n_features_in_ == 16


def test_one_class_training_set_is_refused():
    X, _ = separable(20)
    with pytest.raises(ValueError, match="both classes"):
        LinearProbe().fit(X, np.zeros(20, dtype=int))


def test_save_load_round_trip_in_official_format(tmp_path):
    rng = np.random.default_rng(0)
    probe = probe_with(rng.normal(size=16), 0.3)
    path = tmp_path / "probe.pth"
    probe.save(path)
    state = torch.load(path, weights_only=True)
    assert set(state) == {"weight", "bias"}
    assert state["weight"].shape == (1, 16) and state["bias"].shape == (1,)
    assert state["weight"].dtype == state["bias"].dtype == torch.float32
    loaded = LinearProbe.load(path)
    X = rng.normal(size=(7, 16)).astype(np.float32)
    np.testing.assert_array_equal(loaded.decision_function(X), probe.decision_function(X))
    assert loaded.n_features_in_ == 16


def test_predict_proba_is_sigmoid_of_affine_map_and_threshold_is_strict():
    rng = np.random.default_rng(1)
    weight = rng.normal(size=8)
    probe = probe_with(weight, -0.2)
    X = rng.normal(size=(20, 8)).astype(np.float32)
    expected = sigmoid(X.astype(np.float64) @ weight - 0.2)
    proba = probe.predict_proba(X)
    assert proba.shape == (20, 2)
    np.testing.assert_allclose(proba[:, 1], expected, rtol=1e-5)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    np.testing.assert_array_equal(probe.predict(X), (expected > 0.5).astype(int))
    zero = probe_with(np.zeros(8), 0.0)  # probability exactly 0.5 → real
    assert zero.predict(X).tolist() == [0] * 20


def test_the_shipped_released_probe_loads_and_scores_as_its_definition():
    probe = LinearProbe.load(RELEASED_PROBE)
    assert probe.n_features_in_ == 768
    state = torch.load(RELEASED_PROBE, map_location="cpu", weights_only=True)
    weight = state["weight"].double().numpy()[0]
    bias = float(state["bias"].double()[0])
    X = np.random.default_rng(2).normal(size=(16, 768)).astype(np.float32)
    expected = sigmoid(X.astype(np.float64) @ weight + bias)
    np.testing.assert_allclose(probe.predict_proba(X)[:, 1], expected, rtol=1e-4, atol=1e-6)


class SomeClass:
    pass


class CodeRunningPayload:
    """Unpickling this object creates ``marker``: proof that pickled code ran."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_arbitrary_pickled_object_is_refused(tmp_path):
    path = tmp_path / "object.pth"
    torch.save({"weight": SomeClass(), "bias": torch.zeros(1)}, path)
    with pytest.raises(ProbeFileError, match="object.pth"):
        LinearProbe.load(path)


@pytest.mark.parametrize("writer", ["torch.save", "pickle.dump"])
def test_code_in_a_probe_file_is_refused_and_does_not_run(tmp_path, writer):
    marker = tmp_path / "payload-ran"
    payload = {"weight": CodeRunningPayload(marker), "bias": torch.zeros(1)}
    path = tmp_path / "evil.pth"
    if writer == "torch.save":
        torch.save(payload, path)
    else:
        path.write_bytes(pickle.dumps(payload, protocol=2))
    with pytest.raises(ProbeFileError, match="evil.pth"):
        LinearProbe.load(path)
    assert not marker.exists(), "the probe file's pickled code was executed"


@pytest.mark.parametrize(
    "state",
    [
        {"weight": torch.zeros(2, 768), "bias": torch.zeros(2)},
        {"weight": torch.zeros(768), "bias": torch.zeros(1)},
        {"weight": torch.zeros(1, 768), "bias": torch.zeros(3)},
        {"weight": torch.zeros(1, 768)},
        [torch.zeros(1, 768), torch.zeros(1)],
    ],
    ids=["two-outputs", "1-d-weight", "bias-3", "no-bias", "list"],
)
def test_wrong_shapes_are_refused(tmp_path, state):
    path = tmp_path / "wrong.pth"
    torch.save(state, path)
    with pytest.raises(ProbeFileError, match="wrong.pth"):
        LinearProbe.load(path)


@pytest.mark.parametrize("state", [
    {"weight": torch.zeros(1, 12), "bias": torch.zeros(1), "extra": torch.zeros(1)},
    {"model": {"fc.weight": torch.zeros(1, 12), "fc.bias": torch.zeros(1)}},
], ids=["extra-key", "training-checkpoint"])
def test_a_probe_file_holds_exactly_weight_and_bias(tmp_path, state):
    """Anything beyond the official format (a training checkpoint's whole model, say) is refused,
    naming what was found, rather than half-read."""
    path = tmp_path / "probe.pth"
    torch.save(state, path)
    with pytest.raises(ProbeFileError, match="exactly 'weight'") as caught:
        LinearProbe.load(path)
    assert str(path) in str(caught.value) and next(iter(state)) in str(caught.value)


@pytest.mark.parametrize("tensor, bad", [("weight", float("nan")), ("bias", float("-inf"))])
def test_non_finite_probe_weights_are_refused_naming_file_and_tensor(tmp_path, tensor, bad):
    state = {"weight": torch.ones(1, 4), "bias": torch.zeros(1)}
    state[tensor].view(-1)[-1] = bad
    path = tmp_path / "probe.pth"
    torch.save(state, path)
    with pytest.raises(ProbeFileError, match=f"'{tensor}'") as caught:
        LinearProbe.load(path)
    assert str(path) in str(caught.value)


@pytest.mark.parametrize("kind", ["missing", "directory"])
def test_unreadable_probe_path_is_refused_naming_it(tmp_path, kind):
    path = tmp_path / "probe.pth"
    if kind == "directory":
        path.mkdir()
    with pytest.raises(ProbeFileError, match="probe.pth"):
        LinearProbe.load(path)


def test_feature_dimension_mismatch_is_refused():
    probe = probe_with(np.ones(8), 0.0)
    with pytest.raises(ValueError, match="8"):
        probe.decision_function(np.zeros((3, 5), dtype=np.float32))


# --- training on cached augmented views ---


def test_identical_views_train_exactly_as_the_unaugmented_features():
    """Sampling a view per image draws from its own generator: with V copies of X the probe is
    bit for bit the one trained on X (held-out split included)."""
    X, y = separable(300, seed=7)
    plain = LinearProbe(lr=1e-2, max_epochs=8, device="cpu").fit(X, y)
    copies = LinearProbe(lr=1e-2, max_epochs=8, device="cpu").fit(X, y, views=np.stack([X, X, X]))
    assert copies.history_ == plain.history_
    np.testing.assert_array_equal(copies.decision_function(X), plain.decision_function(X))


def test_each_epoch_draws_one_view_per_image_afresh():
    """With lr 0 the probe stays at its initialisation, so an epoch's loss tells which views it
    saw: one view per image gives a loss strictly between the all-view-0 and all-view-1 losses,
    and a new draw each epoch a different loss."""
    X, y = separable(400, seed=8)
    views = np.stack([X, -X])
    losses = {}
    for name, stack in (("view 0", views[:1]), ("view 1", views[1:]), ("both", views)):
        probe = LinearProbe(lr=0.0, max_epochs=4, patience=10, batch_size=1000, init_std=0.5, device="cpu")
        losses[name] = [row["loss"] for row in probe.fit(X, y, X, y, views=stack).history_]
    low, high = sorted((losses["view 0"][0], losses["view 1"][0]))
    assert all(low < loss < high for loss in losses["both"])
    assert len(set(losses["both"])) == 4


def test_views_change_training_seeded_by_the_probe():
    X, y = separable(300, seed=9)
    noise = np.random.default_rng(0).normal(size=X.shape).astype(np.float32) * 3
    views = np.stack([X, X + noise]).astype(np.float16)
    fit = lambda seed, stack: LinearProbe(lr=1e-2, max_epochs=6, seed=seed, device="cpu").fit(  # noqa: E731
        X, y, views=stack).decision_function(X)
    np.testing.assert_array_equal(fit(0, views), fit(0, views))
    assert not np.array_equal(fit(0, views), fit(0, views[:1]))
    assert not np.array_equal(fit(0, views), fit(1, views))


def test_validation_is_on_the_unaugmented_features():
    """Views that flip the class direction teach the opposite rule; validated on X's held-out
    rows, it scores far below chance (validated on the views it would score well)."""
    X, y = separable(300, seed=10)
    probe = LinearProbe(lr=1e-2, max_epochs=10, device="cpu").fit(X, y, views=np.stack([-X, -X]))
    assert max(row["val_acc"] for row in probe.history_[3:]) < 0.2


@pytest.mark.parametrize("shape", [(2, 30, 16), (2, 31, 8), (0, 31, 16), (31, 16)])
def test_views_of_the_wrong_shape_are_refused(shape):
    X, y = separable(31)
    with pytest.raises(ValueError, match="views"):
        LinearProbe(device="cpu").fit(X, y, views=np.zeros(shape, dtype=np.float32))
