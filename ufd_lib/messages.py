"""User-facing messages: one line, whatever a path or a file's text puts in them."""
from __future__ import annotations


def escape_control(message: str) -> str:
    """``message`` with control characters (newline, tab, NUL, escape, ...) written as Python
    escapes (``\\n``, ``\\x00``), so no path or file excerpt can break a one-line error."""
    return "".join(char if char.isprintable() else repr(char)[1:-1] for char in message)


def one_line(text: object, limit: int | None = None) -> str:
    """``text`` (a message or an exception) with its whitespace runs, newlines included, made one
    space; cut at ``limit`` characters with an ellipsis when given (a library's report can list
    every key of a state dict, one per line)."""
    squeezed = " ".join(str(text).split())
    return squeezed if limit is None or len(squeezed) <= limit else squeezed[: limit - 1] + "…"
