"""The paper's experiments as functions of features and fitted classifiers, one module per
notebook question (add an analysis module next to its notebook): main results (03), feature
space maps (04), nearest-neighbour ablations (06), robustness (07), backbones (08), unseen fakes
and spectra (09), probe augmentation (10), how sure the numbers are (11), today's generators and
the bias card's symmetric control (12), CLIP's layers (13), training on other data (14)."""
