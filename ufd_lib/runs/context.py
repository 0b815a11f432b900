"""What a notebook needs to start: its profile, image sets, encoder, output folder and cache,
from the papermill parameters (profile, data_root, output_dir, cache_dir, encoder, sampling,
allow_torchscript), and one
place to write what it shows (``run.save_table``, ``run.save_figure``, ``run.note``) under its
own name."""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd

from ufd_lib.classifiers.released import RELEASED_PROBE, released_probe_caution
from ufd_lib.data.image_sets import Benchmark
from ufd_lib.features.encoders import Encoder, load_encoder, weights_notice
from ufd_lib.features.feature_sets import ExtractionOptions
from ufd_lib.hashing import file_sha256
from ufd_lib.report import artifacts
from ufd_lib.report.index_page import record_encoder, record_run, recorded_run
from ufd_lib.report.provenance import code_revision, library_versions
from ufd_lib.runs.profiles import Profile, default_data_root, get_profile, load_benchmark


@dataclass
class RunContext:
    """One notebook's run. notebook: its name (``03_main_results``), which labels every table,
    figure and notice it records; encoder_spec: the encoder registry string it uses (the
    profile's unless ``ufd reproduce --encoder`` chose another); allow_torchscript: whether a
    TorchScript archive that is not OpenAI's may be loaded (``ufd reproduce --allow-torchscript``).
    The test sets' sampling is ``options.sampling``."""

    profile: Profile
    benchmark: Benchmark
    output_dir: Path
    options: ExtractionOptions
    notebook: str
    encoder_spec: str
    allow_torchscript: bool = False
    _encoder: Encoder | None = field(default=None, repr=False)

    @property
    def encoder(self) -> Encoder:
        """The run's encoder, loaded on first use; the weights it loaded are noted for the index page,
        whose banner names them."""
        if self._encoder is None:
            self._encoder = load_encoder(self.encoder_spec, allow_torchscript=self.allow_torchscript)
            self.note(weights_notice(self._encoder))
            record_encoder(self.output_dir, {
                "name": self._encoder.name, "sha256": self._encoder.checkpoint_sha256,
                "path": self._encoder.checkpoint_path, "papers_encoder": is_papers_encoder(self._encoder)})
        return self._encoder

    def save_table(self, table: pd.DataFrame, name: str, caption: str, index: bool = True,
                   note: str | None = None) -> None:
        """``tables/<name>.csv`` and ``.md`` in the run folder, listed on the index page under this
        notebook; ``note``: what a reader must know about its columns ("about these numbers")."""
        artifacts.save_table(table, self.output_dir, name, caption, self.notebook, index=index, note=note)

    def save_figure(self, figure: plt.Figure, name: str, caption: str) -> None:
        """``figures/<name>.png`` and ``.pdf`` in the run folder, listed on the index page under this notebook."""
        artifacts.save_figure(figure, self.output_dir, name, caption, self.notebook)

    def note(self, text: str) -> None:
        """Print ``text`` and state it on the index page under this notebook: which weights were
        used, what was replaced or skipped, and why."""
        print(text)
        artifacts.save_notice(self.output_dir, self.notebook, text)

    def released_probe(self) -> Path | None:
        """The official probe shipped with the package, when the profile compares with it and it
        fits the encoder's features; noted either way."""
        if not self.profile.use_released_probe:
            self.note(f"released probe not compared: the {self.profile.name} profile does not use it")
            return None
        from ufd_lib.classifiers.linear_probe import LinearProbe

        width = LinearProbe.load(RELEASED_PROBE).n_features_in_
        if width != self.encoder.embed_dim:
            self.note(f"released probe skipped: it takes {width}-d CLIP ViT-L/14 features, "
                      f"{self.encoder.name} gives {self.encoder.embed_dim}-d")
            return None
        self.note(f"released probe: {RELEASED_PROBE.name} from the authors' UniversalFakeDetect release, "
                  f"SHA-256 {file_sha256(RELEASED_PROBE)}")
        caution = released_probe_caution(self.encoder)
        if caution:
            self.note(caution)
        return RELEASED_PROBE


def open_run(profile: str, data_root: str | None, output_dir: str, cache_dir: str | None, *,
             notebook: str, encoder: str | None = None, sampling: str | None = None,
             allow_torchscript: bool = False) -> RunContext:
    """The run of ``notebook`` (its file name without ``.ipynb``) for the papermill parameters;
    ``encoder`` and ``sampling`` None mean the profile's."""
    chosen = get_profile(profile)
    output = Path(output_dir)
    output.mkdir(parents=True, exist_ok=True)
    data_root = data_root or default_data_root(chosen, output)
    recorded = recorded_run(output)
    if recorded.get("settings", {}).get("profile") != chosen.name:
        _record_profile(chosen, output, notebook, {"data_root": str(data_root), "output_dir": str(output),
                                                   "cache_dir": str(cache_dir), "encoder": encoder or chosen.encoder,
                                                   "sampling": sampling or chosen.sampling})
    elif recorded.get("run", {}).get("status") in ("finished", "failed"):
        _record_rerun(output, recorded, notebook)
    benchmark = load_benchmark(chosen, data_root)
    options = extraction_options(chosen, cache_dir, sampling=sampling or chosen.sampling)
    return RunContext(chosen, benchmark, output, options, notebook, encoder or chosen.encoder, allow_torchscript)


def is_papers_encoder(encoder: Encoder) -> bool:
    """Whether ``encoder`` runs OpenAI's published CLIP ViT-L/14 file (by its SHA-256), the
    backbone of the paper's numbers."""
    if not encoder.checkpoint_official:
        return False
    from ufd_lib.features.encoders.clip import official_clip_checkpoints

    return encoder.checkpoint_sha256 == official_clip_checkpoints()["ViT-L/14"][1]


def _record_rerun(output: Path, recorded: dict, notebook: str) -> None:
    """Add to a finished or failed ``ufd reproduce`` run's record that ``notebook`` was run again
    on its own afterwards, and when, so the page does not pass off its new results as the run's."""
    run = recorded["run"]
    run.setdefault("rerun_on_its_own", {})[notebook] = datetime.now(timezone.utc).isoformat(timespec="seconds")
    record_run(output, recorded.get("title", ""), recorded.get("settings", {}), recorded.get("versions", {}), run)


def _record_profile(profile: Profile, output: Path, notebook: str, parameters: dict) -> None:
    """State on the index page the profile of a notebook run on its own (not by ``ufd reproduce``,
    which records its run itself), so the page keeps its banner."""
    settings = {"profile": profile.name, "description": profile.description,
                "compare_with_paper": profile.compare_with_paper, **parameters,
                "written by": f"notebook {notebook} run on its own, not by ufd reproduce"}
    record_run(output, f"UnivFD replication — profile {profile.name}", settings,
               {**library_versions(), "ufd code": code_revision()})


def extraction_options(profile: Profile, cache_dir: Path | str | None, progress: bool = True,
                       sampling: str | None = None) -> ExtractionOptions:
    """The profile's extraction options; ``sampling`` None means the profile's."""
    return ExtractionOptions(
        batch_size=profile.batch_size, num_workers=profile.num_workers, sampling=sampling or profile.sampling,
        cache_root=Path(cache_dir) if cache_dir else None, progress=progress,
    )
