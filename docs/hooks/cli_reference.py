"""MkDocs hook: the command-line reference is generated from the program's own argument parser at every build,
so it cannot drift from the code. A page that holds the marker line gets the help of every command there."""

from __future__ import annotations

import argparse
import os

MARKER = "<!-- cli-reference -->"


def _commands(parser: argparse.ArgumentParser, prefix: str):
    yield prefix, parser
    for action in parser._actions:  # argparse has no public way to list sub-commands
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _commands(sub, f"{prefix} {name}")


def reference() -> str:
    os.environ["COLUMNS"] = "110"  # the same line width on every machine
    from kappamask_core.faces.cli import build_parser

    parts = []
    for name, parser in _commands(build_parser(), "kappamask"):
        parser.prog = name
        parts.append(f"## `{name}`\n\n```text\n{parser.format_help().rstrip()}\n```\n")
    return "\n".join(parts)


def on_page_markdown(markdown, page, config, files):
    return markdown.replace(MARKER, reference()) if MARKER in markdown else markdown
