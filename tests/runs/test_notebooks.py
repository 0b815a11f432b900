"""Notebook hygiene: committed clean, parameterised the same way, runnable by papermill."""
import json
import re
from pathlib import Path

import pytest

from ufd_lib.runs.reproduce import NOTEBOOK_DIR, available_notebooks

NOTEBOOKS = sorted(NOTEBOOK_DIR.glob("*.ipynb"))
PARAMETERS = {"profile", "data_root", "output_dir", "cache_dir"}


def test_notebooks_exist_in_reading_order():
    names = available_notebooks()
    assert names[:4] == ["01_data", "02_features", "03_main_results", "04_feature_space"]
    numbers = [int(name[:2]) for name in names]
    assert numbers == list(range(1, len(names) + 1)), "numbered 01, 02, ... with no gap and no repeat"
    assert sorted(path.stem for path in NOTEBOOKS) == names, "every notebook is numbered, so reproduce runs it"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_committed_without_outputs(path: Path):
    notebook = json.loads(path.read_text())
    for cell in notebook["cells"]:
        assert not cell.get("outputs"), f"{path.name}: a cell has outputs"
        assert cell.get("execution_count") is None, f"{path.name}: a cell has an execution count"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_title_then_parameters_cell(path: Path):
    cells = json.loads(path.read_text())["cells"]
    assert cells[0]["cell_type"] == "markdown" and "".join(cells[0]["source"]).startswith("# ")
    parameters = cells[1]
    assert "parameters" in parameters["metadata"].get("tags", [])
    namespace: dict = {}
    exec("".join(parameters["source"]), namespace)
    assert PARAMETERS <= set(namespace), f"{path.name}: parameters cell lacks {PARAMETERS - set(namespace)}"
    assert namespace["profile"] == "smoke"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_opens_its_run_under_its_own_name_with_the_encoder_parameter(path: Path):
    cells = json.loads(path.read_text())["cells"]
    namespace: dict = {}
    exec("".join(cells[1]["source"]), namespace)
    assert namespace["encoder"] is None, "encoder parameter: None means the profile's"
    opening = "".join(cells[2]["source"])
    assert "from ufd_lib import open_run" in opening
    assert f'notebook="{path.stem}"' in opening and "encoder=encoder" in opening


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebooks_only_call_ufd_lib_and_display(path: Path):
    """Tables, figures and notices go through the run (one name, no run.output_dir plumbing);
    pictures come from ufd_lib.report.figures, not from matplotlib calls in a cell."""
    code = "\n".join("".join(c["source"]) for c in json.loads(path.read_text())["cells"] if c["cell_type"] == "code")
    imports = re.findall(r"^(?:from (\S+) import|import (\S+))", code, flags=re.MULTILINE)
    modules = {a or b for a, b in imports}
    assert {m for m in modules if not m.startswith("ufd_lib")} <= {"IPython.display"}, modules
    assert "ufd_lib.report.artifacts" not in modules and "NOTEBOOK" not in code
    assert "plt." not in code
    assert re.findall(r"(?<!run\.)save_(?:table|figure)\(", code) == []
