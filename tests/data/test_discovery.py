"""Image discovery: both official layouts, awkward file names, determinism, official sampling."""
from __future__ import annotations

import itertools
import os
import random
from pathlib import Path

import pytest
from conftest import make_image_set

from ufd_lib import config
from ufd_lib.data.discovery import (
    DIRECTORY_LINK,
    EmptyImageSetError,
    collect_images,
    discover_images,
    find_class_images,
    official_subsample,
)
from ufd_lib.data.image_sets import ImageSetSpec, SpecError, parse_set_spec


def touch(path: Path) -> Path:
    """Discovery never decodes, so empty files stand in for images."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"")
    return path


def labelled(images) -> list[tuple[str, int]]:
    return [(image.path, image.label) for image in images]


def strings(paths) -> list[str]:
    """Discovery's answer for these files: their path strings, sorted."""
    return sorted(str(path) for path in paths)


def test_flat_layout_one_root_for_both_classes(tmp_path):
    root = tmp_path / "biggan"
    real = [touch(root / "0_real" / f"{i}.png") for i in (2, 0, 1)]
    fake = [touch(root / "1_fake" / f"{i}.png") for i in (1, 0)]
    images = collect_images(ImageSetSpec("biggan", root, root))
    assert labelled(images) == [(p, 0) for p in strings(real)] + [(p, 1) for p in strings(fake)]


def test_category_layout(tmp_path):
    root = tmp_path / "progan"
    for category in ("horse", "airplane", "cat"):
        touch(root / category / "0_real" / "a.png")
        touch(root / category / "1_fake" / "a.png")
        touch(root / category / "1_fake" / "b.png")
    images = collect_images(ImageSetSpec("progan", root, root))
    assert [(os.path.relpath(p, root), label) for p, label in labelled(images)] == [
        ("airplane/0_real/a.png", 0), ("cat/0_real/a.png", 0), ("horse/0_real/a.png", 0),
        ("airplane/1_fake/a.png", 1), ("airplane/1_fake/b.png", 1), ("cat/1_fake/a.png", 1),
        ("cat/1_fake/b.png", 1), ("horse/1_fake/a.png", 1), ("horse/1_fake/b.png", 1),
    ]


def test_separate_real_and_fake_roots_take_each_class_only_from_its_root(tmp_path):
    laion = tmp_path / "laion"
    ldm = tmp_path / "ldm_200"
    real = touch(laion / "0_real" / "r.png")
    touch(laion / "1_fake" / "not-this-set.png")  # a fake under the real root is not ours
    touch(ldm / "0_real" / "not-this-set-either.png")
    fake = touch(ldm / "1_fake" / "f.png")
    assert labelled(collect_images(ImageSetSpec("ldm_200", laion, ldm))) == [(str(real), 0), (str(fake), 1)]


def test_root_that_is_the_class_folder_itself(tmp_path):
    real = touch(tmp_path / "imagenet" / "0_real" / "x.png")
    assert find_class_images(tmp_path / "imagenet" / "0_real", "0_real") == [str(real)]
    assert find_class_images(tmp_path / "imagenet" / "0_real", "1_fake") == []


def test_extensions_in_any_case_and_awkward_names_non_images_ignored(tmp_path):
    folder = tmp_path / "set" / "0_real"
    wanted = [
        touch(folder / name)
        for name in ("a.PNG", "b.Jpg", "c.JPEG", "d.bmp", "e.WebP", "many.dots.in.name.png",
                     "with space.jpg", "café 写真 ünïcødé.png", ".hidden.png")
    ]
    for name in ("notes.txt", "README", "image.png.txt", "archive.tar.gz", "png", "x.gif.bak"):
        touch(folder / name)
    (folder / "folder.png").mkdir()  # a directory with an image suffix is not an image
    found = find_class_images(tmp_path / "set", "0_real")
    assert found == strings(wanted)


def splitext_is_image_name(name: str) -> bool:
    """The rule's first definition, which :func:`config.is_image_name` must answer exactly as."""
    return os.path.splitext(name)[1].lower() in config.IMAGE_EXTENSIONS


TRICKY_NAMES = [
    "", ".", "..", "...", ".png", "..png", "...png", "a.", "a..", "noext", "png", "PNG", ".PNG", "a.png",
    "a..png", "a...png", ".a.png", "..a.png", ".hidden.png", "a.PNG", "a.Png", "A.JPEG", "a.jpeg.",
    "a.png.", "a.png.txt", "a.txt.png", "a.tar.gz", "a .png", " .png", "a.png ", "a. png", "a.pn",
    "a.pngg", "a.jpe", "a.webp", "a.WEBP", "a.bmp", "a.gif", "a\\.png", "\\.png",
    "d/a.png", "d/.png", "d/..png", "d/a..png", "d./png", "d.png/x", "d.png/", "/.png", "/a.png", "./.png",
    "../a.png", "../.png", "d/./..png", "a.\u212apng", "a.PN\u0130", "\u03a3.\u03a3", "写真.PNG", "a\x00.png",
]


def test_is_image_name_answers_as_splitext_did():
    """Every answer of the fast rule equals os.path.splitext's, on hand-picked names (leading
    dots, trailing dots, separators, non-ASCII case folding) and on every name made of three
    pieces that meet at dots and separators."""
    pieces = ["", ".", "..", "/", "a", "png", "PNG", "jPeG", "webp", "gif", ".png", "./", " "]
    generated = ["".join(parts) for parts in itertools.product(pieces, repeat=3)]
    names = TRICKY_NAMES + generated
    assert [config.is_image_name(name) for name in names] == [splitext_is_image_name(name) for name in names]
    assert config.is_image_name("a.png") and config.is_image_name("a..png") and config.is_image_name(".hidden.png")
    assert not config.is_image_name(".png") and not config.is_image_name("a.") and not config.is_image_name("noext")


def test_a_listings_image_names_are_those_is_image_name_accepts():
    """The listing filter discovery uses gives is_image_name's answers, in listing order, for
    every separator-free name of the generated set (listings hold no separators)."""
    pieces = ["", ".", "..", "a", "png", "PNG", "jPeG", "webp", "gif", ".png", " ", "\u212a"]
    names = [name for name in ("".join(parts) for parts in itertools.product(pieces, repeat=3))
             if name and os.sep not in name] + [name for name in TRICKY_NAMES if name and os.sep not in name]
    random.Random(0).shuffle(names)
    assert config.image_names(names) == [name for name in names if config.is_image_name(name)]
    assert config.image_names(["a.png", "b.PNG", "c.txt"]) == ["a.png", "b.PNG"]


def test_a_folder_holding_both_classes_is_listed_once(tmp_path, monkeypatch):
    root = tmp_path / "set"
    for i in range(3):
        touch(root / "cat" / "0_real" / f"{i}.png")
        touch(root / "cat" / "1_fake" / f"{i}.png")
    listed, scandir = [], os.scandir

    def counting_scandir(path):
        listed.append(os.fspath(path))
        return scandir(path)

    with monkeypatch.context() as patched:  # undone before tmp_path is removed (it lists folders too)
        patched.setattr(os, "scandir", counting_scandir)
        images = collect_images(ImageSetSpec("set", root, root))
    assert [label for _, label in labelled(images)] == [0] * 3 + [1] * 3
    assert sorted(listed) == sorted(str(folder) for folder in (root, root / "cat", root / "cat" / "0_real",
                                                                 root / "cat" / "1_fake"))


def test_order_is_sorted_and_deterministic(tmp_path):
    root = tmp_path / "set"
    names = [f"{i}.png" for i in random.Random(3).sample(range(1000), 50)]
    for name in names:
        touch(root / "1_fake" / name)
    first = find_class_images(root, "1_fake")
    assert first == sorted(first)
    assert len(first) == 50
    assert find_class_images(root, "1_fake") == first


@pytest.mark.timeout(20)
def test_symlink_loops_terminate_and_files_are_listed_once(tmp_path):
    root = tmp_path / "set"
    image = touch(root / "0_real" / "sub" / "a.png")
    os.symlink(root, root / "0_real" / "sub" / "to-root")
    os.symlink(root / "0_real", root / "0_real" / "self")
    found = find_class_images(root, "0_real")
    assert found == [str(image)]


def test_directory_links_are_not_followed_and_are_reported(tmp_path):
    elsewhere = tmp_path / "elsewhere"
    touch(elsewhere / "x.png")
    root = tmp_path / "set"
    real, fake = build_classes(root, 1, 1)
    os.symlink(elsewhere, root / "1_fake" / "linked")
    os.symlink("/", root / "0_real" / "rootfs")
    assert find_class_images(root, "1_fake") == fake
    found = discover_images(ImageSetSpec("set", root, root))
    assert split(found.images) == (real, fake)
    assert found.skipped == [(str(root / "0_real" / "rootfs"), DIRECTORY_LINK),
                             (str(root / "1_fake" / "linked"), DIRECTORY_LINK)]
    separate = discover_images(ImageSetSpec("set", root / "0_real", root / "1_fake"))
    assert split(separate.images) == (real, fake) and len(separate.skipped) == 2


def test_a_linked_root_is_followed(tmp_path):
    root = tmp_path / "set"
    real, fake = build_classes(root, 1, 1)
    os.symlink(root, tmp_path / "alias")
    found = discover_images(ImageSetSpec("set", tmp_path / "alias", tmp_path / "alias"))
    assert [os.path.basename(path) for path, _ in found.images] == ["r00.png", "f00.png"]
    assert found.skipped == []


@pytest.mark.timeout(60)
@pytest.mark.parametrize("sampling", ["all", "official"])
def test_a_deep_tree_is_walked_without_recursion(tmp_path, monkeypatch, sampling):
    root = tmp_path / "set"
    touch(root / "0_real" / "r.png")
    deep = root / "1_fake"
    deep.mkdir(parents=True)
    monkeypatch.chdir(deep)  # build 1,200 levels by relative steps: the full path is too long for one call
    for _ in range(1200):
        os.mkdir("d")
        os.chdir("d")
    Path("f.png").write_bytes(b"x")
    try:
        found = discover_images(ImageSetSpec("set", root, root), sampling=sampling)
    finally:  # shutil.rmtree recurses, so pytest could not remove the tree
        os.remove("f.png")
        for _ in range(1200):
            os.chdir("..")
            os.rmdir("d")
    assert [label for _, label in found.images] == [0, 1]
    assert found.images[1].path.count("/d") == 1200


@pytest.fixture
def small_official_caps(monkeypatch):
    monkeypatch.setattr(config, "OFFICIAL_MAX_PER_CLASS", 10)
    monkeypatch.setattr(config, "OFFICIAL_FALLBACK_PER_CLASS", 3)


def release_sample(real: list[str], fake: list[str], cap: int, fallback: int) -> tuple[list[str], list[str]]:
    """validate.py's read_path, on sorted lists: the global random module seeded once with 0,
    then the reals and the fakes shuffled from that one stream."""
    real, fake = sorted(real), sorted(fake)
    if cap > len(real) or cap > len(fake):
        cap = fallback
    state = random.getstate()
    try:
        random.seed(0)
        random.shuffle(real)
        random.shuffle(fake)
    finally:
        random.setstate(state)
    return real[:cap], fake[:cap]


def build_classes(root: Path, n_real: int, n_fake: int) -> tuple[list[str], list[str]]:
    real = [str(touch(root / "0_real" / f"r{i:02d}.png")) for i in range(n_real)]
    fake = [str(touch(root / "1_fake" / f"f{i:02d}.png")) for i in range(n_fake)]
    return real, fake


def split(images) -> tuple[list[str], list[str]]:
    return [i.path for i in images if i.label == 0], [i.path for i in images if i.label == 1]


def test_official_sampling_caps_each_class(tmp_path, small_official_caps):
    root = tmp_path / "set"
    real, fake = build_classes(root, 14, 12)
    images = collect_images(ImageSetSpec("set", root, root), sampling="official")
    assert split(images) == release_sample(real, fake, 10, 3)


def test_official_sampling_falls_back_when_a_class_is_short(tmp_path, small_official_caps):
    root = tmp_path / "set"
    real, fake = build_classes(root, 14, 9)  # fake has fewer than the cap → both keep 3
    images = collect_images(ImageSetSpec("set", root, root), sampling="official")
    assert split(images) == release_sample(real, fake, 10, 3)
    assert [len(part) for part in split(images)] == [3, 3]


def test_official_sampling_with_real_caps_1000_and_100():
    real = [f"/r/{i:05d}.png" for i in range(1500)]
    fake = [f"/f/{i:05d}.png" for i in range(1200)]
    assert official_subsample(real, fake) == release_sample(real, fake, 1000, 100)
    assert official_subsample(real, fake[:999]) == release_sample(real, fake[:999], 1000, 100)


def test_official_fakes_come_from_the_stream_the_reals_left():
    """Reseeding before the fakes (our old behaviour) picks a different subset."""
    real = [f"/r/{i:05d}.png" for i in range(1500)]
    fake = [f"/f/{i:05d}.png" for i in range(1500)]
    reseeded = sorted(fake)
    random.Random(0).shuffle(reseeded)
    _, kept_fake = official_subsample(real, fake)
    assert kept_fake != reseeded[:1000]


def test_official_file_rule_is_the_releases_name_split_and_path_substring(tmp_path):
    root = tmp_path / "set"
    read = [touch(root / "0_real" / name) for name in
            ("a.png", "b.jpg", "c.JPEG", "d.jpeg", "e.bmp", "f.png.txt", "g.png.JPG")]
    dropped = {name: touch(root / "0_real" / name) for name in
               ("h.PNG", "i.webp", "j.v2.png", ".hidden.png", "k.Jpg")}
    touch(root / "0_real" / "notes.txt")  # not an image by either rule: not listed at all
    substring_real = touch(root / "x0_realy" / "m.png")  # '0_real' anywhere in the path string
    in_name = touch(root / "other" / "n_1_fake.png")
    neither = touch(root / "other" / "o.png")
    fake = touch(root / "1_fake" / "p.png")
    with pytest.warns(UserWarning, match="8 real and 2 fake"):
        found = discover_images(ImageSetSpec("set", root, root), sampling="official")
    assert [sorted(part) for part in split(found.images)] == [
        strings([*read, substring_real]), strings([in_name, fake])]
    skipped = dict(found.skipped)
    assert set(skipped) == {str(p) for p in dropped.values()} | {str(neither)}
    assert "after the first dot" in skipped[str(dropped["h.PNG"])]
    assert "0_real does not occur" in skipped[str(neither)] or "1_fake does not occur" in skipped[str(neither)]
    # `all` keeps every image of either case in a class folder, and only there
    everything = split(collect_images(ImageSetSpec("set", root, root)))
    assert everything[0] == strings([*read[:5], read[6], *dropped.values()])  # f.png.txt is no image
    assert everything[1] == [str(fake)]


def test_official_does_not_enter_symlinked_directories_and_says_so(tmp_path):
    elsewhere = touch(tmp_path / "elsewhere" / "x.png").parent
    root = tmp_path / "set"
    real, fake = build_classes(root, 2, 2)
    os.symlink(elsewhere, root / "1_fake" / "linked")
    found = discover_images(ImageSetSpec("set", root, root), sampling="official")
    assert split(found.images) == (real, fake)
    assert found.skipped == [(str(root / "1_fake" / "linked"), DIRECTORY_LINK)]


def test_official_reads_a_directory_reached_directly_even_when_a_link_also_reaches_it(tmp_path):
    root = tmp_path / "set"
    real, fake = build_classes(root, 2, 2)
    os.symlink(root / "1_fake", root / "0_real" / "a_link")  # sorts before the files it duplicates
    found = discover_images(ImageSetSpec("set", root, root), sampling="official")
    assert [sorted(part) for part in split(found.images)] == [real, fake]
    assert found.skipped == [(str(root / "0_real" / "a_link"), DIRECTORY_LINK)]


@pytest.mark.timeout(20)
def test_fifo_named_like_an_image_is_never_opened(tmp_path):
    root = tmp_path / "set"
    real, fake = build_classes(root, 2, 2)
    pipe = str(root / "1_fake" / "pipe.png")
    os.mkfifo(pipe)
    # listed by name without a stat or an open; extraction skips it as "not a regular file"
    assert split(collect_images(ImageSetSpec("set", root, root))) == (real, sorted([*fake, pipe]))
    with pytest.warns(UserWarning, match="2 real and 3 fake"):
        found = discover_images(ImageSetSpec("set", root, root), sampling="official")
    assert split(found.images) == release_sample(real, [*fake, pipe], 1000, 100)
    assert found.skipped == []


@pytest.mark.timeout(20)
def test_official_shuffles_dangling_links_and_fifos_with_the_images_as_the_release_does(tmp_path, small_official_caps):
    """The release's walk lists every non-directory entry, regular or not; dropping them before
    the seed-0 shuffle would shift every later draw."""
    root = tmp_path / "set"
    real, fake = build_classes(root, 14, 12)
    gone = root / "1_fake" / "f00_gone.png"
    gone.symlink_to(tmp_path / "nowhere.png")
    pipe = root / "0_real" / "r00_pipe.png"
    os.mkfifo(pipe)
    found = discover_images(ImageSetSpec("set", root, root), sampling="official")
    expected = release_sample([*real, str(pipe)], [*fake, str(gone)], 10, 3)
    assert split(found.images) == expected
    assert expected != release_sample(real, fake, 10, 3)  # the stressor changes the subset
    assert found.skipped == []  # extraction skips them after selection, with the reason


def test_official_labels_a_path_in_both_class_lists_fake_in_both_places_and_warns(tmp_path, small_official_caps):
    """validate.py fills its label dictionary from the chosen reals, then the chosen fakes."""
    root = tmp_path / "set"
    real, fake = build_classes(root, 2, 2)
    both = str(touch(root / "0_real" / "1_fake" / "both.png"))
    with pytest.warns(UserWarning, match=f"in both class lists: {both}; .* labelled fake"):
        found = discover_images(ImageSetSpec("set", root, root), sampling="official")
    chosen_real, chosen_fake = release_sample([*real, both], [*fake, both], 10, 3)
    assert labelled(found.images) == ([(path, int(path == both)) for path in chosen_real]
                                      + [(path, 1) for path in chosen_fake])
    assert [path for path, label in labelled(found.images)].count(both) == 2


def test_official_lists_names_without_a_dot_as_skipped_with_the_reason(tmp_path):
    from ufd_lib.data.discovery import NO_DOT_REASON

    root = tmp_path / "set"
    real, fake = build_classes(root, 2, 2)
    readme = touch(root / "0_real" / "README")
    licence = touch(root / "LICENSE")
    found = discover_images(ImageSetSpec("set", root, root), sampling="official")
    assert split(found.images) == release_sample(real, fake, 1000, 100)
    assert found.skipped == sorted([(str(licence), NO_DOT_REASON), (str(readme), NO_DOT_REASON)])
    assert "IndexError" in NO_DOT_REASON


def test_unequal_classes_after_the_cap_warn_instead_of_stopping(tmp_path, small_official_caps):
    root = tmp_path / "set"
    real, fake = build_classes(root, 5, 2)  # both below the fallback of 3 for fakes
    with pytest.warns(UserWarning, match="3 real and 2 fake"):
        images = collect_images(ImageSetSpec("set", root, root), sampling="official")
    assert split(images) == release_sample(real, fake, 10, 3)


@pytest.mark.parametrize("sampling", ["all", "official"])
def test_a_set_without_images_is_a_usage_error_naming_the_folder(tmp_path, sampling):
    root = tmp_path / "empty"
    touch(root / "0_real" / "notes.txt")
    with pytest.raises(EmptyImageSetError) as error:
        collect_images(ImageSetSpec("empty", root, root), sampling)
    message = str(error.value)
    assert f"no image files (.bmp, .jpeg, .jpg, .png, .webp) under {root}" in message and "\n" not in message
    assert f"real images go in {root}/0_real/ and fakes in {root}/1_fake/" in message


def test_a_flat_folder_is_refused_counting_its_images_and_saying_where_they_go(tmp_path):
    root = tmp_path / "flat"
    for index in range(3):
        touch(root / f"{index}.jpg")
    touch(root / "sub" / "3.png")
    with pytest.raises(EmptyImageSetError) as error:
        collect_images(ImageSetSpec("flat", root, root))
    message = str(error.value)
    assert f"set flat: 4 image file(s) under {root}, none inside a 0_real or 1_fake folder" in message
    assert f"real images go in {root}/0_real/" in message and "*.png" not in message


def test_a_set_with_one_class_warns_which_class_is_missing(tmp_path):
    root = tmp_path / "set"
    real, _ = build_classes(root, 3, 0)
    with pytest.warns(UserWarning, match=r"no fake images \(1_fake\)"):
        images = collect_images(ImageSetSpec("set", root, root))
    assert split(images) == (real, [])


def test_cli_exits_2_on_a_set_without_images(tmp_path, capsys):
    from ufd_lib.cli.main import main

    empty = tmp_path / "empty"
    empty.mkdir()
    train = make_image_set(tmp_path / "train", 2, 2)
    code = main(["evaluate", "--encoder", "random-clip:tiny", "--device", "cpu", "--quiet",
                 "--cache-dir", str(tmp_path / "cache"), "--classifier", "knn", "--train", f"train={train}",
                 "--test", f"empty={empty}", "--out", str(tmp_path / "out")])
    stderr = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert len(stderr) == 1 and f"fakes in {empty}/1_fake/" in stderr[0]


def test_all_sampling_keeps_everything_and_bad_mode_is_refused(tmp_path):
    root = tmp_path / "set"
    real, fake = build_classes(root, 5, 4)
    spec = ImageSetSpec("set", root, root)
    assert len(collect_images(spec)) == 9
    with pytest.raises(ValueError, match="sampling"):
        collect_images(spec, sampling="some")


def test_parse_set_spec(tmp_path):
    real, fake = tmp_path / "laion", tmp_path / "ldm"
    real.mkdir()
    fake.mkdir()
    assert parse_set_spec(f"ldm={real}:{fake}") == ImageSetSpec("ldm", real, fake)
    assert parse_set_spec(f"laion={real}") == ImageSetSpec("laion", real, real)
    with pytest.raises(SpecError, match="absent"):
        parse_set_spec(f"x={tmp_path / 'absent'}")
    with pytest.raises(SpecError):
        parse_set_spec(str(real))
