"""Stage 2, images → features: the encoder registry (add a backbone with one ``@register``
entry), preprocessing and augmentation, batched extraction with sharding and claims, the
file-identity memo (``digest_memo``), the content-addressed feature cache with per-layer
features (``layer_caches``), and the export of features to ``.npy``/``.csv`` (``export``)."""
