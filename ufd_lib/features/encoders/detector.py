"""The trained real/fake detector's networks and weights files, and its body as a frozen encoder:
``detector:/path/to/trained_detector.pth`` in the encoder registry.

A detector file is CNNDetection's format, ``{"model": state_dict}`` of a network whose ``fc``
has 1 output (the released ``blur_jpg_prob0.5.pth`` is a torchvision ResNet-50), plus, in files
written by :mod:`ufd_lib.classifiers.trained_detector`, an ``architecture`` (``resnet50`` or
``small_cnn``) and a ``meta`` JSON string. It is read with ``weights_only=True``, every weight
finite and every key and shape checked against the architecture.

The encoder is the network with ``fc`` replaced by the identity: normalised images (n, 3, 224,
224), ImageNet mean and std, → penultimate features (n, d) (ResNet-50: 2048-d, small CNN: 64-d);
its identity is the file's SHA-256. Training lives in :mod:`ufd_lib.classifiers.trained_detector`.
"""
from __future__ import annotations

import json
from pathlib import Path

import torch
import torchvision
from torch import nn

from ufd_lib import config
from ufd_lib.checkpoints import load_checkpoint, load_state_dict_strictly
from ufd_lib.features.encoders.encoder import Encoder
from ufd_lib.features.encoders.registry import LoadOptions
from ufd_lib.features.encoders.torchvision_models import PenultimateFeatures
from ufd_lib.hashing import file_sha256

ARCHITECTURES = ("resnet50", "small_cnn")


class DetectorFileError(ValueError):
    """A detector weights file that is missing, unsafe or not in the expected format."""


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


def empty_network(architecture: str) -> nn.Module:
    """The architecture with a 1-logit ``fc`` and PyTorch's default initialisation."""
    if architecture == "small_cnn":
        return SmallCNN()
    if architecture == "resnet50":
        return torchvision.models.resnet50(weights=None, num_classes=1)
    raise DetectorFileError(f"unknown detector architecture {architecture!r}; choose one of {ARCHITECTURES}")


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


def detector_network(path: Path | str) -> nn.Module:
    """The whole network (images → 1 logit) of a detector file, in eval mode on CPU."""
    state, architecture, _ = read_detector_file(path)
    network = empty_network(architecture)
    load_state_dict_strictly(network, state, path, f"a {architecture} detector with a 1-output fc", DetectorFileError)
    return network.eval()


def load_detector(argument: str, options: LoadOptions) -> Encoder:
    device = options.device
    path = Path(argument).expanduser()
    network = detector_network(path)
    dimension = network.fc.in_features
    network.fc = nn.Identity()
    model = PenultimateFeatures(network).to(device)
    return Encoder(model=model, name=f"detector:{path}", checkpoint_sha256=file_sha256(path), device=device,
                   embed_dim=dimension, mean=config.IMAGENET_MEAN, std=config.IMAGENET_STD,
                   checkpoint_path=str(path))


LOADERS = {"detector": load_detector}
