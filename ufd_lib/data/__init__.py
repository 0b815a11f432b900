"""Stage 1, image files → labelled image lists: named image sets and their ``0_real``/``1_fake``
layout, released-style file lists, the dataset manifests with download, verification and safe
archive extraction, and the embedded synthetic smoke benchmark. Add a dataset here (a manifest)."""
