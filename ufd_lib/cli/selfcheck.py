"""``ufd selfcheck``: run :mod:`ufd_lib.reliability.selfcheck` and print its reliability report.

Exit status: 0 every case ended as it must; 1 some did not (the table says which); 2 bad usage.
"""
from __future__ import annotations

from ufd_lib.reliability import selfcheck


def run(args) -> int:
    """args.command_line: the ``ufd`` entry point the cases run in-process (set by ``main``)."""
    checks = selfcheck.run_selfcheck(command_line=args.command_line, trials=args.trials, rounds=args.rounds,
                                     fuzz=args.fuzz, seed=args.seed)
    report = selfcheck.report_markdown(checks)
    print(report)
    if args.out is not None:
        args.out.write_text(report + "\n")
    return 0 if all(check.passed for check in checks) else 1
