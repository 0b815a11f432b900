"""Stand-ins for the newer benchmarks in the smoke profile: images of the synthetic smoke
benchmark laid out as each layout adapter expects (GenImage folders, 0_real/1_fake test splits,
plain folders, SPAI CSV lists, ImagiNet annotations). THESE ARE NOT THE BENCHMARKS' DATA; they
let notebook 12 run every adapter, the bias card and its control offline.

One stand-in is deliberately format-biased, as DiffusionForensics is documented to be: its reals
are re-encoded as JPEG quality 75 and its fakes stay PNG, so its bias card must be flagged.
Each stand-in also holds files its adapter must not read (a ``train/`` split, rows of another
split), so a wrong adapter shows in the counts.
"""
from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from ufd_lib.data.discovery import collect_images
from ufd_lib.data.image_sets import Benchmark, find_test_set

STAND_IN_VERSION = 1
MARKER = "stand_ins.json"
BIASED_JPEG_QUALITY = 75

Layout = Callable[[Path, list[str], list[str]], str]  # (folder, reals, fakes) -> what follows NAME=


def _copy(paths: list[str], folder: Path, jpeg_quality: int | None = None) -> list[str]:
    """Copy ``paths`` into ``folder`` as 000000.png, ... (or re-encoded as JPEG at ``jpeg_quality``);
    returns the new names relative to ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    names = []
    for index, path in enumerate(paths):
        if jpeg_quality is None:
            name = f"{index:06d}.png"
            shutil.copyfile(path, folder / name)
        else:
            name = f"{index:06d}.jpg"
            with Image.open(path) as image:
                image.convert("RGB").save(folder / name, format="JPEG", quality=jpeg_quality)
        names.append(name)
    return names


def _genimage(folder: Path, reals: list[str], fakes: list[str]) -> str:
    generator = folder / "stable_diffusion_v_1_4"
    _copy(reals, generator / "imagenet_ai_0419_sdv4" / "val" / "nature")
    _copy(fakes, generator / "imagenet_ai_0419_sdv4" / "val" / "ai")
    _copy(fakes[:3], generator / "imagenet_ai_0419_sdv4" / "train" / "nature")  # never read
    _copy(reals[:3], generator / "imagenet_ai_0419_sdv4" / "train" / "ai")
    return f"genimage:{generator}"


def _test_split(adapter: str, subset: str) -> Layout:
    def lay_out(folder: Path, reals: list[str], fakes: list[str]) -> str:
        _copy(reals, folder / "test" / subset / "0_real")
        _copy(fakes, folder / "test" / subset / "1_fake")
        _copy(fakes[:3], folder / "train" / "0_real")  # never read
        return f"{adapter}:{folder}"

    return lay_out


def _folders(jpeg_reals: bool) -> Layout:
    def lay_out(folder: Path, reals: list[str], fakes: list[str]) -> str:
        _copy(reals, folder / "real", BIASED_JPEG_QUALITY if jpeg_reals else None)
        _copy(fakes, folder / "fake")
        return f"folders:{folder / 'real'}:{folder / 'fake'}"

    return lay_out


def _spai(folder: Path, reals: list[str], fakes: list[str]) -> str:
    rows = [f"coco/{name},0,test" for name in _copy(reals, folder / "coco")]
    rows += [f"flux/{name},1,test" for name in _copy(fakes, folder / "flux")]
    rows += [f"flux/{name},1,train" for name in _copy(reals[:3], folder / "train_only")]  # another split
    (folder / "test.csv").write_text("image,class,split\n" + "\n".join(rows) + "\n")
    return f"spai:{folder / 'test.csv'}"


def _imaginet(folder: Path, reals: list[str], fakes: list[str]) -> str:
    rows = [f"./imagenet/{name},0,0,4,8" for name in _copy(reals, folder / "imagenet")]
    rows += [f"./sd/{name},1,0,2,3" for name in _copy(fakes, folder / "sd")]
    (folder / "annotations").mkdir()
    (folder / "annotations" / "test_annotations.txt").write_text("\n".join(rows) + "\n")
    return f"imaginet:{folder / 'annotations' / 'test_annotations.txt'}:{folder}"


@dataclass(frozen=True)
class StandIn:
    """key: the manifest set it stands in for; source: the smoke test set whose images it uses;
    layout: how it lays them out and names its adapter."""

    key: str
    source: str
    layout: Layout


STAND_INS = (
    StandIn("genimage_sd14", "guided", _genimage),
    StandIn("synthbuster_dalle3", "dalle", _folders(jpeg_reals=False)),
    StandIn("aigibench_flux1_dev", "ldm_200", _test_split("aigibench", "FLUX1-dev")),
    StandIn("wildrf_reddit", "stylegan", _test_split("wildrf", "reddit")),
    StandIn("spai_test", "biggan", _spai),
    StandIn("imaginet_test", "glide_100_27", _imaginet),
    StandIn("dire_lsun_adm", "gaugan", _folders(jpeg_reals=True)),  # format-biased, as DiffusionForensics
)


def generate_newer_stand_ins(benchmark: Benchmark, root: Path) -> list[str]:
    """Lay out the stand-ins under ``root`` (reused when ``root/stand_ins.json`` records this
    version and the same sources) and return their set specifications, ``KEY=ADAPTER:PATH[:PATH]``."""
    root = Path(root)
    wanted = {"version": STAND_IN_VERSION, "sources": {s.key: s.source for s in STAND_INS}}
    marker = root / MARKER
    if marker.is_file():
        recorded = json.loads(marker.read_text())
        if {key: recorded.get(key) for key in wanted} == wanted:
            return recorded["specs"]
    if root.exists():
        shutil.rmtree(root)
    specs = []
    for stand_in in STAND_INS:
        images = collect_images(find_test_set(benchmark, stand_in.source))
        reals = [image.path for image in images if image.label == 0]
        fakes = [image.path for image in images if image.label == 1]
        specs.append(f"{stand_in.key}={stand_in.layout(root / stand_in.key, reals, fakes)}")
    marker.write_text(json.dumps({**wanted, "specs": specs}, indent=2) + "\n")  # last: a marker means a full tree
    return specs
