"""MkDocs hook: the pages that describe the code are generated from the code at every build, so they cannot drift
from it. A marker line in a page is replaced by:

- ``<!-- cli-reference -->``: the help of every command, from the program's own argument parser;
- ``<!-- house-packages -->``: each part of kappamask_core with its docstring (what it owns, what it may import)
  and its public names (``__all__``);
- ``<!-- house-benchmarks -->``: every script in benchmarks/ with the first line of its docstring.
"""

from __future__ import annotations

import argparse
import ast
import importlib
import os
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PARTS = ("foundation", "io", "models", "chain", "learning", "faces")


def _commands(parser: argparse.ArgumentParser, prefix: str):
    yield prefix, parser
    for action in parser._actions:  # argparse has no public way to list sub-commands
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _commands(sub, f"{prefix} {name}")


def cli_reference() -> str:
    os.environ["COLUMNS"] = "110"  # the same line width on every machine
    from kappamask_core.faces.cli import build_parser

    parts = []
    for name, parser in _commands(build_parser(), "kappamask"):
        parser.prog = name
        parts.append(f"## `{name}`\n\n```text\n{parser.format_help().rstrip()}\n```\n")
    return "\n".join(parts)


def house_packages() -> str:
    sections = []
    for layer, part in enumerate(PARTS, start=1):
        package = importlib.import_module(f"kappamask_core.{part}")
        text = (package.__doc__ or "").strip()
        title, _, body = text.partition("\n\n")
        names = ", ".join(f"`{name}`" for name in package.__all__)
        sections.append(f"### {layer}. `{part}/`: {title.rstrip('.')}\n\n{body.strip()}\n\nPublic names "
                        f"(`kappamask_core.{part}`): {names}.\n")
    return "\n".join(sections)


def house_benchmarks() -> str:
    rows = ["| script | what it measures |", "|---|---|"]
    for path in sorted((ROOT / "benchmarks").glob("*.py")):
        doc = ast.get_docstring(ast.parse(path.read_text())) or ""
        first = " ".join(doc.split("\n\n")[0].split())
        rows.append(f"| `{path.name}` | {first} |")
    return "\n".join(rows) + "\n"


MARKERS = {"<!-- cli-reference -->": cli_reference, "<!-- house-packages -->": house_packages,
           "<!-- house-benchmarks -->": house_benchmarks}


def on_page_markdown(markdown, page, config, files):
    for marker, make in MARKERS.items():
        if marker in markdown:
            markdown = markdown.replace(marker, make())
    return markdown
