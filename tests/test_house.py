"""The house: what the package ships and how its parts may import each other."""

from __future__ import annotations

import tomllib

from conftest import ROOT


def test_every_package_folder_is_in_the_wheel():
    """pyproject.toml lists the packages by hand (the adapters' folders are installed under other names): a new
    sub-package that is not listed would be missing from every installed copy."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed, folders = set(config["packages"]), config["package-dir"]
    on_disk = set()
    for name in ("kappamask_core", *folders):
        base = ROOT / folders.get(name, name)
        for init in base.rglob("__init__.py"):
            on_disk.add(".".join((name, *init.parent.relative_to(base).parts)))
    assert on_disk == listed, f"not listed: {sorted(on_disk - listed)}; listed but absent: {sorted(listed - on_disk)}"
