# /// script
# dependencies = [
#   "onnxruntime>=1.19",
# ]
# ///
"""openEO UDF: KappaMask cloud and cloud-shadow classes for a Sentinel-2 data cube.

Use it with ``apply_neighborhood`` (448 x 448 px chunks with 32 px overlap,
so each call sees 512 x 512 px; one date per call with a ``t`` size of
``P1D``). The cube has dimensions among (t, bands, y, x), bands named as the
backend names them (B01..B12, B8A, AOT, WVP, ...). It returns the same t/y/x
with one band ``kappamask`` (0 missing, 1 clear, 2 cloud shadow, 3
semi-transparent cloud, 4 cloud), one band ``usable`` (1 clear after
buffering, 0 not, 255 missing), or one score band per class;
``apply_metadata`` tells the backend these band names. Backends built on
geopyspark (Copernicus Data Space) hand the result on as float32: the same
values, and missing stays 0 (or 255), not NaN.

Context keys (all optional):
  model        "auto", "default", a model id, alias or card path   (default "auto": KappaMask v2 when the
               cube has its bands and its weights are in the archive or can be downloaded, else the
               bundled offline model)
  weights      ONNX file for cards without bundled weights
  level        "L1C" or "L2A"                          (default: the model's level, else L1C if the cube has
               B10, L2A if it has AOT, WVP or SCL; the process graphs set it)
  units        "dn" or "reflectance"                   (default "dn")
  offset       DN offset of the input, e.g. -1000 for baseline 04.00 DN not harmonised by the backend
  output       "classes", "usable" or "scores"         (default "classes")
  buffer       grow classes by metres after stitching, e.g. "cloud=300,shadow=100" or {"cloud": 300};
               exact up to the chunk overlap (32 px = 320 m with the process graphs)
  encoding     "kappamask" or "km_predict"             (default "kappamask")
  stitch       "crop" or "blend"                       (default "crop")
  overlap      tile overlap in working pixels          (default: the model card's)
  margin       tile margin in working pixels           (default: the model card's)
  device       "auto", "cpu", "cuda" or "tensorrt"     (default "auto")
  batch_size   tiles per inference call                (default: 1 on CPU, 8 on CUDA)
  precision    "auto", "fp32", "int8" or "bf16"        (default "auto": on CPUs the model's faithful int8 or
               bf16 variant where the archive holds one (bf16: built --with-openvino, and only on CPUs with
               bfloat16 arithmetic), else the network as published; "fp32": always that)
  dependency_folder   where the dependency archive was unpacked (default "kappamask_deps")
  dependency_archive  URL of the dependency archive; downloaded and unpacked once per machine when the
                      folder is absent (synchronous requests get no udf-dependency-archives)
  dependency_sha256   the archive's sha256, checked after the download
  options      an object with the keys above; the keys beside it win. The process graphs pass the
               caller's options here and set the archive (and, for masking, the output) beside it.

Where the code comes from: ``kappamask_core`` and the model files from the
dependency archive built by ``kappamask openeo package`` (job option
``udf-dependency-archives``, unpacked beside the UDF), or downloaded from
``dependency_archive``; onnxruntime from the runtime, from the inline
dependencies above (installed by backends for batch jobs), from the public
openEO ONNX archive unpacked as ``onnx_deps``, or from our archive when it
was built with ``--with-onnxruntime``. These folders are appended to
``sys.path``, so the runtime's own packages always win. NaN or nodata
pixels come out as class 0 (missing).
"""

import os
import sys
from pathlib import Path

import xarray

try:  # the openEO runtime provides it; the UDF works without it where no backend asks for metadata
    from openeo.metadata import CubeMetadata
except ImportError:  # pragma: no cover
    CubeMetadata = object

DEFAULT_DEPENDENCY_FOLDER = "kappamask_deps"
ONNX_DEPENDENCY_FOLDER = "onnx_deps"  # the public openEO ONNX dependency archive, as its examples unpack it
DOWNLOAD_TIMEOUT_S = 30  # per network operation
DOWNLOAD_DEADLINE_S = 600  # for the whole archive
CONTEXT_KEYS = ("model", "weights", "level", "units", "offset", "output", "encoding", "stitch", "overlap", "margin",
                "device", "batch_size", "precision", "buffer", "dependency_folder", "dependency_archive",
                "dependency_sha256")
# The band labels of each output; apply_metadata runs where the dependency archive may be absent (the backend's
# driver), so they are written here; a test checks them against kappamask_core.faces.datacube.OUTPUT_BANDS.
OUTPUT_BANDS = {
    "classes": ("kappamask",),
    "scores": ("missing", "clear", "cloud_shadow", "semi_transparent_cloud", "cloud"),
    "usable": ("usable",),
}
ONNXRUNTIME_HELP = (
    "KappaMask UDF: onnxruntime is not available in this UDF runtime. Provide it one of these ways: a batch "
    "job whose backend installs the UDF's inline dependencies (PEP 723); the job option udf-dependency-archives "
    "with our archive built by 'kappamask openeo package --with-onnxruntime' (as '<url>#kappamask_deps') or "
    "with the public openEO ONNX archive for Python 3.11 (as '<url>#onnx_deps'); or, also for synchronous "
    "requests, the context key dependency_archive with the URL of an archive built with --with-onnxruntime.")


def _context(context) -> dict:
    """The effective context: a nested ``options`` object, overridden by the keys beside it."""
    if context is None:
        return {}
    if not isinstance(context, dict):
        raise ValueError(f"KappaMask UDF: the context must be an object (dict), not {type(context).__name__}")
    options = context.get("options")
    if options is None:
        options = {}
    if not isinstance(options, dict):
        raise ValueError(f"KappaMask UDF: context 'options' must be an object (dict), not {type(options).__name__}")
    if "from_parameter" in options:
        raise ValueError("KappaMask UDF: the backend passed the process parameter 'options' unresolved (it does not "
                         "resolve references inside objects, as openeo-python-driver does); call the UDF with the "
                         "options themselves as its context")
    merged = {**options, **{k: v for k, v in context.items() if k != "options"}}
    unknown = sorted(set(merged) - set(CONTEXT_KEYS))
    if unknown:
        raise ValueError(f"KappaMask UDF: unknown context key(s) {unknown}; valid keys: {', '.join(CONTEXT_KEYS)}, "
                         "and options")
    return merged


def _append_path(folder: Path) -> None:
    """Append, never prepend: a package the runtime has (attrs, numpy) must not be shadowed in reused workers."""
    if str(folder) not in sys.path:
        sys.path.append(str(folder))


def _found(name: str) -> bool:
    import importlib.util

    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def _use_folders(context: dict):
    """Append the unpacked archives beside the UDF to sys.path; point the weights lookup at our models."""
    here = Path(globals().get("__file__", ".")).resolve().parent
    ours = None
    for name in (context.get("dependency_folder", DEFAULT_DEPENDENCY_FOLDER), ONNX_DEPENDENCY_FOLDER):
        if not isinstance(name, (str, os.PathLike)):
            raise ValueError(f"KappaMask UDF: context 'dependency_folder' must be a folder name, not {name!r}")
        for base in dict.fromkeys((Path(name), Path.cwd() / name, here / name)):
            if base.is_dir():
                base = base.resolve()
                _append_path(base)
                if ours is None and (base / "kappamask_core").is_dir():
                    ours = base
                break
    if ours is not None and (ours / "models").is_dir():
        os.environ.setdefault("KAPPAMASK_WEIGHTS_DIR", str(ours / "models"))
    return ours


def _download_archive(url: str, sha256) -> Path:
    """Download and unpack the dependency archive once per machine, into a cache folder of the temporary folder.

    Workers that start together each unpack into a folder of their own and rename it into place; the first
    rename wins and the others use its result.
    """
    import hashlib
    import shutil
    import tempfile
    import time
    import urllib.request
    import zipfile

    key = hashlib.sha256(f"{url}\n{sha256}".encode()).hexdigest()[:16]
    target = Path(tempfile.gettempdir()) / f"kappamask-udf-{key}"
    if (target / "kappamask_core").is_dir():
        return target
    work = Path(tempfile.mkdtemp(prefix=f".kappamask-udf-{key}-", dir=tempfile.gettempdir()))
    try:
        archive, digest, started = work / "deps.zip", hashlib.sha256(), time.monotonic()
        try:
            with urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT_S) as response, open(archive, "wb") as out:
                while block := response.read1(1 << 20):  # what has arrived: a trickle meets the deadline
                    out.write(block)
                    digest.update(block)
                    if time.monotonic() - started > DOWNLOAD_DEADLINE_S:
                        raise TimeoutError(f"not complete after {DOWNLOAD_DEADLINE_S} s")
        except (OSError, ValueError) as exc:
            raise RuntimeError(f"KappaMask UDF: cannot download the dependency archive {url}: "
                               f"{getattr(exc, 'reason', None) or exc}") from None
        if sha256 is not None and digest.hexdigest() != sha256.lower():
            raise RuntimeError(f"KappaMask UDF: the dependency archive {url} has sha256 {digest.hexdigest()}, "
                               f"not {sha256}; it was not used")
        try:
            with zipfile.ZipFile(archive) as zf:
                zf.extractall(work / "unpacked")  # zipfile drops absolute paths and '..' from member names
        except zipfile.BadZipFile as exc:
            raise RuntimeError(f"KappaMask UDF: the dependency archive {url} is not a zip file ({exc})") from None
        if not (work / "unpacked" / "kappamask_core").is_dir():
            raise RuntimeError(f"KappaMask UDF: the dependency archive {url} holds no kappamask_core; build it "
                               "with 'kappamask openeo package'")
        try:
            os.rename(work / "unpacked", target)
        except OSError:
            if not (target / "kappamask_core").is_dir():  # not another worker's result: a real failure
                raise
        return target
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _provide_dependencies(context: dict) -> None:
    """kappamask_core and onnxruntime from the runtime, the unpacked archives, or the archive URL, in that order."""
    ours = _use_folders(context)
    url, sha256 = context.get("dependency_archive"), context.get("dependency_sha256")
    if url is not None and (not isinstance(url, str) or not url.startswith(("https://", "http://"))):
        raise ValueError(f"KappaMask UDF: context 'dependency_archive' must be an http(s) URL, not {url!r}")
    if sha256 is not None and (not isinstance(sha256, str) or len(sha256) != 64):
        raise ValueError(f"KappaMask UDF: context 'dependency_sha256' must be a sha256 in hex, not {sha256!r}")
    if url is not None and not (_found("kappamask_core") and _found("onnxruntime")):
        base = _download_archive(url, sha256)
        _append_path(base)
        if ours is None and (base / "models").is_dir():
            os.environ.setdefault("KAPPAMASK_WEIGHTS_DIR", str(base / "models"))


def _number(context, key, whole=False, minimum=None):
    """A numeric context value, or None when absent; anything else is an error that names the key."""
    value = context.get(key)
    if value is None:
        return None
    kind = "a whole number" if whole else "a number"
    try:
        number = float(value)
        if whole and number != int(number):
            raise ValueError
        if isinstance(value, bool) or number != number or number in (float("inf"), float("-inf")):
            raise ValueError
    except (TypeError, ValueError, OverflowError):
        raise ValueError(f"KappaMask UDF: context {key!r} must be {kind}, not {value!r}") from None
    if minimum is not None and number < minimum:
        raise ValueError(f"KappaMask UDF: context {key!r} must be at least {minimum}, not {value!r}")
    return int(number) if whole else number


TEXT_KEYS = ("model", "weights", "level", "units", "output", "encoding", "stitch", "device", "precision",
             "dependency_folder")


def _check_types(context: dict) -> None:
    """Context values of the wrong type are errors that name the key (before anything is loaded)."""
    for key in TEXT_KEYS:
        if key in context and context[key] is not None and not isinstance(context[key], str):
            raise ValueError(f"KappaMask UDF: context {key!r} must be a string, not {context[key]!r}")
    buffer = context.get("buffer")
    if buffer is not None and not isinstance(buffer, (str, dict)):
        raise ValueError(f"KappaMask UDF: context 'buffer' must be a string such as \"cloud=300,shadow=100\" or an "
                         f"object such as {{\"cloud\": 300}}, not {buffer!r}")


def apply_metadata(metadata: CubeMetadata, context: dict) -> CubeMetadata:
    """The backend's view of the result: the bands become the output's bands (``kappamask``, ``usable`` or one
    per class), so that later processes can select them by label. Runs where the dependencies may be absent."""
    output = _context(context).get("output", "classes")
    if output not in OUTPUT_BANDS:
        raise ValueError(f"KappaMask UDF: context 'output' must be one of {sorted(OUTPUT_BANDS)}, not {output!r}")
    return metadata.rename_labels(dimension="bands", target=list(OUTPUT_BANDS[output]))


def apply_datacube(cube: xarray.DataArray, context: dict) -> xarray.DataArray:
    context = _context(context)
    _check_types(context)
    _provide_dependencies(context)
    try:
        from kappamask_core.faces.datacube import classify_datacube
        from kappamask_core.foundation.errors import BandsError, KappaMaskError
        from kappamask_core.chain.pipeline import ClassifyOptions
    except ImportError as exc:
        raise ImportError(
            "KappaMask UDF: kappamask_core is not available. Add the archive built by 'kappamask openeo package' "
            "to the job option 'udf-dependency-archives' (as '<url>#kappamask_deps'), or give its URL as the "
            "context key dependency_archive."
        ) from exc
    overlap, margin = _number(context, "overlap", True, 0), _number(context, "margin", True, 0)
    batch_size, offset = _number(context, "batch_size", True, 1), _number(context, "offset") or 0.0
    try:
        options = ClassifyOptions(
            stitch=context.get("stitch", "crop"),
            overlap=overlap,
            margin=margin,
            device=context.get("device", "auto"),
            batch_size=batch_size,
            precision=context.get("precision", "auto"),
            buffers=context.get("buffer"),
        )
        return classify_datacube(
            cube,
            model=context.get("model", "auto"),
            level=context.get("level"),
            units=context.get("units", "dn"),
            offset=offset,
            output=context.get("output", "classes"),
            encoding=context.get("encoding", "kappamask"),
            weights=context.get("weights"),
            options=options,
        )
    except BandsError as exc:  # the cube and the model do not fit: the bands loaded are what to change
        bands = [str(b) for b in cube["bands"].values] if "bands" in cube.coords else []
        raise ValueError(
            f"KappaMask UDF: {str(exc).rstrip('.')}. The cube has bands {bands}; change load_collection(bands=...) "
            f"or the UDF context (model, level)."
        ) from None
    except KappaMaskError as exc:
        raise ValueError(f"KappaMask UDF: {exc}") from None
    except ModuleNotFoundError as exc:
        if exc.name == "onnxruntime":
            raise ImportError(ONNXRUNTIME_HELP) from None
        raise
