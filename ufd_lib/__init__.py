"""ufd: reference replication of UnivFD (Ojha, Li, Lee, CVPR 2023, arXiv 2302.10174)."""
__version__ = "0.1.0"
