"""openEO UDF: KappaMask cloud and cloud-shadow classes for a Sentinel-2 data cube.

Use it with ``apply_neighborhood`` (448 x 448 px chunks with 32 px overlap,
so each call sees 512 x 512 px) or ``apply_dimension``/``apply`` on small cubes.
The cube has dimensions among (t, bands, y, x), bands named as the backend
names them (B01..B12, B8A, AOT, WVP, ...). It returns the same t/y/x with one
band ``kappamask`` (0 missing, 1 clear, 2 cloud shadow, 3 semi-transparent
cloud, 4 cloud), one band ``usable`` (1 clear after buffering, 0 not, 255
missing), or one score band per class; ``apply_metadata`` tells the backend
these band names.

Context keys (all optional):
  model        "auto", "default", a model id, alias or card path   (default "auto": KappaMask v2 when the
               cube has its bands and its weights are in the archive or can be downloaded, else the
               bundled offline model)
  weights      ONNX file for cards without bundled weights
  level        "L1C" or "L2A"                          (default: L1C if the cube has B10, else L2A)
  units        "dn" or "reflectance"                   (default "dn")
  offset       DN offset of the input, e.g. -1000 for baseline 04.00 DN not harmonised by the backend
  output       "classes", "usable" or "scores"         (default "classes")
  buffer       grow classes by metres after stitching, e.g. "cloud=300,shadow=100" or {"cloud": 300};
               exact up to the chunk overlap (32 px = 320 m with the templates)
  encoding     "kappamask" or "km_predict"             (default "kappamask")
  stitch       "crop" or "blend"                       (default "crop")
  overlap      tile overlap in working pixels          (default: the model card's)
  margin       tile margin in working pixels           (default: the model card's)
  device       "auto", "cpu", "cuda" or "tensorrt"     (default "auto")
  batch_size   tiles per inference call                (default: 1 on CPU, 8 on CUDA)
  dependency_folder  where the dependency archive was unpacked (default "kappamask_deps")

The package ``kappamask_core`` and the model files come from the dependency
archive built by ``kappamask openeo package`` (job option
``udf-dependency-archives``), unpacked beside the UDF; an installed package is
the fallback. NaN or nodata pixels come out as class 0 (missing).
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
CONTEXT_KEYS = ("model", "weights", "level", "units", "offset", "output", "encoding", "stitch", "overlap", "margin",
                "device", "batch_size", "buffer", "dependency_folder")


def _use_dependency_archive(folder):
    """Put the unpacked archive first on sys.path and point the weights lookup at its models."""
    here = Path(globals().get("__file__", ".")).resolve().parent
    for base in (Path(folder), Path.cwd() / folder, here / folder):
        if (base / "kappamask_core").is_dir():
            base = base.resolve()
            if str(base) not in sys.path:
                sys.path.insert(0, str(base))
            if (base / "models").is_dir():
                os.environ.setdefault("KAPPAMASK_WEIGHTS_DIR", str(base / "models"))
            return base
    return None


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
    except (TypeError, ValueError, OverflowError):
        raise ValueError(f"KappaMask UDF: context {key!r} must be {kind}, not {value!r}") from None
    if minimum is not None and number < minimum:
        raise ValueError(f"KappaMask UDF: context {key!r} must be at least {minimum}, not {value!r}")
    return int(number) if whole else number


def apply_metadata(metadata: CubeMetadata, context: dict) -> CubeMetadata:
    """The backend's view of the result: the bands become the output's bands (``kappamask``, ``usable`` or one
    per class), so that later processes can select them by label."""
    context = context if isinstance(context, dict) else {}
    output = context.get("output", "classes")
    _use_dependency_archive(context.get("dependency_folder", DEFAULT_DEPENDENCY_FOLDER))
    try:
        from kappamask_core.datacube import OUTPUT_BANDS
    except ImportError:  # the dependency archive may be missing where the backend evaluates metadata
        OUTPUT_BANDS = {"classes": ("kappamask",), "usable": ("usable",)}
    if output not in OUTPUT_BANDS:
        raise ValueError(f"KappaMask UDF: context 'output' must be one of {sorted(OUTPUT_BANDS)}, not {output!r}")
    return metadata.rename_labels(dimension="bands", target=list(OUTPUT_BANDS[output]))


def apply_datacube(cube: xarray.DataArray, context: dict) -> xarray.DataArray:
    if context is not None and not isinstance(context, dict):
        raise ValueError(f"KappaMask UDF: the context must be an object (dict), not {type(context).__name__}")
    context = dict(context or {})
    unknown = sorted(set(context) - set(CONTEXT_KEYS))
    if unknown:
        raise ValueError(f"KappaMask UDF: unknown context key(s) {unknown}; valid keys: {', '.join(CONTEXT_KEYS)}")
    _use_dependency_archive(context.get("dependency_folder", DEFAULT_DEPENDENCY_FOLDER))
    try:
        from kappamask_core.datacube import classify_datacube
        from kappamask_core.errors import BandsError, KappaMaskError
        from kappamask_core.pipeline import ClassifyOptions
    except ImportError as exc:
        raise ImportError(
            "KappaMask UDF: kappamask_core is not available. Add the archive built by 'kappamask openeo package' "
            "to the job option 'udf-dependency-archives' (as '<url>#kappamask_deps'), or install the package."
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
