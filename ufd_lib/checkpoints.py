"""The one door for reading torch checkpoints: ``weights_only=True``, so nothing pickled runs."""
from __future__ import annotations

from pathlib import Path

import torch


def load_checkpoint(path: Path | str, error: type[Exception], what: str):
    """Tensors/dicts of a checkpoint file, loaded on CPU with ``weights_only=True``.

    A missing file, or one that cannot be loaded safely (foreign format, pickled objects),
    raises ``error`` with a message naming the path and the ``what`` that was expected.
    """
    path = Path(path)
    if not path.is_file():
        raise error(f"{path}: no such {what} file")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as cause:  # torch raises several types for foreign or unsafe files
        raise error(f"{path}: not a {what} file loadable safely (weights_only=True): {cause}") from cause
