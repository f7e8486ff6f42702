"""The documentation site builds in strict mode (broken links and missing references fail); its command-line
reference, generated from the argument parser, lists every command, and its house page, generated from the
packages' docstrings, every part and every benchmark."""

from __future__ import annotations

import os
import subprocess
import sys

from helpers import ROOT, require

require("mkdocs", "material", "mkdocstrings")


def test_the_site_builds_strictly_with_every_command(tmp_path):
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    build = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-d", str(tmp_path / "site")],
                           cwd=ROOT, capture_output=True, text=True, env=env, timeout=600)
    assert build.returncode == 0, build.stderr[-3000:]
    cli = (tmp_path / "site" / "reference" / "cli" / "index.html").read_text()
    for command in ("kappamask classify", "kappamask models import", "kappamask openeo build", "kappamask stac validate",
                    "kappamask train", "kappamask select", "kappamask evaluate", "--buffer", "--fp16", "--no-progress"):
        assert command in cli, command
    api = (tmp_path / "site" / "reference" / "api" / "index.html").read_text()
    for name in ("resolve_model", "classify_to_files", "make_variant", "search_items", "apply_datacube"):
        assert name in api, name
    house = (tmp_path / "site" / "house" / "index.html").read_text()
    for part in ("foundation", "io", "models", "chain", "learning", "faces"):
        assert f"kappamask_core.{part}</code>" in house, part  # each part's section, generated from its docstring
    for script in (ROOT / "benchmarks").glob("*.py"):
        assert script.name in house, script.name
    assert not (tmp_path / "site" / "hooks").exists(), "the build hook is copied into the site"
