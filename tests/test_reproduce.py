"""`ufd reproduce`: notebook selection, failure reporting and (slow) the whole smoke run."""
import json
from pathlib import Path

import nbformat
import pandas as pd
import pytest

from ufd_lib.runs import reproduce as reproduce_module
from ufd_lib.cli.main import main
from ufd_lib.runs.reproduce import ReproduceError, reproduce, select_notebooks


def test_select_by_number_and_name():
    assert select_notebooks(["03"]) == ["03_main_results"]
    assert select_notebooks(["04_feature_space", "01"]) == ["01_data", "04_feature_space"]
    with pytest.raises(ValueError, match="--only 77"):
        select_notebooks(["77"])


def _notebook(path: Path, sources: list[str]) -> None:
    notebook = nbformat.v4.new_notebook()
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    parameters = nbformat.v4.new_code_cell(
        'profile = "smoke"\ndata_root = None\noutput_dir = "x"\ncache_dir = None\nencoder = None')
    parameters.metadata["tags"] = ["parameters"]
    notebook.cells = [nbformat.v4.new_markdown_cell("# t"), parameters] + [nbformat.v4.new_code_cell(s) for s in sources]
    nbformat.write(notebook, path)


def test_failing_cell_names_notebook_and_cell(tmp_path, monkeypatch, capsys):
    notebooks = tmp_path / "notebooks"
    notebooks.mkdir()
    _notebook(notebooks / "01_ok.ipynb", ["from pathlib import Path\nPath(output_dir, 'ran').write_text('yes')"])
    _notebook(notebooks / "02_broken.ipynb", ["x = 1", "raise ValueError('deliberate failure')"])
    _notebook(notebooks / "03_never.ipynb", ["from pathlib import Path\nPath(output_dir, 'never').write_text('no')"])
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
        _notebook(notebooks / f"{name}.ipynb",
                  [f"from pathlib import Path\nPath(output_dir, '{name}').write_text(str(encoder))"])
    monkeypatch.setattr(reproduce_module, "NOTEBOOK_DIR", notebooks)
    out = tmp_path / "run"
    assert main(["reproduce", "--profile", "smoke", "--encoder", "clip:/weights/ViT-L-14.pt", "--data-root",
                 str(tmp_path), "--output-dir", str(out), "--cache-dir", str(tmp_path / "cache")]) == 0
    assert (out / "01_a").read_text() == (out / "02_b").read_text() == "clip:/weights/ViT-L-14.pt"
    assert "clip:/weights/ViT-L-14.pt" in (out / "index.html").read_text()
    assert "without encryption" not in capfd.readouterr().err


EXPECTED_TABLES = ["data_inventory", "feature_counts", "table2_average_precision", "table3_accuracy",
                   "oracle_accuracy", "ap_by_family", "paper_comparison", "embedding_sample", "probe_augmentation"]
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
    recorded = [json.loads(line) for line in (out / "artifacts.jsonl").read_text().splitlines()]
    notebooks = {entry["notebook"] for entry in recorded}
    assert notebooks == {path.stem for path in (out / "notebooks").glob("*.ipynb")}, "a notebook saved nothing"
    for entry in recorded:
        if entry["kind"] == "notice":
            continue
        folder, suffixes = ("figures", (".png", ".pdf")) if entry["kind"] == "figure" else ("tables", (".csv", ".md"))
        for suffix in suffixes:
            assert (out / folder / f"{entry['name']}{suffix}").stat().st_size > 0, entry
    notices = {(e["notebook"], e["text"]) for e in recorded if e["kind"] == "notice"}
    assert any(n == "02_features" and t.startswith("encoder random-clip:small, no weights file") for n, t in notices)
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


def test_paper_comparison_fills_ours_only_for_paper_sets():
    from ufd_lib.analyses.main_results import paper_comparison
    from ufd_lib.evaluation.reported import PAPER_TEST_SETS

    index = list(PAPER_TEST_SETS) + ["mean"]
    ap = pd.DataFrame({"LC": [90.0] * 19 + [90.0]}, index=index)
    acc = pd.DataFrame({("LC", "mean"): [80.0] * 19 + [80.0]}, index=index)
    table = paper_comparison(ap, acc).set_index(["metric", "test_set"])
    assert table.loc[("AP", "Guided"), "difference"] == pytest.approx(90.0 - 87.77)
    assert table.loc[("AP", "mean"), "ours"] == 90.0
    assert table.loc[("AP", "mean[GAN family]"), "ours"] == 90.0
    synthetic = paper_comparison(pd.DataFrame({"LC": [70.0, 70.0]}, index=["progan", "mean"]),
                                 pd.DataFrame({("LC", "mean"): [60.0, 60.0]}, index=["progan", "mean"]))
    assert synthetic["ours"].isna().all() and synthetic["paper"].notna().all()
