"""Every ``ufd`` command the README shows is one the real parser accepts.

A snippet with placeholders (``[--k K]``, ``NAME=REAL[:FAKE]``, ``{knn,linear}``, ``...``) is a
synopsis: its command and every flag it names must exist. A snippet naming only a command and
flags (``ufd evaluate --help``) must name existing ones. Any other snippet is an example a reader
types as written: it must parse, with the folders it names created first.
"""
from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
from conftest import REPO_ROOT, subcommand_parsers

from ufd_lib.cli.parser import build_parser

_CODE_SPAN = re.compile(r"`(ufd [^`]+)`")
_PLACEHOLDER = re.compile(r"[\[\]{}|]|\.\.\.|\b[A-Z][A-Z_]{1,}\b")


def readme_commands(text: str) -> list[str]:
    """The ``ufd ...`` commands of a Markdown text: inline code spans and lines of code blocks,
    without trailing comments and output redirections."""
    commands = [match.group(1) for match in _CODE_SPAN.finditer(text)]
    in_block = False
    for line in text.splitlines():
        if line.startswith("```"):
            in_block = not in_block
        elif in_block and line.startswith("ufd "):
            commands.append(line)
    return [re.split(r"\s+(?:#|>)\s", command)[0].strip() for command in commands]


def _command_and_rest(words: list[str], commands: dict) -> tuple[str, list[str]]:
    for length in (3, 2, 1):  # the longest command first: `data manifest build` before `data manifest`
        name = " ".join(words[1:1 + length])
        if name in commands:
            return name, words[1 + length:]
    raise AssertionError(f"{' '.join(words)!r}: no such ufd command")


def _flags(parser) -> set[str]:
    return {option for action in parser._actions for option in action.option_strings}


def _materialise(words: list[str], root: Path) -> list[str]:
    """The example's words with absolute paths moved under ``root`` and every folder it names
    created there (a set's REAL and FAKE roots, a data root, a folder of images)."""
    out = []
    for word in words:
        head, sep, value = word.rpartition("=") if "=" in word and not word.startswith("-") else ("", "", word)
        if "/" in value and ":" not in value.split("/")[0]:
            value = str(root / value.lstrip("/"))
            Path(value).mkdir(parents=True, exist_ok=True)
        out.append(head + sep + value)
    return out


def test_the_readme_shows_ufd_commands():
    commands = readme_commands((REPO_ROOT / "README.md").read_text(encoding="utf-8"))
    assert len(commands) >= 10
    assert any(not _PLACEHOLDER.search(command) and "--" in command for command in commands)


def test_the_extractor_finds_spans_and_code_lines():
    text = "run `ufd evaluate --help` then\n```bash\nufd predict a.png   # comment\nufd predict --json d/ > x\n```\n"
    assert readme_commands(text) == ["ufd evaluate --help", "ufd predict a.png", "ufd predict --json d/"]


@pytest.mark.parametrize("command", readme_commands((REPO_ROOT / "README.md").read_text(encoding="utf-8")))
def test_readme_command_matches_the_parser(command, tmp_path, monkeypatch, capsys):
    parser = build_parser()
    commands = subcommand_parsers(parser)
    words = shlex.split(command)
    name, rest = _command_and_rest(words, commands)
    named_flags = {word.split("=")[0] for word in re.findall(r"--[a-z][a-z-]*", command)}
    unknown = named_flags - _flags(commands[name])
    assert not unknown, f"{command!r}: `ufd {name}` has no {sorted(unknown)}"
    if _PLACEHOLDER.search(command) or all(word.startswith("--") for word in rest):
        return  # a synopsis or a mention: its command and flags exist
    monkeypatch.chdir(tmp_path)
    try:
        args = parser.parse_args(_materialise(words, tmp_path)[1:])
    except SystemExit as exit:
        pytest.fail(f"{command!r} is refused by the parser: {capsys.readouterr().err.strip()} (exit {exit.code})")
    assert args.command == name.split()[0]
