"""``ufd reproduce``: run the numbered notebooks in order with papermill.

Outputs go to ``<output>/`` (default ``runs/<profile>``): executed notebooks in ``notebooks/``,
``tables/``, ``figures/``, and ``index.html`` showing all of them with the settings and
versions that produced them. The feature cache is shared between runs, so a second run
encodes nothing.
"""
from __future__ import annotations

import sys
import time
from importlib import resources
from pathlib import Path

from ufd_lib import config
from ufd_lib.report.provenance import library_versions
from ufd_lib.runs.profiles import default_data_root, get_profile
from ufd_lib.report.artifacts import ARTIFACTS
from ufd_lib.report.index_page import write_index

# The repository's top-level notebooks/, shipped inside the package (ufd_lib/notebooks).
NOTEBOOK_DIR = Path(str(resources.files("ufd_lib").joinpath("notebooks")))


class ReproduceError(RuntimeError):
    """A notebook failed; the message names the notebook and the cell."""


def available_notebooks() -> list[str]:
    """Notebook names (without ``.ipynb``) in reading order."""
    return sorted(path.stem for path in NOTEBOOK_DIR.glob("[0-9][0-9]_*.ipynb"))


def select_notebooks(only: list[str] | None) -> list[str]:
    """All notebooks, or those named in ``only`` (by full name or number prefix such as ``03``)."""
    names = available_notebooks()
    if not only:
        return names
    selected = []
    for wanted in only:
        matches = [n for n in names if n == wanted or n.split("_", 1)[0] == wanted]
        if not matches:
            raise ValueError(f"--only {wanted}: no such notebook; available: {', '.join(names)}")
        selected += [m for m in matches if m not in selected]
    return sorted(selected)


def reproduce(profile_name: str, data_root: Path | None = None, only: list[str] | None = None,
              output_dir: Path | None = None, cache_dir: Path | None = None, log=print) -> Path:
    """Execute the selected notebooks for a profile; returns the index page's path."""
    import papermill

    profile = get_profile(profile_name)
    notebooks = select_notebooks(only)
    output_dir = Path(output_dir or Path("runs") / profile.name).resolve()
    data_root = Path(data_root).resolve() if data_root else default_data_root(profile, output_dir)
    if data_root is None:
        raise ValueError(f"--profile {profile.name} needs --data-root DIR (see data_manifests/ and `ufd data fetch`)")
    cache_dir = Path(cache_dir or config.cache_dir()).resolve()
    (output_dir / "notebooks").mkdir(parents=True, exist_ok=True)
    if not only:
        (output_dir / ARTIFACTS).unlink(missing_ok=True)
    parameters = {"profile": profile.name, "data_root": str(data_root), "output_dir": str(output_dir),
                  "cache_dir": str(cache_dir)}
    for name in notebooks:
        started = time.perf_counter()
        log(f"[{profile.name}] running {name} ...")
        try:
            papermill.execute_notebook(
                NOTEBOOK_DIR / f"{name}.ipynb", output_dir / "notebooks" / f"{name}.ipynb",
                parameters=parameters, kernel_name="python3", cwd=str(NOTEBOOK_DIR), progress_bar=False,
            )
        except papermill.PapermillExecutionError as error:
            raise ReproduceError(
                f"notebook {name} failed in cell {error.exec_count}: {error.ename}: {error.evalue} "
                f"(executed copy: {output_dir / 'notebooks' / f'{name}.ipynb'})"
            ) from None
        log(f"[{profile.name}] {name} done in {time.perf_counter() - started:.0f} s")
    settings = {"profile": profile.name, "description": profile.description, "encoder": profile.encoder,
                **parameters, "notebooks": ", ".join(notebooks), "command": " ".join(sys.argv)}
    return write_index(output_dir, f"UnivFD replication — profile {profile.name}", settings, library_versions())
