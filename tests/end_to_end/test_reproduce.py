"""`ufd reproduce`: notebook selection, failure reporting and (slow) the whole smoke run."""
import html
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import lost_values, write_notebook

from ufd_lib.cli.main import main
from ufd_lib.runs import reproduce as reproduce_module
from ufd_lib.runs.reproduce import ReproduceError, reproduce, select_notebooks


def test_select_by_number_and_name():
    assert select_notebooks(["03"]) == ["03_main_results"]
    assert select_notebooks(["04_feature_space", "01"]) == ["01_data", "04_feature_space"]
    with pytest.raises(ValueError, match="--only 77"):
        select_notebooks(["77"])


def test_failing_cell_names_notebook_and_cell(tmp_path, monkeypatch, capsys):
    notebooks = tmp_path / "notebooks"
    notebooks.mkdir()
    write_notebook(notebooks / "01_ok.ipynb", ["from pathlib import Path\nPath(output_dir, 'ran').write_text('yes')"])
    write_notebook(notebooks / "02_broken.ipynb", ["x = 1", "raise ValueError('deliberate failure')"])
    write_notebook(notebooks / "03_never.ipynb",
                   ["from pathlib import Path\nPath(output_dir, 'never').write_text('no')"])
    monkeypatch.setattr(reproduce_module, "NOTEBOOK_DIR", notebooks)
    out = tmp_path / "run"
    status = main(["reproduce", "--profile", "smoke", "--data-root", str(tmp_path), "--output-dir", str(out),
                   "--cache-dir", str(tmp_path / "cache")])
    message = capsys.readouterr().err
    assert status == 1
    assert "02_broken" in message and "cell 4" in message and "deliberate failure" in message
    assert (out / "ran").read_text() == "yes"
    assert not (out / "never").exists()
    with pytest.raises(ReproduceError):
        reproduce("smoke", tmp_path, ["02"], out, tmp_path / "cache")


@pytest.mark.parametrize("spec", ["ViT-L/14", "nosuch:thing", "clip:"])
def test_unknown_encoder_is_a_usage_error_before_any_notebook(tmp_path, capsys, spec):
    out = tmp_path / "run"
    status = main(["reproduce", "--profile", "smoke", "--encoder", spec, "--output-dir", str(out)])
    assert status == 2 and f"--encoder {spec!r}" in capsys.readouterr().err
    assert not (out / "notebooks").exists()


def test_encoder_reaches_every_notebook_and_the_index_quietly(tmp_path, monkeypatch, capfd):
    notebooks = tmp_path / "notebooks"
    notebooks.mkdir()
    for name in ("01_a", "02_b"):
        write_notebook(notebooks / f"{name}.ipynb",
                  [f"from pathlib import Path\nPath(output_dir, '{name}').write_text(str(encoder))"])
    monkeypatch.setattr(reproduce_module, "NOTEBOOK_DIR", notebooks)
    out = tmp_path / "run"
    assert main(["reproduce", "--profile", "smoke", "--encoder", "clip:/weights/ViT-L-14.pt", "--data-root",
                 str(tmp_path), "--output-dir", str(out), "--cache-dir", str(tmp_path / "cache")]) == 0
    assert (out / "01_a").read_text() == (out / "02_b").read_text() == "clip:/weights/ViT-L-14.pt"
    assert "clip:/weights/ViT-L-14.pt" in (out / "index.html").read_text()
    assert "without encryption" not in capfd.readouterr().err


EXPECTED_TABLES = ["data_inventory", "feature_counts", "table2_average_precision", "table3_accuracy",
                   "oracle_accuracy", "ap_by_family", "paper_comparison_ap", "paper_comparison_acc", "embedding_sample",
                   "probe_augmentation"]
EXPECTED_FIGURES = ["example_images", "average_precision", "probe_training", "tsne_feature_space",
                    "umap_feature_space", "probe_augmentation"]


@pytest.mark.slow
def test_smoke_reproduction_end_to_end(tmp_path):
    """The README's main job: every table and figure exists and is non-empty; a rerun encodes nothing."""
    out, cache = tmp_path / "run", tmp_path / "cache"
    assert main(["reproduce", "--profile", "smoke", "--output-dir", str(out), "--cache-dir", str(cache)]) == 0
    for name in EXPECTED_TABLES:
        for suffix in (".csv", ".md"):
            path = out / "tables" / f"{name}{suffix}"
            assert path.stat().st_size > 0, path
        assert not pd.read_csv(out / "tables" / f"{name}.csv").empty, name
    for name in EXPECTED_FIGURES:
        for suffix in (".png", ".pdf"):
            assert (out / "figures" / f"{name}{suffix}").stat().st_size > 1000, name
    entries = [json.loads(line) for line in (out / "artifacts.jsonl").read_text().splitlines()]
    recorded = [entry for entry in entries if entry["kind"] != "notice"]
    notebooks = {entry["notebook"] for entry in recorded}
    assert notebooks == {path.stem for path in (out / "notebooks").glob("*.ipynb")}, "a notebook saved nothing"
    for entry in recorded:
        folder, suffixes = ("figures", (".png", ".pdf")) if entry["kind"] == "figure" else ("tables", (".csv", ".md"))
        for suffix in suffixes:
            assert (out / folder / f"{entry['name']}{suffix}").stat().st_size > 0, entry
    notices = {(e["notebook"], e["text"]) for e in entries if e["kind"] == "notice"}
    assert any(n == "02_features" and t.startswith("encoder random-clip:small: RANDOM weights") for n, t in notices)
    assert any(n == "05_trained_detector" and t.startswith("trained detector") for n, t in notices)
    assert any(n == "08_backbones" for n, _ in notices)
    for executed in (out / "notebooks").glob("*.ipynb"):
        shown = [o for c in json.loads(executed.read_text())["cells"] for o in c.get("outputs", [])]
        texts = ["".join(o.get("text", "")) + "".join(o.get("data", {}).get("text/plain", "")) for o in shown]
        assert not [t for t in texts if "PosixPath(" in t], f"{executed.name}: a cell shows a path object"
        assert not [o for o in shown if o.get("name") == "stderr" and "Warning" in "".join(o.get("text", ""))], \
            f"{executed.name}: a cell shows a warning"
    index = (out / "index.html").read_text()
    assert all(f"figures/{name}.png" in index for name in EXPECTED_FIGURES)
    for path in sorted((out / "tables").glob("*.csv")):  # every table as the page shows it
        assert lost_values(pd.read_csv(path, index_col=0, keep_default_na=False, na_values=[""])) == [], path.name
    ap = pd.read_csv(out / "tables" / "table2_average_precision.csv", index_col=0)
    assert list(ap.columns[:3]) == ["NN k=1", "NN k=5", "NN k=9"] and "LC" in ap.columns
    assert ap.index[-1] == "mean" and ap.notna().all().all()

    (out / "figures" / "example_images.png").unlink()
    assert main(["reproduce", "--profile", "smoke", "--only", "02", "--output-dir", str(out),
                 "--cache-dir", str(cache)]) == 0
    executed = json.loads((out / "notebooks" / "02_features.ipynb").read_text())
    text = "".join("".join(o.get("text", "")) for c in executed["cells"] for o in c.get("outputs", []))
    assert "encoded 0 images" in text
    assert "example_images.png is missing" in (out / "index.html").read_text()


def _result(values: dict[str, tuple[float, float]]):
    from ufd_lib.evaluation.scoring import EvaluationResult

    metrics = pd.DataFrame([{"test_set": name, "ap": ap, "acc": acc} for name, (ap, acc) in values.items()])
    return EvaluationResult(metrics, pd.DataFrame(), pd.DataFrame())


def test_paper_comparison_one_table_per_metric_in_the_papers_order():
    from ufd_lib.analyses.main_results import paper_comparison
    from ufd_lib.evaluation.reported import PAPER_TEST_SETS

    # ProGAN..StarGAN at 0.90 AP, every other set at 0.60; accuracy 0.80 everywhere.
    values = {name: (0.9 if i < 6 else 0.6, 0.8) for i, name in enumerate(PAPER_TEST_SETS)}
    results = {"NN k=9": _result(values), "LC released": _result(values), "LC": _result(values)}
    ap = paper_comparison(results, "AP", compare_with_paper=True)
    assert ap["method"].unique().tolist() == ["LC", "LC released", "NN k=9"]
    lc = ap[ap["method"] == "LC"].set_index("test_set")
    assert lc.index.tolist() == [*PAPER_TEST_SETS, "mean[GAN family]", "mean[LDM+Glide+Guided+DALL-E]", "mean"]
    assert lc.loc["Guided", ["paper", "ours"]].tolist() == [87.77, pytest.approx(60.0)]
    assert lc.loc["Guided", "difference"] == pytest.approx(60.0 - 87.77)
    assert lc.loc["Guided", "kind"] == "paper-table (via reprint)"
    assert lc.loc["mean[GAN family]", "ours"] == pytest.approx(90.0)  # the six GAN sets only
    assert lc.loc["mean", "ours"] == pytest.approx((6 * 90 + 13 * 60) / 19)
    assert lc.loc["mean", "paper"] == 93.38
    assert lc.loc["SAN", "kind"] == "not traced" and np.isnan(lc.loc["SAN", "paper"])
    nn = ap[ap["method"] == "NN k=9"].set_index("test_set")
    assert nn.loc["mean[GAN family]", "paper"] == 96.36  # the paper's NN, not its probe
    assert nn.loc["mean[GAN family]", "difference"] == pytest.approx(90.0 - 96.36)

    acc = paper_comparison(results, "acc", compare_with_paper=True)
    lc = acc[acc["method"] == "LC"].set_index("test_set")
    assert lc.loc["mean", "difference"] == pytest.approx(80.0 - 81.38)
    assert lc.loc["mean[GAN family]", "kind"] == "paper-text (approximate: ~95)"
    assert np.isnan(lc.loc["mean[GAN family]", "difference"])


def test_paper_comparison_on_stand_in_sets_lists_only_the_paper():
    from ufd_lib.analyses.main_results import comparison_note, paper_comparison

    table = paper_comparison({"LC": _result({"progan": (0.7, 0.6)})}, "AP", compare_with_paper=False)
    assert len(table) == 22 and table["ours"].isna().all() and table["difference"].isna().all()
    assert table.set_index("test_set").loc["Guided", "paper"] == 87.77
    assert "synthetic stand-ins" in comparison_note("AP", False) and "stand-ins" not in comparison_note("AP", True)


def _saved_run(out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ufd_lib.report.artifact_log import append_entry
    from ufd_lib.report.artifacts import save_figure, save_table

    table = pd.DataFrame({"set": ["progan", "ldm"], "n_real": [4, 5], "expected_real": [4.0, None],
                          "difference": [-0.001, 1.234], "paper": [float("nan"), 99.0]})
    save_table(table, out, "comparison", "Ours vs the paper", "03_main_results", index=False,
               note="difference = ours − paper, in percentage points.")
    figure, axes = plt.subplots()
    axes.plot([0, 1])
    save_figure(figure, out, "curve", "A curve", "03_main_results")
    plt.close(figure)
    append_entry(out, {"kind": "notice", "notebook": "08_backbones", "text": "clip:RN50 skipped: no weights"})


def test_saved_tables_show_integers_no_negative_zero_and_empty_cells(tmp_path):
    _saved_run(tmp_path)
    markdown = (tmp_path / "tables" / "comparison.md").read_text()
    rows = [[cell.strip() for cell in line.strip("|").split("|")]
            for line in markdown.splitlines() if line.startswith("|")]
    assert rows[0] == ["set", "n_real", "expected_real", "difference", "paper"]
    assert rows[2:] == [["progan", "4", "4", "-0.0010", ""], ["ldm", "5", "", "1.2340", "99.00"]]  # the sign kept
    assert markdown.rstrip().endswith("About these numbers: difference = ours − paper, in percentage points.")
    csv = (tmp_path / "tables" / "comparison.csv").read_text().splitlines()
    assert csv[1:] == ["progan,4,4,-0.001,", "ldm,5,,1.234,99.0"]
    assert "nan" not in markdown.lower() and "nan" not in (tmp_path / "index.html").read_text().lower()


def test_index_page_banner_contents_notices_notes_and_rendered_notebooks(tmp_path):
    from ufd_lib.report.index_page import write_index

    _saved_run(tmp_path)
    page = (tmp_path / "index.html").read_text()
    assert "Profile not recorded" in page  # refreshed by the saves alone, before any reproduce
    (tmp_path / "notebooks").mkdir()
    write_notebook(tmp_path / "notebooks" / "03_main_results.ipynb", ["print('hello from 03')"])
    write_index(tmp_path, "UnivFD replication — profile smoke", {"profile": "smoke", "description": "Synthetic."}, {})
    page = (tmp_path / "index.html").read_text()
    banner = page.index("Profile smoke: a pipeline check.")
    assert banner < page.index("Contents") < page.index('<h2 id="03_main_results">')
    assert "not comparable to the paper" in page[banner:page.index("Contents")]
    assert '<a href="#03_main_results-comparison">Ours vs the paper</a>' in page
    assert '<a href="notebooks/03_main_results.html">executed notebook</a>' in page
    assert "hello from 03" in (tmp_path / "notebooks" / "03_main_results.html").read_text()
    assert "<li>clip:RN50 skipped: no weights</li>" in page[page.index('<h2 id="08_backbones">'):]
    assert "About these numbers:</strong> difference = ours − paper" in page

    from ufd_lib.report.artifacts import save_table  # a notebook re-run by hand refreshes the page
    save_table(pd.DataFrame({"k": [1, 9]}), tmp_path, "late", "Added later", "06_nn", index=False)
    page = (tmp_path / "index.html").read_text()
    assert "Added later" in page and "Profile smoke: a pipeline check." in page

    write_index(tmp_path, "paper run", {"profile": "paper", "description": "Real data."}, {})
    assert "not comparable" in (tmp_path / "index.html").read_text()  # no encoder recorded: no claim

    from ufd_lib.report.index_page import record_encoder
    record_encoder(tmp_path, {"name": "clip:ViT-L/14", "sha256": "b8cca3fd", "path": "/w/ViT-L-14.pt",
                              "papers_encoder": True})
    write_index(tmp_path, "paper run", {"profile": "paper", "description": "Real data.", "sampling": "official"}, {})
    page = (tmp_path / "index.html").read_text()
    assert "not comparable" not in page and "OpenAI's published CLIP ViT-L/14 file" in page
    assert "Sampling of the test sets: official" in page


def test_paper_page_with_another_encoder_names_it_and_compares_nothing(tmp_path):
    from ufd_lib.analyses.main_results import NOT_COMPARABLE, comparison_caption
    from ufd_lib.report.artifacts import save_table
    from ufd_lib.report.index_page import record_encoder, write_index

    record_encoder(tmp_path, {"name": "clip:/w/other.pt", "sha256": "0123abcd", "path": "/w/other.pt",
                              "papers_encoder": False})
    caption = comparison_caption("average precision", compare_with_paper=True, papers_encoder=False)
    save_table(pd.DataFrame({"ours": [90.0], "difference": [float("nan")]}), tmp_path, "paper_comparison_ap",
               caption, "03_main_results", index=False)
    write_index(tmp_path, "paper run", {"profile": "paper", "description": "Real data.", "sampling": "all"}, {})
    page = (tmp_path / "index.html").read_text()
    banner = page[:page.index("Contents")]
    assert "not comparable with the paper" in banner and "NOT OpenAI's CLIP ViT-L/14 file" in banner
    assert "clip:/w/other.pt" in banner and "0123abcd" in banner and "with CLIP ViT-L/14" not in banner
    assert "Sampling of the test sets: all" in banner
    said = page.index(html.escape(NOT_COMPARABLE))
    assert said < page.index("<table", said)  # said above the table


def test_paper_comparison_with_another_encoder_keeps_ours_and_blanks_the_difference():
    from ufd_lib.analyses.main_results import paper_comparison
    from ufd_lib.evaluation.reported import PAPER_TEST_SETS

    results = {"LC": _result({name: (0.9, 0.8) for name in PAPER_TEST_SETS})}
    table = paper_comparison(results, "acc", compare_with_paper=True, papers_encoder=False)
    assert table["ours"].notna().all() and table["difference"].isna().all()
    traced = table.set_index("test_set")["paper"]
    assert traced[list(PAPER_TEST_SETS)].notna().all()  # all 19 linear-probe accuracies are traced


def test_sampling_and_allow_torchscript_reach_every_notebook_and_the_page(tmp_path, monkeypatch):
    notebooks = tmp_path / "notebooks"
    notebooks.mkdir()
    for name in ("01_a", "02_b"):
        write_notebook(notebooks / f"{name}.ipynb", [
            f"from pathlib import Path\nPath(output_dir, '{name}').write_text(f'{{sampling}} {{allow_torchscript}}')"])
    monkeypatch.setattr(reproduce_module, "NOTEBOOK_DIR", notebooks)
    out = tmp_path / "run"
    common = ["--data-root", str(tmp_path), "--output-dir", str(out), "--cache-dir", str(tmp_path / "cache")]
    assert main(["reproduce", "--profile", "smoke", "--sampling", "official", "--allow-torchscript", *common]) == 0
    assert (out / "01_a").read_text() == (out / "02_b").read_text() == "official True"
    assert "Sampling of the test sets: official" in (out / "index.html").read_text()
    assert main(["reproduce", "--profile", "smoke", *common]) == 0
    assert (out / "01_a").read_text() == "all False"  # the smoke profile's own sampling


def test_save_table_on_a_full_disk_keeps_the_older_table(tmp_path):
    from ufd_lib.reliability.output_checks import disk_full_while_writing
    from ufd_lib.report.artifacts import save_table

    save_table(pd.DataFrame({"ap": [90.0]}), tmp_path, "t", "T", "03")
    before = {p.name: p.read_bytes() for p in (tmp_path / "tables").iterdir()}
    with disk_full_while_writing("t.md"), pytest.raises(OSError, match=r"could not write .*tables/t\.md"):
        save_table(pd.DataFrame({"ap": [10.0]}), tmp_path, "t", "T", "03")
    after = {p.name: p.read_bytes() for p in (tmp_path / "tables").iterdir()}
    assert after["t.md"] == before["t.md"] and set(after) == set(before)
