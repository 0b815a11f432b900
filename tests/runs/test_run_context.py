"""The notebooks' run context: what a notebook writes is recorded under its name, and every
weight it used or skipped is stated as a notice for the index page."""
from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import matplotlib
import pandas as pd
import pytest
from conftest import TINY_ENCODER

from ufd_lib.classifiers.released import RELEASED_PROBE
from ufd_lib.data.image_sets import Benchmark, ImageSetSpec
from ufd_lib.features.encoders import weights_notice
from ufd_lib.hashing import file_sha256
from ufd_lib.report.artifacts import read_artifacts, save_notice
from ufd_lib.runs.context import RunContext, extraction_options
from ufd_lib.runs.profiles import get_profile

matplotlib.use("Agg")


def _run(tmp_path: Path, profile: str = "smoke", encoder: str = TINY_ENCODER) -> RunContext:
    spec = ImageSetSpec("train", tmp_path, tmp_path)
    benchmark = Benchmark(train=spec, val=spec, test_sets=[spec], families={"train": "gan"})
    chosen = get_profile(profile)
    return RunContext(chosen, benchmark, tmp_path, extraction_options(chosen, tmp_path / "cache"), "03_main_results",
                      encoder)


def _entries(output_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (output_dir / "artifacts.jsonl").read_text().splitlines()]


def test_save_table_figure_and_note_are_recorded_under_the_notebook(tmp_path, capsys):
    import matplotlib.pyplot as plt

    run = _run(tmp_path)
    assert run.save_table(pd.DataFrame({"ap": [99.5]}), "t", "a table") is None  # no stray cell output
    figure, _ = plt.subplots()
    assert run.save_figure(figure, "f", "a figure") is None
    run.note("weights replaced")
    assert capsys.readouterr().out == "weights replaced\n"
    assert (tmp_path / "tables" / "t.csv").exists() and (tmp_path / "figures" / "f.png").exists()
    assert [(e["kind"], e["notebook"]) for e in _entries(tmp_path)] == [
        ("table", "03_main_results"), ("figure", "03_main_results"), ("notice", "03_main_results")]
    assert _entries(tmp_path)[2]["text"] == "weights replaced"


def test_a_notice_recorded_twice_is_listed_once(tmp_path):
    save_notice(tmp_path, "05_trained_detector", "trained here")
    save_notice(tmp_path, "05_trained_detector", "trained here")
    save_notice(tmp_path, "08_backbones", "trained here")
    notices = [e for e in read_artifacts(tmp_path) if e["kind"] == "notice"]
    assert [(n["notebook"], n["text"]) for n in notices] == [("05_trained_detector", "trained here"),
                                                           ("08_backbones", "trained here")]


def test_loading_the_encoder_notes_its_name_and_checkpoint(tmp_path, capsys):
    run = _run(tmp_path)
    encoder = run.encoder
    assert run.encoder is encoder, "loaded once"
    notices = [e["text"] for e in _entries(tmp_path) if e["kind"] == "notice"]
    assert notices == [weights_notice(encoder)]
    assert notices[0] == f"encoder {TINY_ENCODER}: RANDOM weights, no weights file (id {encoder.checkpoint_sha256})"


def test_weights_notice_names_path_and_officialness_when_the_encoder_knows_them():
    encoder = SimpleNamespace(name="clip:/w/ViT-L-14.pt", checkpoint_sha256="ab" * 32,
                              checkpoint_path="/w/ViT-L-14.pt", checkpoint_official=False)
    assert weights_notice(encoder) == (f"encoder clip:/w/ViT-L-14.pt, weights /w/ViT-L-14.pt, SHA-256 {'ab' * 32}, "
                                       "NOT one of OpenAI's published checkpoints")


@pytest.mark.parametrize("profile, embed_dim, expected", [("paper", 768, RELEASED_PROBE), ("paper", 512, None),
                                                          ("smoke", 768, None)])
def test_released_probe_used_only_where_it_fits_and_noted_either_way(tmp_path, capsys, profile, embed_dim, expected):
    run = _run(tmp_path, profile)
    from ufd_lib.features.encoders.clip import official_clip_checkpoints

    official = official_clip_checkpoints()["ViT-L/14"][1]  # loaded already: no weights notice
    run._encoder = SimpleNamespace(name="clip:ViT-L/14", embed_dim=embed_dim, checkpoint_sha256=official)
    assert run.released_probe() == expected
    [notice] = [e["text"] for e in _entries(tmp_path) if e["kind"] == "notice"]
    if expected is not None:
        assert file_sha256(RELEASED_PROBE) in notice
    elif profile == "paper":
        assert "skipped" in notice and "768-d" in notice and "512-d" in notice
    else:
        assert "not compared" in notice


def test_released_probe_on_other_weights_is_used_with_a_caution(tmp_path):
    run = _run(tmp_path, "paper")
    run._encoder = SimpleNamespace(name="clip:/w/copy.pt", embed_dim=768, checkpoint_sha256="ab" * 32,
                                   checkpoint_path="/w/copy.pt", checkpoint_official=False)
    assert run.released_probe() == RELEASED_PROBE
    notices = [e["text"] for e in _entries(tmp_path) if e["kind"] == "notice"]
    assert len(notices) == 2 and "not UnivFD's" in notices[1] and "NOT one of OpenAI's published" in notices[1]


def test_released_probe_is_the_authors_file_shipped_in_the_package():
    from ufd_lib.classifiers.linear_probe import LinearProbe

    assert RELEASED_PROBE.parent == Path(__import__("ufd_lib").__file__).parent / "classifiers" / "released"
    assert LinearProbe.load(RELEASED_PROBE).n_features_in_ == 768
    assert file_sha256(RELEASED_PROBE) == "477100745713bcc957beb2b40859536859b6483fd6301b3b9293151b194c7847"


def test_loading_the_encoder_records_it_for_the_banner_as_not_the_papers(tmp_path):
    run = _run(tmp_path)
    encoder = run.encoder
    record = json.loads((tmp_path / "encoder.json").read_text())
    assert record == {"name": TINY_ENCODER, "sha256": encoder.checkpoint_sha256, "path": None,
                      "papers_encoder": False}


def test_the_paper_profile_samples_officially_and_reproduce_can_choose():
    assert get_profile("paper").sampling == "official" and get_profile("smoke").sampling == "all"
    assert extraction_options(get_profile("paper"), None).sampling == "official"
    assert extraction_options(get_profile("paper"), None, sampling="all").sampling == "all"
