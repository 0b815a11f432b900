"""What a notebook needs to start: its profile, image sets, output folder and cache, from the
four papermill parameters (profile, data_root, output_dir, cache_dir)."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from ufd_lib import config
from ufd_lib.data.benchmark import Benchmark
from ufd_lib.data.discovery import collect_images
from ufd_lib.features.encoders import Encoder, load_encoder
from ufd_lib.features.feature_sets import ExtractionOptions
from ufd_lib.runs.profiles import Profile, default_data_root, get_profile, load_benchmark


@dataclass
class RunContext:
    profile: Profile
    benchmark: Benchmark
    output_dir: Path
    options: ExtractionOptions
    _encoder: Encoder | None = field(default=None, repr=False)

    @property
    def encoder(self) -> Encoder:
        """The profile's encoder, loaded on first use."""
        if self._encoder is None:
            self._encoder = load_encoder(self.profile.encoder)
        return self._encoder


def open_run(profile: str, data_root: str | None, output_dir: str, cache_dir: str | None) -> RunContext:
    chosen = get_profile(profile)
    output = Path(output_dir)
    output.mkdir(parents=True, exist_ok=True)
    benchmark = load_benchmark(chosen, data_root or default_data_root(chosen, output))
    return RunContext(chosen, benchmark, output, extraction_options(chosen, cache_dir))


def data_inventory(benchmark: Benchmark, sampling: str = "all") -> pd.DataFrame:
    """Images found per set and class, against the expected counts of the test sets where known."""
    rows = []
    for role, specs in (("train", [benchmark.train]), ("val", [benchmark.val]), ("test", benchmark.test_sets)):
        for spec in specs:
            images = collect_images(spec, sampling) if spec.real_root.exists() and spec.fake_root.exists() else []
            found_real = sum(1 for image in images if image.label == 0)
            found_fake = len(images) - found_real
            expected = benchmark.expected_counts.get(spec.name) if role == "test" else None
            status = "missing" if not images else "ok"
            if images and expected is not None and (found_real, found_fake) != tuple(expected):
                status = "count mismatch"
            rows.append({
                "role": role, "set": spec.name, "family": benchmark.families.get(spec.name, "training"),
                "n_real": found_real, "n_fake": found_fake,
                "expected_real": expected[0] if expected else None,
                "expected_fake": expected[1] if expected else None, "status": status,
            })
    return pd.DataFrame(rows)


def extraction_options(profile: Profile, cache_dir: Path | str | None, progress: bool = True) -> ExtractionOptions:
    return ExtractionOptions(
        batch_size=profile.batch_size, num_workers=profile.num_workers,
        cache_root=Path(cache_dir) if cache_dir else None, progress=progress,
    )


def released_probe_path(profile: Profile) -> Path | None:
    return config.weights_dir() / profile.released_probe if profile.released_probe else None
