"""``ufd calibrate``: fit a calibrator (temperature scaling or isotonic regression) of a linear
probe's probabilities on a calibration set and save it as JSON, for ``ufd evaluate`` and
``ufd predict`` (``--calibration``) to apply."""
from __future__ import annotations

from pathlib import Path

from ufd_lib.cli.args import UsageError, extraction_options
from ufd_lib.features.extraction.decoding_workers import kept_decoding_workers


def probe_digest(probe_path: Path | None) -> str:
    """SHA-256 of the probe file, '' for a probe trained in the same run (no file)."""
    from ufd_lib.hashing import file_sha256

    return file_sha256(probe_path) if probe_path is not None else ""


def calibrated(classifier, calibration: Path | None, probe_path: Path | None, flag: str = "--calibration"):
    """``classifier`` with the calibrator in ``calibration`` applied (itself when None). Raises
    :class:`UsageError` for a classifier without probabilities or a calibrator fitted on another
    probe file, and ``CalibratorFileError`` (exit 2) for a broken calibrator file."""
    if calibration is None:
        return classifier
    from ufd_lib.evaluation.calibration import CalibratedClassifier, Calibrator

    calibrator = Calibrator.load(calibration)
    if not hasattr(classifier, "predict_proba"):
        raise UsageError(f"{flag} {calibration}: a calibrator maps a linear probe's probabilities; "
                         "nearest neighbour gives cosine margins")
    digest = probe_digest(probe_path)
    if calibrator.probe_sha256 and digest and calibrator.probe_sha256 != digest:
        raise UsageError(f"{flag} {calibration}: fitted on another probe (SHA-256 {calibrator.probe_sha256[:12]}…), "
                         f"not {probe_path} ({digest[:12]}…)")
    return CalibratedClassifier(classifier, calibrator)


@kept_decoding_workers()
def run(args) -> int:
    from ufd_lib.classifiers.linear_probe import LinearProbe
    from ufd_lib.evaluation.calibration import fit_calibrator
    from ufd_lib.evaluation.metrics import expected_calibration_error, negative_log_likelihood
    from ufd_lib.evaluation.scoring import fake_scores
    from ufd_lib.features.encoders import load_encoder
    from ufd_lib.features.feature_sets import featurize

    options = extraction_options(args)
    encoder = load_encoder(args.encoder, args.device, args.allow_torchscript)
    probe = LinearProbe.load(args.probe)
    if probe.n_features_in_ != encoder.embed_dim:
        raise UsageError(f"--probe {args.probe}: takes {probe.n_features_in_}-d features, "
                         f"{encoder.name} gives {encoder.embed_dim}-d")
    calib = featurize(encoder, args.calib, options)
    if not ((calib.labels == 0).any() and (calib.labels == 1).any()):
        raise UsageError(f"--calib {calib.name}: needs real (0_real) and fake (1_fake) images, found "
                         f"{int((calib.labels == 0).sum())} real and {int((calib.labels == 1).sum())} fake")
    probabilities, _ = fake_scores(probe, calib.features)
    calibrator = fit_calibrator(args.method, calib.labels, probabilities, calib.name, probe_digest(args.probe))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    calibrator.save(args.out)
    after = calibrator.apply(probabilities)
    print(f"{args.method} calibrator fitted on {calib.name} ({calibrator.n_real} real, {calibrator.n_fake} fake); "
          f"on that set NLL {negative_log_likelihood(calib.labels, probabilities):.4f} → "
          f"{negative_log_likelihood(calib.labels, after):.4f}, ECE "
          f"{expected_calibration_error(calib.labels, probabilities):.2%} → "
          f"{expected_calibration_error(calib.labels, after):.2%}; saved {args.out}")
    return 0

