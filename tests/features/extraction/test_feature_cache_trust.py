"""The feature cache checks a chunk whole once, then trusts it by the identity of its files
(the file-identity memo in the cache root), and still catches every change to a trusted chunk."""
from __future__ import annotations

import hashlib
import json
import os
import shutil

import numpy as np
import pytest
from conftest import settle_timestamps

from ufd_lib import racy_timestamps
from ufd_lib.features.extraction import feature_cache
from ufd_lib.features.extraction.digest_memo import MEMO_NAME, DigestMemo, identity_of, memo_key
from ufd_lib.features.extraction.feature_cache import FeatureCache
from ufd_lib.reliability.fault_injection import forge_chunk

SETTING = {"encoder": "random-clip:tiny", "preprocess": {"center_crop": 224}}
KEYS = [hashlib.sha256(str(i).encode()).digest() for i in range(8)]


def features(n: int, d: int = 16, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(n, d)).astype(np.float32)


def as_stored(values: np.ndarray) -> np.ndarray:
    return values.astype(np.float16).astype(np.float32)


@pytest.fixture
def checks(monkeypatch):
    """Counts of the whole-file checks the cache makes: files hashed, feature chunks scanned for NaN/inf."""
    counts = {"hashed": 0, "scanned": 0}
    sha256, all_finite = feature_cache._sha256, feature_cache.all_finite

    def counting_sha256(handle):
        counts["hashed"] += 1
        return sha256(handle)

    def counting_all_finite(values):
        counts["scanned"] += 1
        return all_finite(values)

    monkeypatch.setattr(feature_cache, "_sha256", counting_sha256)
    monkeypatch.setattr(feature_cache, "all_finite", counting_all_finite)
    return counts


def write_two_chunks(root) -> list[str]:
    cache = FeatureCache(root, SETTING)
    cache.write_chunk(KEYS[:5], features(5))
    cache.write_chunk(KEYS[5:], features(3, seed=1))
    settle_timestamps()
    return sorted(marker.name[: -len(".json")] for marker in cache.directory.glob("chunk-*.json"))


def open_and_load(root) -> np.ndarray:
    return FeatureCache(root, SETTING).load(KEYS)


EXPECTED = as_stored(np.concatenate([features(5), features(3, seed=1)]))


def test_second_open_of_an_unchanged_cache_reads_no_feature_bytes_to_check_them(tmp_path, checks):
    write_two_chunks(tmp_path)
    np.testing.assert_array_equal(open_and_load(tmp_path), EXPECTED)
    assert checks == {"hashed": 4, "scanned": 2}  # first open: both files of both chunks, whole
    assert (tmp_path / MEMO_NAME).is_file()  # the memo of the cache root, shared with extraction
    for _ in range(2):
        np.testing.assert_array_equal(open_and_load(tmp_path), EXPECTED)
    assert checks == {"hashed": 4, "scanned": 2}


def test_only_a_new_chunk_is_checked_whole(tmp_path, checks):
    write_two_chunks(tmp_path)
    open_and_load(tmp_path)
    extra = hashlib.sha256(b"extra").digest()
    FeatureCache(tmp_path, SETTING).write_chunk([extra, KEYS[0]], features(2, seed=2))
    reopened = FeatureCache(tmp_path, SETTING)
    np.testing.assert_array_equal(reopened.load([extra, KEYS[0]]),
                                  np.stack([as_stored(features(2, seed=2))[0], EXPECTED[0]]))  # first chunk wins
    assert checks == {"hashed": 6, "scanned": 3}


def _flip_in_place(path):
    """A normal write of one changed byte, then the file's mtime (and atime) set back."""
    before = os.stat(path)
    with open(path, "r+b") as handle:
        handle.seek(-3, os.SEEK_END)
        byte = handle.read(1)
        handle.seek(-3, os.SEEK_END)
        handle.write(bytes([byte[0] ^ 0x10]))
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    after = os.stat(path)
    assert (after.st_size, after.st_mtime_ns, after.st_ino) == (before.st_size, before.st_mtime_ns, before.st_ino)


def flip_features(folder, name):
    _flip_in_place(folder / f"{name}.features.npy")
    return "checksum mismatch"


def flip_keys(folder, name):
    _flip_in_place(folder / f"{name}.keys.npy")
    return "checksum mismatch"


def truncate_and_restore_mtime(folder, name):
    path = folder / f"{name}.features.npy"
    before = os.stat(path)
    os.truncate(path, before.st_size // 2)
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    return "checksum mismatch"


def replace_with_flipped_copy(folder, name):
    """A damaged copy renamed over the file, with the original's mtime."""
    path = folder / f"{name}.features.npy"
    copy = folder / "copy.tmp"
    shutil.copy2(path, copy)
    _flip_in_place(copy)
    os.replace(copy, path)
    return "checksum mismatch"


def record_names_other_digests(folder, name):
    record_path = folder / f"{name}.json"
    record = json.loads(record_path.read_text())
    record_path.write_text(json.dumps({**record, "features_sha256": hashlib.sha256(b"other").hexdigest()}))
    return "checksum mismatch"


def forge_non_finite(folder, name):
    """Features with a NaN whose commit record matches them: no checksum catches it."""
    forged = np.load(folder / f"{name}.features.npy")
    forged[1, 2] = np.nan
    forge_chunk(folder, name, forged)
    return "non-finite"


def link_to_a_copy(folder, name):
    path = folder / f"{name}.features.npy"
    outside = folder.parent.parent / "outside.npy"
    shutil.copy2(path, outside)
    path.unlink()
    path.symlink_to(outside)
    return "is a symbolic link"


@pytest.mark.parametrize("damage", [flip_features, flip_keys, truncate_and_restore_mtime, replace_with_flipped_copy,
                                    record_names_other_digests, forge_non_finite, link_to_a_copy])
def test_change_to_a_trusted_chunk_is_caught(tmp_path, damage):
    root = tmp_path / "cache"
    first, second = write_two_chunks(root)
    open_and_load(root)
    open_and_load(root)  # the chunks are trusted by now
    folder = FeatureCache(root, SETTING).directory
    reason = damage(folder, first)
    reopened = FeatureCache(root, SETTING)
    with pytest.warns(UserWarning, match=f"corrupt .*{reason}"):
        assert reopened.contains(KEYS).tolist() == [False] * 5 + [True] * 3
    assert {p.name for p in folder.glob("chunk-*")} == {f"{second}{s}" for s in feature_cache.CHUNK_SUFFIXES}
    np.testing.assert_array_equal(reopened.load(KEYS[5:]), EXPECTED[5:])


def test_an_image_files_memo_row_does_not_vouch_for_a_chunk(tmp_path):
    """A row saying only what a file's bytes hash to (as extraction writes for images) must not
    spare a chunk the checks that no checksum makes."""
    (name,) = write_two_chunks(tmp_path)[:1]
    folder = FeatureCache(tmp_path, SETTING).directory
    forge_non_finite(folder, name)
    path = folder / f"{name}.features.npy"
    memo = DigestMemo(tmp_path)
    memo.remember([(memo_key(path), identity_of(os.stat(path)), hashlib.sha256(path.read_bytes()).digest())])
    memo.close()
    with pytest.warns(UserWarning, match="corrupt .*non-finite"):
        assert not FeatureCache(tmp_path, SETTING).contains(KEYS[:5]).any()


def test_without_a_usable_memo_every_open_checks_every_chunk_whole(tmp_path, checks):
    (tmp_path / MEMO_NAME).mkdir()  # the memo cannot be opened, let alone written (as in a read-only cache)
    first, _ = write_two_chunks(tmp_path)
    for opened in (1, 2, 3):
        np.testing.assert_array_equal(open_and_load(tmp_path), EXPECTED)
        assert checks == {"hashed": 4 * opened, "scanned": 2 * opened}
    flip_features(FeatureCache(tmp_path, SETTING).directory, first)
    with pytest.warns(UserWarning, match="corrupt .*checksum mismatch"):
        assert FeatureCache(tmp_path, SETTING).contains(KEYS).tolist() == [False] * 5 + [True] * 3


def _permissions_enforced(folder) -> bool:
    """Whether this process is refused writes to a read-only folder (root, say, is not)."""
    folder.mkdir()
    folder.chmod(0o555)
    try:
        (folder / "probe").touch()
    except PermissionError:
        return True
    finally:
        folder.chmod(0o755)
    return False


def test_read_only_cache_is_checked_whole_and_served(tmp_path, checks):
    if not _permissions_enforced(tmp_path / "probe"):
        pytest.skip("this process writes through read-only permissions")
    write_two_chunks(tmp_path)
    folder = FeatureCache(tmp_path, SETTING).directory
    for path in (tmp_path, folder):
        path.chmod(0o555)
    try:
        for opened in (1, 2):
            np.testing.assert_array_equal(open_and_load(tmp_path), EXPECTED)
            assert checks == {"hashed": 4 * opened, "scanned": 2 * opened}
    finally:
        for path in (tmp_path, folder):
            path.chmod(0o755)


def test_file_replaced_between_the_memo_look_up_and_its_open_is_checked_whole(tmp_path, monkeypatch):
    root = tmp_path / "cache"
    first, _ = write_two_chunks(root)
    open_and_load(root)
    folder = FeatureCache(root, SETTING).directory
    open_chunk_file = feature_cache._open_chunk_file

    def replaced_just_before(path):
        if path.name == f"{first}.features.npy":
            monkeypatch.setattr(feature_cache, "_open_chunk_file", open_chunk_file)
            replace_with_flipped_copy(folder, first)
        return open_chunk_file(path)

    monkeypatch.setattr(feature_cache, "_open_chunk_file", replaced_just_before)
    with pytest.warns(UserWarning, match="corrupt .*checksum mismatch"):
        assert FeatureCache(root, SETTING).contains(KEYS).tolist() == [False] * 5 + [True] * 3


def test_chunks_written_just_before_an_open_are_checked_whole_again_next_time(tmp_path, checks):
    """Chunk files younger than a clock tick when their check was remembered are racy: a rewrite
    in place could keep their identity, so the next open checks them whole once more."""
    cache = FeatureCache(tmp_path, SETTING)
    cache.write_chunk(KEYS[:5], features(5))
    with pytest.MonkeyPatch.context() as patch:  # however slow the machine, the chunk is still racy
        patch.setattr(racy_timestamps, "CLOCK_TICK_NS", 600 * 10**9)
        FeatureCache(tmp_path, SETTING).refresh()
    settle_timestamps()
    for _ in range(2):
        FeatureCache(tmp_path, SETTING).refresh()
    assert checks == {"hashed": 4, "scanned": 2}
