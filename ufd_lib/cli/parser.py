"""The ``ufd`` argument parser: every command and flag, and the module that runs each command.

Building the parser imports nothing heavy; a command's module (``ufd_lib.cli.<command>``, with
a ``run(args) -> exit status``) is imported only once its arguments have parsed.
"""
from __future__ import annotations

import argparse
import textwrap
from pathlib import Path

from ufd_lib import config
from ufd_lib.classifiers.released import RELEASED_PROBE
from ufd_lib.cli.args import (
    Parser,
    add_extraction_flags,
    argument_type,
    layer_list,
    non_negative_int,
    positive_int,
    set_spec,
    shared_options_last,
)
from ufd_lib.cli.paths import existing_directory, existing_file, output_directory, output_file


def _learning_rate(text: str) -> float:
    """argparse type: a finite number > 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"{text!r} must be a finite number > 0")
    return value


LAYOUT_EPILOG = """\
folder layouts (as the official validate.py reads them):
  a set NAME=ROOT holds real images in folders named 0_real and fakes in 1_fake:
    ROOT/0_real/*.png             ROOT/1_fake/*.png
  with an optional category level in between (ProGAN's 20 classes):
    ROOT/airplane/0_real/*.png    ROOT/airplane/1_fake/*.png    ROOT/bird/0_real/...
  diffusion sets share their reals: NAME=REAL:FAKE takes the 0_real folders under REAL
  and the 1_fake folders under FAKE, e.g.
    ldm_200=diffusion_datasets/laion:diffusion_datasets/ldm_200
  images are files named *.png, *.jpg, *.jpeg, *.bmp or *.webp (any case)
  a newer benchmark is read in its own layout by an adapter, NAME=ADAPTER:PATH[:PATH], e.g.
    sd14=genimage:/data/GenImage/stable_diffusion_v_1_4    (val/nature real, val/ai fake)
  (`ufd data adapters` lists them)
"""


def _command(subparsers, name: str, module: str, **kwargs) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(name, **kwargs)
    parser.set_defaults(command_module=f"ufd_lib.cli.{module}")
    return parser


def _encoding_command(subparsers, name: str, module: str, help: str, description: str,
                      layouts: bool = False, sampling: bool = True) -> argparse.ArgumentParser:
    """A command that encodes images: the extraction flags (``--sampling`` only with
    ``sampling``), and with ``layouts`` the folder layouts of its image sets drawn under its help."""
    if layouts:
        parser = _command(subparsers, name, module, help=help, description=textwrap.fill(description),
                          epilog=LAYOUT_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    else:
        parser = _command(subparsers, name, module, help=help, description=description)
    add_extraction_flags(parser, sampling)
    return parser


def probe_file(text: str) -> Path:
    """``released`` (the probe shipped with ufd) or an existing probe file."""
    return RELEASED_PROBE if text == "released" else existing_file(text)


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="ufd", description="UnivFD replication: fake image detection in frozen CLIP feature space.")
    subparsers = parser.add_subparsers(dest="command", required=True)

    evaluate = _encoding_command(
        subparsers, "evaluate", "evaluate", "score test sets and compute AP and accuracies",
        "Score each --test set with nearest neighbour (banks from --train) or the linear probe "
        "(--probe, or one trained on --train) and write metrics.csv, scores.csv, skipped.csv and run.json.",
        layouts=True,
    )
    evaluate.add_argument("--classifier", choices=("knn", "linear"), required=True,
                          help="knn: nearest neighbour to the real and fake banks of --train (cosine); "
                          "linear: the linear probe")
    evaluate.add_argument("--train", type=set_spec, default=None, metavar="NAME=REAL[:FAKE]",
                          help="training images: the feature banks (knn) or the probe's training set (linear "
                          "without --probe)")
    evaluate.add_argument("--k", type=positive_int, default=1, help="nearest neighbours averaged per bank (knn)")
    evaluate.add_argument("--probe", type=argument_type(probe_file), default=None, metavar="PATH",
                          help="a trained linear probe (linear): 'released' (the authors' fc_weights.pth shipped "
                          "with ufd, for clip:ViT-L/14) or a .pth in the official {weight, bias} format, e.g. from "
                          "`ufd train-probe --out`")
    evaluate.add_argument("--test", type=set_spec, action="append", required=True, metavar="NAME=REAL[:FAKE]",
                          help="a test set (repeatable): one row of the results per set, then their mean")
    evaluate.add_argument("--out", type=argument_type(output_directory), required=True, help="output directory")
    _add_interval_flags(evaluate)

    train_probe = _encoding_command(
        subparsers, "train-probe", "train_probe", "train the linear probe on cached features",
        "Train the paper's linear probe (BCE, AdamW, learning rate divided by 10 after --patience "
        "epochs without a validation gain) on the features of --train and save the best validation epoch.",
        layouts=True,
    )
    train_probe.add_argument("--train", type=set_spec, required=True, metavar="NAME=REAL[:FAKE]",
                             help="training images (the paper: ProGAN, 20 categories)")
    train_probe.add_argument("--val", type=set_spec, default=None, metavar="NAME=REAL[:FAKE]",
                             help="validation set for early stopping (default: 10%% of --train, stratified)")
    train_probe.add_argument("--augmented-views", type=non_negative_int, default=0, metavar="N",
                             help="train on N cached augmented views per image (the released blur, JPEG, crop "
                                  "and flip), one sampled per image each epoch; 0 (default): the unaugmented "
                                  "centre crop, encoding each image once")
    train_probe.add_argument("--lr", type=_learning_rate, default=config.PROBE_LR,
                             help=f"initial learning rate (default {config.PROBE_LR:g}, the paper's)")
    train_probe.add_argument("--epochs", type=positive_int, default=config.PROBE_MAX_EPOCHS,
                             help=f"at most this many epochs (default {config.PROBE_MAX_EPOCHS})")
    train_probe.add_argument("--patience", type=positive_int, default=config.PROBE_PATIENCE,
                             help="epochs without a validation gain before the learning rate is divided by 10 "
                             f"(default {config.PROBE_PATIENCE})")
    train_probe.add_argument("--seed", type=int, default=0,
                             help="seed of the weight initialisation, batch order and validation split (default 0)")
    train_probe.add_argument("--seeds", type=int, nargs="+", default=None, metavar="SEED",
                             help="train one probe per seed instead (e.g. --seeds 0 1 2 3 4), saved as "
                             "OUT_seed<SEED>.pth, and print the spread of the validation accuracy across seeds")
    train_probe.add_argument("--out", type=argument_type(output_file), required=True,
                             help="where to save the probe (.pth)")

    predict = _encoding_command(
        subparsers, "predict", "predict", "probability that each image is fake",
        "Print, for every image, its path, the score and the label (real or fake): tab-separated "
        "text (control characters and backslashes in paths escaped as \\n, \\t, \\\\, ...) or JSON lines "
        "(keys path, probability_fake or, with --bank, cosine_margin, and label). "
        "By default the released UnivFD probe scores CLIP ViT-L/14 features, so only the CLIP weights are needed.",
        sampling=False,
    )
    predict.add_argument("--probe", default=None, metavar="PATH",
                         help="the linear probe: 'released' (default, the authors' fc_weights.pth shipped with "
                         "ufd, for clip:ViT-L/14) or a .pth file from `ufd train-probe`; the score is the "
                         "probability of fake, label fake above 0.5")
    predict.add_argument("--bank", type=set_spec, action="append", default=None, metavar="NAME=REAL[:FAKE]",
                         help="use nearest neighbour instead of the probe, with these images as the real and fake "
                         "banks (repeatable; encoded once, then read from the feature cache); the score is the "
                         "cosine margin, label fake above 0")
    predict.add_argument("--k", type=positive_int, default=1, help="nearest neighbours averaged per bank (--bank)")
    predict.add_argument("--json", action="store_true", help="JSON lines instead of tab-separated text")
    predict.add_argument("--calibration", type=argument_type(existing_file), default=None, metavar="C",
                         help="a calibrator from `ufd calibrate` applied to the probe's probabilities (label fake "
                         "above 0.5 of the calibrated probability)")
    predict.add_argument("images", type=Path, nargs="+", metavar="IMAGE_OR_DIR",
                         help="image files, or folders searched recursively for images")

    calibrate = _encoding_command(
        subparsers, "calibrate", "calibrate", "fit a calibrator of a linear probe's probabilities",
        "Fit temperature scaling or isotonic regression of the probe's probability of fake on --calib "
        "(by the paper's protocol the validation set, ProGAN) and save it as JSON for `ufd evaluate "
        "--calibration` and `ufd predict --calibration`.",
        layouts=True,
    )
    calibrate.add_argument("--probe", type=argument_type(probe_file), default=RELEASED_PROBE, metavar="PATH",
                           help="the linear probe: 'released' (default) or a .pth from `ufd train-probe`")
    calibrate.add_argument("--calib", type=set_spec, required=True, metavar="NAME=REAL[:FAKE]",
                           help="the calibration set (real and fake images)")
    calibrate.add_argument("--method", choices=("temperature", "isotonic"), required=True,
                           help="temperature: p' = sigmoid(logit(p) / T), decisions unchanged; isotonic: a "
                           "non-decreasing map fitted by isotonic regression")
    calibrate.add_argument("--out", type=argument_type(output_file), required=True, metavar="C",
                           help="where to write the calibrator (JSON)")

    extract = _encoding_command(
        subparsers, "extract", "extract", "fill the feature cache (torchrun for several processes)",
        "Encode every image of the given sets that the feature cache lacks. Run it under "
        "'torchrun --nproc_per_node N -m ufd_lib extract ...' to shard the work over N processes.",
    )
    extract.add_argument("--set", dest="sets", type=set_spec, action="append", required=True,
                         metavar="NAME=REAL[:FAKE]", help="an image set to encode (repeatable)")
    extract.add_argument("--precision", choices=config.PRECISIONS, default="auto",
                         help="auto (default: the encoder as loaded, fp16 CLIP on CUDA, fp32 on CPU), fp32, "
                         "bf16 (autocast; faster on CPUs with AVX512-BF16/AMX, own cache key), fp16 (CUDA)")
    extract.add_argument("--out", type=argument_type(output_directory), default=None,
                         help="directory for run.json (optional)")
    extract.add_argument("--layers", type=layer_list, default=(), metavar="L,L,...|all",
                         help="also cache the CLS token of these blocks of a CLIP ViT (0: entering block 1, L: after "
                         "block L; all: every one), float16, from the same forward pass (about 2 KB per image and "
                         "layer for ViT-L/14)")
    extract.add_argument("--export", type=argument_type(output_directory), default=None, metavar="DIR",
                         help="write each set's features to DIR: <set>.npy (float32), <set>_layer<L>.npy per "
                         "--layers layer (float16) and <set>.csv (row, path, label)")

    for encoding in (evaluate, train_probe, predict, calibrate, extract):
        shared_options_last(encoding)

    reproduce = _command(
        subparsers, "reproduce", "reproduce", help="run the numbered notebooks with papermill",
        description="Run the numbered notebooks headlessly with papermill for a profile and write, under "
        "--output-dir, the executed notebooks, their tables and figures, and index.html, which links them all "
        "and says which settings, weights and code they used. Exit status 1 when a notebook fails; the page "
        "then says which one stopped and why.",
    )
    reproduce.add_argument("--profile", choices=("smoke", "paper"), required=True,
                           help="smoke: synthetic data, random-weight encoder, minutes on a CPU; paper: the "
                           "paper's datasets under --data-root with CLIP ViT-L/14")
    reproduce.add_argument("--data-root", type=argument_type(existing_directory), default=None,
                           help="datasets root (paper profile)")
    reproduce.add_argument("--encoder", default=None, metavar="SPEC",
                           help="encoder for every notebook instead of the profile's (clip:ViT-L/14 for paper), e.g. "
                           "clip:/path/to/ViT-L-14.pt; recorded on the index page")
    reproduce.add_argument("--only", nargs="+", default=None, metavar="NAME",
                           help="notebooks by name or number, e.g. 03")
    reproduce.add_argument("--output-dir", type=argument_type(output_directory), default=None,
                           help="default runs/<profile>")
    reproduce.add_argument("--cache-dir", type=argument_type(output_directory), default=None,
                           help="feature cache (default $UFD_CACHE_DIR or ~/.cache/ufd/features)")
    reproduce.add_argument("--sampling", choices=config.SAMPLING_MODES, default=None,
                           help="test-set images: official (the released code's 1000/100 cap, seed 0; the paper "
                           "profile's default) or all (the smoke profile's default); stated on the index page")
    reproduce.add_argument("--allow-torchscript", action="store_true",
                           help="let the notebooks load a TorchScript CLIP archive that is not one of OpenAI's "
                           "published checkpoints (loading runs the code inside the archive)")

    _add_data_commands(subparsers)

    selfcheck = _command(
        subparsers, "selfcheck", "selfcheck",
        help="inject faults and hostile inputs, report what survived",
        description="Kill extractions at random moments and inside cache writes, run two at once, damage cache "
        "chunks, feed hostile images, checkpoints and command lines; compare every result with a clean run. "
        "Offline, on CPU, about 1-2 minutes with the defaults.",
    )
    selfcheck.add_argument("--trials", type=positive_int, default=20, help="random SIGKILL trials (default 20)")
    selfcheck.add_argument("--rounds", type=positive_int, default=3,
                           help="rounds of two concurrent extractions (default 3)")
    selfcheck.add_argument("--fuzz", type=positive_int, default=300,
                           help="mutated images, and malformed command lines, tried (default 300 each)")
    selfcheck.add_argument("--seed", type=int, default=0, help="seed of the trials and mutations (default 0)")
    selfcheck.add_argument("--out", type=argument_type(output_file), default=None,
                           help="also write the report (Markdown) to this file")
    return parser


def _fraction(text: str) -> float:
    """argparse type: a number strictly between 0 and 1."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} must lie strictly between 0 and 1")
    return value


def _add_interval_flags(evaluate: argparse.ArgumentParser) -> None:
    """``ufd evaluate``'s flags for confidence intervals and calibration."""
    evaluate.add_argument("--bootstrap", type=non_negative_int, default=0, metavar="N",
                          help="add <metric>_ci_low/_ci_high for AP, accuracies, AUC and the released best-threshold "
                          "accuracy from N stratified bootstrap resamples of the test images (0, the default: none)")
    evaluate.add_argument("--ci", type=_fraction, default=0.95, help="interval level (default 0.95)")
    evaluate.add_argument("--seed", type=int, default=0, help="seed of the bootstrap resamples (default 0)")
    evaluate.add_argument("--ece-bins", type=positive_int, default=15, metavar="N",
                          help="equal-width bins of the expected calibration error (default 15)")
    evaluate.add_argument("--calibration", type=argument_type(existing_file), default=None, metavar="C",
                          help="a calibrator from `ufd calibrate` applied to the linear probe's probabilities")


_MANIFEST_LISTING = "(the manifests, listed when this help is printed)"


class _FetchHelpFormatter(argparse.HelpFormatter):
    """Shows the manifests with their sizes at the end of ``ufd data fetch --help``. They are
    read (YAML, a JSON schema) only when that help is printed, so building the parser stays light."""

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        if text != _MANIFEST_LISTING:
            return super()._fill_text(text, width, indent)
        from ufd_lib.data.manifests import describe_manifests

        return describe_manifests()


def _add_data_commands(subparsers) -> None:
    data = _command(
        subparsers, "data", "data",
        help="verify or download the paper's datasets",
        description="Check a data root against the dataset manifests, or download what it lacks.",
    )
    commands = data.add_subparsers(dest="data_command", metavar="{verify,fetch,adapters,bias-card,manifest}",
                                   required=True)
    verify = commands.add_parser(
        "verify",
        help="check layout, counts and image files against the manifests",
        description="Exit status 0 when the data matches the manifests, 1 when it does not.",
    )
    _add_data_arguments(verify)
    verify.add_argument("--fingerprint", type=argument_type(output_file), metavar="PATH",
                        help="write a CSV (path,size_bytes,sha256) of every checked image; its SHA-256 is printed")
    verify.add_argument("--against", type=argument_type(existing_file), metavar="FILE",
                        help="instead, compare the data root with a per-file list (ufd data manifest build): "
                        "missing, extra and changed files")
    verify.add_argument("--benchmark", metavar="NAME",
                        help="instead, check a newer benchmark (data_manifests/benchmarks/NAME.yaml): the owner's "
                        "archive checksums and each set's counts in the owner's layout under DATA_ROOT/NAME")
    fetch = commands.add_parser(
        "fetch",
        help="download, check and extract what the data root lacks",
        description="Exit status 0 when everything is in place, 1 when something could not be fetched.",
        formatter_class=_FetchHelpFormatter, epilog=_MANIFEST_LISTING,
    )
    _add_data_arguments(fetch)
    fetch.add_argument("--download-dir", type=argument_type(output_directory), metavar="DIR",
                       help="where archives are downloaded and where a hand-downloaded archive is looked for "
                       "(default: DATA_ROOT/downloads)")
    fetch.add_argument("--dry-run", action="store_true",
                       help="list what would be downloaded, with sizes and the total; download nothing")
    _add_newer_data_commands(commands)


def _add_newer_data_commands(commands) -> None:
    commands.add_parser("adapters", help="list the layout adapters of NAME=ADAPTER:PATH[:PATH]",
                        description="The layout adapters and the layout each expects.")
    card = commands.add_parser(
        "bias-card", help="what file metadata alone says about real against fake, per test set",
        description="Per class: format, JPEG quality, size, aspect ratio, bytes per pixel, EXIF; metadata_auc "
        "(cross-validated, metadata only; flagged far from 0.5) and the same after re-encoding both classes alike.")
    card.add_argument("sets", nargs="+", type=set_spec, metavar="NAME=REAL[:FAKE]",
                      help="test sets (NAME=REAL[:FAKE] or NAME=ADAPTER:PATH[:PATH])")
    card.add_argument("--out", type=argument_type(output_directory), required=True, metavar="DIR",
                      help="where bias_card.csv and each set's distributions go")
    card.add_argument("--no-control", action="store_true", help="skip the symmetric re-encoding control")
    manifest = commands.add_parser("manifest", help="per-file lists of a copy",
                                   description="Build a per-file list (path,size_bytes,sha256) of a copy.")
    build = manifest.add_subparsers(dest="manifest_command", metavar="{build}", required=True).add_parser(
        "build", help="write the sorted relative paths, sizes and SHA-256 of the images under --data-root",
        description="Write the sorted relative paths, sizes and SHA-256 of the images of a copy, so two copies can "
        "be compared (ufd data verify --against FILE). Unchanged files are recognised without being read.")
    build.add_argument("--data-root", type=argument_type(existing_directory), required=True, metavar="DIR",
                       help="the copy to list (paths in the list are relative to it)")
    build.add_argument("--manifest", dest="manifest_name", metavar="NAME",
                       help="only the files of this paper manifest's sets; a newer benchmark's name (e.g. "
                       "chameleon) lists every image under DIR, your copy (default: every image under DIR)")
    build.add_argument("--out", type=argument_type(output_file), required=True, metavar="FILE",
                       help="the per-file list to write (CSV path,size_bytes,sha256; its SHA-256 is printed)")
    build.add_argument("--cache-dir", type=argument_type(output_directory), default=None, metavar="DIR",
                       help="feature cache root whose file-identity memo spares re-reading unchanged files "
                       "(default: $UFD_CACHE_DIR or ~/.cache/ufd/features)")


def _add_data_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data-root", type=argument_type(output_directory), required=True, metavar="DIR",
                        help="the data root")
    parser.add_argument("--manifest", dest="manifests", action="extend", nargs="+", metavar="NAME",
                        help="manifest name(s), e.g. cnndetection_test univfd_diffusion (default: all)")
