"""The encoder registry: the one door from a string such as ``clip:ViT-L/14`` to a frozen
:class:`~ufd_lib.features.encoders.encoder.Encoder` (:func:`load_encoder`).

A spec is ``<prefix>:<argument>``; :func:`parse_encoder_spec` is its only parser. :data:`FAMILIES`
names, for each prefix, the family module that loads it and how the spec is written. A family
module exports ``LOADERS`` (prefix → loader) and, for pretrained weights, ``STAND_INS`` (prefix →
the random-weight spec of the same architecture, or None). Family modules are imported only when
an encoder is loaded, so parsing and ``--help`` never import torch.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ufd_lib import config

if TYPE_CHECKING:
    import torch

    from ufd_lib.features.encoders.encoder import Encoder


class EncoderUnavailable(RuntimeError):
    """The encoder's weights cannot be had; the message says how to provide them."""


class CheckpointRefused(ValueError):
    """A checkpoint file refused as given (not the official file of its name, or a TorchScript
    archive without the opt-in); the message says what to do. Bad input: exit status 2."""


@dataclass(frozen=True)
class Family:
    """module: the family module under ``ufd_lib.features.encoders``; usage: how the spec is
    written; arguments: the only arguments the family takes, where they are a closed set."""

    module: str
    usage: str
    arguments: tuple[str, ...] | None = None


FAMILIES: dict[str, Family] = {
    "clip": Family("clip", "clip:ViT-L/14 (default; any official CLIP name) or clip:/path/to/checkpoint.pt"),
    "random-clip": Family("clip", "random-clip:tiny|small|ViT-B/32|ViT-B/16|ViT-L/14 (random weights, tests only)",
                          ("tiny", "small", "ViT-B/32", "ViT-B/16", "ViT-L/14")),
    "torchvision": Family("torchvision_models", "torchvision:resnet50 (any torchvision classifier, ImageNet weights)"),
    "random-torchvision": Family("torchvision_models", "random-torchvision:resnet50 (random weights, tests only)"),
    "detector": Family("detector", "detector:/path/to/trained_detector.pth (a detector trained by notebook 05)"),
}


@dataclass(frozen=True)
class LoadOptions:
    """What every loader is told: the device, and whether the user trusts TorchScript archives
    that are not OpenAI's published files (loading one runs code it carries)."""

    device: torch.device
    allow_torchscript: bool = False


def available_prefixes() -> list[str]:
    """The registered prefixes, sorted."""
    return sorted(FAMILIES)


def encoder_usage() -> str:
    """One line listing every family's spec form, for ``--encoder`` help and error messages."""
    return ", ".join(family.usage for family in FAMILIES.values())


def parse_encoder_spec(spec: str) -> tuple[str, str]:
    """``"clip:ViT-L/14"`` → ``("clip", "ViT-L/14")``; ValueError naming the registered forms when
    the prefix is unknown, the argument empty or not one its family takes."""
    prefix, sep, argument = spec.partition(":")
    if not sep or not argument or prefix not in FAMILIES:
        raise ValueError(f"unknown encoder {spec!r}: expected one of {encoder_usage()}")
    known = FAMILIES[prefix].arguments
    if known is not None and argument not in known:
        raise ValueError(f"unknown encoder {spec!r}: {prefix} takes one of {', '.join(known)}")
    return prefix, argument


def _family_module(prefix: str):
    return importlib.import_module(f"ufd_lib.features.encoders.{FAMILIES[prefix].module}")


def random_stand_in(spec: str) -> str | None:
    """The random-weight encoder of the same architecture as the pretrained ``spec``, where the
    family knows one (``clip:ViT-B/16`` → ``random-clip:ViT-B/16``), else None."""
    try:
        prefix, argument = parse_encoder_spec(spec)
    except ValueError:
        return None
    stand_in = getattr(_family_module(prefix), "STAND_INS", {}).get(prefix)
    return stand_in(argument) if stand_in is not None else None


def load_encoder(spec: str, device: str | torch.device | None = None, allow_torchscript: bool = False) -> Encoder:
    """Resolve an encoder string such as ``clip:ViT-L/14`` into a frozen encoder.

    allow_torchscript: load a TorchScript checkpoint that is not one of OpenAI's published files
    (also enabled by ``UFD_ALLOW_TORCHSCRIPT=1``). Raises ValueError for an unknown spec,
    :class:`EncoderUnavailable` when the weights cannot be had, :class:`CheckpointRefused` for a
    file refused as given.
    """
    from ufd_lib.devices import resolve_device

    prefix, argument = parse_encoder_spec(spec)
    options = LoadOptions(resolve_device(device), allow_torchscript or config.env_flag("UFD_ALLOW_TORCHSCRIPT"))
    encoder = _family_module(prefix).LOADERS[prefix](argument, options)
    encoder.model.eval().requires_grad_(False)
    return encoder


def weights_notice(encoder: Encoder) -> str:
    """Which weights an encoder runs on, in one line: its registry string, weights file, SHA-256
    and, for CLIP, whether they are OpenAI's published checkpoint; or that they are random."""
    if encoder.checkpoint_path is None:
        return f"encoder {encoder.name}: RANDOM weights, no weights file (id {encoder.checkpoint_sha256})"
    parts = [f"encoder {encoder.name}", f"weights {encoder.checkpoint_path}", f"SHA-256 {encoder.checkpoint_sha256}"]
    if parse_encoder_spec(encoder.name)[0] == "clip":
        parts.append("OpenAI's published checkpoint" if encoder.checkpoint_official
                     else "NOT one of OpenAI's published checkpoints")
    return ", ".join(parts)
