"""The file-identity memo: what it remembers comes back for the same identity only, damage and
old layouts cost misses (never a wrong digest), and writers sharing it lose nothing."""
from __future__ import annotations

import hashlib
import multiprocessing
import os
import sqlite3
import time

import pytest
from conftest import settle_timestamps

from ufd_lib.features.extraction.digest_memo import (
    MEMO_NAME,
    DigestMemo,
    regular_identities,
    regular_identity,
)
from ufd_lib.racy_timestamps import is_racy


def digest(key: str) -> bytes:
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).digest()


def entries(keys):
    return [(key, (i, i + 1, i + 2, i + 3, i + 4), digest(key)) for i, key in enumerate(keys)]


def remembered(folder, items):
    memo = DigestMemo(folder)
    found = memo.lookup([key for key, _, _ in items], [identity for _, identity, _ in items])
    memo.close()
    return found


def test_each_file_comes_back_only_for_its_own_identity(tmp_path):
    items = entries([f"/images/{d}/{i:03d}.png" for d in "abc" for i in range(50)])
    memo = DigestMemo(tmp_path)
    memo.remember(items)
    memo.close()
    assert remembered(tmp_path, items) == [d for _, _, d in items]
    key, identity, _ = items[7]
    others = [identity[:field] + (identity[field] + 1,) + identity[field + 1 :] for field in range(5)]
    memo = DigestMemo(tmp_path)
    assert memo.lookup([key] * 6, [*others, None]) == [None] * 6
    assert memo.lookup(["/images/a/new.png", "/images/d/000.png"], [identity, identity]) == [None, None]
    memo.close()


def test_identities_beyond_int64_and_negative_times_round_trip(tmp_path):
    items = [("/images/a/far.png", (1, -5, -(2**63), 2**64 - 1, 2**63), bytes(range(32))),
             ("/images/a/near.png", (1, -5, -(2**63), 2**63 - 1, 2**63), bytes(32))]
    memo = DigestMemo(tmp_path)
    memo.remember(items)
    assert memo.lookup([key for key, _, _ in items], [identity for _, identity, _ in items]) == [d for _, _, d in items]
    memo.close()


@pytest.mark.parametrize("column", ["names", "identity", "digest", "row_check"])
def test_a_damaged_directory_row_gives_misses_not_wrong_digests(tmp_path, column):
    damaged = entries([f"/images/damaged/{i:03d}.png" for i in range(40)])
    intact = entries([f"/images/intact/{i:03d}.png" for i in range(40)])
    memo = DigestMemo(tmp_path)
    memo.remember(damaged + intact)
    memo.close()
    with sqlite3.connect(tmp_path / MEMO_NAME) as connection:
        value, rowid = connection.execute(f"SELECT {column}, rowid FROM digests WHERE directory = ?",
                                          (b"/images/damaged/",)).fetchone()
        if column == "row_check":
            value ^= 1 << 17
        else:
            value = bytearray(value)
            value[len(value) // 2] ^= 0x10
            value = bytes(value)
        connection.execute(f"UPDATE digests SET {column} = ? WHERE rowid = ?", (value, rowid))
    assert remembered(tmp_path, damaged) == [None] * len(damaged)
    assert remembered(tmp_path, intact) == [d for _, _, d in intact]

    memo = DigestMemo(tmp_path)  # the next remember there replaces the damaged row
    memo.remember(damaged[:3])
    memo.close()
    assert remembered(tmp_path, damaged) == [d for _, _, d in damaged[:3]] + [None] * (len(damaged) - 3)


def _remember_one_at_a_time(folder, items, barrier):
    memo = DigestMemo(folder)
    barrier.wait()
    for item in items:
        memo.remember([item])
    memo.close()


def test_two_processes_remembering_one_directory_at_once_both_land(tmp_path):
    items = entries([f"/images/shared/{i:03d}.png" for i in range(200)])
    context = multiprocessing.get_context("fork")
    barrier = context.Barrier(2)
    workers = [context.Process(target=_remember_one_at_a_time, args=(tmp_path, items[part::2], barrier))
               for part in range(2)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=120)
    assert [worker.exitcode for worker in workers] == [0, 0]
    assert remembered(tmp_path, items) == [d for _, _, d in items], "a writer lost the other's files"


def test_names_with_odd_characters_round_trip(tmp_path):
    odd = ["new\nline.png", os.fsdecode(b"latin-1 \xe9\xff.png"), "\udcff", "\ud800 lone.png",
           "caf\u00e9 \U0001f600.png", "", " ", "back\\slash.png", "tab\t.png"]
    keys = [f"/images/odd/{name}" for name in odd] + [os.fsdecode(b"/images/\xfe dir/a.png"), "/images/odd//a.png",
                                                      "/images/odd/a.png", "/top.png"]
    items = entries(keys)
    memo = DigestMemo(tmp_path)
    memo.remember(items)
    memo.close()
    assert remembered(tmp_path, items) == [d for _, _, d in items]


def test_a_name_with_nul_is_not_remembered_and_harms_no_neighbour(tmp_path):
    items = entries(["/images/a/one.png", "/images/a/t\0wo.png", "/images/a/three.png"])
    memo = DigestMemo(tmp_path)
    memo.remember(items)
    memo.close()
    assert remembered(tmp_path, items) == [items[0][2], None, items[2][2]]


def test_relative_keys_are_never_served(tmp_path):
    items = entries(["top.png", "/top.png"])
    memo = DigestMemo(tmp_path)
    memo.remember(items[:1])
    memo.close()
    assert remembered(tmp_path, items) == [None, None]


def test_forget_drops_only_the_files_named(tmp_path):
    items = entries([f"/images/a/{i}.png" for i in range(5)] + ["/images/b/0.png"])
    memo = DigestMemo(tmp_path)
    memo.remember(items)
    memo.forget(["/images/a/1.png", "/images/b/0.png", "/images/c/never.png"])
    memo.close()
    assert remembered(tmp_path, items) == [items[0][2], None, *[d for _, _, d in items[2:5]], None]
    with sqlite3.connect(tmp_path / MEMO_NAME) as connection:
        assert connection.execute("SELECT count(*) FROM digests").fetchone() == (1,), "an emptied row was kept"


def test_a_later_entry_for_a_file_replaces_the_earlier(tmp_path):
    key, identity = "/images/a/0.png", (1, 2, 3, 4, 5)
    memo = DigestMemo(tmp_path)
    memo.remember([(key, identity, bytes(32)), ("/images/a/1.png", identity, bytes(32))])
    memo.remember([(key, identity, b"\1" * 32)])
    memo.remember([(key, identity, b"\2" * 32), (key, identity, b"\3" * 32)])
    assert memo.lookup([key, "/images/a/1.png"], [identity, identity]) == [b"\3" * 32, bytes(32)]
    memo.close()


def test_a_memo_of_the_old_one_row_per_file_layout_is_replaced(tmp_path):
    with sqlite3.connect(tmp_path / MEMO_NAME) as connection:
        connection.execute("CREATE TABLE digests (path TEXT PRIMARY KEY, size INTEGER, mtime_ns INTEGER, "
                           "ctime_ns INTEGER, inode INTEGER, device INTEGER, digest BLOB, row_check INTEGER)")
        connection.execute("INSERT INTO digests VALUES ('/images/a/0.png', 1, 2, 3, 4, 5, ?, 0)", (bytes(32),))
    connection.close()
    items = entries(["/images/a/0.png", "/images/a/1.png"])
    assert remembered(tmp_path, items) == [None, None]
    memo = DigestMemo(tmp_path)
    memo.remember(items)
    memo.close()
    assert remembered(tmp_path, items) == [d for _, _, d in items]
    assert not list(tmp_path.glob(f"{MEMO_NAME}.corrupt-*")), "an old memo is not damage"


def open_read_only(monkeypatch):
    """Every SQLite database opened from now on is opened read-only (root ignores file modes)."""
    connect = sqlite3.connect
    monkeypatch.setattr(sqlite3, "connect", lambda path, **options: connect(f"file:{path}?mode=ro", uri=True,
                                                                            **options))


def test_a_read_only_memo_is_read_and_left_as_it_is(tmp_path, monkeypatch):
    items = entries([f"/images/a/{i}.png" for i in range(3)])
    memo = DigestMemo(tmp_path)
    memo.remember(items[:2])
    memo.close()
    before = (tmp_path / MEMO_NAME).read_bytes()
    open_read_only(monkeypatch)
    memo = DigestMemo(tmp_path)
    memo.remember(items[2:])
    memo.forget([items[0][0]])
    assert memo.lookup([key for key, _, _ in items], [identity for _, identity, _ in items]) == \
        [items[0][2], items[1][2], None]
    memo.close()
    assert (tmp_path / MEMO_NAME).read_bytes() == before


def test_a_read_only_memo_of_the_old_layout_is_left_out(tmp_path, monkeypatch):
    with sqlite3.connect(tmp_path / MEMO_NAME) as connection:
        connection.execute("CREATE TABLE digests (path TEXT PRIMARY KEY, digest BLOB)")
    connection.close()
    open_read_only(monkeypatch)
    memo = DigestMemo(tmp_path)
    items = entries(["/images/a/0.png"])
    memo.remember(items)
    assert memo.lookup(["/images/a/0.png"], [items[0][1]]) == [None] and not memo.writable
    memo.close()
    assert not list(tmp_path.glob(f"{MEMO_NAME}.corrupt-*"))


def test_files_come_back_whatever_the_order_and_company_they_are_asked_in(tmp_path):
    items = entries([f"/images/{d}/{i:03d}.png" for d in "ab" for i in range(5)])
    memo = DigestMemo(tmp_path)
    memo.remember(items)
    by_key = {key: (identity, found) for key, identity, found in items}
    for asked in (["/images/a/003.png", "/images/b/000.png", "/images/a/001.png"],
                  [key for key, _, _ in items][::-1],
                  ["/images/a/000.png", "/images/a/new.png", "/images/a/001.png", "/images/a/000.png"]):
        identities = [by_key.get(key, ((9, 9, 9, 9, 9), None))[0] for key in asked]
        assert memo.lookup(asked, identities) == [by_key.get(key, (None, None))[1] for key in asked]
    memo.close()


def test_identities_of_a_tree_are_those_stat_gives_one_file_at_a_time(tmp_path):
    """Stat-ing directory by directory gives each file regular_identity's answer, links followed
    or not, whatever sits among the files: links, a dangling link, a FIFO, a folder, a missing
    name (which sends its whole directory through the one-file-at-a-time path)."""
    folder = tmp_path / "a"
    folder.mkdir()
    for i in range(5):
        (folder / f"{i}.png").write_bytes(bytes(i))
    (folder / "link.png").symlink_to(folder / "3.png")
    (folder / "dangling.png").symlink_to(folder / "missing-target.png")
    (folder / "sub.png").mkdir()
    os.mkfifo(folder / "fifo.png")
    other = tmp_path / "b"
    other.mkdir()
    (other / "x.png").write_bytes(b"x")
    names = sorted(os.listdir(folder))
    for keys in ([str(folder / name) for name in names] + [str(other / "x.png")],
                 [str(folder / name) for name in names] + [str(folder / "gone.png"), str(other / "x.png")]):
        for follow in (True, False):
            expected = [regular_identity(key, follow_symlinks=follow) for key in keys]
            found = regular_identities(keys, follow_symlinks=follow)
            assert found.regular.tolist() == [identity is not None for identity in expected]
            assert [tuple(row) for row, ok in zip(found.values.tolist(), found.regular) if ok] == \
                [identity for identity in expected if identity is not None]


def test_lookup_takes_the_identities_itself_by_default(tmp_path):
    files = [tmp_path / "images" / f"{i}.png" for i in range(4)]
    files[0].parent.mkdir()
    for i, path in enumerate(files):
        path.write_bytes(bytes([i]))
    settle_timestamps()
    keys = [str(path) for path in files]
    memo = DigestMemo(tmp_path)
    memo.remember([(key, regular_identity(key), digest(key)) for key in keys])
    assert memo.lookup(keys) == [digest(key) for key in keys]
    files[2].write_bytes(b"changed")
    files[3].unlink()
    assert memo.lookup(keys) == [digest(keys[0]), digest(keys[1]), None, None]
    assert memo.lookup(keys[1:2] + keys[0:1]) == [digest(keys[1]), digest(keys[0])]  # asked in another order
    memo.close()


def _whole_seconds(result: os.stat_result) -> os.stat_result:
    """``result`` as a file system with 1-second timestamps reports it."""
    fields = list(result) + [getattr(result, name) for name in ("st_atime", "st_mtime", "st_ctime")]
    fields += [getattr(result, name) // 10**9 * 10**9 for name in ("st_atime_ns", "st_mtime_ns", "st_ctime_ns")]
    for index in (7, 8, 9):
        fields[index] = int(fields[index])
    for index in (10, 11, 12):
        fields[index] = float(int(fields[index]))
    return os.stat_result(fields)


@pytest.fixture
def coarse_timestamps(monkeypatch):
    """Every stat and fstat answers in whole seconds, as on ext3 or ext4 with 128-byte inodes."""
    real_stat, real_fstat = os.stat, os.fstat
    monkeypatch.setattr(os, "stat", lambda *a, **k: _whole_seconds(real_stat(*a, **k)))
    monkeypatch.setattr(os, "fstat", lambda *a, **k: _whole_seconds(real_fstat(*a, **k)))


def _start_of_a_second() -> None:
    time.sleep(1 - time.time() % 1 + 0.01)


def test_a_same_second_rewrite_on_a_coarse_file_system_is_hashed_again(tmp_path, coarse_timestamps):
    """git's racily clean entry: same size, same inode, same (whole-second) mtime and ctime."""
    from ufd_lib.features.extraction.extract import plan_digests

    image = tmp_path / "images" / "a.png"
    image.parent.mkdir()
    _start_of_a_second()
    image.write_bytes(b"first version")
    before = regular_identity(image)
    first, hashed, _ = plan_digests([image], DigestMemo(tmp_path), 1 << 20)
    with open(image, "r+b") as handle:  # in place: same inode, same size
        handle.write(b"other")
    assert regular_identity(image) == before, "the rewrite left its second: the scenario did not happen"
    again, hashed_again, recognised = plan_digests([image], DigestMemo(tmp_path), 1 << 20)
    assert (hashed, hashed_again, recognised) == (1, 1, 0)
    assert again == [hashlib.sha256(b"other version").digest()] != first


def test_a_coarse_identity_older_than_the_memo_by_its_granularity_is_kept(tmp_path, coarse_timestamps):
    image = tmp_path / "a.png"
    image.write_bytes(b"x")
    identity = regular_identity(image)
    memo = DigestMemo(tmp_path)
    memo.opened_ns = identity[2] + 3 * 10**9  # opened three seconds after the file's last change
    memo.remember([(str(image), identity, digest("a"))])
    assert memo.lookup([str(image)]) == [digest("a")]
    memo.close()


@pytest.mark.parametrize(("ctime", "opened", "racy"), [
    (10 * 10**9, 11 * 10**9 + 5 * 10**8, True),  # whole seconds: a 2 s granularity is assumed
    (10 * 10**9, 12 * 10**9 + 5 * 10**8, False),
    (10 * 10**9 + 123, 10 * 10**9 + 123 + 20_000_000, False),  # fine: older than a clock tick
    (10 * 10**9 + 123, 10 * 10**9 + 123 + 5_000_000, True),
])
def test_racy_is_judged_at_the_granularity_the_ctime_shows(ctime, opened, racy):
    assert is_racy(ctime, opened) is racy


def test_a_racy_entry_replaces_what_was_remembered(tmp_path):
    memo = DigestMemo(tmp_path)
    memo.remember([("/images/a.png", (1, 0, 5, 1, 1), digest("old"))])
    memo.remember([("/images/a.png", (1, 0, memo.opened_ns, 1, 1), digest("new"))])
    assert memo.lookup(["/images/a.png"] * 2, [(1, 0, 5, 1, 1), (1, 0, memo.opened_ns, 1, 1)]) == [None, None]
    memo.close()
