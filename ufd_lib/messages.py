"""User-facing messages: one line, whatever a path or a file's text puts in them."""
from __future__ import annotations


def escape_control(message: str) -> str:
    """``message`` with control characters (newline, tab, NUL, escape, ...) written as Python
    escapes (``\\n``, ``\\x00``), so no path or file excerpt can break a one-line error."""
    return "".join(char if char.isprintable() else repr(char)[1:-1] for char in message)
