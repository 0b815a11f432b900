"""Notebook hygiene: committed clean, parameterised the same way, runnable by papermill."""
import json
from pathlib import Path

import pytest

from ufd_lib.runs.reproduce import NOTEBOOK_DIR, available_notebooks

NOTEBOOKS = sorted(NOTEBOOK_DIR.glob("*.ipynb"))
PARAMETERS = {"profile", "data_root", "output_dir", "cache_dir"}


def test_notebooks_exist_in_reading_order():
    names = available_notebooks()
    assert names[:4] == ["01_data", "02_features", "03_main_results", "04_feature_space"]
    assert [n[:2] for n in names] == sorted(n[:2] for n in names)


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
