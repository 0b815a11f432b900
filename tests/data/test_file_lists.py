"""Released-style pickled file lists: refused by default, read as plain strings when allowed."""
from __future__ import annotations

import pickle
from pathlib import Path

import pytest
from conftest import make_image_set

from ufd_lib.data.discovery import collect_images
from ufd_lib.data.file_lists import PickledListError, read_pickled_list
from ufd_lib.data.image_sets import ImageSetSpec


class _Payload:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.write_text, (self.marker, "code ran"))


def _write(path: Path, value) -> Path:
    path.write_bytes(pickle.dumps(value))
    return path


def test_refused_unless_allowed(tmp_path, monkeypatch):
    monkeypatch.delenv("UFD_ALLOW_PICKLED_LISTS", raising=False)
    listed = _write(tmp_path / "real.pickle", ["a.png"])
    with pytest.raises(PickledListError, match=r"real\.pickle is a pickled file list.*--allow-pickled-lists"):
        read_pickled_list(listed)
    monkeypatch.setenv("UFD_ALLOW_PICKLED_LISTS", "1")
    assert read_pickled_list(listed) == [Path("a.png")]


@pytest.mark.parametrize("value", [{"a": 1}, [b"bytes"], ["ok", 3], "a string"])
def test_anything_but_a_list_of_strings_is_refused(tmp_path, monkeypatch, value):
    monkeypatch.setenv("UFD_ALLOW_PICKLED_LISTS", "1")
    with pytest.raises(PickledListError, match="not a list of path strings"):
        read_pickled_list(_write(tmp_path / "list.pkl", value))


def test_code_in_a_list_never_runs(tmp_path, monkeypatch):
    monkeypatch.setenv("UFD_ALLOW_PICKLED_LISTS", "1")
    marker = tmp_path / "ran"
    for value in (_Payload(marker), ["a.png", _Payload(marker)], [Path("a.png")]):
        with pytest.raises(PickledListError, match="refused: it refers to"):
            read_pickled_list(_write(tmp_path / "hostile.pickle", value))
    assert not marker.exists()
    (tmp_path / "damaged.pickle").write_bytes(pickle.dumps(["a.png"])[:-3])
    with pytest.raises(PickledListError, match="not a readable pickled list"):
        read_pickled_list(tmp_path / "damaged.pickle")


def test_a_set_can_take_its_classes_from_lists(tmp_path, monkeypatch):
    monkeypatch.setenv("UFD_ALLOW_PICKLED_LISTS", "1")
    root = make_image_set(tmp_path / "set", 3, 2)
    reals = sorted(str(p) for p in root.rglob("0_real/*.png"))
    fakes = sorted(str(p) for p in root.rglob("1_fake/*.png"))
    spec = ImageSetSpec("listed", _write(tmp_path / "real.pickle", reals[::-1]), _write(tmp_path / "fake.pkl", fakes))
    images = collect_images(spec)
    assert [(i.path, i.label) for i in images] == [(p, 0) for p in reals] + [(p, 1) for p in fakes]
    assert images == collect_images(ImageSetSpec("folder", root, root))


def test_the_command_line_flag_reads_pickled_lists_without_the_environment(tmp_path, monkeypatch, capsys):
    import os

    from conftest import TINY_ENCODER, ufd

    monkeypatch.delenv("UFD_ALLOW_PICKLED_LISTS", raising=False)
    root = tmp_path / "set"
    make_image_set(root, 2, 2)
    real = _write(tmp_path / "real.pickle", sorted(str(p) for p in (root / "0_real").iterdir()))
    fake = _write(tmp_path / "fake.pickle", sorted(str(p) for p in (root / "1_fake").iterdir()))
    argv = ["extract", "--encoder", TINY_ENCODER, "--device", "cpu", "--quiet", "--cache-dir", tmp_path / "cache",
            "--set", f"listed={real}:{fake}"]
    code, _, stderr = ufd(capsys, *argv)
    assert code == 2 and "--allow-pickled-lists" in stderr
    code, stdout, stderr = ufd(capsys, *argv, "--allow-pickled-lists")
    assert code == 0, stderr
    assert "encoded 4 images" in stdout
    assert "UFD_ALLOW_PICKLED_LISTS" not in os.environ, "the flag was passed through the environment"


def test_one_pickled_list_for_both_classes_is_a_usage_error(tmp_path):
    from ufd_lib.data.image_sets import SpecError, parse_set_spec

    listed = _write(tmp_path / "list.pickle", ["a.png"])
    with pytest.raises(SpecError, match="holds one class"):
        parse_set_spec(f"x={listed}")
