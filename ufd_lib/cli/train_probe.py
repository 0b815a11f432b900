"""``ufd train-probe``: train the linear probe on cached features (optionally on cached augmented
views) and save it, atomically, in the official ``fc_weights.pth`` format.

A probe that learned nothing is still saved but never quietly: when the best validation
accuracy is at chance (the share of the larger class in the validation labels) or came from
the first epoch, a warning on stderr says what to try.
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

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
    if args.seeds and len(set(args.seeds)) != len(args.seeds):
        raise UsageError(f"--seeds: each seed once, got {' '.join(map(str, args.seeds))}")
    encoder = load_encoder(args.encoder, args.device, args.allow_torchscript)
    train = featurize(encoder, args.train, options)
    validation = featurize(encoder, args.val, options) if args.val else None
    views = featurize_views(encoder, train, options, args.augmented_views) if args.augmented_views else None
    if args.seeds:
        return _train_seeds(args, train, validation, views)
    probe = _train(args, args.seed, train, validation, views, args.out)
    labels = (validation or train).labels
    chance = max(float(labels.mean()), 1.0 - float(labels.mean()))
    warning = training_warning(probe.history_, chance, args.lr, args.epochs)
    if warning:
        print(warning, file=sys.stderr)
    return 0


def seed_path(out: Path, seed: int) -> Path:
    """Where ``--seeds`` saves the probe of ``seed``: OUT's name with ``_seed<SEED>`` before its suffix."""
    return out.with_name(f"{out.stem}_seed{seed}{out.suffix}")


def _train(args, seed: int, train, validation, views, out: Path) -> LinearProbe:
    probe = LinearProbe(lr=args.lr, max_epochs=args.epochs, patience=args.patience, seed=seed, device=args.device)
    if validation is None:
        probe.fit(train.features, train.labels, views=views)
    else:
        probe.fit(train.features, train.labels, validation.features, validation.labels, views=views)
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(out, probe.save)
    best = max(probe.history_, key=lambda row: row["val_acc"])
    augmented = f" ({args.augmented_views} augmented views each)" if args.augmented_views else ""
    print(f"trained on {len(train.labels)} images{augmented} for {len(probe.history_)} epochs; "
          f"best validation accuracy {best['val_acc']:.2%} (epoch {best['epoch']}); saved {out}")
    return probe


def _train_seeds(args, train, validation, views) -> int:
    """One probe per seed of ``--seeds``, then the spread of the best validation accuracy (the
    training randomness, apart from any test-sampling interval)."""
    best = [max(row["val_acc"] for row in _train(args, seed, train, validation, views,
                                                  seed_path(args.out, seed)).history_) for seed in args.seeds]
    print(f"over {len(best)} seeds: best validation accuracy mean {np.mean(best):.2%}, standard deviation "
          f"{np.std(best, ddof=1) if len(best) > 1 else 0.0:.2%}, range {min(best):.2%}-{max(best):.2%}")
    return 0
