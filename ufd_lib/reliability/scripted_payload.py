"""A hostile TorchScript module for the self-check and the tests: saved with ``torch.jit.script``,
its archive carries code that ``torch.jit.load`` runs (``__setstate__``), here creating a file.
It lives in its own module because TorchScript compiles a class from its source file."""
from __future__ import annotations

import torch


class ScriptedPayload(torch.nn.Module):
    """Loading a saved copy writes 8 bytes ("AAAAAAAA") to ``marker``, a path chosen at save time."""

    def __init__(self, marker: str):
        super().__init__()
        self.marker = marker
        self.written = torch.zeros(8, dtype=torch.uint8)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return images

    @torch.jit.export
    def __getstate__(self) -> tuple[str, bool]:
        return (self.marker, self.training)

    @torch.jit.export
    def __setstate__(self, state: tuple[str, bool]) -> None:
        self.marker = state[0]
        self.training = state[1]
        # kept in an attribute, or TorchScript drops the call as dead code
        self.written = torch.from_file(state[0], shared=True, size=8, dtype=torch.uint8).fill_(65)
