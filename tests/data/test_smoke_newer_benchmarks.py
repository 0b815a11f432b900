"""The smoke stand-ins lay out each set as its adapter expects: every adapter finds exactly the
set's reals and fakes (never the decoys of another split), and only the format-biased stand-in
is flagged by its bias card."""
from __future__ import annotations

from pathlib import Path

from conftest import write_image

from ufd_lib.data.bias_card import bias_card
from ufd_lib.data.discovery import discover_images
from ufd_lib.data.image_sets import Benchmark, ImageSetSpec, parse_set_spec
from ufd_lib.data.smoke_newer_benchmarks import STAND_INS, generate_newer_stand_ins

N = 6


def _benchmark(root: Path) -> Benchmark:
    sets = []
    for stand_in in STAND_INS:
        for i in range(N):
            write_image(root / stand_in.source / "0_real" / f"{i}.png", seed=i, size=(40, 32))
            write_image(root / stand_in.source / "1_fake" / f"{i}.png", seed=100 + i, size=(40, 32))
        sets.append(ImageSetSpec(stand_in.source, root / stand_in.source, root / stand_in.source))
    train = ImageSetSpec("progan", root, root)
    return Benchmark(train, train, sets, {})


def test_every_stand_in_is_read_by_its_adapter_as_laid_out(tmp_path: Path) -> None:
    specs = generate_newer_stand_ins(_benchmark(tmp_path / "smoke"), tmp_path / "newer")
    assert [text.split("=", 1)[0] for text in specs] == [s.key for s in STAND_INS]
    adapters = {parse_set_spec(text).adapter for text in specs}
    assert adapters == {"genimage", "folders", "aigibench", "wildrf", "spai", "imaginet"}
    flagged = {}
    for text in specs:
        spec = parse_set_spec(text)
        found = discover_images(spec)
        assert [image.label for image in found.images] == [0] * N + [1] * N, spec.name
        flagged[spec.name] = bias_card(spec).flagged
    assert [name for name, is_flagged in flagged.items() if is_flagged] == ["dire_lsun_adm"]
    assert generate_newer_stand_ins(_benchmark(tmp_path / "smoke"), tmp_path / "newer") == specs  # reused
