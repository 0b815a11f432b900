"""The one door for reading torch checkpoints: ``weights_only=True``, so nothing pickled runs;
every floating tensor finite; state dicts matched key by key and shape by shape against the
network they are for."""
from __future__ import annotations

import hashlib
import io
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn

from ufd_lib.hashing import FileRefused, read_regular_file
from ufd_lib.messages import one_line

SHOWN_KEYS = 3  # keys named per kind of mismatch; the rest are counted


class CheckpointMismatch(ValueError):
    """A state dict that does not fit its architecture (missing, unexpected or misshapen keys):
    bad input, the command line's exit status 2."""


# Characters kept of a library's report in a one-line error (torch lists every key of a state dict).
MESSAGE_LIMIT = 600


def first_non_finite(tensors, prefix: str = "") -> str | None:
    """Name (dotted path) of the first floating tensor holding a NaN or infinity in ``tensors``
    (a tensor, or dicts, lists and tuples of them), or None when all are finite."""
    if isinstance(tensors, torch.Tensor):
        finite = not tensors.is_floating_point() or bool(torch.isfinite(tensors).all())
        return None if finite else (prefix or "<tensor>")
    if isinstance(tensors, Mapping):
        items = tensors.items()
    elif isinstance(tensors, (list, tuple)):
        items = enumerate(tensors)
    else:
        return None
    for key, value in items:
        found = first_non_finite(value, f"{prefix}.{key}" if prefix else str(key))
        if found is not None:
            return found
    return None


def require_finite(tensors, path: Path | str, error: type[Exception]) -> None:
    """Raise ``error`` naming the file and a tensor when any floating tensor is NaN or infinite."""
    name = first_non_finite(tensors)
    if name is not None:
        raise error(f"{path}: tensor {name!r} holds NaN or infinite values; refusing these weights")


def read_checkpoint(path: Path | str, error: type[Exception], what: str) -> tuple[bytes, str]:
    """(the bytes of a checkpoint file, read once; their SHA-256, hex). A decision taken on the
    hash and the load that follows must both use these bytes (:func:`load_checkpoint`'s
    ``data``), so a file swapped in between is never the one loaded. Raises ``error`` naming
    the path when it is missing or not a regular file."""
    path = Path(path)
    if not path.is_file():
        raise error(f"{path}: no such {what} file")
    try:
        data = read_regular_file(path)
    except (OSError, FileRefused) as cause:
        raise error(f"{path}: cannot read this {what} file: {cause}") from None
    return data, hashlib.sha256(data).hexdigest()


def load_checkpoint(path: Path | str, error: type[Exception], what: str, data: bytes | None = None):
    """Tensors/dicts of a checkpoint file, loaded on CPU with ``weights_only=True``; from
    ``data`` (its bytes, :func:`read_checkpoint`) when given, ``path`` then only naming it.

    A missing file, one that cannot be loaded safely (foreign format, pickled objects), or one
    holding a NaN or infinite weight raises ``error`` with a message naming the path and the
    ``what`` that was expected (or the tensor).
    """
    path = Path(path)
    if data is None and not path.is_file():
        raise error(f"{path}: no such {what} file")
    try:
        loaded = torch.load(path if data is None else io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as cause:  # torch raises several types for foreign or unsafe files
        raise error(f"{path}: not a {what} file loadable safely (weights_only=True): {cause}") from cause
    require_finite(loaded, path, error)
    return loaded


def _named(keys: list[str]) -> str:
    shown = ", ".join(keys[:SHOWN_KEYS])
    return shown + (f" and {len(keys) - SHOWN_KEYS} more" if len(keys) > SHOWN_KEYS else "")


def state_dict_mismatch(expected: Mapping[str, torch.Tensor], given: Mapping) -> str | None:
    """One line naming the missing, unexpected and misshapen keys of ``given`` against
    ``expected`` (a network's ``state_dict()``), or None when every key and shape fits. Batch
    norm's ``num_batches_tracked`` may be absent (files saved before PyTorch 0.4.1 lack it and
    batch norm fills it in)."""
    missing = [key for key in expected if key not in given and not key.endswith("num_batches_tracked")]
    unexpected = [key for key in given if key not in expected]
    misshapen = [f"{key} {list(getattr(given[key], 'shape', ()))} (network {list(expected[key].shape)})"
                 for key in expected if key in given
                 and (not isinstance(given[key], torch.Tensor) or given[key].shape != expected[key].shape)]
    parts = [f"{len(keys)} {kind} ({_named(keys)})"
             for kind, keys in (("missing", missing), ("unexpected", unexpected), ("misshapen", misshapen)) if keys]
    return "; ".join(parts) or None


def load_state_dict_strictly(network: nn.Module, state: Mapping, path: Path | str, what: str,
                             error: type[Exception] = CheckpointMismatch) -> nn.Module:
    """``network.load_state_dict(state)`` (strict); a mismatch raises ``error`` in one line naming
    the file, the architecture ``what`` and the missing, unexpected and misshapen keys."""
    try:
        network.load_state_dict(state)
    except (RuntimeError, TypeError, AttributeError) as cause:  # torch's report of keys that do not fit
        problem = state_dict_mismatch(network.state_dict(), state) if isinstance(state, Mapping) else None
        raise error(f"{path}: the weights do not fit {what}: {problem or one_line(cause, MESSAGE_LIMIT)}") from None
    return network
