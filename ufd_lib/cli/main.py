"""``ufd``: parse the command line, run the command's module, map failures to exit statuses.

Exit status: 0 done (or stopped quietly when the reader of its output closed the pipe); 1 the
work failed (an encoder, image, metric or file error); 2 bad usage, reported on one line; 130
interrupted.
"""
from __future__ import annotations

import importlib
import os
import sys
import warnings

from ufd_lib.cli.args import UsageError, allow_pickled_lists
from ufd_lib.cli.parser import build_parser
from ufd_lib.data.image_sets import PathArgumentError
from ufd_lib.messages import one_line


def _exit_status(error: Exception) -> int | None:
    """1 for a failure of the work, 2 for bad usage, None for a bug (re-raised with its traceback).
    The classes are imported here, after the command has loaded their modules anyway."""
    from ufd_lib.classifiers.linear_probe import ProbeFileError
    from ufd_lib.evaluation.metrics import MetricError
    from ufd_lib.features.encoders import EncoderUnavailable
    from ufd_lib.features.extraction.extract import ExtractionError
    from ufd_lib.runs.reproduce import ReproduceError

    if isinstance(error, (EncoderUnavailable, ExtractionError, MetricError, ReproduceError, OSError)):
        return 1
    if isinstance(error, (UsageError, PathArgumentError, ProbeFileError, ValueError)):
        return 2
    return None


def _silence_stdout() -> None:
    """Point stdout at the null device: its reader went away (``ufd predict ... | head -1``), so
    what is left to print has no reader, and nothing may be written at exit either."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)


def _one_line_warnings(command: str):
    """A ``warnings.showwarning`` that prints ``ufd <command>: warning: <message>`` on one line of
    stderr, without the source file and line that Python's default echoes."""

    def show(message, category, filename, lineno, file=None, line=None) -> None:
        print(f"ufd {command}: warning: {one_line(message)}", file=file or sys.stderr)

    return show


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if getattr(args, "allow_pickled_lists", False):
        allow_pickled_lists(args)
    args.command_line = main  # the selfcheck runs commands in-process through this very entry point
    with warnings.catch_warnings():
        warnings.showwarning = _one_line_warnings(args.command)
        return _run(args)


def _run(args) -> int:
    try:
        status = importlib.import_module(args.command_module).run(args)
        sys.stdout.flush()  # a closed pipe shows here, not in the interpreter's last flush
        return status
    except BrokenPipeError:
        _silence_stdout()
        return 0
    except KeyboardInterrupt:
        print(f"ufd {args.command}: interrupted; finished work is kept in the cache", file=sys.stderr)
        return 130
    except Exception as error:
        status = _exit_status(error)
        if status is None:
            raise
        message = str(error) if status == 1 else one_line(error)  # usage: one line
        print(f"ufd {args.command}: error: {message}", file=sys.stderr)
        return status
