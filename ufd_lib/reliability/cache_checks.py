"""Reliability checks of the feature cache: SIGKILL at random moments and inside writes, two
writers at once, damaged, mistyped, misshapen, symlinked and orphaned chunk files, non-finite
features, an unwritable cache. Each compares with a clean run."""
from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np

from ufd_lib.reliability import fault_injection as faults
from ufd_lib.reliability.check import Check


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
    from ufd_lib.features.extraction.feature_cache import FeatureCache, FeatureCacheError

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
    from ufd_lib.features.extraction.extract import extract_features, open_cache
    from ufd_lib.features.extraction.feature_cache import FeatureCacheError
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
