"""The CLIP family of the encoder registry: OpenAI's published checkpoints, local checkpoint
files and seeded random-weight CLIPs, all built by ``clip.model.build_model`` from a state dict.

- ``clip:<official name>`` (``clip:ViT-L/14`` is the paper's): OpenAI's published checkpoint,
  the file of its official name in :func:`ufd_lib.config.weights_dir`. The file must have the
  SHA-256 OpenAI publishes in its download URL; one that differs is refused, never replaced.
  A missing file is downloaded (unless ``UFD_OFFLINE``), checksum-verified and renamed into
  place. It is then read as ``clip:/path`` reads it.
- ``clip:/path/to/checkpoint.pt``: a local checkpoint, either a plain state dict (read with
  ``weights_only=True``) or a TorchScript archive, OpenAI's format. Loading a TorchScript archive
  runs code stored in it, so only OpenAI's published files (by SHA-256) are loaded as such,
  unless the user opts in (``--allow-torchscript`` or ``UFD_ALLOW_TORCHSCRIPT=1``).
- ``random-clip:<size>``: CLIP with seeded random weights, built from a state dict by the same
  ``clip.model.build_model`` path. For tests and the embedded benchmark only: its features
  carry no knowledge of natural images. Every size has a 768-d output like ViT-L/14.
"""
from __future__ import annotations

import hashlib
import io
import os
import urllib.error
import urllib.request
import warnings
import zipfile
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from ufd_lib import config
from ufd_lib.atomic_files import atomic_write
from ufd_lib.checkpoints import MESSAGE_LIMIT, CheckpointMismatch, load_checkpoint, read_checkpoint, require_finite
from ufd_lib.features.encoders.encoder import Encoder, LayerTokens
from ufd_lib.features.encoders.registry import CheckpointRefused, EncoderUnavailable, LoadOptions
from ufd_lib.messages import one_line

CHECKPOINT_KIND = "CLIP checkpoint (TorchScript archive or state dict)"
DOWNLOAD_TIMEOUT_S = 20  # per socket operation, so a dead network fails in seconds


def import_clip():
    """``import clip`` without its pkg_resources deprecation warning (openai-clip 1.0.1)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="pkg_resources is deprecated", category=UserWarning)
        import clip
        import clip.model
    return clip


def _finish_clip(model: nn.Module, device: torch.device) -> nn.Module:
    """Device and dtype handling of ``clip.load``'s non-JIT branch: fp16 on CUDA, fp32 on CPU."""
    model = model.to(device)
    if device.type == "cpu":
        model.float()
    return model


def clip_layer_tokens(model: nn.Module, images: torch.Tensor,
                      layers: tuple[int, ...]) -> tuple[torch.Tensor, dict[int, torch.Tensor]]:
    """CLIP's ``encode_image`` step by step, keeping the class token of the residual stream.

    images: (n, 3, 224, 224) on the model's device. Returns (the final embedding (n, output_dim),
    exactly ``encode_image``'s, {layer: (n, width)}) in the model's dtype. Layer 0 is the stream
    entering block 1 (after ``ln_pre``), layer L the output of block L; the class token is
    position 0 of the sequence, the first dimension in the transformer's (seq, batch, width) layout.
    """
    visual = model.visual
    x = visual.conv1(images.type(model.dtype))
    x = x.reshape(x.shape[0], x.shape[1], -1).permute(0, 2, 1)
    cls = visual.class_embedding.to(x.dtype) + torch.zeros(x.shape[0], 1, x.shape[-1], dtype=x.dtype, device=x.device)
    x = visual.ln_pre(torch.cat([cls, x], dim=1) + visual.positional_embedding.to(x.dtype))
    x = x.permute(1, 0, 2)
    tokens = {0: x[0]} if 0 in layers else {}
    for depth, block in enumerate(visual.transformer.resblocks, start=1):
        x = block(x)
        if depth in layers:
            tokens[depth] = x[0]
    final = visual.ln_post(x.permute(1, 0, 2)[:, 0, :])
    if visual.proj is not None:
        final = final @ visual.proj
    return final, tokens


def _clip_encoder(model: nn.Module, name: str, sha256: str, device: torch.device, path: Path | None = None) -> Encoder:
    embed_dim = model.visual.output_dim
    layer_tokens = None
    if hasattr(model.visual, "class_embedding"):  # a ViT; the ResNet CLIPs have no class token
        layer_tokens = LayerTokens(depth=len(model.visual.transformer.resblocks),
                                   width=model.visual.class_embedding.shape[-1], forward=clip_layer_tokens)
    return Encoder(model=model, name=name, checkpoint_sha256=sha256, device=device, embed_dim=embed_dim,
                   checkpoint_official=path is not None and is_official_sha256(sha256),
                   checkpoint_path=None if path is None else str(path), layer_tokens=layer_tokens)


def official_clip_checkpoints() -> dict[str, tuple[str, str]]:
    """Official name → (download URL, SHA-256) of OpenAI's published CLIP checkpoints; OpenAI
    embeds each file's SHA-256 in its URL (``.../models/<sha256>/<file>.pt``)."""
    return {name: (url, url.split("/")[-2]) for name, url in import_clip().clip._MODELS.items()}


def is_official_sha256(sha256: str) -> bool:
    return sha256 in {digest for _, digest in official_clip_checkpoints().values()}


def is_torchscript_archive(source: Path | bytes) -> bool:
    """OpenAI's released ``.pt`` files are TorchScript zips with a ``code/`` folder; state dicts
    have none. ``source``: a file's path, or its bytes."""
    handle = io.BytesIO(source) if isinstance(source, bytes) else source
    if not zipfile.is_zipfile(handle):
        return False
    with zipfile.ZipFile(handle) as archive:
        return any("/code/" in name for name in archive.namelist())


def _read_torchscript(path: Path, data: bytes, sha256: str, allow_torchscript: bool) -> dict[str, torch.Tensor]:
    """The state dict of a TorchScript archive (``data``, the bytes of ``path`` whose SHA-256 is
    ``sha256``), loaded only when it is an official file or the user opted in:
    ``torch.jit.load`` runs the archive's code (its ``__setstate__``)."""
    if not (is_official_sha256(sha256) or allow_torchscript):
        raise CheckpointRefused(
            f"{path} is a TorchScript archive that is not one of OpenAI's published CLIP checkpoints "
            f"(SHA-256 {sha256}); loading it, or converting it, would run the code it contains. Use OpenAI's "
            "published file or a plain state dict, or, only if you trust where this file came from, "
            "pass --allow-torchscript (UFD_ALLOW_TORCHSCRIPT=1)."
        )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch.jit.load's deprecation notice
        state = torch.jit.load(io.BytesIO(data), map_location="cpu").state_dict()
    require_finite(state, path, EncoderUnavailable)
    return state


def load_clip_state_dict(path: Path, sha256: str | None = None, allow_torchscript: bool = False,
                         data: bytes | None = None) -> dict[str, torch.Tensor]:
    """Read a CLIP state dict from either checkpoint format (module docstring). ``data`` and
    ``sha256``: the file's bytes and their SHA-256 when already read (:func:`read_checkpoint`);
    otherwise the file is read once here. Pickled code never runs; TorchScript only as allowed
    above, decided and loaded from the same bytes."""
    path = Path(path)
    if data is None or sha256 is None:
        data, sha256 = read_checkpoint(path, EncoderUnavailable, CHECKPOINT_KIND)
    if is_torchscript_archive(data):
        return _read_torchscript(path, data, sha256, allow_torchscript)
    loaded = load_checkpoint(path, EncoderUnavailable, CHECKPOINT_KIND, data)
    if isinstance(loaded, dict) and isinstance(loaded.get("state_dict"), dict):
        loaded = loaded["state_dict"]
    if not isinstance(loaded, dict) or "visual.conv1.weight" not in loaded:
        raise EncoderUnavailable(f"{path}: the state dict does not hold CLIP weights (no 'visual.conv1.weight')")
    return loaded


def build_clip(state: dict[str, torch.Tensor], path: Path) -> nn.Module:
    """``clip.model.build_model`` (the architecture is read from the state dict's shapes), with
    its failures on a state dict that does not fit said in one line naming the keys."""
    try:
        return import_clip().model.build_model(dict(state))
    except KeyError as missing:  # a key build_model reads the architecture from
        raise CheckpointMismatch(f"{path}: the weights do not fit CLIP: missing {missing.args[0]!r}, "
                                 "which tells its architecture") from None
    except (RuntimeError, ValueError, IndexError, TypeError, AttributeError) as error:  # load_state_dict's report
        raise CheckpointMismatch(f"{path}: the weights do not fit the CLIP their shapes describe: "
                                 f"{one_line(error, MESSAGE_LIMIT)}") from None


def _clip_from_file(path: Path, name: str, options: LoadOptions, published_sha256: str | None = None) -> Encoder:
    """The one path from a CLIP checkpoint file to an Encoder, official name or local path: the
    file is read once, and its hash, the official-file decision and the load all use those bytes.
    ``published_sha256``: the hash the file must have (an official name), else refused."""
    data, sha256 = read_checkpoint(path, EncoderUnavailable, CHECKPOINT_KIND)
    if published_sha256 is not None and sha256 != published_sha256:
        raise CheckpointRefused(
            f"{path} is not OpenAI's {name.removeprefix('clip:')} checkpoint: its SHA-256 is {sha256}, the "
            f"published one is {published_sha256}. It was left as it is (never re-downloaded or overwritten); "
            f"to use this file anyway, pass --encoder clip:{path}"
        )
    model = _finish_clip(build_clip(load_clip_state_dict(path, sha256, options.allow_torchscript, data), path),
                         options.device)
    dtype = next(model.parameters()).dtype
    require_finite(model.state_dict(), f"{path} (in {str(dtype).removeprefix('torch.')}, the dtype it runs in)",
                   EncoderUnavailable)
    return _clip_encoder(model, name, sha256, options.device, path)


def _download_blocks(url: str):
    """The bytes at ``url`` in 1 MiB blocks; a network failure raises :class:`EncoderUnavailable`."""
    try:
        with urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT_S) as response:
            yield from iter(lambda: response.read(1 << 20), b"")
    except (urllib.error.URLError, OSError) as error:  # URLError, timeouts, resets
        raise EncoderUnavailable(f"{url}: {error}") from error


def download_verified(url: str, target: Path, expected_sha256: str) -> None:
    """Download ``url`` to ``target`` atomically: streamed to a temporary sibling, its SHA-256
    checked, then renamed into place. On any failure ``target`` is left as it was (absent) and
    :class:`EncoderUnavailable` (network, checksum) or ``OSError`` (disk) says why."""

    def write(handle) -> None:
        digest = hashlib.sha256()
        for block in _download_blocks(url):
            digest.update(block)
            handle.write(block)
        if digest.hexdigest() != expected_sha256:
            raise EncoderUnavailable(f"the download has SHA-256 {digest.hexdigest()}, not the published "
                                     f"{expected_sha256}; nothing was saved")

    target.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(target, write)


def _official_clip(name: str, options: LoadOptions, download_root: Path) -> Encoder:
    url, expected_sha256 = official_clip_checkpoints()[name]
    target = download_root / os.path.basename(url)
    if not target.is_file():
        how_to = (
            f"CLIP weights for {name!r} are not available offline. Download {url} and save it as "
            f"{target} (or set UFD_WEIGHTS_DIR to the folder that holds {target.name}), "
            f"or pass the file directly as --encoder clip:/path/to/{target.name}."
        )
        if config.offline():
            raise EncoderUnavailable(how_to + " (UFD_OFFLINE is set, so no download was tried.)")
        try:
            download_verified(url, target, expected_sha256)
        except (EncoderUnavailable, OSError) as error:
            raise EncoderUnavailable(f"{how_to} Download failed: {error}") from error
    return _clip_from_file(target, f"clip:{name}", options, expected_sha256)


def _clip_stand_in(argument: str) -> str | None:
    return f"random-clip:{argument}" if argument in RANDOM_CLIP_SHAPES else None


def load_clip(argument: str, options: LoadOptions) -> Encoder:
    if argument in official_clip_checkpoints():
        return _official_clip(argument, options, config.weights_dir())
    path = Path(argument).expanduser()
    if not path.is_file():
        raise EncoderUnavailable(
            f"clip:{argument}: no such official model or checkpoint file. Official names: "
            f"{', '.join(official_clip_checkpoints())}; or give the path of a .pt file."
        )
    return _clip_from_file(path, f"clip:{path}", options)


@dataclass(frozen=True)
class RandomClipShape:
    """Vision-tower shape of a random-weight CLIP; the text tower is kept minimal."""

    vision_width: int
    vision_layers: int
    patch_size: int
    embed_dim: int = 768
    image_resolution: int = 224


RANDOM_CLIP_SHAPES = {
    "tiny": RandomClipShape(vision_width=64, vision_layers=2, patch_size=32),
    "small": RandomClipShape(vision_width=256, vision_layers=4, patch_size=16),
    "ViT-B/32": RandomClipShape(vision_width=768, vision_layers=12, patch_size=32),
    "ViT-B/16": RandomClipShape(vision_width=768, vision_layers=12, patch_size=16),
    "ViT-L/14": RandomClipShape(vision_width=1024, vision_layers=24, patch_size=14),
}
RANDOM_CLIP_SEED = 0


def random_clip_state_dict(size: str, seed: int = RANDOM_CLIP_SEED) -> dict[str, torch.Tensor]:
    """State dict of a CLIP of the named shape with weights drawn from CLIP's own initialiser."""
    CLIP = import_clip().model.CLIP
    if size not in RANDOM_CLIP_SHAPES:
        raise ValueError(f"random-clip:{size}: unknown size; choose one of {', '.join(RANDOM_CLIP_SHAPES)}")
    shape = RANDOM_CLIP_SHAPES[size]
    generator_state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    try:
        model = CLIP(
            embed_dim=shape.embed_dim,
            image_resolution=shape.image_resolution,
            vision_layers=shape.vision_layers,
            vision_width=shape.vision_width,
            vision_patch_size=shape.patch_size,
            context_length=77,
            vocab_size=49408,
            transformer_width=64,
            transformer_heads=1,
            transformer_layers=1,
        )
    finally:
        torch.random.set_rng_state(generator_state)
    return model.state_dict()


def load_random_clip(size: str, options: LoadOptions) -> Encoder:
    model = import_clip().model.build_model(random_clip_state_dict(size))
    identity = f"random-clip:{size}:seed{RANDOM_CLIP_SEED}:torch{torch.__version__.split('+')[0]}"
    return _clip_encoder(_finish_clip(model, options.device), f"random-clip:{size}", identity, options.device)


LOADERS = {"clip": load_clip, "random-clip": load_random_clip}
STAND_INS = {"clip": _clip_stand_in}
