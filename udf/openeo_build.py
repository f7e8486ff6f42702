"""Build the openEO process-graph templates and the UDF dependency archive.

The templates are user-defined processes generated offline with the openEO
client; the UDF inside them is the content of ``udf/kappamask_udf.py`` as it
is, so the two cannot drift apart (a test regenerates and compares them).
"""

import json
import zipfile
from pathlib import Path

from kappamask_core.cards import ALIASES, resolve_card, sha256_file
from kappamask_core.weights import locate_model

UDF_FILE = Path(__file__).with_name("kappamask_udf.py")
CHUNK, OVERLAP = 448, 32  # apply_neighborhood: the UDF sees 448 + 2 x 32 = 512 px
DEPENDENCY_FOLDER = "kappamask_deps"
ARCHIVE_PLACEHOLDER = "https://YOUR-HOST/kappamask_udf_deps.zip"
COLLECTIONS = {"L1C": "SENTINEL2_L1C", "L2A": "SENTINEL2_L2A"}


def job_options(archive_url: str) -> dict:
    return {
        "udf-dependency-archives": [f"{archive_url}#{DEPENDENCY_FOLDER}"],
        "executor-memory": "2G",
        "executor-memoryOverhead": "3G",
        "python-memory": "3G",
    }


def _parameters():
    from openeo.api.process import Parameter

    return {
        "spatial_extent": Parameter.bounding_box("spatial_extent", description="Area to classify (bounding box)."),
        "temporal_extent": Parameter.temporal_interval("temporal_extent", description="Time interval to classify."),
        "stitch": Parameter.string("stitch", default="crop", values=["crop", "blend"],
                                   description="How overlapping model tiles are merged inside each chunk: "
                                               "'crop' keeps tile centres (KappaMask), 'blend' ramps weights."),
        "offset": Parameter.number("offset", default=0,
                                   description="DN offset of the delivered bands: 0 when the backend harmonises "
                                               "baseline 04.00 data (the usual case), -1000 when it does not."),
        "output": Parameter.string("output", default="classes", values=["classes", "scores"],
                                   description="'classes': one band 'kappamask' (0 missing, 1 clear, 2 cloud "
                                               "shadow, 3 semi-transparent cloud, 4 cloud); 'scores': one band "
                                               "per class."),
    }


def _classes_cube(level: str, card, params, output):
    import openeo
    from openeo.rest.datacube import DataCube

    cube = DataCube.load_collection(COLLECTIONS[level], connection=None, spatial_extent=params["spatial_extent"],
                                    temporal_extent=params["temporal_extent"], bands=list(card.bands),
                                    fetch_metadata=False)
    context = {"model": card.id, "level": level, "units": "dn", "stitch": params["stitch"],
               "offset": params["offset"], "output": output}
    udf = openeo.UDF(UDF_FILE.read_text(), runtime="Python", context=context)
    size = [{"dimension": d, "value": CHUNK, "unit": "px"} for d in ("x", "y")]
    overlap = [{"dimension": d, "value": OVERLAP, "unit": "px"} for d in ("x", "y")]
    return cube.apply_neighborhood(udf, size=size, overlap=overlap)


def build_templates(model: str = "default", archive_url: str = ARCHIVE_PLACEHOLDER) -> dict[str, dict]:
    """The user-defined processes, keyed by process id."""
    from openeo.api.process import Parameter
    from openeo.rest.datacube import DataCube
    from openeo.rest.udp import build_process_dict

    templates = {}
    params = _parameters()
    returns = {"description": "A raster data cube.", "schema": {"type": "object", "subtype": "datacube"}}
    for level in ("L1C", "L2A"):
        card = resolve_card(model, level)
        output = params["output"]
        cube = _classes_cube(level, card, params, output)
        pid = f"kappamask_{level.lower()}"
        templates[pid] = build_process_dict(
            cube, process_id=pid,
            summary=f"Cloud and cloud-shadow classes for Sentinel-2 {level} ({card.id})",
            description=(f"Loads {COLLECTIONS[level]} with the bands of model {card.id} "
                         f"({', '.join(card.bands)}) and classifies them with the KappaMask UDF in "
                         f"{CHUNK} px chunks with {OVERLAP} px overlap. Model: {card.name}. {card.description}"),
            parameters=[params[k] for k in ("spatial_extent", "temporal_extent", "stitch", "offset", "output")],
            returns=returns, categories=["cubes", "cloud detection"],
            default_job_options=job_options(archive_url),
        )
    card = resolve_card(model, "L2A")
    bands = Parameter.array("bands", item_schema={"type": "string"},
                            default=["B02", "B03", "B04", "B08"],
                            description="Bands of SENTINEL2_L2A to return, masked.")
    classes = _classes_cube("L2A", card, params, "classes")
    data = DataCube.load_collection(COLLECTIONS["L2A"], connection=None, spatial_extent=params["spatial_extent"],
                                    temporal_extent=params["temporal_extent"], bands=bands, fetch_metadata=False)
    not_clear = classes.band("kappamask") != 1
    masked = data.mask(not_clear)
    templates["kappamask_mask"] = build_process_dict(
        masked, process_id="kappamask_mask",
        summary="Sentinel-2 L2A with every pixel that is not clear masked",
        description=(f"Classifies SENTINEL2_L2A with model {card.id} and returns the requested bands with "
                     "cloud, cloud shadow, semi-transparent cloud and missing pixels set to no-data, "
                     "for example before computing NDVI on clear pixels only."),
        parameters=[params["spatial_extent"], params["temporal_extent"], bands, params["stitch"], params["offset"]],
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
    The archive holds no numpy, xarray or other packages the backends already
    provide; onnxruntime must be present on the backend (see the README).
    """
    import kappamask_core
    from kappamask_core.writers import atomic_path

    core = Path(kappamask_core.__file__).parent
    with atomic_path(out) as tmp:
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as zf:
            for path in sorted(core.rglob("*")):
                rel = path.relative_to(core.parent)
                if path.is_file() and "__pycache__" not in rel.parts and "demo_data" not in rel.parts:
                    zf.write(path, rel.as_posix())
            for model in models:
                for card_id in ALIASES[model].values() if model in ALIASES else [model]:
                    # KappaMask cards without local weights are downloaded and converted here
                    card, weights_file = locate_model(resolve_card(card_id), weights)
                    zf.write(weights_file, f"models/{card.weights.get('file') or weights_file.name}")
                    zf.writestr(f"models/{card.id}.json", json.dumps(card.raw, indent=2))
    return Path(out), Path(out).stat().st_size, sha256_file(out)
