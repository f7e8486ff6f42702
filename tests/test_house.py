"""The house: what the package ships and how its parts may import each other.

The import graph is read from the code (every import, also those inside functions), so a circle cannot hide in
a deferred import. Each sub-package of kappamask_core says in its docstring which parts it may import
("May import: ..."); the test holds the code to that line.
"""

from __future__ import annotations

import ast
import re
import tomllib
from pathlib import Path

from conftest import ROOT

# installed name -> folder
PACKAGES = {"kappamask_core": "kappamask_core", "kappamask_udf": "udf", "kappamask_stac": "stac_ext"}
ADAPTERS = ("kappamask_udf", "kappamask_stac")


def modules() -> dict[str, Path]:
    """Dotted module name -> file, for every module of the three packages."""
    found = {}
    for name, folder in PACKAGES.items():
        for path in (ROOT / folder).rglob("*.py"):
            parts = path.relative_to(ROOT / folder).with_suffix("").parts
            dotted = ".".join((name, *parts)).removesuffix(".__init__")
            found[dotted] = path
    return found


def imports(name: str, path: Path, known: dict) -> set[str]:
    """The package's own modules that ``name`` imports, anywhere in the file."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    targets = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            candidates = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            candidates = [base] + [f"{base}.{a.name}" for a in node.names]
        else:
            continue
        for candidate in candidates:
            while candidate and candidate not in known:
                candidate = candidate.rpartition(".")[0]
            if candidate and candidate != name:
                targets.add(candidate)
    return targets


def graph() -> dict[str, set[str]]:
    known = modules()
    return {name: imports(name, path, known) for name, path in known.items()}


def test_no_import_circles():
    edges = graph()
    circles, state, stack = [], {}, []

    def visit(node):
        state[node] = "open"
        stack.append(node)
        for target in sorted(edges.get(node, ())):
            if state.get(target) == "open":
                circles.append(stack[stack.index(target):] + [target])
            elif target not in state:
                visit(target)
        stack.pop()
        state[node] = "done"

    for node in sorted(edges):
        if node not in state:
            visit(node)
    assert not circles, "import circles:\n" + "\n".join(" -> ".join(c) for c in circles)


def allowed_imports() -> dict[str, set[str]]:
    """Each sub-package of kappamask_core and the parts its docstring says it may import."""
    rules = {}
    for init in (ROOT / "kappamask_core").glob("*/__init__.py"):
        match = re.search(r"May import: ([a-z_, ]+)\.", ast.get_docstring(ast.parse(init.read_text())) or "")
        assert match, f"{init.relative_to(ROOT)}: its docstring must say what it may import ('May import: ...')"
        rules[init.parent.name] = {p.strip() for p in match.group(1).split(",")}
    return rules


def test_each_part_imports_only_what_its_docstring_allows():
    rules = allowed_imports()
    assert set(rules) == {"foundation", "io", "models", "chain", "learning", "faces"}
    broken = []
    for name, targets in graph().items():
        parts = name.split(".")
        if parts[0] != "kappamask_core" or len(parts) < 3:
            continue
        for target in targets:
            target_parts = target.split(".")
            if target_parts[0] in ADAPTERS:
                broken.append(f"{name} imports the adapter {target}")
            elif len(target_parts) > 1 and target_parts[1] not in rules[parts[1]]:
                broken.append(f"{name} imports {target}, but {parts[1]} may import {sorted(rules[parts[1]])}")
            elif len(target_parts) == 1 and target != "kappamask_core":
                broken.append(f"{name} imports {target}")
    assert not broken, "\n".join(broken)


def test_the_core_knows_no_adapter_and_adapters_use_public_names():
    for name, targets in graph().items():
        if name.startswith("kappamask_core"):
            assert not any(t.split(".")[0] in ADAPTERS for t in targets), f"{name} imports {targets}"
    for folder in ("stac_ext", "udf"):
        for path in (ROOT / folder).glob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("kappamask_core"):
                    private = [a.name for a in node.names if a.name.startswith("_") and not a.name.endswith("__")]
                    assert not private, f"{path.name} imports private {private} from {node.module}"


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


def test_no_test_skips_past_the_strict_mode():
    """Under ci/test.sh a missing package of the test extra must fail, not skip: tests import optional packages
    through conftest's require(), never pytest.importorskip, which would skip even there."""
    found = [f"{path.name}:{number}" for path in (ROOT / "tests").rglob("*.py") if path.name != "test_house.py"
             for number, line in enumerate(path.read_text().splitlines(), 1) if "importorskip(" in line]
    assert not found, f"pytest.importorskip bypasses the strict mode: {', '.join(found)}"
