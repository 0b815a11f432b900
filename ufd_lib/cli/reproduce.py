"""``ufd reproduce``: run the numbered notebooks of a profile with papermill and write the index page."""
from __future__ import annotations

from ufd_lib.runs.reproduce import NotebookChoices, reproduce


def run(args) -> int:
    index = reproduce(args.profile, args.data_root, args.only, args.output_dir, args.cache_dir,
                      log=lambda message: print(message, flush=True),
                      choices=NotebookChoices(args.encoder, args.sampling, args.allow_torchscript))
    print(f"index page: {index}")
    return 0
