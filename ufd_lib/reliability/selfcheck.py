"""``ufd selfcheck``: the reliability report. Faults injected and survived, hostile inputs
tried and refused, and every result compared with a clean run.

Each check runs real code paths on generated data in a scratch folder (random-weight
``random-clip:tiny``, CPU, offline) and counts its cases and how many ended as they must:
the correct result (bit for bit equal to an uninterrupted run where there is one) or a
clear refusal (the error type and message the user would see). The report is a Markdown
table; its figures go into the README.
"""
from __future__ import annotations

import io
import random
import shutil
import tempfile
import time
import warnings
from collections.abc import Callable
from contextlib import redirect_stderr, redirect_stdout
from dataclasses import dataclass
from pathlib import Path

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
                 sum(not r["identical"] for r in records), "deaths at the 1st..4th fsync and rename; no half-written file left after the rerun")


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


def check_non_finite_features(work: Path) -> Check:
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
            _timed(lambda: check_unwritable_cache(_fresh(scratch / "unwritable"))),
            _timed(lambda: check_pickle_payloads(_fresh(scratch / "pickles"))),
            _timed(lambda: check_hostile_images(_fresh(scratch / "images"), fuzz, seed)),
            _timed(lambda: check_command_lines(command_line, _fresh(scratch / "cli"), fuzz, seed)),
            _timed(check_metric_edge_cases),
            _timed(lambda: check_files_changed_after_planning(_fresh(scratch / "changed-files"))),
            _timed(lambda: check_inputs_that_are_not_images(_fresh(scratch / "not-images"))),
            _timed(lambda: check_non_finite_features(_fresh(scratch / "non-finite"))),
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

