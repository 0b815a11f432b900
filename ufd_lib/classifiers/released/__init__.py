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


def released_probe_caution(encoder) -> str | None:
    """One line when ``encoder`` (an :class:`~ufd_lib.features.encoders.Encoder`) runs on other
    weights than those the released probe was trained on, OpenAI's published CLIP ViT-L/14 file:
    the probe's scores are then not UnivFD's. None when the weights are that file."""
    from ufd_lib.features.encoders import weights_notice
    from ufd_lib.features.encoders.clip import official_clip_checkpoints

    if encoder.checkpoint_sha256 == official_clip_checkpoints()["ViT-L/14"][1]:
        return None
    return (f"the released probe was trained on the features of OpenAI's published CLIP ViT-L/14 file, "
            f"not on these ({weights_notice(encoder)}); its scores are not UnivFD's")
