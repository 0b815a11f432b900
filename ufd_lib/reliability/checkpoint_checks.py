"""Reliability checks of weight files: pickled code, crafted TorchScript, non-finite weights,
state dicts that do not fit. Each must be refused without running anything."""
from __future__ import annotations

import warnings
from pathlib import Path

from ufd_lib.reliability.check import Check


class _Payload:
    """Pickled object whose loading would create ``marker`` (what a hostile checkpoint does)."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.write_text, (self.marker, "code ran"))


def check_pickle_payloads(work: Path) -> Check:
    """Checkpoints carrying code: the probe loader and the CLIP checkpoint loader refuse them."""
    import torch

    from ufd_lib.classifiers.linear_probe import LinearProbe, ProbeFileError
    from ufd_lib.features.encoders import EncoderUnavailable
    from ufd_lib.features.encoders.clip import load_clip_state_dict

    loaders = {"linear probe": (LinearProbe.load, ProbeFileError),
               "CLIP checkpoint": (load_clip_state_dict, EncoderUnavailable)}
    fine = 0
    for index, (what, (load, refusal)) in enumerate(loaders.items()):
        marker, path = work / f"ran-{index}", work / f"hostile-{index}.pth"
        torch.save({"weight": _Payload(marker)}, path)
        try:
            load(path)
            refused = False
        except refusal:
            refused = True
        fine += refused and not marker.exists()
    return Check("checkpoints that carry pickled code", len(loaders), fine, None,
                 "refused by torch.load(weights_only=True); the payload never ran")


def write_scripted_payload(path: Path, marker: Path) -> Path:
    """A real TorchScript archive whose ``__setstate__``, run by ``torch.jit.load``, creates
    ``marker`` (8 bytes, through ``torch.from_file``): what a crafted "checkpoint" can do."""
    import torch

    from ufd_lib.reliability.scripted_payload import ScriptedPayload

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch.jit.script's deprecation notice
        torch.jit.script(ScriptedPayload(str(marker))).save(str(path))
    return path


def check_torchscript_payload(work: Path) -> Check:
    """A crafted TorchScript archive as ``--encoder clip:<file>``: refused, its code never runs."""
    from ufd_lib.features.encoders import CheckpointRefused, load_encoder

    marker = work / "payload-ran"
    path = write_scripted_payload(work / "crafted.pt", marker)
    try:
        load_encoder(f"clip:{path}", "cpu")
        refused, message = False, "loaded"
    except CheckpointRefused as error:
        refused, message = "--allow-torchscript" in str(error), str(error).split(" (SHA-256")[0]
    except Exception as error:  # loaded (its code ran), then failed as something else
        refused, message = False, f"not refused before loading: {type(error).__name__}"
    fine = refused and not marker.exists()
    return Check("crafted TorchScript archive given as a CLIP checkpoint", 1, int(fine), None,
                 f"refused before torch.jit.load, no file written; message: {message}")


def check_non_finite_weights(work: Path) -> Check:
    """NaN in a CLIP state dict and in a probe: refused at load, naming the file and the tensor."""
    import torch

    from ufd_lib.classifiers.linear_probe import LinearProbe, ProbeFileError
    from ufd_lib.features.encoders import EncoderUnavailable, load_encoder
    from ufd_lib.features.encoders.clip import random_clip_state_dict

    state = random_clip_state_dict("tiny")
    state["visual.proj"][0, 0] = float("nan")
    clip_file, probe_file = work / "nan-clip.pt", work / "nan-probe.pth"
    torch.save(state, clip_file)
    torch.save({"weight": torch.tensor([[0.5, float("inf")]]), "bias": torch.zeros(1)}, probe_file)
    cases = ((lambda: load_encoder(f"clip:{clip_file}", "cpu"), EncoderUnavailable, clip_file, "visual.proj"),
             (lambda: LinearProbe.load(probe_file), ProbeFileError, probe_file, "weight"))
    fine = 0
    for load, refusal, path, tensor in cases:
        try:
            load()
        except refusal as error:
            fine += str(path) in str(error) and repr(tensor) in str(error)
    return Check("NaN or infinite weights in a CLIP state dict and in a probe", len(cases), fine, None,
                 "refused at load, naming the file and the tensor")


def check_mismatched_state_dicts(work: Path) -> Check:
    """CLIP state dicts with a missing and with a misshapen key: one line naming the key."""
    import torch

    from ufd_lib.checkpoints import CheckpointMismatch
    from ufd_lib.features.encoders import load_encoder
    from ufd_lib.features.encoders.clip import random_clip_state_dict

    missing = random_clip_state_dict("tiny")
    del missing["visual.ln_post.weight"]
    misshapen = random_clip_state_dict("tiny")
    misshapen["visual.proj"] = misshapen["visual.proj"][:, :10]
    fine = 0
    for name, (state, key) in {"missing": (missing, "visual.ln_post.weight"),
                               "misshapen": (misshapen, "visual.proj")}.items():
        path = work / f"{name}.pt"
        torch.save(state, path)
        try:
            load_encoder(f"clip:{path}", "cpu")
        except CheckpointMismatch as error:
            fine += "\n" not in str(error) and str(path) in str(error) and key in str(error)
    return Check("CLIP state dicts with a missing or a misshapen key", 2, fine, None,
                 "refused in one line naming the file and the key (exit status 2)")
