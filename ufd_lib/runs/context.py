"""What a notebook needs to start: its profile, image sets, encoder, output folder and cache,
from the papermill parameters (profile, data_root, output_dir, cache_dir, encoder), and one
place to write what it shows (``run.save_table``, ``run.save_figure``, ``run.note``) under its
own name."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd

from ufd_lib.classifiers.released import RELEASED_PROBE
from ufd_lib.data.image_sets import Benchmark
from ufd_lib.features.encoders import Encoder, load_encoder, parse_encoder_spec
from ufd_lib.features.feature_sets import ExtractionOptions
from ufd_lib.hashing import file_sha256
from ufd_lib.report import artifacts
from ufd_lib.runs.profiles import Profile, default_data_root, get_profile, load_benchmark


@dataclass
class RunContext:
    """One notebook's run. notebook: its name (``03_main_results``), which labels every table,
    figure and notice it records; encoder_spec: the encoder registry string it uses (the
    profile's unless ``ufd reproduce --encoder`` chose another)."""

    profile: Profile
    benchmark: Benchmark
    output_dir: Path
    options: ExtractionOptions
    notebook: str
    encoder_spec: str
    _encoder: Encoder | None = field(default=None, repr=False)

    @property
    def encoder(self) -> Encoder:
        """The run's encoder, loaded on first use; the weights it loaded are noted for the index page."""
        if self._encoder is None:
            self._encoder = load_encoder(self.encoder_spec)
            self.note(weights_notice(self._encoder))
        return self._encoder

    def save_table(self, table: pd.DataFrame, name: str, caption: str, index: bool = True, note: str | None = None) -> None:
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
        return RELEASED_PROBE


def open_run(profile: str, data_root: str | None, output_dir: str, cache_dir: str | None, *,
             notebook: str, encoder: str | None = None) -> RunContext:
    """The run of ``notebook`` (its file name without ``.ipynb``) for the papermill parameters;
    ``encoder`` None means the profile's."""
    chosen = get_profile(profile)
    output = Path(output_dir)
    output.mkdir(parents=True, exist_ok=True)
    benchmark = load_benchmark(chosen, data_root or default_data_root(chosen, output))
    return RunContext(chosen, benchmark, output, extraction_options(chosen, cache_dir), notebook,
                      encoder or chosen.encoder)


def weights_notice(encoder: Encoder) -> str:
    """Which weights an encoder runs on: its registry string, weights file, SHA-256 and whether
    they are the official ones (as far as the encoder knows)."""
    parts = [f"encoder {encoder.name}"]
    if encoder.checkpoint_path is None:
        return f"encoder {encoder.name}: RANDOM weights, no weights file (id {encoder.checkpoint_sha256})"
    parts += [f"weights {encoder.checkpoint_path}", f"SHA-256 {encoder.checkpoint_sha256}"]
    if parse_encoder_spec(encoder.name)[0] == "clip":
        parts.append("OpenAI's published checkpoint" if encoder.checkpoint_official
                     else "NOT one of OpenAI's published checkpoints")
    return ", ".join(parts)


def extraction_options(profile: Profile, cache_dir: Path | str | None, progress: bool = True) -> ExtractionOptions:
    return ExtractionOptions(
        batch_size=profile.batch_size, num_workers=profile.num_workers,
        cache_root=Path(cache_dir) if cache_dir else None, progress=progress,
    )
