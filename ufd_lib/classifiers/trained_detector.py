"""The end-to-end trained real/fake detector of Wang et al. 2020 (CNNDetection), the baseline
the paper shows failing on unseen generator families (its Table 1 and "sink" t-SNE).

In: a :class:`DetectorRequest` (the training recipe and the released weights' file name), the
benchmark's training and validation sets, a run folder. Out: a :class:`TrainedDetector`, whose
body is the registry's ``detector:<file>`` encoder (its penultimate features go through the
feature cache) and whose ``fc`` is a :class:`LinearProbe` on them. :func:`load_or_train_detector`
uses the released weights if present, else a detector trained earlier in the run folder with the
same recipe, initial weights and data, else trains one (Blur+JPEG 0.5, Adam, learning rate / 10
on a validation plateau, best validation epoch kept) and saves it in CNNDetection's format.
A ResNet-50 is only trained from ImageNet weights; without them and without the released file it
raises :class:`DetectorUnavailable` saying which file to put where.
"""
from __future__ import annotations

import copy
import hashlib
import json
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from PIL import Image
from torch import nn
from torch.utils.data import DataLoader, Dataset

from ufd_lib import config
from ufd_lib.atomic_files import atomic_write
from ufd_lib.checkpoints import load_checkpoint, load_state_dict_strictly
from ufd_lib.classifiers.linear_probe import LinearProbe, ProbeFileError, ReleasedLearningRateSchedule
from ufd_lib.data.discovery import LabelledImage, collect_images
from ufd_lib.devices import resolve_device, torch_threads
from ufd_lib.features.augmentation import TrainingAugmentation
from ufd_lib.features.encoders import Encoder, EncoderUnavailable, load_encoder
from ufd_lib.features.encoders.detector import ARCHITECTURES, DetectorFileError, empty_network, read_detector_file
from ufd_lib.features.encoders.torchvision_models import expected_checkpoint, imagenet_checkpoint
from ufd_lib.features.preprocess import ImageRejected, decode_image, evaluation_transform, load_tensor
from ufd_lib.hashing import file_sha256

DETECTOR_FILE = "trained_detector.pth"
RELEASED_DETECTOR_URL = "https://github.com/PeterWang512/CNNDetection (weights/download_weights.sh)"


class DetectorUnavailable(EncoderUnavailable):
    """No detector can be had as the profile asks (no released weights, and a ResNet-50 without
    ImageNet weights to start from); the message is the notice saying which file to put where."""


@dataclass(frozen=True)
class DetectorRecipe:
    """How the detector is trained (Wang et al. 2020's Blur+JPEG 0.5 by default).

    architecture: ``resnet50`` (ImageNet-initialised) or ``small_cnn``.
    time_budget_s: stop training after this many seconds (None = no limit).
    augmentation: the training augmentation (the probe's recipe without the resize).
    """

    architecture: str = "resnet50"
    max_epochs: int = 100
    batch_size: int = 64
    lr: float = 1e-4
    time_budget_s: float | None = None
    augmentation: TrainingAugmentation = TrainingAugmentation(resize=None)
    patience: int = 5
    min_delta: float = 0.001
    min_lr: float = 1e-6
    init_std: float = 0.02
    seed: int = 0

    def __post_init__(self):
        if self.architecture not in ARCHITECTURES:
            raise ValueError(f"unknown detector architecture {self.architecture!r}; choose one of {ARCHITECTURES}")

    def as_dict(self) -> dict:
        return {**asdict(self), "augmentation": self.augmentation.as_dict()}


@dataclass(frozen=True)
class DetectorRequest:
    """Which detector a run wants: the training recipe, the released weights' file name in the
    weights directory (None: never look for them) and who asks (a profile's name, for notices)."""

    recipe: DetectorRecipe
    released_file: str | None = None
    requested_by: str = ""


def initial_weights(architecture: str) -> Path | None:
    """The file a detector of ``architecture`` starts from: torchvision's ResNet-50 ImageNet
    weights in the torch hub cache; None for the small CNN (random initialisation).

    Raises :class:`DetectorUnavailable` for a ResNet-50 whose ImageNet weights are absent.
    """
    if architecture == "small_cnn":
        return None
    checkpoint = imagenet_checkpoint("resnet50")
    if checkpoint is None:
        url, target = expected_checkpoint("resnet50")
        raise DetectorUnavailable(f"no ImageNet weights to start a ResNet-50 detector from: put {url} at {target}")
    return checkpoint


def build_detector(architecture: str, init_std: float = 0.02) -> tuple[nn.Module, str]:
    """A network ready for training and a sentence saying how it was initialised.

    ``resnet50`` starts from torchvision's ImageNet weights (as Wang et al.; never from random
    weights: :func:`initial_weights` raises without them); the ``fc`` layer is drawn from
    N(0, init_std) (CNNDetection's init_gain), biases zero.
    """
    network = empty_network(architecture)
    checkpoint = initial_weights(architecture)
    if checkpoint is None:
        note = "small CNN from random initialisation (no pretrained weights exist for it)"
    else:
        state = load_checkpoint(checkpoint, DetectorFileError, "ResNet-50 ImageNet weights")
        own_fc = {"fc.weight": network.fc.weight, "fc.bias": network.fc.bias}  # ImageNet's 1000-way fc is dropped
        state = {**{key: value for key, value in state.items() if not key.startswith("fc.")}, **own_fc}
        load_state_dict_strictly(network, state, checkpoint, "torchvision's resnet50", DetectorFileError)
        note = (f"ResNet-50 initialised from torchvision's ImageNet weights {checkpoint} "
                f"(SHA-256 {file_sha256(checkpoint)})")
    with torch.no_grad():
        network.fc.weight.normal_(0.0, init_std)
        network.fc.bias.zero_()
    return network, note


# --- training data ---


_MEAN = np.asarray(config.IMAGENET_MEAN, np.float32)[:, None, None]
_STD = np.asarray(config.IMAGENET_STD, np.float32)[:, None, None]


def _to_normalised_tensor(image: Image.Image) -> torch.Tensor:
    """RGB (224, 224) → float32 (3, 224, 224), ImageNet-normalised, as ToTensor + Normalize.

    In numpy: torch's multi-threaded kernels on one small image are slow when the CPU is busy."""
    array = np.asarray(image, np.float32).transpose(2, 0, 1) / 255.0
    return torch.from_numpy(np.ascontiguousarray((array - _MEAN) / _STD))


class _DetectorImages(Dataset):
    """Labelled image files → (tensor (3, 224, 224) or None, label). With a recipe, each item is
    augmented from its own random stream (seed, epoch, index), so any worker count gives the
    same batches; without, the evaluation preprocessing (centre crop 224) is used."""

    def __init__(self, images: list[LabelledImage], recipe: DetectorRecipe | None, epoch: int = 0):
        self.images = images
        self.recipe = recipe
        self.epoch = epoch
        self.evaluation = evaluation_transform(config.IMAGENET_MEAN, config.IMAGENET_STD)

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int):
        item = self.images[index]
        try:
            if self.recipe is None:
                return load_tensor(Path(item.path), self.evaluation), item.label
            image = decode_image(Path(item.path).read_bytes())
        except (ImageRejected, OSError):
            return None, item.label
        rng = np.random.default_rng([self.recipe.seed, self.epoch, index])
        return _to_normalised_tensor(self.recipe.augmentation.apply(image, rng)), item.label


def _collate(items):
    kept = [(tensor, label) for tensor, label in items if tensor is not None]
    if not kept:
        return None, None
    return torch.stack([t for t, _ in kept]), torch.tensor([label for _, label in kept], dtype=torch.float32)


def _balanced_accuracy(network: nn.Module, loader: DataLoader, device: torch.device) -> float:
    """Mean of real-class and fake-class accuracy at logit 0 (the paper's accuracy)."""
    network.eval()
    called, labels = [], []
    with torch.no_grad():
        for images, label in loader:
            if images is None:
                continue
            called.append((network(images.to(device)).squeeze(1) > 0).cpu())
            labels.append(label.bool())
    if not called:
        raise ValueError("the validation set has no usable images")
    called, labels = torch.cat(called), torch.cat(labels)
    per_class = [(called[labels == c] == c).float().mean().item() for c in (False, True) if (labels == c).any()]
    return float(np.mean(per_class))


def train_detector(train: list[LabelledImage], val: list[LabelledImage], recipe: DetectorRecipe,
                   device: str | torch.device | None = None, num_workers: int = 0,
                   log=print) -> tuple[nn.Module, str, list[dict]]:
    """Train a detector on image files → (network on CPU in eval mode, initialisation note,
    per-epoch history of loss, val_acc, lr, seconds). Deterministic given the recipe on CPU
    (unless the time budget cuts it short).

    The small CNN trains single-threaded on CPU: its tensors are so small that intra-op threads
    cost more than they give, most of all when other processes share the cores.
    """
    device = resolve_device(device)
    started = time.perf_counter()
    history: list[dict] = []
    threads = 1 if device.type == "cpu" and recipe.architecture == "small_cnn" else None
    with torch.random.fork_rng(devices=[]), torch_threads(threads):
        torch.manual_seed(recipe.seed)
        network, note = build_detector(recipe.architecture, recipe.init_std)
        network = network.to(device)
        optimiser = torch.optim.Adam(network.parameters(), lr=recipe.lr, betas=(0.9, 0.999))
        loss_fn = nn.BCEWithLogitsLoss()
        training = _DetectorImages(train, recipe)
        val_loader = DataLoader(_DetectorImages(val, None), batch_size=recipe.batch_size, num_workers=num_workers,
                                collate_fn=_collate)
        best_accuracy, best_state = -1.0, copy.deepcopy(network.state_dict())
        schedule = ReleasedLearningRateSchedule(optimiser, recipe.patience, recipe.min_delta, recipe.min_lr)
        for epoch in range(recipe.max_epochs):
            training.epoch = epoch
            loader = DataLoader(training, batch_size=recipe.batch_size, shuffle=True, num_workers=num_workers,
                                collate_fn=_collate, generator=torch.Generator().manual_seed(recipe.seed + epoch))
            network.train()
            total, seen = 0.0, 0
            for images, labels in loader:
                if images is None:
                    continue
                loss = loss_fn(network(images.to(device)).squeeze(1), labels.to(device))
                optimiser.zero_grad(set_to_none=True)
                loss.backward()
                optimiser.step()
                total += loss.item() * len(labels)
                seen += len(labels)
            accuracy = _balanced_accuracy(network, val_loader, device)
            lr = optimiser.param_groups[0]["lr"]
            elapsed = time.perf_counter() - started
            history.append({"epoch": epoch, "loss": total / max(seen, 1), "val_acc": accuracy, "lr": lr,
                            "seconds": elapsed})
            if log:
                log(f"epoch {epoch}: loss {total / max(seen, 1):.4f}, validation accuracy {accuracy:.3f}, lr {lr:g}")
            if accuracy > best_accuracy:
                best_accuracy, best_state = accuracy, copy.deepcopy(network.state_dict())
            if recipe.time_budget_s is not None and elapsed > recipe.time_budget_s and epoch + 1 < recipe.max_epochs:
                if log:
                    log(f"stopping: the time budget of {recipe.time_budget_s:.0f} s is spent")
                break
            if not schedule.step(accuracy):
                break
    network.load_state_dict(best_state)
    return network.cpu().eval(), note, history


# --- files ---


def save_detector(path: Path | str, network: nn.Module, architecture: str, meta: dict) -> Path:
    """Write ``{"model": state_dict, "architecture": str, "meta": JSON str}`` atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    checkpoint = {"model": network.state_dict(), "architecture": architecture, "meta": json.dumps(meta, default=str)}
    atomic_write(path, lambda handle: torch.save(checkpoint, handle))
    return path


def detector_head(path: Path | str) -> LinearProbe:
    """The detector's ``fc`` layer as a classifier on its penultimate features (probability of fake)."""
    state, _, _ = read_detector_file(path)
    try:
        return LinearProbe.from_weights(state.get("fc.weight"), state.get("fc.bias"), f"{path} (its fc layer)")
    except ProbeFileError as error:
        raise DetectorFileError(str(error)) from error


@dataclass
class TrainedDetector:
    """A detector ready for evaluation.

    encoder: frozen body (images → penultimate features), the registry's ``detector:<path>``;
    head: its fc layer as a classifier. path: the weights file; source: ``released``,
    ``reused`` or ``trained here``; description: what it is and how it was initialised and
    trained; history: per-epoch training record (empty for released weights); notice: one line
    saying which weights are used (path and SHA-256), for the notebook to show.
    """

    encoder: Encoder
    head: LinearProbe
    path: Path
    source: str
    description: str
    history: pd.DataFrame
    notice: str = ""


def training_fingerprint(images: list[LabelledImage]) -> str:
    """SHA-256 over the files' paths, labels and sizes: changes when the training data does."""
    digest = hashlib.sha256()
    for image in images:
        digest.update(f"{image.path}\t{image.label}\t{os.path.getsize(image.path)}\n".encode())
    return digest.hexdigest()


def _open(path: Path, source: str, description: str, history: list[dict], device, started_from: str = ""
          ) -> TrainedDetector:
    encoder = load_encoder(f"detector:{path}", device)
    notice = f"trained detector: {source} weights {path} (SHA-256 {encoder.checkpoint_sha256})" + started_from
    return TrainedDetector(encoder, detector_head(path), path, source, description, pd.DataFrame(history), notice)


def _skipped_notice(request: DetectorRequest, released: Path | None, reason: str) -> str:
    where = (f"put the released CNNDetection weights ({RELEASED_DETECTOR_URL}) at {released}, or " if released else "")
    return f"trained detector skipped ({request.requested_by}): {where}{reason}"


def load_or_train_detector(request: DetectorRequest, benchmark, output_dir: Path | str,
                           device: str | torch.device | None = None, num_workers: int = 0, sampling: str = "all",
                           log=print) -> TrainedDetector:
    """The requested detector: released weights if present, else this run folder's trained one
    if it matches the recipe, initial weights and training data, else trained now and saved to
    ``<output_dir>/models/trained_detector.pth``. Its :attr:`TrainedDetector.notice` says which
    weights are used.

    Raises :class:`DetectorUnavailable` (message: the one-line notice of which file to put where)
    when a ResNet-50 would have to start from random weights.
    """
    released = config.weights_dir() / request.released_file if request.released_file else None
    if released is not None and released.is_file():
        return _open(released, "released",
                     f"released CNNDetection weights {released} (Wang et al. 2020, ResNet-50, Blur+JPEG 0.5)",
                     [], device)
    recipe = request.recipe
    try:
        start = initial_weights(recipe.architecture)
    except DetectorUnavailable as error:
        raise DetectorUnavailable(_skipped_notice(request, released, str(error))) from None
    started_from = "" if start is None else f", fine-tuned from {start} (SHA-256 {file_sha256(start)})"
    if released is not None and log:
        log(f"released detector weights not found at {released}; training one here instead")
    train_images = collect_images(benchmark.train, sampling)
    val_images = collect_images(benchmark.val, sampling)
    wanted = {"recipe": recipe.as_dict(), "training_data": training_fingerprint(train_images + val_images),
              "initial_weights": started_from or "random"}
    path = Path(output_dir) / "models" / DETECTOR_FILE
    if path.is_file():
        try:
            _, _, meta = read_detector_file(path)
        except DetectorFileError:
            meta = {}
        if all(meta.get(key) == value for key, value in wanted.items()):
            return _open(path, "reused", meta.get("description", ""), meta.get("history", []), device, started_from)
        if log:
            log(f"{path} was trained with another recipe, initial weights or data; training again")
    network, note, history = train_detector(train_images, val_images, recipe, device, num_workers, log)
    description = (f"{note}; trained here on {len(train_images)} images of {benchmark.train.name} for "
                   f"{len(history)} epochs (Blur+JPEG 0.5, lr {recipe.lr:g}, batch {recipe.batch_size}), "
                   f"best validation accuracy {max(h['val_acc'] for h in history):.3f}")
    save_detector(path, network, recipe.architecture, {**wanted, "description": description, "history": history})
    return _open(path, "trained here", description, history, device, started_from)


def detector_or_notice(request: DetectorRequest, benchmark, output_dir: Path | str,
                       **options) -> tuple[TrainedDetector | None, str]:
    """(detector, one-line notice) for a notebook: :func:`load_or_train_detector` with ``options``,
    or (None, the notice of why it was skipped and which file to put where)."""
    try:
        detector = load_or_train_detector(request, benchmark, output_dir, **options)
    except DetectorUnavailable as skipped:
        return None, str(skipped)
    return detector, detector.notice
