"""Shared fixtures: tiny image trees and a tiny random-weight CLIP loaded through the real path.

Everything is offline, on CPU and under ``tmp_path``; the feature cache is redirected away
from ``~/.cache`` for every test.
"""
from __future__ import annotations

import io
import time
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

TINY_ENCODER = "random-clip:tiny"
REPO_ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def _cache_in_tmp(tmp_path_factory, monkeypatch):
    """No test may write features to the user's cache, whatever it forgets to pass."""
    monkeypatch.setenv("UFD_CACHE_DIR", str(tmp_path_factory.mktemp("ufd-cache-env")))


def settle_timestamps() -> None:
    """Wait until the files written so far are no longer racy for the file-identity memo on a
    fine-timestamp file system (older than its clock tick), so a repeat run may recognise them."""
    from ufd_lib.racy_timestamps import CLOCK_TICK_NS

    time.sleep(2 * CLOCK_TICK_NS / 1e9)


@pytest.fixture(scope="session")
def tiny_encoder():
    """``random-clip:tiny`` on CPU, built once per session (768-d output)."""
    from ufd_lib.features.encoders import load_encoder

    return load_encoder(TINY_ENCODER, "cpu")


def noise_array(seed: int, size: tuple[int, int] = (32, 32)) -> np.ndarray:
    """uint8 (height, width, 3) noise, distinct for every seed. size: (width, height)."""
    width, height = size
    return np.random.default_rng(seed).integers(0, 256, size=(height, width, 3), dtype=np.uint8)


def write_image(path: Path, seed: int = 0, size: tuple[int, int] = (32, 32), fmt: str | None = None) -> Path:
    """Write a noise RGB image (format from the suffix unless ``fmt``); returns ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(noise_array(seed, size)).save(path, format=fmt or _format_of(path))
    return path


def _format_of(path: Path) -> str:
    suffix = path.suffix.lower()
    return {".jpg": "JPEG", ".jpeg": "JPEG", ".png": "PNG", ".bmp": "BMP", ".webp": "WEBP"}.get(suffix, "PNG")


def png_bytes(seed: int = 0, size: tuple[int, int] = (32, 32)) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(noise_array(seed, size)).save(buffer, format="PNG")
    return buffer.getvalue()


_next_seed = iter(range(10_000, 10_000_000))


def make_image_set(
    root: Path, n_real: int, n_fake: int, categories: Iterable[str] | None = None, size=(32, 32)
) -> Path:
    """Build ``root/[category/]{0_real,1_fake}/NNN.png`` with distinct noise images; returns root.

    With categories, each category gets ``n_real`` real and ``n_fake`` fake images.
    """
    root = Path(root)
    for category in list(categories) if categories else [None]:
        base = root / category if category else root
        for class_dir, count in (("0_real", n_real), ("1_fake", n_fake)):
            for index in range(count):
                write_image(base / class_dir / f"{index:03d}.png", seed=next(_next_seed), size=size)
    return root


def ufd(capsys, *argv) -> tuple[int, str, str]:
    """Run ``ufd argv`` in-process → (exit status, stdout, stderr); argparse errors exit 2."""
    from ufd_lib.cli.main import main

    try:
        code = main([str(a) for a in argv])
    except SystemExit as exit_:
        code = exit_.code
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def lost_values(table) -> list[str]:
    """Every cell of ``ufd_lib.report.table_format.display_table(table)`` (what the index page
    and the Markdown tables show) that misstates its number: a non-zero value shown as zero or
    with the other sign, off by more than 5 %, or a whole count or setting shown with decimals."""
    import math

    import pandas as pd

    from ufd_lib.report.table_format import display_table, is_count_column, is_setting_column

    shown = display_table(table)
    columns = [(table.index.name, list(table.index), list(shown.index))] if table.index.dtype.kind == "f" else []
    columns += [(column, list(table[column]), list(shown[column])) for column in table.columns]
    problems = []
    for name, values, texts in columns:
        for value, text in zip(values, texts):
            if not isinstance(value, (int, float, np.number)) or isinstance(value, bool) or pd.isna(value):
                continue
            where = f"{name}: {value!r} shown as {text!r}"
            number = float(text)
            if value != 0 and (number == 0 or math.copysign(1, number) != math.copysign(1, value)
                               or abs(number - value) > 0.05 * abs(value)):
                problems.append(where)
            if (is_count_column(name) or is_setting_column(name)) and float(value).is_integer() and "." in text:
                problems.append(where)
    return problems


def subcommand_parsers(parser) -> dict:
    """{'evaluate': parser, 'data verify': parser, 'data manifest build': parser, ...} of ``parser``."""
    found = {}
    for action in parser._subparsers._group_actions:
        for name, sub in action.choices.items():
            found[name] = sub
            if sub._subparsers is not None:
                found.update({f"{name} {inner}": p for inner, p in subcommand_parsers(sub).items()})
    return found


def write_notebook(path: Path, sources: list[str]) -> None:
    """A minimal notebook for ``ufd reproduce``: a title, the papermill parameters cell, then one
    code cell per source."""
    import nbformat

    notebook = nbformat.v4.new_notebook()
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    parameters = nbformat.v4.new_code_cell(
        'profile = "smoke"\ndata_root = None\noutput_dir = "x"\ncache_dir = None\nencoder = None')
    parameters.metadata["tags"] = ["parameters"]
    notebook.cells = [nbformat.v4.new_markdown_cell("# t"), parameters, *map(nbformat.v4.new_code_cell, sources)]
    nbformat.write(notebook, path)
