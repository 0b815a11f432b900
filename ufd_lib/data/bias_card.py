"""A test set's bias card: what its files' metadata alone says about real against fake.

Per image, without decoding pixels: file format, JPEG quality (estimated from the quantisation
tables), width, height, aspect ratio, bytes per pixel and EXIF presence. Per class, the
distribution of each. And ``metadata_auc``: the cross-validated ROC AUC of a random forest that
sees only how the files were made (format, JPEG quality, size, aspect ratio, EXIF). Near 0.5 the
metadata carries no label; far from it (the set is flagged) a detector's score on the set may
come from a shortcut such as real JPEG against fake PNG, the format bias documented for
DiffusionForensics. Bytes per pixel is reported but not given to the classifier: in a lossless
file it measures how compressible the pixels are, which is content, not provenance.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image, UnidentifiedImageError

from ufd_lib.data.discovery import LabelledImage, collect_images
from ufd_lib.data.image_sets import ImageSetSpec

FORMATS = ("JPEG", "PNG", "WEBP")  # any other format is "other"
# A set is flagged when its metadata AUC is at least this far from 0.5 either way.
FLAG_DISTANCE = 0.25
CV_FOLDS = 5

# The IJG luminance table (ITU T.81 Annex K, Table K.1); libjpeg scales it by the quality.
_IJG_LUMINANCE = np.array([
    16, 11, 10, 16, 24, 40, 51, 61, 12, 12, 14, 19, 26, 58, 60, 55, 14, 13, 16, 24, 40, 57, 69, 56,
    14, 17, 22, 29, 51, 87, 80, 62, 18, 22, 37, 56, 68, 109, 103, 77, 24, 35, 55, 64, 81, 104, 113, 92,
    49, 64, 78, 87, 103, 121, 120, 101, 72, 92, 95, 98, 112, 100, 103, 99,
])
_QUALITIES = np.arange(1, 101)
_SCALES = np.where(_QUALITIES < 50, 5000 // _QUALITIES, 200 - 2 * _QUALITIES)
# (100, 64): the luminance table libjpeg writes at each quality 1..100, sorted (order-free match).
_SCALED_TABLES = np.sort(np.clip((_IJG_LUMINANCE[None, :] * _SCALES[:, None] + 50) // 100, 1, 255), axis=1)

COLUMNS = ("path", "label", "format", "jpeg_quality", "width", "height", "aspect_ratio", "bytes_per_pixel",
           "has_exif", "file_bytes")


def estimate_jpeg_quality(quantization: dict[int, list[int]]) -> int:
    """The IJG quality (1-100) whose luminance table is closest to table 0 of ``quantization``
    (PIL's ``image.quantization``): exact for files written by libjpeg and its descendants (PIL,
    OpenCV, most cameras' software), an approximation for other encoders."""
    table = np.sort(np.asarray(quantization[0], dtype=np.int64))
    return int(_QUALITIES[np.abs(_SCALED_TABLES - table[None, :]).sum(axis=1).argmin()])


def read_metadata(path: str) -> dict | None:
    """One image's metadata (the COLUMNS but path and label), read from its header; None when PIL
    cannot identify the file. jpeg_quality is NaN for a file that is not JPEG."""
    try:
        with Image.open(path) as image:
            width, height = image.size
            image_format = image.format if image.format in FORMATS else "other"
            quality = estimate_jpeg_quality(image.quantization) if image_format == "JPEG" else math.nan
            has_exif = bool(image.getexif()) or "exif" in image.info
        size = Path(path).stat().st_size
    except (OSError, UnidentifiedImageError, ValueError, KeyError):
        return None
    pixels = max(width * height, 1)
    return {"format": image_format, "jpeg_quality": quality, "width": width, "height": height,
            "aspect_ratio": width / max(height, 1), "bytes_per_pixel": size / pixels, "has_exif": has_exif,
            "file_bytes": size}


def metadata_table(images: list[LabelledImage]) -> pd.DataFrame:
    """One row per readable image (COLUMNS); unreadable files are left out."""
    rows = []
    for image in images:
        found = read_metadata(image.path)
        if found is not None:
            rows.append({"path": image.path, "label": image.label, **found})
    return pd.DataFrame(rows, columns=list(COLUMNS))


def metadata_features(table: pd.DataFrame) -> np.ndarray:
    """float64 (n_images, 9): format one-hot (JPEG, PNG, WEBP, other), JPEG quality (-1 when not
    JPEG), log width, log height, log aspect ratio, EXIF present; never pixels, nor bytes per
    pixel (module docstring)."""
    formats = [(table["format"] == name).to_numpy(float) for name in (*FORMATS, "other")]
    columns = [*formats, table["jpeg_quality"].fillna(-1).to_numpy(float),
               np.log(table["width"].to_numpy(float)), np.log(table["height"].to_numpy(float)),
               np.log(table["aspect_ratio"].to_numpy(float)), table["has_exif"].to_numpy(float)]
    return np.stack(columns, axis=1) if len(table) else np.zeros((0, 9))


def metadata_auc(table: pd.DataFrame, seed: int = 0) -> float:
    """Cross-validated ROC AUC of a random forest on :func:`metadata_features` (stratified
    folds, at most CV_FOLDS, out-of-fold probabilities pooled). NaN when a class has fewer than
    two images."""
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import StratifiedKFold, cross_val_predict

    labels = table["label"].to_numpy(int)
    smaller = min(int((labels == 0).sum()), int((labels == 1).sum()))
    if smaller < 2:
        return math.nan
    folds = StratifiedKFold(n_splits=min(CV_FOLDS, smaller), shuffle=True, random_state=seed)
    forest = RandomForestClassifier(n_estimators=100, min_samples_leaf=2, random_state=seed)
    scores = cross_val_predict(forest, metadata_features(table), labels, cv=folds, method="predict_proba")[:, 1]
    return float(roc_auc_score(labels, scores))


def is_flagged(auc: float) -> bool:
    """Whether metadata alone separates the classes (AUC at least FLAG_DISTANCE from 0.5)."""
    return not math.isnan(auc) and abs(auc - 0.5) >= FLAG_DISTANCE


def class_distributions(table: pd.DataFrame) -> pd.DataFrame:
    """One row per class ("real", "fake"): images, share of each format, JPEG quality (median,
    min, max over the JPEGs), median width, height, aspect ratio and bytes per pixel, share with EXIF."""
    rows = []
    for label, name in ((0, "real"), (1, "fake")):
        part = table[table["label"] == label]
        quality = part["jpeg_quality"].dropna()
        row = {"class": name, "images": len(part)}
        row.update({f"share_{fmt.lower()}": float((part["format"] == fmt).mean()) if len(part) else math.nan
                    for fmt in (*FORMATS, "other")})
        row.update({"jpeg_quality_median": quality.median() if len(quality) else math.nan,
                    "jpeg_quality_min": quality.min() if len(quality) else math.nan,
                    "jpeg_quality_max": quality.max() if len(quality) else math.nan})
        row.update({f"median_{column}": part[column].median() if len(part) else math.nan
                    for column in ("width", "height", "aspect_ratio", "bytes_per_pixel")})
        row["share_exif"] = float(part["has_exif"].mean()) if len(part) else math.nan
        rows.append(row)
    return pd.DataFrame(rows)


@dataclass(frozen=True)
class BiasCard:
    """The card of one set: metadata_auc, whether it is flagged, per-class distributions and the
    per-image table."""

    name: str
    metadata_auc: float
    flagged: bool
    distributions: pd.DataFrame
    table: pd.DataFrame

    def summary_row(self) -> dict:
        counts = self.table["label"].value_counts()
        return {"set": self.name, "n_real": int(counts.get(0, 0)), "n_fake": int(counts.get(1, 0)),
                "metadata_auc": self.metadata_auc, "flagged": self.flagged}


def card_from_table(name: str, table: pd.DataFrame, seed: int = 0) -> BiasCard:
    auc = metadata_auc(table, seed)
    return BiasCard(name, auc, is_flagged(auc), class_distributions(table), table)


def bias_card(spec: ImageSetSpec, seed: int = 0) -> BiasCard:
    """The bias card of every image of ``spec`` (any layout or adapter discovery reads)."""
    return card_from_table(spec.name, metadata_table(collect_images(spec)), seed)


def bias_card_table(cards: list[BiasCard]) -> pd.DataFrame:
    """One row per card: set, n_real, n_fake, metadata_auc, flagged, then the per-class medians
    and shares of :func:`class_distributions` as ``<column> (real)`` and ``<column> (fake)``."""
    rows = []
    for card in cards:
        row = card.summary_row()
        for record in card.distributions.to_dict("records"):
            name = record.pop("class")
            row.update({f"{column} ({name})": value for column, value in record.items() if column != "images"})
        rows.append(row)
    return pd.DataFrame(rows)
