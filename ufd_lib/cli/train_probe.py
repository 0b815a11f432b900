"""``ufd train-probe``: train the linear probe on cached features (optionally on cached augmented
views) and save it in the official ``fc_weights.pth`` format."""
from __future__ import annotations

from ufd_lib.classifiers.linear_probe import LinearProbe
from ufd_lib.cli.args import UsageError, extraction_options
from ufd_lib.features.augmentation import featurize_views
from ufd_lib.features.encoders import load_encoder
from ufd_lib.features.feature_sets import featurize
from ufd_lib.features.preprocess import Perturbation


def run(args) -> int:
    options = extraction_options(args)
    if args.augmented_views and options.perturbation != Perturbation():
        raise UsageError("--augmented-views augments the original images; it cannot be combined with "
                         "--blur-sigma or --jpeg-quality")
    encoder = load_encoder(args.encoder, args.device)
    train = featurize(encoder, args.train, options)
    validation = featurize(encoder, args.val, options) if args.val else None
    views = featurize_views(encoder, train, options, args.augmented_views) if args.augmented_views else None
    probe = LinearProbe(device=args.device)
    if validation is None:
        probe.fit(train.features, train.labels, views=views)
    else:
        probe.fit(train.features, train.labels, validation.features, validation.labels, views=views)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    probe.save(args.out)
    best = max(probe.history_, key=lambda row: row["val_acc"])
    augmented = f" ({args.augmented_views} augmented views each)" if args.augmented_views else ""
    print(f"trained on {len(train.labels)} images{augmented} for {len(probe.history_)} epochs; "
          f"best validation accuracy {best['val_acc']:.4f} (epoch {best['epoch']}); saved {args.out}")
    return 0
