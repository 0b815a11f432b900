"""Frozen image encoders named by a string (``clip:ViT-L/14``), resolved in one registry.

:mod:`~ufd_lib.features.encoders.registry` owns the look-up and the table of families; each
family is one module (:mod:`~ufd_lib.features.encoders.clip`,
:mod:`~ufd_lib.features.encoders.torchvision_models`, :mod:`~ufd_lib.features.encoders.detector`)
exporting its ``LOADERS``. Adding a family is one module and one line in ``registry.FAMILIES``.
The names below load on first use, so importing this package does not import torch.
"""
from __future__ import annotations

import importlib

_PUBLIC = {
    "Encoder": "encoder",
    "CheckpointRefused": "registry",
    "EncoderUnavailable": "registry",
    "LoadOptions": "registry",
    "available_prefixes": "registry",
    "encoder_usage": "registry",
    "load_encoder": "registry",
    "parse_encoder_spec": "registry",
    "random_stand_in": "registry",
    "weights_notice": "registry",
}

__all__ = sorted(_PUBLIC)


def __getattr__(name: str):
    if name not in _PUBLIC:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{_PUBLIC[name]}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
