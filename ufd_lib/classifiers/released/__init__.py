"""The official UnivFD linear probe, shipped with the package (see README.md here).

``fc_weights.pth``: the authors' released probe for CLIP ViT-L/14 features, in the official
state-dict format ``{"weight": float32 [1, 768], "bias": float32 [1]}``.
"""
from __future__ import annotations

from pathlib import Path

RELEASED_PROBE = Path(__file__).with_name("fc_weights.pth")
