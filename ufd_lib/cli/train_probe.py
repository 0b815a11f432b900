"""``ufd train-probe``: train the linear probe on cached features (optionally on cached augmented
views) and save it, atomically, in the official ``fc_weights.pth`` format.

A probe that learned nothing is still saved but never quietly: when the best validation
accuracy is at chance (the share of the larger class in the validation labels) or came from
the first epoch, a warning on stderr says what to try.
"""
from __future__ import annotations

import sys

from ufd_lib.atomic_files import atomic_write
from ufd_lib.classifiers.linear_probe import LinearProbe
from ufd_lib.cli.args import UsageError, extraction_options
from ufd_lib.features.augmentation import featurize_views
from ufd_lib.features.encoders import load_encoder
from ufd_lib.features.extraction.decoding_workers import kept_decoding_workers
from ufd_lib.features.feature_sets import featurize
from ufd_lib.features.preprocess import Perturbation

# A best validation accuracy within this much (a fraction) of chance counts as chance.
CHANCE_MARGIN = 0.02


def training_warning(history: list[dict], chance: float, lr: float, epochs: int) -> str | None:
    """Why the best epoch of ``history`` (dicts with ``epoch``, ``val_acc``, fractions) shows the
    probe learned nothing, with what to try; None when it learned. chance: the accuracy of always
    answering the larger class of the validation set (0.5 when balanced)."""
    best = max(history, key=lambda row: row["val_acc"])
    if best["val_acc"] <= chance + CHANCE_MARGIN:
        problem = f"the best validation accuracy, {best['val_acc']:.1%}, is at chance ({chance:.1%})"
    elif best["epoch"] == 0:
        problem = "the best validation accuracy came from epoch 0: training after the first epoch never improved it"
    else:
        return None
    faster = f"a larger learning rate (--lr 1e-3; this run: {lr:g})" if lr < 1e-3 else "a smaller learning rate"
    return (f"warning: {problem}; the probe learned nothing from these features. Try more training images, "
            f"{faster}, or more epochs (--epochs {2 * epochs}), and check that --train holds 0_real and 1_fake "
            "images of the kind you want to detect.")


@kept_decoding_workers()
def run(args) -> int:
    options = extraction_options(args)
    if args.augmented_views and options.perturbation != Perturbation():
        raise UsageError("--augmented-views augments the original images; it cannot be combined with "
                         "--blur-sigma or --jpeg-quality")
    encoder = load_encoder(args.encoder, args.device, args.allow_torchscript)
    train = featurize(encoder, args.train, options)
    validation = featurize(encoder, args.val, options) if args.val else None
    views = featurize_views(encoder, train, options, args.augmented_views) if args.augmented_views else None
    probe = LinearProbe(lr=args.lr, max_epochs=args.epochs, patience=args.patience, seed=args.seed, device=args.device)
    if validation is None:
        probe.fit(train.features, train.labels, views=views)
    else:
        probe.fit(train.features, train.labels, validation.features, validation.labels, views=views)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(args.out, probe.save)
    best = max(probe.history_, key=lambda row: row["val_acc"])
    augmented = f" ({args.augmented_views} augmented views each)" if args.augmented_views else ""
    print(f"trained on {len(train.labels)} images{augmented} for {len(probe.history_)} epochs; "
          f"best validation accuracy {best['val_acc']:.2%} (epoch {best['epoch']}); saved {args.out}")
    labels = (validation or train).labels
    chance = max(float(labels.mean()), 1.0 - float(labels.mean()))
    warning = training_warning(probe.history_, chance, args.lr, args.epochs)
    if warning:
        print(warning, file=sys.stderr)
    return 0
