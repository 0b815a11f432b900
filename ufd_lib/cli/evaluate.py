"""``ufd evaluate``: score test sets with nearest neighbour or the linear probe and write AP and
accuracies (metrics.csv, scores.csv, skipped.csv, run.json)."""
from __future__ import annotations

from ufd_lib.classifiers.linear_probe import LinearProbe
from ufd_lib.classifiers.nearest_neighbour import NearestNeighbourClassifier
from ufd_lib.cli.args import UsageError, extraction_options, settings
from ufd_lib.evaluation.scoring import evaluate_sets
from ufd_lib.features.encoders import load_encoder
from ufd_lib.features.extraction.decoding_workers import kept_decoding_workers
from ufd_lib.features.extraction.extract import ExtractionReport
from ufd_lib.features.feature_sets import featurize
from ufd_lib.report.provenance import run_record, write_evaluation


def _fit_classifier(args, encoder, options, report):
    if args.classifier == "knn":
        if args.train is None:
            raise UsageError("--classifier knn needs --train NAME=REAL[:FAKE] for its feature banks")
        train = featurize(encoder, args.train, options, report)
        return NearestNeighbourClassifier(k=args.k, device=args.device).fit(train.features, train.labels)
    if args.probe is not None:
        probe = LinearProbe.load(args.probe)
        if probe.n_features_in_ != encoder.embed_dim:
            raise UsageError(f"--probe {args.probe}: takes {probe.n_features_in_}-d features, "
                             f"{encoder.name} gives {encoder.embed_dim}-d")
        return probe
    if args.train is None:
        raise UsageError("--classifier linear needs --probe PATH or --train NAME=REAL[:FAKE]")
    train = featurize(encoder, args.train, options, report)
    return LinearProbe(device=args.device).fit(train.features, train.labels)


PRINTED = {"ap": "AP%", "acc_real": "acc_real%", "acc_fake": "acc_fake%", "acc": "acc%",
           "oracle_threshold": "oracle_t", "oracle_acc": "oracle_acc%",
           "released_threshold": "released_t", "released_acc": "released_acc%"}


def _in_percent(metrics):
    """The printed summary: counts, metrics in percent (2 decimals), thresholds in score units
    (4 significant digits); metrics.csv keeps every column as fractions."""
    table = metrics[["test_set", "n_real", "n_fake"]].copy()
    for column, title in PRINTED.items():
        values = metrics[column] if column.endswith("threshold") else metrics[column] * 100
        digits = "{:.4g}" if column.endswith("threshold") else "{:.2f}"
        table[title] = [digits.format(v + 0.0) if v == v else "" for v in values]
    return table


@kept_decoding_workers()
def run(args) -> int:
    options = extraction_options(args)
    if args.k < 1:
        raise UsageError(f"--k must be >= 1, got {args.k}")
    encoder = load_encoder(args.encoder, args.device, args.allow_torchscript)
    report = ExtractionReport()
    classifier = _fit_classifier(args, encoder, options, report)
    test_sets = [featurize(encoder, spec, options, report) for spec in args.test]
    result = evaluate_sets(classifier, test_sets)
    write_evaluation(result, run_record(encoder, report, settings(args)), args.out)
    print("metrics in percent; thresholds (_t) in score units; every column as fractions in metrics.csv")
    print(_in_percent(result.metrics).to_string(index=False, na_rep=""))
    print(f"\nencoded {report.images_encoded} images, {report.images_from_cache} from cache, "
          f"{len(report.skipped)} skipped; results in {args.out}")
    return 0
