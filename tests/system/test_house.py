"""The house: what the package ships and how its parts may import each other.

The import graph is read from the code (every import, also those inside functions), so a circle cannot hide in
a deferred import. Each sub-package of kappamask_core says in its docstring which parts it may import
("May import: ..."); the test holds the code to that line."""

from __future__ import annotations

import ast
import re
import tomllib
from pathlib import Path

from helpers import ROOT, require

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
            # "from package import module" imports the module; the package counts only for the names it defines
            submodules = [f"{base}.{a.name}" for a in node.names if f"{base}.{a.name}" in known]
            candidates = submodules + ([base] if len(submodules) < len(node.names) else [])
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


def allowed_imports() -> dict[str, set[str]]:
    """Each sub-package of kappamask_core and the parts its docstring says it may import."""
    rules = {}
    for init in (ROOT / "kappamask_core").glob("*/__init__.py"):
        match = re.search(r"May import: ([a-z_, ]+)\.", ast.get_docstring(ast.parse(init.read_text())) or "")
        assert match, f"{init.relative_to(ROOT)}: its docstring must say what it may import ('May import: ...')"
        rules[init.parent.name] = {p.strip() for p in match.group(1).split(",")}
    return rules


PARTS = ("foundation", "io", "models", "chain", "learning", "faces")


def public_names() -> dict[str, set[str]]:
    """``kappamask_core`` and each of its parts -> the names its ``__all__`` declares public."""
    import importlib

    names = {}
    for dotted in ("kappamask_core", *(f"kappamask_core.{part}" for part in PARTS)):
        module = importlib.import_module(dotted)
        assert isinstance(getattr(module, "__all__", None), list), f"{dotted} declares no __all__"
        missing = [name for name in module.__all__ if not hasattr(module, name)]
        assert not missing, f"{dotted}.__all__ names what it does not have: {missing}"
        names[dotted] = set(module.__all__)
    return names


DOTTED = re.compile(r"kappamask_core(?:\.[A-Za-z_][A-Za-z0-9_]*)+")


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
    """The adapters import from kappamask_core and its parts only what their __all__ declares, never from a module
    inside a part: a module can then be split or moved without breaking an adapter."""
    for name, targets in graph().items():
        if name.startswith("kappamask_core"):
            assert not any(t.split(".")[0] in ADAPTERS for t in targets), f"{name} imports {targets}"
    public, broken = public_names(), []
    for folder in ("stac_ext", "udf"):
        for path in (ROOT / folder).glob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.Import):
                    broken += [f"{path.name}: import {a.name}" for a in node.names
                               if a.name.startswith("kappamask_core.")]
                if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("kappamask_core"):
                    if node.module not in public:
                        broken.append(f"{path.name}: from {node.module} (a module inside a part)")
                        continue
                    broken += [f"{path.name}: {a.name} is not in {node.module}.__all__" for a in node.names
                               if a.name not in public[node.module]]
    assert not broken, "\n".join(broken)


def test_the_docs_cite_only_public_names():
    """Every dotted name of the core that the documentation, the README and the notebooks cite (in prose, in
    code, in the API reference) is public: kappamask_core.NAME or kappamask_core.PART.NAME with NAME in __all__,
    or a part itself. A module path would break when the module moves."""
    public = public_names()
    sources = [*(ROOT / "docs").rglob("*.md"), ROOT / "README.md", *(ROOT / "examples").glob("*.ipynb")]
    broken = []
    for path in sources:
        text = path.read_text()
        cited = set(DOTTED.findall(text))
        cited |= {f"{m.group(1)}.{name.strip()}" for m in re.finditer(r"from (kappamask_core[\w.]*) import ([\w, ]+)", text)
                  for name in m.group(2).split(",")}
        for name in sorted(cited):
            owner, _, last = name.rpartition(".")
            if name in public or (owner in public and last in public[owner]):
                continue
            broken.append(f"{path.relative_to(ROOT)}: {name}")
    assert not broken, "not public:\n" + "\n".join(broken)


def test_the_core_type_checks():
    """mypy (configured in pyproject.toml) finds nothing in kappamask_core; its py.typed marker tells users' type
    checkers to read the package's annotations."""
    import subprocess
    import sys

    require("mypy")
    assert (ROOT / "kappamask_core" / "py.typed").is_file()
    check = subprocess.run([sys.executable, "-m", "mypy", "--no-error-summary"], cwd=ROOT, capture_output=True,
                           text=True, timeout=900)
    assert check.returncode == 0, check.stdout[-4000:] + check.stderr[-2000:]


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
    through helpers' require(), never pytest.importorskip, which would skip even there."""
    found = [f"{path.name}:{number}" for path in (ROOT / "tests").rglob("*.py") if path.name != "test_house.py"
             for number, line in enumerate(path.read_text().splitlines(), 1) if "importorskip(" in line]
    assert not found, f"pytest.importorskip bypasses the strict mode: {', '.join(found)}"
