"""Build the openEO process-graph templates and the UDF dependency archive.

The templates are user-defined processes generated offline with the openEO
client; the UDF inside them is the content of ``udf/kappamask_udf.py`` as it
is, so the two cannot drift apart (a test regenerates and compares them).
"""

import json
import zipfile
from pathlib import Path

from kappamask_core.cards import ALIASES, resolve_card, sha256_file
from kappamask_core.datacube import OUTPUT_BANDS
from kappamask_core.errors import OutputError
from kappamask_core.weights import locate_model

UDF_FILE = Path(__file__).with_name("kappamask_udf.py")
CHUNK, OVERLAP = 448, 32  # apply_neighborhood: the UDF sees 448 + 2 x 32 = 512 px
DEPENDENCY_FOLDER = "kappamask_deps"
ARCHIVE_PLACEHOLDER = "https://YOUR-HOST/kappamask_udf_deps.zip"
COLLECTIONS = {"L1C": "SENTINEL2_L1C", "L2A": "SENTINEL2_L2A"}
# pure-Python packages the UDF path imports that openEO UDF runtimes do not promise: affine (BSD-3-Clause) and
# the attrs distribution it needs (packages attrs and attr, MIT)
BUNDLED = ("affine", "attrs", "attr")
UDF_PYTHON = "3.11"  # the runtime the dependency archive is built for (the ONNX Runtime archive too)


def job_options(archive_url: str) -> dict:
    return {
        "udf-dependency-archives": [f"{archive_url}#{DEPENDENCY_FOLDER}"],
        "executor-memory": "2G",
        "executor-memoryOverhead": "3G",
        "python-memory": "3G",
    }


# Both collections arrive on Copernicus Data Space as integer DN with the baseline-04.00 offset already applied
# (openeo-geopyspark-driver issues 1051 and 1212: values from 2022 on match the pre-04.00 scale; the Sentinel Hub
# processing option behind both collections, harmonizeValues, defaults to true for S2L1C and S2L2A alike), so
# the UDF takes offset 0. After that harmonisation a 0 in one band can be valid data (a dark pixel); the UDF counts a
# pixel as missing only where every band is 0 or any band is nodata (NaN), never for a single 0.
CDSE_OFFSET = 0
OPTION_KEYS = ("model", "stitch", "offset", "output", "buffer", "encoding")


def _options_parameter(card, output: str):
    """The UDP's one 'options' parameter: it becomes the UDF context as a whole.

    openEO callbacks see only their own parameters (data, context); a UDP parameter referenced inside the UDF
    context is resolved by some backends and not by others. Passing one object parameter through
    apply_neighborhood's context, and the callback's context into run_udf, is portable.
    """
    from openeo.api.process import Parameter

    default = {"model": card.id, "stitch": "crop", "offset": CDSE_OFFSET, "output": output}
    return Parameter.object(
        "options", default=default,
        description=(
            "The KappaMask UDF context (all keys optional): model (default " + card.id + "; 'auto' picks KappaMask "
            "v2 when the archive holds it), stitch ('crop' keeps tile centres as KappaMask does, 'blend' ramps "
            "weights), offset (DN offset of the delivered bands: 0 on Copernicus Data Space, which harmonises "
            "baseline 04.00 data; -1000 for unharmonised DN), output ('classes': one band 'kappamask' with 0 "
            "missing, 1 clear, 2 cloud shadow, 3 semi-transparent cloud, 4 cloud; 'usable': 1 clear after "
            "buffering, 0 not, 255 missing; 'scores': one band per class), buffer (metres by class, e.g. "
            "{\"cloud\": 300, \"cloud_shadow\": 100}; exact up to 320 m), encoding ('kappamask' or "
            "'km_predict'). An object given here replaces the default as a whole."))


def _extent_parameters():
    from openeo.api.process import Parameter

    return [Parameter.bounding_box("spatial_extent", description="Area to classify (bounding box)."),
            Parameter.temporal_interval("temporal_extent", description="Time interval to classify.")]


def _classes_cube(level: str, card, spatial_extent, temporal_extent, options):
    import openeo
    from openeo.rest.datacube import DataCube

    cube = DataCube.load_collection(COLLECTIONS[level], connection=None, spatial_extent=spatial_extent,
                                    temporal_extent=temporal_extent, bands=list(card.bands), fetch_metadata=False)
    udf = openeo.UDF(UDF_FILE.read_text(), runtime="Python", version=UDF_PYTHON,
                     context={"from_parameter": "context"})
    size = [{"dimension": d, "value": CHUNK, "unit": "px"} for d in ("x", "y")]
    overlap = [{"dimension": d, "value": OVERLAP, "unit": "px"} for d in ("x", "y")]
    return cube.apply_neighborhood(udf, size=size, overlap=overlap, context=options)


def build_templates(model: str = "default", archive_url: str = ARCHIVE_PLACEHOLDER) -> dict[str, dict]:
    """The user-defined processes, keyed by process id."""
    from openeo.api.process import Parameter
    from openeo.rest.datacube import DataCube
    from openeo.rest.udp import build_process_dict

    templates = {}
    spatial_extent, temporal_extent = _extent_parameters()
    returns = {"description": "A raster data cube.", "schema": {"type": "object", "subtype": "datacube"}}
    for level in ("L1C", "L2A"):
        card = resolve_card(model, level)
        options = _options_parameter(card, "classes")
        cube = _classes_cube(level, card, spatial_extent, temporal_extent, options)
        pid = f"kappamask_{level.lower()}"
        templates[pid] = build_process_dict(
            cube, process_id=pid,
            summary=f"Cloud and cloud-shadow classes for Sentinel-2 {level} ({card.id})",
            description=(f"Loads {COLLECTIONS[level]} with the bands of model {card.id} "
                         f"({', '.join(card.bands)}) and classifies them with the KappaMask UDF in "
                         f"{CHUNK} px chunks with {OVERLAP} px overlap. Model: {card.name}. {card.description}"),
            parameters=[spatial_extent, temporal_extent, options],
            returns=returns, categories=["cubes", "cloud detection"],
            default_job_options=job_options(archive_url),
        )
    card = resolve_card(model, "L2A")
    options = _options_parameter(card, "classes")
    bands = Parameter.array("bands", item_schema={"type": "string"},
                            default=["B02", "B03", "B04", "B08"],
                            description="Bands of SENTINEL2_L2A to return, masked.")
    classes = _classes_cube("L2A", card, spatial_extent, temporal_extent, options)
    data = DataCube.load_collection(COLLECTIONS["L2A"], connection=None, spatial_extent=spatial_extent,
                                    temporal_extent=temporal_extent, bands=bands, fetch_metadata=False)
    # 1 is clear in the classes and usable in the usable mask, in every encoding: keep exactly those pixels
    not_clear = classes.band(OUTPUT_BANDS["classes"][0]) != 1
    masked = data.mask(not_clear)
    templates["kappamask_mask"] = build_process_dict(
        masked, process_id="kappamask_mask",
        summary="Sentinel-2 L2A with every pixel that is not clear masked",
        description=(f"Classifies SENTINEL2_L2A with model {card.id} and returns the requested bands with "
                     "cloud, cloud shadow, semi-transparent cloud and missing pixels set to no-data, "
                     "for example before computing NDVI on clear pixels only. Buffers around clouds and "
                     "shadows (options.buffer) are masked as well."),
        parameters=[spatial_extent, temporal_extent, bands, options],
        returns=returns, categories=["cubes", "cloud detection", "masks"],
        default_job_options=job_options(archive_url),
    )
    return templates


def write_templates(outdir: Path, model: str = "default", archive_url: str = ARCHIVE_PLACEHOLDER) -> list[Path]:
    from kappamask_core.writers import atomic_path

    outdir.mkdir(parents=True, exist_ok=True)
    written = []
    for pid, spec in build_templates(model, archive_url).items():
        path = outdir / f"{pid}.json"
        with atomic_path(path) as tmp:
            Path(tmp).write_text(json.dumps(spec, indent=2, sort_keys=False) + "\n")
        written.append(path)
    return written


def build_archive(out: Path, models=("ukis-csmask-6b-l1c", "ukis-csmask-6b-l2a"), weights=None) -> tuple[Path, int, str]:
    """Zip kappamask_core (code and cards, no demo data) and the model files into ``out``.

    ``models`` are card ids, card paths or aliases (``kappamask-v2`` adds the L1C
    and the L2A network).
    The archive holds no numpy, xarray or other packages the backends' UDF
    runtime provides; it does hold the small pure-Python packages the UDF path
    needs beyond them (:data:`BUNDLED`). onnxruntime must come from the backend or
    the openEO ONNX dependency archive (see the README).
    """
    import importlib.util

    import kappamask_core
    from kappamask_core.writers import atomic_path

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
            for model in models:
                for card_id in ALIASES[model].values() if model in ALIASES else [model]:
                    # KappaMask cards without local weights are downloaded and converted here
                    card, weights_file = locate_model(resolve_card(card_id), weights)
                    zf.write(weights_file, f"models/{card.weights.get('file') or weights_file.name}")
                    zf.writestr(f"models/{card.id}.json", json.dumps(card.raw, indent=2))
    return Path(out), Path(out).stat().st_size, sha256_file(out)
