"""Hostile inputs: malformed command lines and mutated image files never crash the process."""
from __future__ import annotations

import io
import zlib

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from ufd_lib.cli import main
from ufd_lib.preprocess import ImageRejected, decode_image

FLAGS = ["--encoder", "--classifier", "--train", "--k", "--probe", "--test", "--out", "--cache-dir",
         "--jpeg-quality", "--blur-sigma", "--sampling", "--strict", "--device", "--batch-size", "--workers",
         "--max-pixels", "--json", "--val", "--profile", "--only"]
token = st.one_of(
    st.sampled_from(FLAGS),
    st.sampled_from(["knn", "linear", "all", "official", "-1", "0", "nan", "inf", "1e309", "x=", "=y", "a=b:c",
                     "random-clip:nope", "clip:", ":", "", "101", "cpu", "smoke"]),
    st.text(alphabet=st.characters(blacklist_characters="/.\x00", blacklist_categories=("Cs",)), max_size=12),
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(command=st.sampled_from(["evaluate", "train-probe", "predict", "reproduce"]),
       arguments=st.lists(token, max_size=8))
def test_malformed_command_lines_exit_2_with_one_line(command, arguments, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    try:
        status = main([command, *arguments])
    except SystemExit as exit_:
        status = exit_.code
    error = capsys.readouterr().err
    assert status == 2, (arguments, error)
    lines = [line for line in error.splitlines() if line.strip()]
    assert len(lines) == 1 and "error:" in lines[0] and "Traceback" not in error


def _encoded(fmt: str) -> bytes:
    rng = np.random.default_rng(0)
    image = Image.fromarray(rng.integers(0, 255, (24, 40, 3), dtype=np.uint8))
    if fmt == "GIF":
        image = image.convert("P")
    buffer = io.BytesIO()
    image.save(buffer, format=fmt)
    return buffer.getvalue()


SEEDS = {fmt: _encoded(fmt) for fmt in ("PNG", "JPEG", "BMP", "WEBP", "GIF", "TIFF")}


@settings(max_examples=400, deadline=None)
@given(fmt=st.sampled_from(sorted(SEEDS)), cut=st.integers(0, 400),
       flips=st.lists(st.tuples(st.integers(0, 10_000), st.integers(1, 255)), max_size=6))
def test_mutated_images_decode_or_are_rejected(fmt, cut, flips):
    data = bytearray(SEEDS[fmt])
    for position, mask in flips:
        data[position % len(data)] ^= mask
    data = bytes(data[: max(0, len(data) - cut)])
    try:
        image = decode_image(data, max_pixels=10_000_000)
    except ImageRejected as rejection:
        assert str(rejection)
    else:
        assert image.mode == "RGB" and image.size[0] * image.size[1] <= 10_000_000


def test_bomb_header_refused_before_decoding():
    png = bytearray(SEEDS["PNG"])
    png[16:24] = (60_000).to_bytes(4, "big") + (60_000).to_bytes(4, "big")  # IHDR width, height
    png[29:33] = zlib.crc32(bytes(png[12:29])).to_bytes(4, "big")
    with pytest.raises(ImageRejected, match="decompression bomb"):
        decode_image(bytes(png))
