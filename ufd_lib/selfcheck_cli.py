"""``ufd selfcheck``: run :mod:`ufd_lib.selfcheck` and print its reliability report.

Exit status: 0 every case ended as it must; 1 some did not (the table says which); 2 bad usage.
"""
from __future__ import annotations

import argparse

from .cli import _positive_int
from .image_sets import argument_type, output_file


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``selfcheck`` command to a subparsers object."""
    selfcheck = subparsers.add_parser(
        "selfcheck",
        help="inject faults and hostile inputs, report what survived",
        description="Kill extractions at random moments and inside cache writes, run two at once, damage cache "
        "chunks, feed hostile images, checkpoints and command lines; compare every result with a clean run. "
        "Offline, on CPU, about 1-2 minutes with the defaults.",
    )
    selfcheck.add_argument("--trials", type=_positive_int, default=20, help="random SIGKILL trials (default 20)")
    selfcheck.add_argument("--rounds", type=_positive_int, default=3,
                           help="rounds of two concurrent extractions (default 3)")
    selfcheck.add_argument("--fuzz", type=_positive_int, default=300,
                           help="mutated images, and malformed command lines, tried (default 300 each)")
    selfcheck.add_argument("--seed", type=int, default=0)
    selfcheck.add_argument("--out", type=argument_type(output_file), default=None,
                           help="also write the report (Markdown) to this file")
    selfcheck.set_defaults(func=cmd_selfcheck)


def cmd_selfcheck(args) -> int:
    from .selfcheck import report_markdown, run_selfcheck

    checks = run_selfcheck(trials=args.trials, rounds=args.rounds, fuzz=args.fuzz, seed=args.seed)
    report = report_markdown(checks)
    print(report)
    if args.out is not None:
        args.out.write_text(report + "\n")
    return 0 if all(check.passed for check in checks) else 1
