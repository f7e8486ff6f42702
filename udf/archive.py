"""The UDF's dependency archive: kappamask_core, the model files and, for runtimes without them, onnxruntime (and
OpenVINO for bf16 variants) as wheels for the UDF runtime (CPython 3.11, manylinux x86_64).

Backends unpack it beside the UDF for batch jobs (job option ``udf-dependency-archives``, as
``<url>#kappamask_deps``); the UDF downloads it itself for synchronous requests (context ``dependency_archive``).
"""

import json
import re
import zipfile
from pathlib import Path

from kappamask_core.foundation import InputError, OutputError
from kappamask_core.io import atomic_path, sha256_file
from kappamask_core.models import ALIASES, find_variant, resolve_model

from .processes import UDF_PYTHON

# pure-Python packages the UDF path imports that openEO UDF runtimes do not promise: affine (BSD-3-Clause) and
# the attrs distribution it needs (packages attrs and attr, MIT)
BUNDLED = ("affine", "attrs", "attr")
ONNXRUNTIME_PLATFORMS = ("manylinux_2_28_x86_64", "manylinux_2_27_x86_64", "manylinux_2_17_x86_64",
                         "manylinux2014_x86_64")


def runtime_wheel(folder: Path, package: str, version: str | None = None, advice: str = "") -> Path:
    """``package``'s wheel for the UDF runtime (CPython 3.11, manylinux x86_64), fetched with pip into ``folder``
    (the installed version by default; no dependencies)."""
    import subprocess
    import sys
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as installed

    if version is None:
        try:
            version = installed(package)
        except PackageNotFoundError:
            version = None
    folder.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "pip", "download", "--quiet", "--disable-pip-version-check", "--no-deps",
               "--only-binary=:all:", "--python-version", UDF_PYTHON, "--implementation", "cp", "-d", str(folder)]
    for platform in ONNXRUNTIME_PLATFORMS:
        command += ["--platform", platform]
    command.append(f"{package}=={version}" if version else package)
    run = subprocess.run(command, capture_output=True, text=True, timeout=600)
    wheels = sorted(folder.glob(f"{package.replace('-', '_')}-*.whl"))
    if run.returncode != 0 or not wheels:
        last = (run.stderr or run.stdout).strip().splitlines() or ["no output"]
        raise OutputError(f"cannot download {package} for Python {UDF_PYTHON} on manylinux x86_64 ({last[-1]})"
                          + (f"; {advice}" if advice else ""))
    return wheels[-1]


def onnxruntime_wheel(folder: Path, version: str | None = None) -> Path:
    return runtime_wheel(folder, "onnxruntime", version, "download the wheel elsewhere and pass it with "
                                                          "--onnxruntime-wheel FILE")


def openvino_wheels(folder: Path) -> list[Path]:
    """OpenVINO and the one package it imports that the UDF runtime lacks, for bf16 variants."""
    return [runtime_wheel(folder, "openvino"), runtime_wheel(folder, "openvino-telemetry")]


# What of OpenVINO a UDF never loads: the GPU and NPU plugins and the frontends of other formats than ONNX
# (24 of its 56 MiB). OpenVINO looks for plugins and frontends when they are asked for, so their absence is not
# an error (tests/adapters/test_udf.py runs a bf16 variant from such an archive).
OPENVINO_UNUSED = re.compile(r"openvino/(libs/libopenvino_intel_(gpu|npu)_plugin|libs/libopenvino_"
                             r"(tensorflow|tensorflow_lite|pytorch|paddle|gguf|jax)_frontend|frontend/"
                             r"(tensorflow|pytorch|paddle|jax)/)")


def _add_wheel(zf: zipfile.ZipFile, wheel: Path) -> None:
    """The importable part of a wheel (its packages, no metadata) into the archive's root."""
    try:
        with zipfile.ZipFile(wheel) as whl:
            for info in whl.infolist():
                top = info.filename.split("/", 1)[0]
                if OPENVINO_UNUSED.match(info.filename):
                    continue
                if not info.is_dir() and not top.endswith((".dist-info", ".data")):
                    zf.writestr(info, whl.read(info))
    except (zipfile.BadZipFile, OSError) as exc:
        raise InputError(f"{wheel}: not a readable wheel ({exc})") from None


def build_archive(out: Path, models=("ukis-csmask-6b-l1c", "ukis-csmask-6b-l2a"), weights=None,
                  onnxruntime: Path | None = None, openvino=()) -> tuple[Path, int, str]:
    """Zip kappamask_core (code and cards, no demo data) and the model files into ``out``.

    ``models`` are card ids, card paths or aliases (``kappamask-v2`` adds the L1C
    and the L2A network). The archive holds no numpy, xarray or other packages
    the backends' UDF runtime provides; it does hold the small pure-Python
    packages the UDF path needs beyond them (:data:`BUNDLED`), and with
    ``onnxruntime`` (a wheel for the runtime) onnxruntime itself. Each model's
    faithful int8 variant goes along; its faithful bf16 variant only with
    ``openvino`` (the wheels of :func:`openvino_wheels`), which runs it.
    """
    import importlib.util

    import kappamask_core

    out = Path(out)
    if out.is_dir():
        raise OutputError(f"{out} is a folder; name the archive file to write (.zip)")
    packages = [Path(kappamask_core.__file__).parent]
    for name in BUNDLED:
        spec = importlib.util.find_spec(name)
        if spec is None or not spec.submodule_search_locations:
            raise OutputError(f"the dependency archive needs the Python package {name!r}, which is not installed")
        packages.append(Path(list(spec.submodule_search_locations)[0]))
    with atomic_path(out) as tmp:
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as zf:
            for package in packages:
                for path in sorted(package.rglob("*")):
                    rel = path.relative_to(package.parent)
                    if path.is_file() and "__pycache__" not in rel.parts and "demo_data" not in rel.parts:
                        zf.write(path, rel.as_posix())
            for wheel in ([onnxruntime] if onnxruntime is not None else []) + list(openvino):
                _add_wheel(zf, Path(wheel))
            for model in models:
                for card_id in ALIASES[model].values() if model in ALIASES else [model]:
                    # KappaMask cards without local weights are downloaded and converted here
                    resolved = resolve_model(card_id, weights=weights)
                    # the network, and its faithful reduced-precision variants, which CPU executors run in its place
                    variants = [find_variant(resolved, p) for p in ("int8",) + (("bf16",) if openvino else ())]
                    for packed in [resolved] + [v for v in variants if v is not None and v.card.faithful]:
                        card, weights_file = packed.card, packed.path
                        zf.write(weights_file, f"models/{card.weights.get('file') or weights_file.name}")
                        zf.writestr(f"models/{card.id}.json", json.dumps(card.raw, indent=2))
    return out, out.stat().st_size, sha256_file(out)
