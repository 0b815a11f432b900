"""``ufd reproduce``: run the numbered notebooks in order with papermill.

Outputs go to ``<output>/`` (default ``runs/<profile>``): executed notebooks in ``notebooks/``,
``tables/``, ``figures/``, and ``index.html`` showing all of them with the settings and
versions that produced them, the code's git commit, the command line, and when each notebook
ran and for how long (also in ``index.json``). A failed notebook stops the run; the page then
says which one stopped and why, and keeps what the notebooks before it produced. The feature
cache is shared between runs, so a second run encodes nothing. ``encoder`` replaces the
profile's encoder (any registry string, e.g. ``clip:/path/to/ViT-L-14.pt``) in every notebook.

The notebooks are saved for the kernel ``make setup`` registers ("Python (ufd)"), which is what
a person opening them by hand needs; papermill here runs them on ``python3``, the kernel of the
interpreter running ufd, so a run needs no registered kernel and never runs another environment.
The kernel talks to papermill over local IPC sockets in a private temporary folder rather than
TCP: nothing leaves the machine, and the kernel has no unencrypted-TCP warning to print.
"""
from __future__ import annotations

import shlex
import sys
import tempfile
import time
from datetime import datetime, timezone
from importlib import resources
from pathlib import Path

from ufd_lib import config
from ufd_lib.messages import one_line
from ufd_lib.report.artifacts import ARTIFACTS
from ufd_lib.report.index_page import record_run, write_index
from ufd_lib.report.provenance import code_revision, library_versions
from ufd_lib.runs.profiles import default_data_root, get_profile

# The repository's top-level notebooks/, shipped inside the package (ufd_lib/notebooks).
NOTEBOOK_DIR = Path(str(resources.files("ufd_lib").joinpath("notebooks")))


class ReproduceError(RuntimeError):
    """A notebook failed; the message names the notebook and the cell. failure: the same as
    {``notebook``, ``cell``, ``error``} for the index page."""

    def __init__(self, message: str, failure: dict | None = None):
        super().__init__(message)
        self.failure = failure or {}


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


def _check_encoder(spec: str) -> None:
    """A usage error before any notebook runs when ``spec`` names no registered encoder."""
    from ufd_lib.features.encoders import encoder_usage, parse_encoder_spec

    try:
        parse_encoder_spec(spec)
    except ValueError:
        raise ValueError(f"--encoder {spec!r}: expected one of {encoder_usage()}") from None


def _ipc_kernel_config(socket_folder: str):
    """nbclient configuration: the kernel's sockets are files in ``socket_folder``."""
    from traitlets.config import Config

    kernel = Config()
    kernel.KernelManager.transport = "ipc"
    kernel.KernelManager.ip = str(Path(socket_folder) / "kernel")
    return kernel


def reproduce(profile_name: str, data_root: Path | None = None, only: list[str] | None = None,
              output_dir: Path | None = None, cache_dir: Path | None = None, log=print,
              encoder: str | None = None) -> Path:
    """Execute the selected notebooks for a profile; returns the index page's path."""
    import papermill

    profile = get_profile(profile_name)
    notebooks = select_notebooks(only)
    output_dir = Path(output_dir or Path("runs") / profile.name).resolve()
    data_root = Path(data_root).resolve() if data_root else default_data_root(profile, output_dir)
    if data_root is None:
        raise ValueError(f"--profile {profile.name} needs --data-root DIR (see data_manifests/ and `ufd data fetch`)")
    if encoder is not None:
        _check_encoder(encoder)
    cache_dir = Path(cache_dir or config.cache_dir()).resolve()
    (output_dir / "notebooks").mkdir(parents=True, exist_ok=True)
    if not only:
        (output_dir / ARTIFACTS).unlink(missing_ok=True)
    parameters = {"profile": profile.name, "data_root": str(data_root), "output_dir": str(output_dir),
                  "cache_dir": str(cache_dir), "encoder": encoder or profile.encoder}
    settings = {"profile": profile.name, "description": profile.description,
                "compare_with_paper": profile.compare_with_paper, **parameters,
                "notebooks": ", ".join(notebooks), "command": shlex.join(sys.argv)}
    title = f"UnivFD replication — profile {profile.name}"
    versions = {**library_versions(), "ufd code": code_revision()}
    run = {"status": "running", "started": _now(), "planned": notebooks, "seconds": {}}
    record_run(output_dir, title, settings, versions, run)
    name = None
    try:
        with tempfile.TemporaryDirectory(prefix="ufd-kernel-") as socket_folder:
            for name in notebooks:
                run["seconds"][name] = _execute(papermill, name, parameters, output_dir,
                                                _ipc_kernel_config(socket_folder), profile.name, log)
                record_run(output_dir, title, settings, versions, run)
    except BaseException as error:  # the page must not say "in progress" after any stop, Ctrl-C included
        failure = getattr(error, "failure", None) or {
            "notebook": name, "error": "interrupted" if isinstance(error, KeyboardInterrupt)
            else one_line(f"{type(error).__name__}: {error}")}
        run.update(status="failed", finished=_now(), failure=failure)
        write_index(output_dir, title, settings, versions, run)
        raise
    run.update(status="finished", finished=_now())
    return write_index(output_dir, title, settings, versions, run)


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _execute(papermill, name: str, parameters: dict, output_dir: Path, kernel_config, profile: str, log) -> float:
    """Run one notebook; returns its duration in seconds. Raises ReproduceError when a cell fails."""
    started = time.perf_counter()
    log(f"[{profile}] running {name} ...")
    try:
        papermill.execute_notebook(
            NOTEBOOK_DIR / f"{name}.ipynb", output_dir / "notebooks" / f"{name}.ipynb",
            parameters=parameters, kernel_name="python3", cwd=str(NOTEBOOK_DIR),
            progress_bar=False, config=kernel_config,
        )
    except papermill.PapermillExecutionError as error:
        failure = {"notebook": name, "cell": error.exec_count, "error": f"{error.ename}: {error.evalue}"}
        raise ReproduceError(
            f"notebook {name} failed in cell {error.exec_count}: {error.ename}: {error.evalue} "
            f"(executed copy: {output_dir / 'notebooks' / f'{name}.ipynb'}; "
            f"the index page says so: {output_dir / 'index.html'})", failure
        ) from None
    seconds = time.perf_counter() - started
    log(f"[{profile}] {name} done in {seconds:.0f} s")
    return seconds
