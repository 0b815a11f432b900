"""A per-file list built twice is the same file, and comparing a copy with it catches one
missing, one extra and one changed file."""
from __future__ import annotations

from pathlib import Path

import pytest
from conftest import write_image

from ufd_lib.data.manifests import ManifestError
from ufd_lib.data.per_file_list import build_file_list, compare_with_list, covered_files, write_file_list


def _copy(root: Path) -> Path:
    for i in range(4):
        write_image(root / "set" / "0_real" / f"{i}.png", seed=i)
        write_image(root / "set" / "1_fake" / f"{i}.png", seed=50 + i)
    return root


def _build(root: Path, out: Path) -> str:
    return write_file_list(out, build_file_list(root, covered_files(root)))


def test_a_list_built_twice_is_identical(tmp_path: Path) -> None:
    root = _copy(tmp_path / "data")
    first, second = _build(root, tmp_path / "a.csv"), _build(root, tmp_path / "b.csv")
    assert first == second and (tmp_path / "a.csv").read_bytes() == (tmp_path / "b.csv").read_bytes()
    lines = (tmp_path / "a.csv").read_text().splitlines()
    assert lines[0] == "path,size_bytes,sha256" and lines[1].startswith("set/0_real/0.png,")
    assert len(lines) == 9 and lines[1:] == sorted(lines[1:])


def test_verify_catches_missing_extra_and_changed(tmp_path: Path) -> None:
    root = _copy(tmp_path / "data")
    _build(root, tmp_path / "list.csv")
    assert compare_with_list(root, tmp_path / "list.csv").ok
    (root / "set" / "0_real" / "1.png").unlink()
    write_image(root / "set" / "1_fake" / "new.png", seed=99)
    write_image(root / "set" / "1_fake" / "2.png", seed=98)
    found = compare_with_list(root, tmp_path / "list.csv")
    assert (found.missing, found.extra, found.changed) == (["set/0_real/1.png"], ["set/1_fake/new.png"],
                                                             ["set/1_fake/2.png"])
    assert found.matched == 6 and not found.ok
    assert "1 missing, 1 extra, 1 changed" in found.summary()


def test_a_newer_benchmark_manifest_lists_the_whole_copy_and_an_unknown_one_is_refused(tmp_path: Path) -> None:
    root = _copy(tmp_path / "data")
    assert covered_files(root, "chameleon") == covered_files(root) and len(covered_files(root)) == 8
    with pytest.raises(ManifestError, match="nonesuch"):
        covered_files(root, "nonesuch")


def test_a_sets_file_list_is_the_same_for_two_copies_in_different_places(tmp_path: Path) -> None:
    from ufd_lib.data.image_sets import parse_set_spec
    from ufd_lib.data.per_file_list import file_list_bytes, set_file_list

    lists = [file_list_bytes(set_file_list(parse_set_spec(f"x={_copy(tmp_path / where) / 'set'}")))
             for where in ("one", "two/deeper")]
    assert lists[0] == lists[1] and lists[0].count(b"\n") == 9
