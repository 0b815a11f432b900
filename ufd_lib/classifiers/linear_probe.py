"""The paper's linear probe: one ``nn.Linear(d, 1)`` on frozen, unnormalised features.

Training follows the released recipe (UniversalFakeDetect ``train.py``): BCE with logits,
AdamW (lr 1e-4, betas 0.9/0.999, weight decay 0), batch 256, weight init N(0, 0.02), up to
100 epochs; validation accuracy is checked after each epoch, and after 5 epochs without an
improvement of at least 0.001 the learning rate is divided by 10, stopping once it falls
below 1e-6. We keep the weights of the best validation epoch (the release keeps the best
since the last learning-rate drop).

The released recipe augments every training image afresh each epoch (blur, JPEG, crop, flip;
:mod:`ufd_lib.features.augmentation`). On cached features we train by default on the unaugmented centre
crop of each image (one view, the fast default), or, given ``views``, on a fixed number V of
cached augmented views per image, sampling one per image each epoch. Validation is always on
unaugmented features.

Saved and loaded in the official state-dict format: ``{"weight": [1, d], "bias": [1]}``.
"""
from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import torch
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.model_selection import train_test_split

from ufd_lib import config
from ufd_lib.checkpoints import first_non_finite, load_checkpoint, read_checkpoint, require_finite
from ufd_lib.classifiers.released import RELEASED_PROBE, RELEASED_PROBE_SHA256
from ufd_lib.devices import resolve_device, torch_threads


class ReleasedLearningRateSchedule:
    """Early stopping of the released training code (UniversalFakeDetect ``train.py``).

    After ``patience`` epochs without a validation accuracy gain of at least ``min_delta``
    the learning rate is divided by 10 and counting starts afresh; training stops once the
    learning rate falls below ``min_lr``.
    """

    def __init__(self, optimiser: torch.optim.Optimizer, patience: int, min_delta: float, min_lr: float):
        self.optimiser = optimiser
        self.patience = patience
        self.min_delta = min_delta
        self.min_lr = min_lr
        self._best = -1.0
        self._since_improvement = 0

    def step(self, accuracy: float) -> bool:
        """Record one epoch's validation accuracy; False when training should stop."""
        if accuracy >= self._best + self.min_delta:
            self._best, self._since_improvement = accuracy, 0
            return True
        self._since_improvement += 1
        if self._since_improvement < self.patience:
            return True
        for group in self.optimiser.param_groups:
            group["lr"] /= 10
        if self.optimiser.param_groups[0]["lr"] < self.min_lr:
            return False
        self._best, self._since_improvement = -1.0, 0
        return True



class ProbeFileError(ValueError):
    """A probe file that is missing, unsafe or not in the official format."""


class LinearProbe(ClassifierMixin, BaseEstimator):
    """Logistic regression on frozen features, trained as in the released code.

    val_fraction: share of the training set held out for early stopping when no validation
    set is passed to :meth:`fit` (stratified, ``seed``). Labels: 0 = real, 1 = fake.
    Learned state: ``linear_`` (torch ``nn.Linear``), ``history_`` (per-epoch dicts).
    """

    threshold = config.PROBE_THRESHOLD

    def __init__(
        self,
        lr: float = config.PROBE_LR,
        batch_size: int = config.PROBE_BATCH_SIZE,
        max_epochs: int = config.PROBE_MAX_EPOCHS,
        patience: int = config.PROBE_PATIENCE,
        min_delta: float = config.PROBE_MIN_DELTA,
        min_lr: float = config.PROBE_MIN_LR,
        init_std: float = config.PROBE_INIT_STD,
        val_fraction: float = config.PROBE_VAL_FRACTION,
        seed: int = 0,
        device: str | None = None,
    ):
        self.lr = lr
        self.batch_size = batch_size
        self.max_epochs = max_epochs
        self.patience = patience
        self.min_delta = min_delta
        self.min_lr = min_lr
        self.init_std = init_std
        self.val_fraction = val_fraction
        self.seed = seed
        self.device = device

    def fit(self, X, y, X_val=None, y_val=None, views=None):
        """Train on X: float (n, d) unaugmented features, y: (n,) labels in {0, 1}.

        X_val (m, d), y_val (m,): explicit validation set (unaugmented features); without it a
        stratified ``val_fraction`` of the training images is held out (their rows of X).
        views: optional float16 or float32 (V, n, d), V augmented views of the same n images
        (:func:`ufd_lib.features.augmentation.featurize_views`). Each epoch then trains on one view per
        image, drawn uniformly by a generator seeded with ``seed``, and X serves only for the
        held-out split. Without views, training uses X itself (as V = 1 with X as the view).
        """
        X = np.asarray(X, dtype=np.float32)
        y = np.asarray(y)
        if X.ndim != 2 or len(X) != len(y):
            raise ValueError(f"features of shape {X.shape} for {len(y)} labels; the probe takes (n, d) and (n,)")
        if set(np.unique(y).tolist()) != {0, 1}:
            raise ValueError("the probe needs training images of both classes (labels 0 and 1)")
        views = X[None] if views is None else np.asarray(views)
        if views.ndim != 3 or len(views) == 0 or views.shape[1:] != X.shape:
            raise ValueError(f"views of shape {views.shape}; expected (V >= 1, {X.shape[0]}, {X.shape[1]})")
        if views.dtype != np.float16:
            views = views.astype(np.float32, copy=False)
        if X_val is None:
            # sklearn's own rounding (ceil), but at least one image per class: with a float
            # test_size, sets under 20 images got a 1-image split and a ValueError.
            n_val = max(int(np.ceil(self.val_fraction * len(y))), 2)
            kept, held_out = train_test_split(np.arange(len(y)), test_size=n_val, stratify=y, random_state=self.seed)
            X_val, y_val, y, views = X[held_out], y[held_out], y[kept], views[:, kept]
        device = resolve_device(self.device)
        generator = torch.Generator().manual_seed(self.seed)
        linear = torch.nn.Linear(X.shape[1], 1)
        with torch.no_grad():
            linear.weight.normal_(0.0, self.init_std, generator=generator)
            bound = 1.0 / np.sqrt(X.shape[1])  # PyTorch's default bias init, drawn from our generator
            linear.bias.uniform_(-bound, bound, generator=generator)
        linear = linear.to(device)
        features = torch.as_tensor(views, device=device)
        labels = torch.as_tensor(y, dtype=torch.float32, device=device)
        val_features = torch.as_tensor(np.asarray(X_val, dtype=np.float32), device=device)
        val_labels = torch.as_tensor(np.asarray(y_val), device=device)

        with torch_threads(1 if device.type == "cpu" else None):
            self._train(linear, features, labels, val_features, val_labels, generator, device)
        return self

    def _train(self, linear, views, labels, val_features, val_labels, generator, device) -> None:
        """views: (V, n, d) on ``device``; one view per image and epoch, from its own generator
        (with V = 1 it draws only zeros, so ``generator`` sees exactly the unaugmented draws)."""
        optimiser = torch.optim.AdamW(linear.parameters(), lr=self.lr, betas=(0.9, 0.999), weight_decay=0.0)
        loss_fn = torch.nn.BCEWithLogitsLoss()
        schedule = ReleasedLearningRateSchedule(optimiser, self.patience, self.min_delta, self.min_lr)
        view_rng = np.random.default_rng(self.seed)
        n_views, n_images = views.shape[:2]
        best_accuracy, best_state = -1.0, None
        self.history_ = []
        for epoch in range(self.max_epochs):
            order = torch.randperm(n_images, generator=generator).to(device)
            chosen = torch.as_tensor(view_rng.integers(n_views, size=n_images), device=device)
            total_loss = 0.0
            for start in range(0, len(order), self.batch_size):
                batch = order[start : start + self.batch_size]
                loss = loss_fn(linear(views[chosen[batch], batch].float()).squeeze(1), labels[batch])
                optimiser.zero_grad(set_to_none=True)
                loss.backward()
                optimiser.step()
                total_loss += loss.item() * len(batch)
            with torch.no_grad():
                accuracy = ((linear(val_features).squeeze(1) > 0).long() == val_labels).float().mean().item()
            lr = optimiser.param_groups[0]["lr"]
            self.history_.append({"epoch": epoch, "loss": total_loss / len(order), "val_acc": accuracy, "lr": lr})
            if accuracy > best_accuracy:
                best_accuracy, best_state = accuracy, copy.deepcopy(linear.state_dict())
            if not schedule.step(accuracy):
                break
        linear.load_state_dict(best_state)
        self._set_linear(linear.cpu())

    def _set_linear(self, linear: torch.nn.Linear) -> None:
        self.linear_ = linear.eval()
        self.classes_ = np.array([0, 1])
        self.n_features_in_ = linear.in_features

    def decision_function(self, X) -> np.ndarray:
        """Logits (n,) float32; > 0 means fake."""
        features = torch.as_tensor(np.asarray(X, dtype=np.float32))
        if features.ndim != 2 or features.shape[1] != self.n_features_in_:
            raise ValueError(f"features of shape {tuple(features.shape)}; the probe takes (n, {self.n_features_in_})")
        with torch.no_grad():
            return self.linear_(features).squeeze(1).numpy()

    def predict_proba(self, X) -> np.ndarray:
        """(n, 2) float64: probability of real, probability of fake; the float32 logit's sigmoid
        in float64, so logits up to about 36 keep distinct probabilities (and AP their order); NaN
        for an image whose logit is not finite (weights that overflow float32), so that a broken
        probe is never read as certain."""
        logits = self.decision_function(X).astype(np.float64)
        with np.errstate(over="ignore"):
            fake = np.where(np.isfinite(logits), 1.0 / (1.0 + np.exp(-logits)), np.nan)
        return np.stack([1.0 - fake, fake], axis=1)

    def released_probability(self, X) -> np.ndarray:
        """Probability of fake (n,) float32, as the released ``validate.py`` computes it
        (``model(x).sigmoid()``): the float32 logit through torch's float32 sigmoid. Every logit
        above about 16.6 gives exactly 1.0, so such images tie, as in the release."""
        with torch.no_grad():
            return torch.sigmoid(torch.from_numpy(self.decision_function(X))).numpy()

    def predict(self, X) -> np.ndarray:
        return (self.predict_proba(X)[:, 1] > self.threshold).astype(int)

    def save(self, path: Path | str) -> None:
        """Write the official format: ``{"weight": (1, d), "bias": (1,)}`` float32 tensors."""
        state = {k: v.detach().clone().float() for k, v in self.linear_.state_dict().items()}
        torch.save(state, path)

    @classmethod
    def from_weights(cls, weight, bias, source: str) -> "LinearProbe":
        """A probe from its ``weight`` [1, d] and ``bias`` [1] tensors; ``source`` names where
        they come from in the :class:`ProbeFileError` raised when they are not that."""
        if not (isinstance(weight, torch.Tensor) and weight.ndim == 2 and weight.shape[0] == 1
                and weight.is_floating_point() and isinstance(bias, torch.Tensor) and bias.shape == (1,)
                and bias.is_floating_point()):
            raise ProbeFileError(f"{source}: expected float tensors 'weight' [1, d] and 'bias' [1]")
        require_finite({"weight": weight, "bias": bias}, source, ProbeFileError)
        as_run = {"weight": weight.float(), "bias": bias.float()}  # the dtype the probe runs in
        magnitude = as_run["weight"].abs().sum() + as_run["bias"].abs()
        if first_non_finite(as_run) is not None or not bool(torch.isfinite(magnitude).all()):
            raise ProbeFileError(f"{source}: the weights overflow float32, the dtype the probe runs in "
                                 "(a value or the sum of their magnitudes beyond 3.4e38); refusing this probe")
        linear = torch.nn.Linear(weight.shape[1], 1)
        linear.load_state_dict({"weight": weight.float(), "bias": bias.float()})
        probe = cls()
        probe._set_linear(linear)
        return probe

    @classmethod
    def load(cls, path: Path | str) -> "LinearProbe":
        """Read a probe in the official format (e.g. the released ``fc_weights.pth``): a state
        dict of exactly ``weight`` [1, d] and ``bias`` [1], every value finite.

        Loaded with ``weights_only=True``: a file carrying other pickled objects is refused. The
        file is read once; the package's released probe must have its pinned SHA-256.
        """
        path = Path(path)
        data, sha256 = read_checkpoint(path, ProbeFileError, "probe")
        if path.resolve() == RELEASED_PROBE.resolve() and sha256 != RELEASED_PROBE_SHA256:
            raise ProbeFileError(f"{path}: this is not the authors' released probe (SHA-256 {sha256}, the release's "
                                 f"is {RELEASED_PROBE_SHA256}); the installation was changed, reinstall ufd")
        state = load_checkpoint(path, ProbeFileError, "probe", data)
        if not isinstance(state, dict) or set(state) != {"weight", "bias"}:
            found = ", ".join(map(str, state)) if isinstance(state, dict) else type(state).__name__
            raise ProbeFileError(f"{path}: expected a state dict of exactly 'weight' [1, d] and 'bias' [1], "
                                 f"found {found or 'nothing'}")
        return cls.from_weights(state["weight"], state["bias"], str(path))
