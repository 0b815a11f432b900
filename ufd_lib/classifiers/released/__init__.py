"""The official UnivFD linear probe, shipped with the package (see README.md here).

``fc_weights.pth``: the authors' released probe for CLIP ViT-L/14 features, in the official
state-dict format ``{"weight": float32 [1, 768], "bias": float32 [1]}``. Its SHA-256 is pinned
(:data:`RELEASED_PROBE_SHA256`) and checked whenever it is loaded, so a replaced file is refused
rather than presented as the authors' release.
"""
from __future__ import annotations

from pathlib import Path

RELEASED_PROBE = Path(__file__).with_name("fc_weights.pth")
RELEASED_PROBE_SHA256 = "477100745713bcc957beb2b40859536859b6483fd6301b3b9293151b194c7847"
