"""Features out of the cache, for a user's own tools: plain ``.npy`` arrays and a ``.csv`` index.

Per image set ``<set>``, in one folder:

- ``<set>.npy``: the final embeddings, float32 (n, embed_dim), one row per image;
- ``<set>_layer<L>.npy``: the CLS tokens of layer L, float16 (n, width), as the cache stores
  them (exporting them as float32 would double their size and add no precision);
- ``<set>.csv``: columns ``row, path, label`` (0 real, 1 fake), row i describing row i of every
  array above.

Images that could not be used (unreadable, refused) are in none of them.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from ufd_lib.atomic_files import atomic_write, atomic_write_text
from ufd_lib.features.feature_sets import FeatureSet


def export_feature_set(directory: Path | str, final: FeatureSet,
                       layers: dict[int, FeatureSet] | None = None) -> list[Path]:
    """Write ``final`` (and the per-layer sets ``layers``, by layer) as described above, under
    ``directory`` (created), named after ``final.name``. Every file is written atomically.
    Returns the paths written. Raises ValueError, writing nothing, when a layer's images are not
    the final set's images in the same order, or the set's name is not a plain file name."""
    directory = Path(directory)
    name = final.name
    if not name or Path(name).name != name or name in (".", ".."):
        raise ValueError(f"the set name {name!r} cannot name an exported file")
    layers = dict(sorted((layers or {}).items()))
    for layer, tokens in layers.items():
        if tokens.paths != final.paths:
            raise ValueError(f"{name}: the layer {layer} features are not of the same images, in the same order, "
                             "as the final features")
    directory.mkdir(parents=True, exist_ok=True)
    arrays = {directory / f"{name}.npy": np.asarray(final.features, dtype=np.float32)}
    arrays.update({directory / f"{name}_layer{layer}.npy": np.asarray(tokens.features, dtype=np.float16)
                   for layer, tokens in layers.items()})
    for path, array in arrays.items():
        atomic_write(path, lambda handle, array=array: np.save(handle, array))
    index = pd.DataFrame({"row": np.arange(len(final.paths)), "path": final.paths,
                          "label": np.asarray(final.labels, dtype=int)})
    csv = directory / f"{name}.csv"
    atomic_write_text(csv, index.to_csv(index=False))
    return [*arrays, csv]
