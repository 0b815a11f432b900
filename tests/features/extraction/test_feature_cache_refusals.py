"""What the feature cache never serves and never stores: commit records of the wrong type,
features of the wrong width or not finite, chunk files that are symbolic links, and the
orphans a killed writer leaves."""
from __future__ import annotations

import hashlib
import json
import os

import numpy as np
import pytest

from ufd_lib.features.extraction.feature_cache import CHUNK_SUFFIXES, FeatureCache, FeatureCacheError, all_finite
from ufd_lib.reliability.fault_injection import forge_chunk, uncommitted_parts

SETTING = {"encoder": "random-clip:tiny", "preprocess": {"center_crop": 224}}
KEYS = [hashlib.sha256(str(i).encode()).digest() for i in range(6)]


def features(n: int = 6, d: int = 16, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(n, d)).astype(np.float32)


def as_stored(values: np.ndarray) -> np.ndarray:
    return values.astype(np.float16).astype(np.float32)


def only_chunk(cache: FeatureCache) -> str:
    (marker,) = cache.directory.glob("chunk-*.json")
    return marker.name[: -len(".json")]


def listing(root) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


def assert_set_aside_then_reencoded(tmp_path, name: str, reason: str, **options):
    """A reopened cache warns with ``reason``, serves none of the chunk, renames all three files
    (links themselves) to corrupt-*, and takes the images again."""
    reopened = FeatureCache(tmp_path, SETTING, **options)
    with pytest.warns(UserWarning, match=f"corrupt .*{reason}"):
        assert not reopened.contains(KEYS).any()
    folder = reopened.directory
    assert list(folder.glob("chunk-*")) == []
    assert all(os.path.lexists(folder / f"corrupt-{name}{suffix}") for suffix in CHUNK_SUFFIXES)
    reopened.write_chunk(KEYS, features(seed=1))
    np.testing.assert_array_equal(FeatureCache(tmp_path, SETTING, **options).load(KEYS), as_stored(features(seed=1)))


# --- 1. commit records that are valid JSON of the wrong type --------------------------------

def _record_without(field):
    return lambda record: {k: v for k, v in record.items() if k != field}


def _record_with(**fields):
    return lambda record: {**record, **fields}


@pytest.mark.parametrize("rewrite, reason", [
    (lambda record: None, "commit record is a JSON null"),
    (lambda record: [record], "commit record is a JSON array"),
    (lambda record: 6, "commit record is a JSON number"),
    (lambda record: "chunk", "commit record is a JSON string"),
    (_record_without("features_sha256"), "lacks 'features_sha256'"),
    (_record_without("rows"), "lacks 'rows'"),
    (_record_with(rows="6"), "invalid 'rows'"),
    (_record_with(rows=[6]), "invalid 'rows'"),
    (_record_with(dim=None), "invalid 'dim'"),
    (_record_with(keys_sha256={"sha256": "0"}), "invalid 'keys_sha256'"),
    (_record_with(features_sha256=12), "invalid 'features_sha256'"),
    (_record_with(dtype=16), "invalid 'dtype'"),
    (_record_with(dtype="not a dtype"), "dtype does not match its commit record"),
])
def test_commit_record_of_the_wrong_type_is_set_aside(tmp_path, rewrite, reason):
    cache = FeatureCache(tmp_path, SETTING)
    cache.write_chunk(KEYS, features())
    name = only_chunk(cache)
    record = cache.directory / f"{name}.json"
    record.write_text(json.dumps(rewrite(json.loads(record.read_text()))))
    assert_set_aside_then_reencoded(tmp_path, name, reason)


# --- 2. features of the wrong width ------------------------------------------------------------

def test_chunk_of_another_width_than_the_setting_is_set_aside(tmp_path):
    FeatureCache(tmp_path, SETTING).write_chunk(KEYS, features(d=8))  # checksums and record all consistent
    name = only_chunk(FeatureCache(tmp_path, SETTING))
    assert_set_aside_then_reencoded(tmp_path, name, "8 feature columns where the setting has 16", dim=16)


@pytest.mark.parametrize("narrow_first", [True, False])
def test_without_a_given_width_the_widths_are_never_mixed(tmp_path, narrow_first):
    """Two chunks of 16 columns (5 rows) and one of 8 (1 row): the 8-column one is set aside,
    whichever was committed first, and every load has one width."""
    wide, narrow = features(5, 16), features(1, 8, seed=2)
    if narrow_first:
        FeatureCache(tmp_path, SETTING).write_chunk(KEYS[5:], narrow)
    FeatureCache(tmp_path, SETTING).write_chunk(KEYS[:3], wide[:3])
    FeatureCache(tmp_path, SETTING).write_chunk(KEYS[3:5], wide[3:])
    if not narrow_first:
        FeatureCache(tmp_path, SETTING).write_chunk(KEYS[5:], narrow)
    reopened = FeatureCache(tmp_path, SETTING)
    with pytest.warns(UserWarning, match="8 feature columns where the setting has 16"):
        assert reopened.contains(KEYS).tolist() == [True] * 5 + [False]
    assert reopened.dim == 16
    np.testing.assert_array_equal(reopened.load(KEYS[:5]), as_stored(wide))


def test_write_of_another_width_is_refused_and_writes_nothing(tmp_path):
    cache = FeatureCache(tmp_path, SETTING, dim=16)
    with pytest.raises(FeatureCacheError, match="8-column features where the setting has 16 .*random-clip:tiny"):
        cache.write_chunk(KEYS, features(d=8))
    assert listing(tmp_path) == []
    cache.write_chunk(KEYS, features())
    found = FeatureCache(tmp_path, SETTING)  # no width given: the width of the chunks it has read
    assert found.contains(KEYS).all()
    with pytest.raises(FeatureCacheError, match="32-column features where the setting has 16"):
        found.write_chunk(KEYS, features(d=32))
    assert len(list(cache.directory.glob("chunk-*.json"))) == 1


# --- 3. chunk files that are symbolic links ----------------------------------------------------

@pytest.mark.parametrize("suffix", [".features.npy", ".keys.npy", ".json"])
def test_symlinked_chunk_file_is_never_read_through(tmp_path, suffix):
    """The link points at an exact copy of the file outside the cache: following it would serve
    the right bytes, yet the chunk is refused, and the outside file is left as it was."""
    cache = FeatureCache(tmp_path / "cache", SETTING)
    cache.write_chunk(KEYS, features())
    name = only_chunk(cache)
    inside, outside = cache.directory / f"{name}{suffix}", tmp_path / f"elsewhere{suffix}"
    outside.write_bytes(inside.read_bytes())
    inside.unlink()
    inside.symlink_to(outside)
    assert_set_aside_then_reencoded(tmp_path / "cache", name, "is a symbolic link")
    assert (cache.directory / f"corrupt-{name}{suffix}").is_symlink()
    assert outside.read_bytes() == (cache.directory / f"corrupt-{name}{suffix}").read_bytes()


def test_chunk_file_that_is_not_a_regular_file_is_set_aside(tmp_path):
    cache = FeatureCache(tmp_path, SETTING)
    cache.write_chunk(KEYS, features())
    name = only_chunk(cache)
    (cache.directory / f"{name}.keys.npy").unlink()
    (cache.directory / f"{name}.keys.npy").mkdir()
    assert_set_aside_then_reencoded(tmp_path, name, "not a regular file")


# --- 4. orphans of a killed writer ---------------------------------------------------------------

def test_orphans_of_a_claimed_tag_are_removed_and_nothing_else(tmp_path):
    cache = FeatureCache(tmp_path, SETTING)
    cache.write_chunk(KEYS[:2], features(2), tag="group-a")  # committed: must stay
    cache.write_chunk(KEYS[2:4], features(2, seed=3), tag="group-a")  # becomes an orphan
    cache.write_chunk(KEYS[4:], features(2, seed=4), tag="group-b")  # orphan of a tag nobody claimed
    committed, orphan_a, orphan_b = sorted(m.name[: -len(".json")] for m in cache.directory.glob("chunk-*.json"))
    for orphan in (orphan_a, orphan_b):
        (cache.directory / f"{orphan}.json").unlink()  # the writer died before its commit record
    (cache.directory / f".{orphan_a}.json.0123abcd.tmp").write_bytes(b"{")  # ...while writing it
    assert cache.remove_leftovers("group-a") == 3
    assert [p.name for p in uncommitted_parts(cache.directory)] == [f"{orphan_b}.features.npy", f"{orphan_b}.keys.npy"]
    reopened = FeatureCache(tmp_path, SETTING)
    assert reopened.contains(KEYS).tolist() == [True, True, False, False, False, False]
    np.testing.assert_array_equal(reopened.load(KEYS[:2]), as_stored(features(2)))
    assert cache.remove_leftovers("group-a") == 0


def test_leftovers_that_cannot_be_removed_are_left_without_error(tmp_path, monkeypatch):
    from pathlib import Path

    cache = FeatureCache(tmp_path, SETTING)
    cache.write_chunk(KEYS, features(), tag="group-a")
    name = only_chunk(cache)
    (cache.directory / f"{name}.json").unlink()
    (cache.directory / f".{name}.json.0123abcd.tmp").write_bytes(b"{")

    def read_only(self, *args, **kwargs):
        raise PermissionError(13, "Permission denied", str(self))

    monkeypatch.setattr(Path, "unlink", read_only)
    assert cache.remove_leftovers("group-a") == 0
    assert len(uncommitted_parts(cache.directory)) == 3


# --- 5. non-finite features ---------------------------------------------------------------------

@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf, 1e5])  # 1e5 is beyond float16's ±65504
def test_non_finite_features_are_refused_at_the_door(tmp_path, value):
    cache = FeatureCache(tmp_path, SETTING)
    bad = features()
    bad[4, 7] = value
    refusal = (f"non-finite .* of 1 of 6 images, digests {KEYS[4].hex()} "
               f"\\(encoder random-clip:tiny, cache setting .*{cache.directory.name}\\); nothing was written")
    with pytest.raises(FeatureCacheError, match=refusal):
        cache.write_chunk(KEYS, bad)
    assert listing(tmp_path) == []


def test_many_non_finite_rows_are_counted(tmp_path):
    bad = features()
    bad[1:] = np.nan
    with pytest.raises(FeatureCacheError, match=f"5 of 6 images, digests {KEYS[1].hex()}, {KEYS[2].hex()}, "
                                                f"{KEYS[3].hex()} and 2 more"):
        FeatureCache(tmp_path, SETTING).write_chunk(KEYS, bad)


@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
def test_non_finite_features_found_in_a_chunk_are_damage(tmp_path, value):
    cache = FeatureCache(tmp_path, SETTING)
    cache.write_chunk(KEYS, features())
    name = only_chunk(cache)
    forged = features().astype(np.float16)
    forged[2, 3] = value
    forge_chunk(cache.directory, name, forged)  # checksums and record match the forged file
    assert_set_aside_then_reencoded(tmp_path, name, "non-finite")


def test_finiteness_test_agrees_with_its_definition_on_every_float16():
    every = np.arange(1 << 16, dtype=np.uint32).astype(np.uint16).view(np.float16)
    finite = np.isfinite(every)
    assert finite.sum() == (1 << 16) - 2 * 1024 and all_finite(every[finite])  # 1024 patterns per sign are inf/NaN
    assert not any(all_finite(every[i:i + 1]) for i in np.flatnonzero(~finite))
    for dtype in (np.float16, np.float32, np.float64):
        values = np.array([0.0, -0.0, 1.5, np.finfo(dtype).max, np.finfo(dtype).tiny / 4], dtype=dtype)
        assert all_finite(values)
        for bad in (np.nan, np.inf, -np.inf):
            assert not all_finite(np.append(values, dtype(bad)).reshape(2, 3))
