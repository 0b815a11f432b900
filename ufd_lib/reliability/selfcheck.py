"""``ufd selfcheck``: the reliability report. Faults injected and survived, hostile inputs
tried and refused, and every result compared with a clean run.

Each check runs real code paths on generated data in a scratch folder (random-weight
``random-clip:tiny``, CPU, offline) and counts its cases and how many ended as they must:
the correct result (bit for bit equal to an uninterrupted run where there is one) or a
clear refusal (the error type and message the user would see). The report is a Markdown
table; its figures go into the README.
"""
from __future__ import annotations

import errno
import io
import json
import os
import random
import shutil
import tempfile
import time
import warnings
from collections.abc import Callable
from contextlib import contextmanager, redirect_stderr, redirect_stdout
from dataclasses import dataclass
from pathlib import Path
from unittest import mock

import numpy as np

from ufd_lib.reliability import fault_injection as faults


@dataclass
class Check:
    """One line of the report: ``cases`` tried, ``as_expected`` of them ended correctly;
    ``differences``: results that differ from a clean run (None where there is no clean run)."""

    name: str
    cases: int
    as_expected: int
    differences: int | None
    detail: str
    seconds: float = 0.0

    @property
    def passed(self) -> bool:
        return self.cases > 0 and self.as_expected == self.cases and not self.differences


def _timed(function: Callable[[], Check]) -> Check:
    started = time.perf_counter()
    check = function()
    check.seconds = time.perf_counter() - started
    return check


def check_kills(workload, work: Path, reference, trials: int, seed: int) -> Check:
    records = faults.kill_and_resume(workload, work, reference, trials=trials, seed=seed)
    killed = [r for r in records if r["killed"]]
    partial = [r for r in killed if 0 < r["committed_when_killed"] < len(reference)]
    same = sum(r["identical"] for r in records)
    return Check("SIGKILL at a random moment, then resumed", len(records), same, len(records) - same,
                 f"{len(killed)} killed mid-run ({len(partial)} with some chunks committed), "
                 f"{len(records) - len(killed)} finished before the kill")


def check_write_deaths(workload, work: Path, reference) -> Check:
    records = faults.die_in_every_write(workload, work, reference, calls=4)
    fine = sum(r["died"] and r["identical"] and r["chunk_leftovers"] == 0 for r in records)
    return Check("SIGKILL inside each step of writing a chunk (fsync, rename), then resumed", len(records), fine,
                 sum(not r["identical"] for r in records),
                 "deaths at the 1st..4th fsync and rename; no half-written or uncommitted file left after the rerun")


def check_concurrency(workload, work: Path, reference, rounds: int) -> Check:
    results = [faults.concurrent_extractions(workload, work / f"round-{i}", reference) for i in range(rounds)]
    fine = sum(r["all_finished"] and r["identical"] and r["duplicated"] <= faults.GROUP_IMAGES for r in results)
    duplicated = sum(r["duplicated"] for r in results)
    split = ", ".join("/".join(map(str, r["encoded"])) for r in results)
    return Check("two processes extracting into one cache at once", len(results), fine,
                 sum(not r["identical"] for r in results),
                 f"images encoded twice: {duplicated}; work split {split}")


def _flip(offset: int) -> Callable[[bytes], bytes]:
    """A damage that flips one bit of the byte at ``offset`` (negative: from the end)."""
    def damage(data: bytes) -> bytes:
        changed = bytearray(data)
        changed[offset] ^= 0x10
        return bytes(changed)
    return damage


# (what, file of the chunk it hits, how): each is caught by the chunk's commit record.
CHUNK_DAMAGE = (
    ("features truncated", ".features.npy", lambda data: data[: len(data) // 2]),
    ("one bit of a feature flipped", ".features.npy", _flip(-7)),
    ("one bit of a key flipped", ".keys.npy", _flip(-1)),
    ("commit record garbage", ".json", lambda data: b"{not json"),
)


def check_damaged_chunks(workload, work: Path, reference_root: Path, reference) -> Check:
    """Damage a committed chunk in each way of :data:`CHUNK_DAMAGE`; the next run must warn,
    set it aside and re-encode, ending equal to the reference."""
    fine, differences = 0, 0
    for index, (_, suffix, damage) in enumerate(CHUNK_DAMAGE):
        root = work / f"damage-{index}"
        shutil.copytree(reference_root, root)
        folder = faults.cache_folder(root)
        name = sorted(folder.glob("chunk-*.json"))[0].name[: -len(".json")]
        target = folder / f"{name}{suffix}"
        target.write_bytes(damage(target.read_bytes()))
        resumed = faults.run_extraction(workload, root, work / f"damage-{index}.json", delay=0)  # warns in the child
        same = resumed is not None and faults.stored_rows(folder) == reference
        set_aside = (folder / f"corrupt-{name}{suffix}").exists()
        fine += same and set_aside and resumed["encoded"] > 0
        differences += not same
    return Check("damaged cache chunks (truncated, bit-flipped, bad commit record)", len(CHUNK_DAMAGE), fine,
                 differences, "each detected by its checksum or record, set aside with a warning and re-encoded")


def _damaged_and_resumed(workload, work: Path, reference_root: Path, reference,
                         damage: Callable[[Path, str], object]) -> tuple[bool, bool]:
    """Copy the reference cache to ``work``, ``damage(setting folder, chunk name)`` its first
    chunk and run an extraction on it: (it ended equal to the reference with the chunk set aside
    and re-encoded, it differs from the reference)."""
    shutil.copytree(reference_root, work)
    folder = faults.cache_folder(work)
    name = sorted(folder.glob("chunk-*.json"))[0].name[: -len(".json")]
    damage(folder, name)
    resumed = faults.run_extraction(workload, work, work.with_name(f"{work.name}.json"), delay=0)  # warns in the child
    same = resumed is not None and faults.stored_rows(folder) == reference
    set_aside = any(folder.glob(f"corrupt-{name}.*"))
    return same and set_aside and resumed["encoded"] > 0, not same


def _rewrite_record(change: Callable[[dict], object]) -> Callable[[Path, str], None]:
    def damage(folder: Path, name: str) -> None:
        record = folder / f"{name}.json"
        record.write_text(json.dumps(change(json.loads(record.read_text()))))
    return damage


# Commit records that are valid JSON of the wrong type: each must be set aside like damage.
WRONG_TYPE_RECORDS = (
    lambda record: None,
    lambda record: [record],
    lambda record: 8,
    lambda record: {k: v for k, v in record.items() if k != "keys_sha256"},
    lambda record: {**record, "rows": str(record["rows"])},
    lambda record: {**record, "features_sha256": None},
)


def check_wrong_type_records(workload, work: Path, reference_root: Path, reference) -> Check:
    results = [_damaged_and_resumed(workload, work / f"record-{i}", reference_root, reference, _rewrite_record(change))
               for i, change in enumerate(WRONG_TYPE_RECORDS)]
    return Check("commit records of the wrong type (null, array, number, missing or mistyped field)", len(results),
                 sum(fine for fine, _ in results), sum(differs for _, differs in results),
                 "each set aside with a warning and re-encoded, never a TypeError")


def check_wrong_width(workload, work: Path, reference_root: Path, reference) -> Check:
    """A chunk whose features (and commit record, checksums included) have another width."""
    def forge(width: int) -> Callable[[Path, str], None]:
        def damage(folder: Path, name: str) -> None:
            rows = len(np.load(folder / f"{name}.keys.npy"))
            faults.forge_chunk(folder, name, np.ones((rows, width), dtype=np.float16))
        return damage

    widths = (512, 1024)
    results = [_damaged_and_resumed(workload, work / f"width-{width}", reference_root, reference, forge(width))
               for width in widths]
    return Check("cached features of the wrong width (512, 1024 columns in a 768-d setting)", len(results),
                 sum(fine for fine, _ in results), sum(differs for _, differs in results),
                 "set aside with a warning and re-encoded, never a broadcast error")


def _link_outside(suffix: str, outside: Path, copied: dict) -> Callable[[Path, str], None]:
    """A damage that moves a chunk's ``suffix`` file to ``outside`` (its bytes kept in ``copied``)
    and leaves a symbolic link to it in its place."""
    def damage(folder: Path, name: str) -> None:
        inside = folder / f"{name}{suffix}"
        copied[suffix] = inside.read_bytes()
        outside.write_bytes(copied[suffix])
        inside.unlink()
        inside.symlink_to(outside)
    return damage


def check_symlinked_chunks(workload, work: Path, reference_root: Path, reference) -> Check:
    """Each file of a chunk replaced by a symbolic link to an exact copy outside the cache: following
    the link would serve the right bytes, yet it must be refused, and the outside file left alone."""
    fine = differences = 0
    copied: dict[str, bytes] = {}
    suffixes = (".features.npy", ".keys.npy", ".json")
    for suffix in suffixes:
        outside = work / f"outside{suffix}"
        ok, differs = _damaged_and_resumed(workload, work / f"link{suffix}", reference_root, reference,
                                           _link_outside(suffix, outside, copied))
        links = list(faults.cache_folder(work / f"link{suffix}").glob(f"corrupt-chunk-*{suffix}"))
        untouched = outside.read_bytes() == copied[suffix] and len(links) == 1 and links[0].is_symlink()
        fine += ok and untouched
        differences += differs
    return Check("chunk files that are symbolic links to files outside the cache", len(suffixes), fine, differences,
                 "never read through: set aside (the link renamed, its target untouched) and re-encoded")


def check_orphans_removed(workload, work: Path, reference) -> Check:
    """A writer killed after renaming its features (and keys) file but before the commit record:
    the next run, holding the group's claim, must remove the orphans and end equal to a clean run."""
    fine = differences = 0
    for n in (3, 4):  # killed at the n-th rename, before it: setting.json's, the features', the keys', the record's
        cache_root = work / f"replace-{n}" / "cache"
        faults.run_extraction(workload, cache_root, cache_root.with_name("died.json"), delay=0, die_in=("replace", n))
        orphans = [p for p in faults.uncommitted_parts(faults.cache_folder(cache_root)) if p.suffix == ".npy"]
        resumed = faults.run_extraction(workload, cache_root, cache_root.with_name("resumed.json"), delay=0)
        same = resumed is not None and faults.stored_rows(faults.cache_folder(cache_root)) == reference
        fine += bool(orphans) and same and not faults.uncommitted_parts(faults.cache_folder(cache_root))
        differences += not same
    return Check("orphan chunk files of a writer killed before its commit record", 2, fine, differences,
                 "orphan .features.npy (and .keys.npy) removed by the next writer holding the group's claim")


def check_non_finite_features(workload, work: Path, reference_root: Path, reference) -> Check:
    """NaN, inf and float16 overflow written: refused naming the image, nothing written. NaN and
    -inf found in a committed chunk (with a matching record): set aside and re-encoded."""
    from ufd_lib.features.feature_cache import FeatureCache, FeatureCacheError

    fine = differences = 0
    refused_values = (np.nan, np.inf, 1e5)
    for index, value in enumerate(refused_values):
        root = work / f"written-{index}"
        shutil.copytree(reference_root, root)
        folder = faults.cache_folder(root)
        before = sorted(p.name for p in folder.iterdir())
        cache = FeatureCache(root, json.loads((folder / "setting.json").read_text()))
        digests = [bytes([index, row]) * 16 for row in range(4)]
        features = np.zeros((4, len(next(iter(reference.values()))) // 2), dtype=np.float32)  # float16 rows
        features[2, 5] = value
        try:
            cache.write_chunk(digests, features)
            refused = False
        except FeatureCacheError as error:
            refused = digests[2].hex() in str(error) and "nothing was written" in str(error)
        same = faults.stored_rows(folder) == reference and sorted(p.name for p in folder.iterdir()) == before
        fine += refused and same
        differences += not same
    found_values = (np.nan, -np.inf)
    for index, value in enumerate(found_values):
        def damage(folder: Path, name: str, value=value) -> None:
            features = np.load(folder / f"{name}.features.npy")
            features[0, 0] = value
            faults.forge_chunk(folder, name, features)

        ok, differs = _damaged_and_resumed(workload, work / f"found-{index}", reference_root, reference, damage)
        fine += ok
        differences += differs
    return Check("non-finite features (NaN, ±inf, beyond float16)", len(refused_values) + len(found_values), fine,
                 differences, "refused when written (naming the image, nothing written); set aside and re-encoded "
                 "when found in a chunk")


def check_unwritable_cache(work: Path) -> Check:
    """A cache root that is a file: a clear FeatureCacheError, nothing created."""
    from ufd_lib.features.encoders import load_encoder
    from ufd_lib.features.extract import extract_features, open_cache
    from ufd_lib.features.feature_cache import FeatureCacheError
    from ufd_lib.features.preprocess import Perturbation

    blocker = work / "not-a-directory"
    blocker.write_text("a file where the cache should be\n")
    images = faults.make_workload(work / "images", decodable=4, broken=0)
    encoder = load_encoder(faults.ENCODER, "cpu")
    before = sorted(p.name for p in work.iterdir())
    try:
        extract_features(encoder, list(images.paths), open_cache(encoder, Perturbation(), blocker / "cache"),
                         progress=False)
        ok, message = False, "no error"
    except FeatureCacheError as error:
        ok, message = "cannot write to the feature cache" in str(error), str(error).split(";")[0]
    unchanged = sorted(p.name for p in work.iterdir()) == before and blocker.read_text().startswith("a file")
    return Check("feature cache that cannot be written", 1, int(ok and unchanged), None, f"message: {message}")


class _Payload:
    """Pickled object whose loading would create ``marker`` (what a hostile checkpoint does)."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.write_text, (self.marker, "code ran"))


def check_pickle_payloads(work: Path) -> Check:
    """Checkpoints carrying code: the probe loader and the CLIP checkpoint loader refuse them."""
    import torch

    from ufd_lib.features.encoders import EncoderUnavailable, load_clip_state_dict
    from ufd_lib.classifiers.linear_probe import LinearProbe, ProbeFileError

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
    from ufd_lib.features.encoders import EncoderUnavailable, load_encoder, random_clip_state_dict

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
    from ufd_lib.features.encoders import load_encoder, random_clip_state_dict

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


def _mutations(seeds: dict[str, bytes], count: int, seed: int):
    rng = random.Random(seed)
    names = sorted(seeds)
    for _ in range(count):
        data = bytearray(seeds[rng.choice(names)])
        if rng.random() < 0.5:
            data = data[: rng.randrange(len(data))]
        for _ in range(rng.randrange(1, 6)):
            if data:
                data[rng.randrange(len(data))] ^= rng.randrange(1, 256)
        yield bytes(data)


def image_seeds() -> dict[str, bytes]:
    """Small valid files of each format the loader meets, to be mutated."""
    from PIL import Image

    rng = np.random.default_rng(0)
    pixels = Image.fromarray(rng.integers(0, 256, (40, 56, 3), dtype=np.uint8))
    seeds = {}
    for fmt, image in (("PNG", pixels), ("JPEG", pixels), ("BMP", pixels), ("WEBP", pixels),
                       ("GIF", pixels.convert("P")), ("TIFF", pixels), ("PNG-P", pixels.convert("P")),
                       ("PNG-16", Image.fromarray(rng.integers(0, 65535, (40, 56), dtype=np.uint16)))):
        buffer = io.BytesIO()
        image.save(buffer, format=fmt.split("-")[0])
        seeds[fmt] = buffer.getvalue()
    return seeds


def check_hostile_images(work: Path, count: int, seed: int) -> Check:
    """Mutated (truncated, bit-flipped) images through the whole loading path, plus a bomb."""
    import torch

    from PIL import Image

    from ufd_lib.features.preprocess import ImageRejected, evaluation_transform, load_tensor

    transform = evaluation_transform()
    decoded = rejected = crashed = 0
    path = work / "image"
    cases = list(_mutations(image_seeds(), count, seed))
    bomb = io.BytesIO()
    Image.new("L", (12_000, 8_000)).save(bomb, format="PNG")
    cases.append(bomb.getvalue())
    for data in cases:
        path.write_bytes(data)
        try:
            tensor = load_tensor(path, transform)
            ok = tensor.shape == (3, 224, 224) and tensor.dtype == torch.float32 and bool(torch.isfinite(tensor).all())
            decoded += ok
            crashed += not ok
        except ImageRejected:
            rejected += 1
        except Exception:  # anything else is a crash of the loading path
            crashed += 1
    return Check("hostile images (truncated, bit-flipped, decompression bomb)", len(cases), decoded + rejected, None,
                 f"{decoded} decoded to a valid tensor, {rejected} refused with a reason, {crashed} crashed")


def check_command_lines(main: Callable[[list[str]], int], work: Path, count: int, seed: int) -> Check:
    """Random malformed command lines: exit status 2 and one line on stderr, never a traceback."""
    import os

    rng = random.Random(seed)
    flags = ["--encoder", "--classifier", "--train", "--k", "--test", "--out", "--cache-dir", "--jpeg-quality",
             "--blur-sigma", "--sampling", "--device", "--batch-size", "--workers", "--max-pixels", "--probe",
             "--profile", "--only", "--set", "--precision"]
    values = ["knn", "-1", "0", "nan", "inf", "1e309", "x=", "=y", "a=b:c", "random-clip:nope", "clip:", ":", "",
              "101", "cuda:9", "\x00", "a\nb", "smoke", "/dev/null/x", "é" * 300]
    fine = 0
    cwd = Path.cwd()
    os.chdir(work)
    try:
        for _ in range(count):
            argv = [rng.choice(["evaluate", "train-probe", "predict", "extract", "reproduce"])]
            argv += [rng.choice(flags + values) for _ in range(rng.randrange(0, 7))]
            stderr = io.StringIO()
            with redirect_stderr(stderr), redirect_stdout(io.StringIO()):
                try:
                    status = main(argv)
                except SystemExit as exit_:
                    status = exit_.code
            lines = [line for line in stderr.getvalue().splitlines() if line.strip()]
            fine += status == 2 and len(lines) == 1 and "Traceback" not in stderr.getvalue()
    finally:
        os.chdir(cwd)
    return Check("malformed command lines", count, fine, None, "exit status 2 with one line naming the problem")


def check_metric_edge_cases() -> Check:
    from ufd_lib.evaluation.metrics import MetricError, average_precision

    fine = 0
    for labels, scores, expect in (([1, 1, 1], [0.1, 0.5, 0.9], "warning"), ([0, 1, 0, 1], [0.5] * 4, "warning"),
                                   ([0, 1], [0.2, float("nan")], "error")):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                value = average_precision(np.array(labels), np.array(scores))
                fine += expect == "warning" and len(caught) > 0 and (np.isnan(value) or 0 <= value <= 1)
            except MetricError:
                fine += expect == "error"
    return Check("metrics on one-class sets, all-equal scores, NaN scores", 3, fine, None,
                 "NaN or a warned value for the first two, an error naming the NaN scores for the last")


_TOY_MANIFEST = {
    "name": "selfcheck_toy", "title": "selfcheck", "description": "generated by ufd selfcheck",
    "citations": [{"kind": "data", "text": "generated"}], "root": "toy",
    "archive": {"filename": "toy.zip", "format": "zip", "approx_size": "a few kB", "sources": [
        {"kind": "http", "url": "http://127.0.0.1:9/toy.zip", "size_bytes": None, "sha256": None,
         "provenance": "never contacted: the archive is placed by hand"}]},
    "sets": [{"key": "flat", "paper_name": "Flat", "role": "test", "paper_table_column": 1,
              "generator_family": "GAN", "real_source": "generated", "real_dir": "flat", "fake_dir": "flat",
              "categories": None, "images_per_class": {"real": 2, "fake": 2}, "count_note": "generated"}],
    "differences_from_paper": [],
}


def _toy_release() -> dict[str, bytes]:
    """release/flat/{0_real,1_fake}/{0,1}.png: four distinct 8x8 noise PNGs."""
    from PIL import Image

    rng, members = np.random.default_rng(0), {}
    for label in ("0_real", "1_fake"):
        for i in range(2):
            buffer = io.BytesIO()
            Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)).save(buffer, format="PNG")
            members[f"release/flat/{label}/{i}.png"] = buffer.getvalue()
    return members


def _zip(path: Path, members: dict[str, bytes] | list[tuple[str, bytes]]) -> Path:
    import zipfile

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # zipfile warns about the duplicate names some cases need
        with zipfile.ZipFile(path, "w") as zf:
            for name, data in (members.items() if isinstance(members, dict) else members):
                zf.writestr(name, data)
    return path


def _zip_bomb(path: Path, name: str, expanded_bytes: int = 1 << 30) -> Path:
    """A valid zip of one member of ``expanded_bytes`` zeros, about 1 MB per GiB: one deflated
    16 MiB block of zeros repeated (each copy starts from a full flush, so copies concatenate)."""
    import struct
    import zlib

    block = bytes(1 << 24)
    deflater = zlib.compressobj(9, zlib.DEFLATED, -15)
    piece = deflater.compress(block) + deflater.flush(zlib.Z_FULL_FLUSH)
    copies = expanded_bytes // len(block)
    data = piece * copies + zlib.compressobj(9, zlib.DEFLATED, -15).flush()
    crc = 0
    for _ in range(copies):
        crc = zlib.crc32(block, crc)
    encoded, size = name.encode(), copies * len(block)
    local = struct.pack("<IHHHHHIIIHH", 0x04034B50, 20, 0, 8, 0, 0x21, crc, len(data), size, len(encoded), 0)
    central = struct.pack("<IHHHHHHIIIHHHHHII", 0x02014B50, 20, 20, 0, 8, 0, 0x21, crc, len(data), size,
                          len(encoded), 0, 0, 0, 0, 0, 0)
    offset = len(local) + len(encoded) + len(data)
    end = struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, 1, 1, len(central) + len(encoded), offset, 0)
    path.write_bytes(local + encoded + data + central + encoded + end)
    return path


def check_hostile_archives(work: Path) -> Check:
    """`ufd data fetch` on hostile archives placed in the download folder: each is refused with
    a FetchError, and no dataset folder appears."""
    import os
    import yaml

    from ufd_lib.data import manifests
    from ufd_lib.data.fetch import FetchError, fetch_data

    (work / "manifests").mkdir(parents=True, exist_ok=True)
    (work / "manifests" / "selfcheck_toy.yaml").write_text(yaml.safe_dump(_TOY_MANIFEST, sort_keys=False))
    release = _toy_release()

    def swapped(archive: Path) -> None:  # fetch it once, then swap 0_real and 1_fake in place
        fetch_data(archive.parent.parent, ["selfcheck_toy"], archive.parent)
        shutil.rmtree(archive.parent.parent / "toy")
        data = archive.read_bytes()
        with archive.open("r+b") as handle:
            handle.write(data.replace(b"0_real", b"\0swap\0").replace(b"1_fake", b"0_real")
                         .replace(b"\0swap\0", b"1_fake"))

    cases = {
        "archive swapped in place at the same size": (lambda a: (_zip(a, release), swapped(a)), "changed since"),
        "1 MB zip that expands to 1 GiB": (lambda a: _zip_bomb(a, "release/flat/0_real/0.png"), "expand to more"),
        "duplicate members": (lambda a: _zip(a, [*release.items(), ("release/flat/0_real/0.png", b"other")]),
                              "appears twice"),
        "HTML page as an unpinned download": (lambda a: a.write_bytes(b"<!DOCTYPE html><html>Quota</html>"), "HTML"),
    }
    fine, outcomes = 0, []
    previous = os.environ.get(manifests.MANIFEST_DIR_ENV)
    os.environ[manifests.MANIFEST_DIR_ENV] = str(work / "manifests")
    try:
        for index, (what, (make, expected)) in enumerate(cases.items()):
            data_root = work / f"case-{index}"
            archive = data_root / "downloads" / "toy.zip"
            archive.parent.mkdir(parents=True)
            with redirect_stdout(io.StringIO()), redirect_stderr(io.StringIO()):
                make(archive)
                try:
                    fetch_data(data_root, ["selfcheck_toy"], archive.parent)
                    message = "extracted"
                except FetchError as error:
                    message = str(error)
            ok = expected in message and not (data_root / "toy").exists()
            fine += ok
            outcomes.append(f"{what}: {'refused' if ok else 'NOT refused (' + message[:80] + ')'}")
    finally:
        if previous is None:
            os.environ.pop(manifests.MANIFEST_DIR_ENV, None)
        else:
            os.environ[manifests.MANIFEST_DIR_ENV] = previous
    return Check("hostile dataset archives (ufd data fetch)", len(cases), fine, None, "; ".join(outcomes))


def check_hostile_data_root(work: Path) -> Check:
    """`ufd data verify` on a data root holding a FIFO and a dangling symlink named like images:
    it finishes (a FIFO opened for reading would block for ever) and reports both."""
    import os
    import threading

    import yaml

    from ufd_lib.data import manifests
    from ufd_lib.data.verify import verify_data

    (work / "manifests").mkdir(parents=True, exist_ok=True)
    (work / "manifests" / "selfcheck_toy.yaml").write_text(yaml.safe_dump(_TOY_MANIFEST, sort_keys=False))
    for name, data in _toy_release().items():
        path = work / "data" / "toy" / name.removeprefix("release/")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    folder = work / "data" / "toy" / "flat" / "1_fake"
    os.mkfifo(folder / "pipe.png")
    os.symlink(folder / "gone.png", folder / "dangling.png")
    result: dict = {}

    def verify() -> None:
        try:
            result["report"] = verify_data(work / "data", ["selfcheck_toy"])
        except Exception as error:  # a crash is a failed case; say which
            result["error"] = f"{type(error).__name__}: {error}"

    previous = os.environ.get(manifests.MANIFEST_DIR_ENV)
    os.environ[manifests.MANIFEST_DIR_ENV] = str(work / "manifests")
    try:
        thread = threading.Thread(target=verify, daemon=True)
        thread.start()
        thread.join(timeout=60)
    finally:
        if previous is None:
            os.environ.pop(manifests.MANIFEST_DIR_ENV, None)
        else:
            os.environ[manifests.MANIFEST_DIR_ENV] = previous
    if thread.is_alive():
        return Check("FIFO and dangling link in a data root (ufd data verify)", 1, 0, None, "verify hung")
    report = result.get("report")
    listed = dict(report.not_regular) if report else {}
    ok = (listed.get(Path("toy/flat/1_fake/pipe.png")) == "FIFO"
          and listed.get(Path("toy/flat/1_fake/dangling.png")) == "dangling symlink" and report.ok)
    detail = ("finished; both reported, the 4 images verified" if ok
              else result.get("error", f"reported {listed}"))
    return Check("FIFO and dangling link in a data root (ufd data verify)", 1, int(ok), None, detail)


class _FillingFile:
    """A file on a disk that fills up: the first write stores half its bytes, then ENOSPC."""

    def __init__(self, handle):
        self._handle = handle

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self._handle.close()

    def write(self, data):
        self._handle.write(data[: len(data) // 2])
        self._handle.flush()
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    def __getattr__(self, name):
        return getattr(self._handle, name)


@contextmanager
def disk_full_while_writing(name: str):
    """Within the block, :mod:`ufd_lib.atomic_files` runs out of disk space halfway through
    writing any file whose name contains ``name``."""
    from ufd_lib import atomic_files

    def full_open(path, mode="r", *args, **kwargs):
        handle = open(path, mode, *args, **kwargs)
        return _FillingFile(handle) if name in Path(path).name and "w" in mode else handle

    with mock.patch.object(atomic_files, "open", full_open, create=True):
        yield


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {path.name: path.read_bytes() for path in sorted(folder.iterdir())}


def check_full_disk_evaluate(main: Callable[[list[str]], int], work: Path) -> Check:
    """``ufd evaluate --out`` over older results with the disk filling up in each of its files:
    exit 1 naming the file, the older results byte for byte as they were, no temporary left."""
    for folder in ("0_real", "1_fake"):
        faults.make_workload(work / "images" / folder, decodable=4, broken=0, seed=len(folder))
    common = ["evaluate", "--encoder", faults.ENCODER, "--device", "cpu", "--quiet", "--cache-dir", str(work / "cache"),
              "--classifier", "knn", "--train", f"train={work / 'images'}", "--test", f"test={work / 'images'}",
              "--out", str(work / "out")]
    with redirect_stdout(io.StringIO()), redirect_stderr(io.StringIO()), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        main(common + ["--k", "1"])
    before = _snapshot(work / "out")
    names = ["metrics.csv", "scores.csv", "skipped.csv", "run.json"]
    fine, messages = 0, []
    for name in names:
        stderr = io.StringIO()
        with disk_full_while_writing(name), redirect_stdout(io.StringIO()), redirect_stderr(stderr), \
                warnings.catch_warnings():
            warnings.simplefilter("ignore")
            status = main(common + ["--k", "3"])
        message = (stderr.getvalue().strip().splitlines() or [""])[-1]
        messages.append(message)
        fine += status == 1 and str(work / "out" / name) in message and _snapshot(work / "out") == before
    return Check("disk full during `ufd evaluate --out` over older results", len(names), fine, None,
                 f"exit 1 naming the file, older results intact; e.g. {messages[1].split('] ', 1)[-1]}")


class _NaNScores:
    """A scikit-learn-style classifier whose scores are NaN (a broken third-party model)."""

    def decision_function(self, features: np.ndarray) -> np.ndarray:
        return np.full(len(features), np.nan)


def check_non_finite_scores(work: Path) -> Check:
    """NaN scores (a broken classifier) and NaN features (which a nearest-neighbour search turns
    into finite scores) are refused with a MetricError naming the test set. (A probe file with NaN
    weights never gets this far: it is refused at load, see :func:`check_non_finite_weights`.)"""
    from ufd_lib.classifiers.nearest_neighbour import NearestNeighbourClassifier
    from ufd_lib.evaluation.metrics import MetricError
    from ufd_lib.evaluation.scoring import evaluate_sets
    from ufd_lib.features.feature_sets import FeatureSet

    rng = np.random.default_rng(0)
    features = rng.normal(size=(6, 8)).astype(np.float32)
    labels = np.array([0, 0, 0, 1, 1, 1])
    broken = features.copy()
    broken[1, 3] = np.nan
    cases = [(_NaNScores(), features, "6 of 6 scores"),
             (NearestNeighbourClassifier(k=1).fit(features, labels), broken, "1 of 6 feature vectors")]
    fine, details = 0, []
    for classifier, test_features, expected in cases:
        test_set = FeatureSet("ldm_200", test_features, labels, [f"{i}.png" for i in range(6)], [])
        try:
            evaluate_sets(classifier, [test_set])
            details.append("no error")
        except MetricError as error:
            fine += str(error).startswith(f"test set ldm_200: {expected}")
            details.append(str(error).split(":")[1].strip())
    return Check("NaN scores and NaN features at evaluation", len(cases), fine, None,
                 "refused naming the test set: " + "; ".join(details))


def check_files_changed_after_planning(work: Path) -> Check:
    """A file replaced between hashing and decoding (by another valid image, a copy of another
    input, a broken file): skipped with the reason, never cached under the digest planned for
    it; the next run takes it up and ends bit for bit equal to a clean run on the final files."""
    from unittest import mock

    from ufd_lib.features import extract as extraction
    from ufd_lib.features.encoders import load_encoder
    from ufd_lib.features.preprocess import CHANGED_SINCE_HASHED, Perturbation

    encoder = load_encoder(faults.ENCODER, "cpu")
    planned = extraction.plan_digests
    replacements = {"another image": lambda paths: faults.make_workload(work / "other", 1, 0, seed=7).paths[0],
                    "a copy of another input": lambda paths: paths[0],
                    "a broken file": lambda paths: paths[-1]}
    fine = differences = 0
    for number, (name, replacement) in enumerate(replacements.items()):
        images = faults.make_workload(work / f"images-{number}", decodable=6, broken=1, seed=number)
        paths, victim = list(images.paths), images.paths[2]
        source = replacement(paths)

        def plan_then_replace(files, memo, max_bytes, source=source, victim=victim):
            plan = planned(files, memo, max_bytes)
            victim.write_bytes(source.read_bytes())
            return plan

        cache = extraction.open_cache(encoder, Perturbation(), work / f"cache-{number}")
        with mock.patch.object(extraction, "plan_digests", plan_then_replace):
            kept, digests, report = extraction.fill_cache(encoder, paths, cache, batch_size=4, progress=False)
        old_digest = digests[2]
        refused = dict(report.skipped).get(str(victim)) == CHANGED_SINCE_HASHED and not kept[2]
        clean_key = not extraction.open_cache(encoder, Perturbation(), work / f"cache-{number}").contains([old_digest])[0]
        features, kept, _ = extraction.extract_features(encoder, paths, cache, batch_size=4, progress=False)
        reference, kept_ref, _ = extraction.extract_features(
            encoder, paths, extraction.open_cache(encoder, Perturbation(), work / f"clean-{number}"),
            batch_size=4, progress=False)
        same = np.array_equal(kept, kept_ref) and np.array_equal(features, reference)
        fine += int(refused and clean_key)
        differences += int(not same)
    return Check("image file replaced between hashing and decoding", len(replacements), fine, differences,
                 "skipped as changed, nothing cached under its planned digest; the rerun equals a clean run")


def check_inputs_that_are_not_images(work: Path) -> Check:
    """A FIFO, a character device and a dangling link named like images, and a file over the
    byte limit, among the inputs: each skipped with its reason, the rest encoded, no hang."""
    import os
    import threading

    from ufd_lib.features.encoders import load_encoder
    from ufd_lib.features.extract import extract_features, open_cache
    from ufd_lib.features.preprocess import Perturbation

    images = faults.make_workload(work / "images", decodable=4, broken=0)
    folder = images.paths[0].parent
    fifo, device, dangling, large = (folder / name for name in ("fifo.png", "zero.png", "gone.png", "large.png"))
    os.mkfifo(fifo)
    device.symlink_to("/dev/zero")
    dangling.symlink_to(work / "nowhere.png")
    limit = max(path.stat().st_size for path in images.paths)
    large.write_bytes(images.paths[0].read_bytes() + b"\0" * (limit + 1))
    expected = {fifo: "not a regular file (a FIFO)", device: "not a regular file (a character device)",
                dangling: "dangling symbolic link", large: "exceeds the limit"}
    encoder = load_encoder(faults.ENCODER, "cpu")
    outcome: dict = {}

    def extract():
        outcome["result"] = extract_features(encoder, [*images.paths, *expected],
                                             open_cache(encoder, Perturbation(), work / "cache"),
                                             max_bytes=limit, progress=False)

    worker = threading.Thread(target=extract, daemon=True)
    worker.start()
    worker.join(timeout=120)
    if "result" not in outcome:
        return Check("FIFO, device, dangling link, over-size file among the inputs", len(expected), 0, None,
                     "extraction did not return within 120 s (hung)")
    _, kept, report = outcome["result"]
    reasons = dict(report.skipped)
    fine = sum(reason in reasons.get(str(path), "") for path, reason in expected.items())
    fine -= 0 if kept[: len(images.paths)].all() else len(expected)
    return Check("FIFO, device, dangling link, over-size file among the inputs", len(expected), max(fine, 0), None,
                 "each skipped with its reason, the images encoded, no hang")


def check_non_finite_encoder_output(work: Path) -> Check:
    """An encoder that returns NaN or infinity for some images: those are skipped naming the
    image and the encoder, the cache holds only finite features, strict mode raises."""
    import dataclasses

    import torch

    from ufd_lib.features.encoders import load_encoder
    from ufd_lib.features.extract import ExtractionError, extract_features, open_cache
    from ufd_lib.features.preprocess import Perturbation

    class Poisoned(torch.nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def encode_image(self, images):
            features = self.inner.encode_image(images)
            features[0, 0], features[-1, -1] = float("nan"), float("inf")  # first and last of each batch
            return features

    images = faults.make_workload(work / "images", decodable=8, broken=0)
    encoder = load_encoder(faults.ENCODER, "cpu")
    poisoned = dataclasses.replace(encoder, model=Poisoned(encoder.model))
    cache = open_cache(poisoned, Perturbation(), work / "cache")
    features, kept, report = extract_features(poisoned, list(images.paths), cache, batch_size=4, progress=False)
    named = sum(f"the encoder {encoder.name} gave non-finite features" in reason for _, reason in report.skipped)
    stored = open_cache(poisoned, Perturbation(), work / "cache")
    finite_cache = len(stored) == int(kept.sum()) and np.isfinite(stored.load(
        [d for d, k in zip(_digests(images.paths), kept) if k])).all()
    try:
        extract_features(poisoned, list(images.paths), open_cache(poisoned, Perturbation(), work / "strict"),
                         batch_size=4, progress=False, strict=True)
        strict = False
    except ExtractionError as error:
        strict = encoder.name in str(error) and any(str(error).startswith(f"{path}: ") for path in images.paths)
    cases = (named == 4 and kept.sum() == 4, finite_cache and np.isfinite(features).all(), strict)
    return Check("encoder returning NaN or infinity", len(cases), int(sum(map(bool, cases))), None,
                 "skipped naming image and encoder, never cached; strict mode raises")


def _digests(paths) -> list[bytes]:
    import hashlib

    return [hashlib.sha256(Path(path).read_bytes()).digest() for path in paths]


def run_selfcheck(command_line: Callable[[list[str]], int], work: Path | None = None, *, trials: int = 20, rounds: int = 3, fuzz: int = 300,
                  seed: int = 0) -> list[Check]:
    """Run every check in ``work`` (a temporary folder, removed afterwards, when None).
    command_line: the ``ufd`` entry point (``argv -> exit status``) whose usage errors are fuzzed."""
    scratch = Path(tempfile.mkdtemp(prefix="ufd-selfcheck-")) if work is None else Path(work)
    try:
        workload = faults.make_workload(scratch / "workload")
        reference = faults.reference_run(workload, scratch / "reference")
        return [
            _timed(lambda: check_kills(workload, scratch / "kills", reference, trials, seed)),
            _timed(lambda: check_write_deaths(workload, scratch / "write-deaths", reference)),
            _timed(lambda: check_concurrency(workload, scratch / "concurrency", reference, rounds)),
            _timed(lambda: check_damaged_chunks(workload, scratch / "damage", scratch / "reference" / "cache",
                                                reference)),
            _timed(lambda: check_wrong_type_records(workload, _fresh(scratch / "records"),
                                                    scratch / "reference" / "cache", reference)),
            _timed(lambda: check_wrong_width(workload, _fresh(scratch / "widths"), scratch / "reference" / "cache",
                                             reference)),
            _timed(lambda: check_symlinked_chunks(workload, _fresh(scratch / "links"),
                                                  scratch / "reference" / "cache", reference)),
            _timed(lambda: check_orphans_removed(workload, scratch / "orphans", reference)),
            _timed(lambda: check_non_finite_features(workload, _fresh(scratch / "non-finite-cache"),
                                                     scratch / "reference" / "cache", reference)),
            _timed(lambda: check_unwritable_cache(_fresh(scratch / "unwritable"))),
            _timed(lambda: check_pickle_payloads(_fresh(scratch / "pickles"))),
            _timed(lambda: check_torchscript_payload(_fresh(scratch / "torchscript"))),
            _timed(lambda: check_non_finite_weights(_fresh(scratch / "non-finite-weights"))),
            _timed(lambda: check_mismatched_state_dicts(_fresh(scratch / "mismatched"))),
            _timed(lambda: check_hostile_images(_fresh(scratch / "images"), fuzz, seed)),
            _timed(lambda: check_command_lines(command_line, _fresh(scratch / "cli"), fuzz, seed)),
            _timed(check_metric_edge_cases),
            _timed(lambda: check_hostile_archives(_fresh(scratch / "archives"))),
            _timed(lambda: check_hostile_data_root(_fresh(scratch / "data-root"))),
            _timed(lambda: check_full_disk_evaluate(command_line, _fresh(scratch / "full-disk"))),
            _timed(lambda: check_non_finite_scores(_fresh(scratch / "non-finite-scores"))),
            _timed(lambda: check_files_changed_after_planning(_fresh(scratch / "changed-files"))),
            _timed(lambda: check_inputs_that_are_not_images(_fresh(scratch / "not-images"))),
            _timed(lambda: check_non_finite_encoder_output(_fresh(scratch / "non-finite-output"))),
        ]
    finally:
        if work is None:
            shutil.rmtree(scratch, ignore_errors=True)


def _fresh(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def report_markdown(checks: list[Check]) -> str:
    lines = ["| check | cases | ended as they must | differences from a clean run | seconds | detail |",
             "|---|---|---|---|---|---|"]
    for c in checks:
        differences = "n/a" if c.differences is None else str(c.differences)
        lines.append(f"| {c.name} | {c.cases} | {c.as_expected} | {differences} | {c.seconds:.0f} | {c.detail} |")
    total = sum(c.cases for c in checks)
    good = sum(c.as_expected for c in checks)
    verdict = "PASSED" if all(c.passed for c in checks) else "FAILED"
    lines += ["", f"{verdict}: {good} of {total} cases ended as they must."]
    return "\n".join(lines)

