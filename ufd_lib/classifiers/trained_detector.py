"""The end-to-end trained real/fake detector of Wang et al. 2020 (CNNDetection), the baseline
the paper shows failing on unseen generator families (its Table 1 and "sink" t-SNE).

One door, :func:`load_or_train_detector`, tries in order:

1. the released CNNDetection weights ``<weights dir>/<profile.released_detector>`` (paper
   profile: ``$UFD_WEIGHTS_DIR/blur_jpg_prob0.5.pth``; format ``{"model": state_dict}`` of a
   torchvision ResNet-50 whose ``fc`` has 1 output), read with ``weights_only=True``;
2. a detector trained earlier in this run folder (``<output>/models/trained_detector.pth``)
   with the same recipe on the same training images;
3. otherwise it trains one here and saves it there, so later notebooks reuse it.

Training follows Wang et al. 2020, "Blur+JPEG (0.5)": per training image, Gaussian blur with
p=0.5 and sigma ~ U[0, 3], then JPEG re-encoding (PIL) with p=0.5 and quality ~ U{30..100};
then RandomCrop 224 (zero-padding smaller images), horizontal flip p=0.5, ImageNet
normalisation; BCE with logits, Adam (betas 0.9/0.999), fc initialised N(0, 0.02); validation
accuracy after every epoch, learning rate / 10 after ``patience`` epochs without an improvement
of ``min_delta``, stop below ``min_lr``; the best validation epoch's weights are kept. Paper
profile: ImageNet-initialised ResNet-50 (torchvision weights from the torch hub cache; when
absent, random initialisation, said so in :attr:`TrainedDetector.description`). Smoke profile:
:class:`SmallCNN`, trained in about a minute on CPU. We save in CNNDetection's format plus an
``architecture`` and a ``meta`` entry.

The detector is then used as two pieces: its body, wrapped as an
:class:`~ufd_lib.features.encoders.Encoder` whose identity is the SHA-256 of the weights file (so its
penultimate features go through the feature cache, test-time perturbations included), and its
``fc`` layer, read by :meth:`LinearProbe.load` as a classifier on those features. Test images get
the pipeline's evaluation preprocessing (centre crop 224, no resize; CNNDetection's own
evaluation feeds the whole image). Features are cached in float16, so its probabilities differ
from the float32 network's in the fourth decimal at most.
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
import torchvision
from PIL import Image
from torch import nn
from torch.utils.data import DataLoader, Dataset

from ufd_lib import config
from ufd_lib.data.discovery import LabelledImage, collect_images
from ufd_lib.features.encoders import Encoder
from ufd_lib.devices import resolve_device
from ufd_lib.hashing import file_sha256
from ufd_lib.classifiers.linear_probe import LinearProbe, ProbeFileError
from ufd_lib.features.preprocess import ImageRejected, decode_image, gaussian_blur, jpeg_reencode
from ufd_lib.checkpoints import load_checkpoint
from ufd_lib.classifiers.lr_schedule import ReleasedLearningRateSchedule
from ufd_lib.devices import torch_threads
from ufd_lib.features.torchvision_encoders import PenultimateFeatures, expected_checkpoint, imagenet_checkpoint

DETECTOR_FILE = "trained_detector.pth"
ARCHITECTURES = ("resnet50", "small_cnn")


class DetectorFileError(ValueError):
    """A detector weights file that is missing, unsafe or not in the expected format."""


@dataclass(frozen=True)
class DetectorRecipe:
    """How the detector is trained (Wang et al. 2020's Blur+JPEG 0.5 by default).

    architecture: ``resnet50`` (ImageNet-initialised) or ``small_cnn``.
    time_budget_s: stop training after this many seconds (None = no limit).
    jpeg_quality_range: inclusive (low, high) of the uniform integer JPEG quality.
    """

    architecture: str = "resnet50"
    max_epochs: int = 100
    batch_size: int = 64
    lr: float = 1e-4
    time_budget_s: float | None = None
    blur_prob: float = 0.5
    blur_sigma_max: float = 3.0
    jpeg_prob: float = 0.5
    jpeg_quality_range: tuple[int, int] = (30, 100)
    patience: int = 5
    min_delta: float = 0.001
    min_lr: float = 1e-6
    init_std: float = 0.02
    seed: int = 0

    def __post_init__(self):
        if self.architecture not in ARCHITECTURES:
            raise ValueError(f"unknown detector architecture {self.architecture!r}; choose one of {ARCHITECTURES}")

    @classmethod
    def from_profile(cls, profile) -> "DetectorRecipe":
        return cls(architecture=profile.detector_architecture, max_epochs=profile.detector_max_epochs,
                   batch_size=profile.detector_batch_size, lr=profile.detector_lr,
                   time_budget_s=profile.detector_time_budget_s)

    def as_dict(self) -> dict:
        return {**asdict(self), "jpeg_quality_range": list(self.jpeg_quality_range)}


class SmallCNN(nn.Module):
    """The smoke profile's stand-in for ResNet-50, cheap enough to train on CPU in a minute.

    A 4×4 stride-4 patch convolution (16 channels; it sees every pixel phase of a period-2 or
    period-4 up-sampling pattern), then three stride-2 3×3 convolutions (32, 64, 64 channels),
    each with batch norm and ReLU, global average pooling (64-d features) and ``fc`` → 1 logit.
    """

    def __init__(self, widths: tuple[int, ...] = (16, 32, 64, 64)):
        super().__init__()
        layers, channels = [], 3
        for index, width in enumerate(widths):
            convolution = (nn.Conv2d(channels, width, 4, stride=4, bias=False) if index == 0
                           else nn.Conv2d(channels, width, 3, stride=2, padding=1, bias=False))
            layers += [convolution, nn.BatchNorm2d(width), nn.ReLU(inplace=True)]
            channels = width
        self.features = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.fc = nn.Linear(channels, 1)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.fc(self.features(images))


def _empty_network(architecture: str) -> nn.Module:
    """The architecture with a 1-logit ``fc`` and PyTorch's default initialisation."""
    if architecture == "small_cnn":
        return SmallCNN()
    if architecture == "resnet50":
        return torchvision.models.resnet50(weights=None, num_classes=1)
    raise DetectorFileError(f"unknown detector architecture {architecture!r}; choose one of {ARCHITECTURES}")


def build_detector(architecture: str, init_std: float = 0.02) -> tuple[nn.Module, str]:
    """A network ready for training and a sentence saying how it was initialised.

    ``resnet50`` starts from torchvision's ImageNet weights when the torch hub cache holds them
    (as Wang et al.), else from random weights, and the sentence says so in capitals. The
    ``fc`` layer is drawn from N(0, init_std) (CNNDetection's init_gain), biases zero.
    """
    network = _empty_network(architecture)
    if architecture == "small_cnn":
        note = "small CNN from random initialisation (no pretrained weights exist for it)"
    else:
        checkpoint = imagenet_checkpoint("resnet50")
        if checkpoint is not None:
            state = load_checkpoint(checkpoint, DetectorFileError, "ResNet-50 ImageNet weights")
            state = {key: value for key, value in state.items() if not key.startswith("fc.")}
            network.load_state_dict(state, strict=False)
            note = f"ResNet-50 initialised from torchvision's ImageNet weights ({checkpoint.name})"
        else:
            url, target = expected_checkpoint("resnet50")
            note = (f"ResNet-50 from RANDOM initialisation: torchvision's ImageNet weights were not found in "
                    f"the torch hub cache (expected {target}, from {url}), so this is not Wang et al.'s "
                    f"ImageNet-initialised detector")
    with torch.no_grad():
        network.fc.weight.normal_(0.0, init_std)
        network.fc.bias.zero_()
    return network, note


# --- training data ---


def _pad_to(image: Image.Image, size: int) -> Image.Image:
    """Zero-pad (centred) to at least size × size, as torchvision's crops do."""
    width, height = image.size
    if width >= size and height >= size:
        return image
    canvas = Image.new("RGB", (max(width, size), max(height, size)))
    canvas.paste(image, ((canvas.width - width) // 2, (canvas.height - height) // 2))
    return canvas


def augment(image: Image.Image, rng: np.random.Generator, recipe: DetectorRecipe) -> Image.Image:
    """Blur+JPEG then random crop and flip, as CNNDetection's training transform (PIL RGB in and out)."""
    if rng.random() < recipe.blur_prob:
        sigma = rng.uniform(0.0, recipe.blur_sigma_max)
        if sigma > 0:
            image = gaussian_blur(image, sigma)
    if rng.random() < recipe.jpeg_prob:
        low, high = recipe.jpeg_quality_range
        image = jpeg_reencode(image, int(rng.integers(low, high + 1)))
    image = _pad_to(image, config.CROP_SIZE)
    left = int(rng.integers(image.width - config.CROP_SIZE + 1))
    top = int(rng.integers(image.height - config.CROP_SIZE + 1))
    image = image.crop((left, top, left + config.CROP_SIZE, top + config.CROP_SIZE))
    if rng.random() < 0.5:
        image = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    return image


def _centre_crop(image: Image.Image, size: int = config.CROP_SIZE) -> Image.Image:
    """CenterCrop without resize, zero-padding smaller images: torchvision's, exactly as the
    evaluation preprocessing (its offsets round half to even, not down)."""
    return torchvision.transforms.CenterCrop(size)(image)


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

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int):
        item = self.images[index]
        try:
            image = decode_image(Path(item.path).read_bytes())
        except (ImageRejected, OSError):
            return None, item.label
        if self.recipe is None:
            return _to_normalised_tensor(_centre_crop(image)), item.label
        rng = np.random.default_rng([self.recipe.seed, self.epoch, index])
        return _to_normalised_tensor(augment(image, rng, self.recipe)), item.label


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
    cost more than they give, 4× more when other processes share the cores (measured on the
    project's 2-core machine).
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
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        torch.save({"model": network.state_dict(), "architecture": architecture,
                    "meta": json.dumps(meta, default=str)}, temporary)
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)
    return path


def read_detector_file(path: Path | str) -> tuple[dict, str, dict]:
    """(state dict, architecture, meta) of a detector file; CNNDetection's released files have
    no architecture entry and are ResNet-50. Read with ``weights_only=True``."""
    path = Path(path)
    loaded = load_checkpoint(path, DetectorFileError, "detector")
    if not (isinstance(loaded, dict) and isinstance(loaded.get("model"), dict)):
        raise DetectorFileError(f"{path}: expected CNNDetection's format {{'model': state_dict}}")
    architecture = loaded.get("architecture", "resnet50")
    try:
        meta = json.loads(loaded.get("meta", "{}"))
    except (TypeError, ValueError):
        meta = {}
    return loaded["model"], architecture, meta


def _load_network(path: Path | str) -> tuple[nn.Module, str]:
    state, architecture, _ = read_detector_file(path)
    network = _empty_network(architecture)
    try:
        network.load_state_dict(state)
    except RuntimeError as error:
        raise DetectorFileError(f"{path}: weights do not fit a {architecture} with a 1-output fc: {error}") from error
    return network.eval(), architecture


def detector_network(path: Path | str) -> nn.Module:
    """The whole network (images → 1 logit) of a detector file, in eval mode on CPU."""
    return _load_network(path)[0]


def detector_encoder(path: Path | str, device: str | torch.device | None = None) -> Encoder:
    """The detector's body as a frozen Encoder: images → penultimate features (ResNet-50: 2048-d,
    small CNN: 64-d); identity = the file's SHA-256; ImageNet normalisation."""
    network, architecture = _load_network(path)
    dimension = network.fc.in_features
    network.fc = nn.Identity()
    device = resolve_device(device)
    model = PenultimateFeatures(network).to(device).eval().requires_grad_(False)
    return Encoder(model=model, name=f"trained-detector:{architecture}", checkpoint_sha256=file_sha256(Path(path)),
                   device=device, embed_dim=dimension, mean=config.IMAGENET_MEAN, std=config.IMAGENET_STD)


def detector_head(path: Path | str) -> LinearProbe:
    """The detector's ``fc`` layer as a classifier on its penultimate features (probability of fake)."""
    try:
        return LinearProbe.load(path)
    except ProbeFileError as error:
        raise DetectorFileError(str(error)) from error


@dataclass
class TrainedDetector:
    """A detector ready for evaluation.

    encoder: frozen body (images → penultimate features); head: its fc layer as a classifier.
    path: the weights file; source: ``released``, ``reused`` or ``trained here``;
    description: what it is and how it was initialised and trained; history: per-epoch
    training record (empty for released weights).
    """

    encoder: Encoder
    head: LinearProbe
    path: Path
    source: str
    description: str
    history: pd.DataFrame


def training_fingerprint(images: list[LabelledImage]) -> str:
    """SHA-256 over the files' paths, labels and sizes: changes when the training data does."""
    digest = hashlib.sha256()
    for image in images:
        digest.update(f"{image.path}\t{image.label}\t{os.path.getsize(image.path)}\n".encode())
    return digest.hexdigest()


def _open(path: Path, source: str, description: str, history: list[dict], device) -> TrainedDetector:
    return TrainedDetector(detector_encoder(path, device), detector_head(path), path, source, description,
                           pd.DataFrame(history))


def load_or_train_detector(profile, benchmark, output_dir: Path | str, device: str | torch.device | None = None,
                           num_workers: int = 0, sampling: str = "all", log=print) -> TrainedDetector:
    """The profile's detector: released weights if present, else this run folder's trained one
    if it matches the recipe and training data, else trained now and saved to
    ``<output_dir>/models/trained_detector.pth``."""
    if profile.released_detector:
        released = config.weights_dir() / profile.released_detector
        if released.is_file():
            return _open(released, "released",
                         f"released CNNDetection weights {released} (Wang et al. 2020, ResNet-50, Blur+JPEG 0.5)",
                         [], device)
        if log:
            log(f"released detector weights not found at {released}; training one here instead")
    recipe = DetectorRecipe.from_profile(profile)
    train_images = collect_images(benchmark.train, sampling)
    val_images = collect_images(benchmark.val, sampling)
    wanted = {"recipe": recipe.as_dict(), "training_data": training_fingerprint(train_images + val_images)}
    path = Path(output_dir) / "models" / DETECTOR_FILE
    if path.is_file():
        try:
            _, _, meta = read_detector_file(path)
        except DetectorFileError:
            meta = {}
        if all(meta.get(key) == value for key, value in wanted.items()):
            return _open(path, "reused", meta.get("description", ""), meta.get("history", []), device)
        if log:
            log(f"{path} was trained with another recipe or data; training again")
    network, note, history = train_detector(train_images, val_images, recipe, device, num_workers, log)
    description = (f"{note}; trained here on {len(train_images)} images of {benchmark.train.name} for "
                   f"{len(history)} epochs (Blur+JPEG 0.5, lr {recipe.lr:g}, batch {recipe.batch_size}), "
                   f"best validation accuracy {max(h['val_acc'] for h in history):.3f}")
    save_detector(path, network, recipe.architecture, {**wanted, "description": description, "history": history})
    return _open(path, "trained here", description, history, device)
