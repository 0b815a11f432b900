"""The index page is truthful about its run: the profile banner whenever the profile is known, a
failed ``ufd reproduce`` said as such, and the code, command and times behind every page."""
from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pandas as pd
from conftest import write_notebook

from ufd_lib.cli.main import main
from ufd_lib.data.image_sets import Benchmark, ImageSetSpec
from ufd_lib.runs import context as context_module
from ufd_lib.runs import reproduce as reproduce_module

SAVE_TABLE = ("from ufd_lib.report.artifacts import save_table\nimport pandas as pd\n"
              "save_table(pd.DataFrame({{'n_real': [3]}}), output_dir, '{name}', 'Table of {name}', '{name}')")


def _reproduce(tmp_path, monkeypatch, notebooks: dict[str, list[str]], profile: str = "smoke") -> tuple[int, Path]:
    folder = tmp_path / "notebooks"
    folder.mkdir()
    for name, sources in notebooks.items():
        write_notebook(folder / f"{name}.ipynb", sources)
    monkeypatch.setattr(reproduce_module, "NOTEBOOK_DIR", folder)
    out = tmp_path / "run"
    argv = ["reproduce", "--profile", profile, "--data-root", str(tmp_path), "--output-dir", str(out),
            "--cache-dir", str(tmp_path / "cache")]
    monkeypatch.setattr(sys, "argv", ["ufd", *argv])
    return main(argv), out


def test_a_failed_reproduce_writes_a_page_that_says_which_notebook_stopped_and_why(tmp_path, monkeypatch, capsys):
    status, out = _reproduce(tmp_path, monkeypatch, {
        "01_ok": [SAVE_TABLE.format(name="01_ok")],
        "02_broken": ["x = 1", "raise ValueError('deliberate failure')"],
        "03_never": [SAVE_TABLE.format(name="03_never")],
    }, profile="paper")
    assert status == 1 and "index.html" in capsys.readouterr().err
    page = (out / "index.html").read_text()
    text = re.sub(r"<[^>]+>", "", page)
    assert "Profile paper" in text and "Profile not recorded" not in text  # the banner is kept
    assert "This run failed. Notebook 02_broken stopped in cell 4: ValueError: deliberate failure" in text
    assert '<a href="notebooks/02_broken.html">executed notebook</a>' in page
    assert (out / "notebooks" / "02_broken.html").exists()
    assert "Finished before it: 01_ok" in text and "Not run: 03_never" in text
    assert "Table of 01_ok" in text and "Table of 03_never" not in text  # what finished is kept
    run = json.loads((out / "index.json").read_text())["run"]
    assert run["status"] == "failed" and run["failure"]["notebook"] == "02_broken"
    assert list(run["seconds"]) == ["01_ok"] and run["started"] <= run["finished"]

    spec = ImageSetSpec("set", tmp_path, tmp_path)  # the failed notebook, fixed and run by hand
    monkeypatch.setattr(context_module, "load_benchmark", lambda profile, root: Benchmark(spec, spec, [spec], {}))
    context_module.open_run("paper", str(tmp_path), str(out), None, notebook="02_broken").save_table(
        pd.DataFrame({"ap": [0.5]}), "late", "Table of 02_broken")
    text = re.sub(r"<[^>]+>", "", (out / "index.html").read_text())
    assert "This run failed. Notebook 02_broken stopped" in text and "Table of 02_broken" in text
    assert re.search(r"Run again on its own after this run: 02_broken \(20\d\d-", text)


def test_an_interrupted_reproduce_does_not_stay_in_progress(tmp_path, monkeypatch, capsys):
    calls = []

    def execute(papermill, name, *args):
        calls.append(name)
        if name == "02_b":
            raise KeyboardInterrupt
        return 1.0

    monkeypatch.setattr(reproduce_module, "_execute", execute)
    status, out = _reproduce(tmp_path, monkeypatch, {"01_a": ["x = 1"], "02_b": ["x = 1"], "03_c": ["x = 1"]})
    assert status == 130 and calls == ["01_a", "02_b"]
    text = re.sub(r"<[^>]+>", "", (out / "index.html").read_text())
    assert "This run failed. Notebook 02_b stopped: interrupted" in text and "in progress" not in text
    assert "Finished before it: 01_a" in text and "Not run: 03_c" in text


def test_a_finished_reproduce_records_code_command_times_and_durations(tmp_path, monkeypatch):
    status, out = _reproduce(tmp_path, monkeypatch, {"01_a": [SAVE_TABLE.format(name="01_a")], "02_b": ["x = 1"]})
    assert status == 0
    recorded = json.loads((out / "index.json").read_text())
    run = recorded["run"]
    assert run["status"] == "finished" and set(run["seconds"]) == {"01_a", "02_b"}
    assert all(seconds > 0 for seconds in run["seconds"].values())
    assert re.fullmatch(r"[0-9a-f]{40}( \(uncommitted changes\))?|not a git checkout", recorded["versions"]["ufd code"])
    assert recorded["settings"]["command"].startswith("ufd reproduce --profile smoke --data-root")
    text = re.sub(r"<[^>]+>", "", (out / "index.html").read_text())
    assert f"Run started {run['started']}, finished {run['finished']}: 2 notebook(s)" in text
    assert re.search(r"executed notebook · \.ipynb · ran in \d+ s", text)
    assert "Profile smoke: a pipeline check." in text and "This run failed" not in text


def test_a_notebook_run_by_hand_keeps_the_profile_banner(tmp_path, monkeypatch):
    spec = ImageSetSpec("set", tmp_path, tmp_path)
    monkeypatch.setattr(context_module, "load_benchmark", lambda profile, root: Benchmark(spec, spec, [spec], {}))
    for profile, banner in (("smoke", "Profile smoke: a pipeline check."), ("paper", "<strong>Profile paper")):
        out = tmp_path / profile
        run = context_module.open_run(profile, str(tmp_path), str(out), None, notebook="03_main_results")
        run.save_table(pd.DataFrame({"ap": [0.5]}), "t", "T")
        page = (out / "index.html").read_text()
        assert banner in page and "Profile not recorded" not in page
        assert "notebook 03_main_results run on its own" in page


def test_code_revision_of_a_folder_outside_git_says_so(tmp_path):
    from ufd_lib.report.provenance import code_revision

    (tmp_path / "ufd_lib").mkdir()
    assert code_revision(tmp_path / "ufd_lib") == "not a git checkout"
