"""Stage 1, image files → labelled image lists: named image sets and their ``0_real``/``1_fake``
layout, layout adapters for the newer benchmarks' own layouts, released-style file lists, the
dataset manifests with download, verification and safe archive extraction, the newer benchmarks'
manifests, per-file lists and bias cards, and the embedded synthetic smoke benchmark (with
stand-ins for the newer benchmarks). Add a dataset here (a manifest)."""
