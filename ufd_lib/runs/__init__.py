"""Reproductions: the ``smoke`` and ``paper`` profiles (the one configuration place), the run
context each notebook opens, and ``ufd reproduce``, which runs the notebooks with papermill."""
