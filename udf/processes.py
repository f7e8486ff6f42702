"""The openEO user-defined processes around the KappaMask UDF, built offline with the openEO client.

The UDF inside them is the content of ``udf/kappamask_udf.py`` as it is, so the two cannot drift apart (a test
regenerates and compares them). Without a :class:`Publication` they are templates that name no archive; with
one they name the dependency archive, its sha256 and the batch-job options sized for their model
(:func:`job_options`). Publishing them in the openEO algorithm catalogue's layout is :mod:`kappamask_udf.catalogue`.
"""

import json
import logging
import re
from dataclasses import dataclass
from pathlib import Path

from kappamask_core.faces import OUTPUT_BANDS
from kappamask_core.foundation import InputError, OutputError, checked_url, join_path
from kappamask_core.io import atomic_files
from kappamask_core.models import resolve_card

from .kappamask_udf import CHUNK_OVERLAP, CHUNK_SIZE

log = logging.getLogger(__name__)

UDF_FILE = Path(__file__).with_name("kappamask_udf.py")
# apply_neighborhood: the UDF sees 2048 + 2 x 768 = 3584 px, a core with the context its tiles need (see the UDF)
CHUNK, OVERLAP = CHUNK_SIZE, CHUNK_OVERLAP
TIME_STEP = "P1D"  # one date per UDF call: a chunk's memory does not grow with the time series
DEPENDENCY_FOLDER = "kappamask_deps"
# onnxruntime for CPython 3.11 that Copernicus Data Space hosts for UDFs, as the catalogue's ML algorithms use it
# (unpacked as onnx_deps, where the UDF looks for it); an option of a publication (Publication.onnx_deps)
HOSTED_ONNX_DEPS = "https://s3.waw3-1.cloudferro.com/swift/v1/project_dependencies/onnx_deps_python311.zip"
ARCHIVE_NAME = "kappamask_udf_deps.zip"
COLLECTIONS = {"L1C": "SENTINEL2_L1C", "L2A": "SENTINEL2_L2A"}
PROCESS_IDS = ("kappamask_l1c", "kappamask_l2a", "kappamask_mask", "kappamask_composite", "kappamask_stats")
TIMELESS = ("kappamask_composite",)
L2A_DERIVED = ("kappamask_mask", "kappamask_composite", "kappamask_stats")  # built on the L2A classes  # processes whose result has no time dimension
UDF_PYTHON = "3.11"  # the runtime the dependency archive is built for (onnxruntime's binary wheel too)
MASK_OUTPUT = "usable"  # kappamask_mask keeps the pixels whose usable value is 1 (clear after buffering)
# Small areas on real products, so that each process runs with no arguments (the openEO Web Editor, the benchmark
# scenarios) and its reference output can be made from the same product here (../shared/data): a crop of T33UUU near
# Berlin on 2017-02-16 with thin cloud and haze (the bundled demo scene's product) for L1C, and the strip of T56LMM
# (Coral Sea, off Queensland) that the L2A sample holds, on 2019-02-20.
EXAMPLE_BBOX = {"L1C": {"west": 12.52, "south": 52.46, "east": 12.62, "north": 52.51},
                "L2A": {"west": 152.084, "south": -11.85, "east": 152.101, "north": -11.765}}
EXAMPLE_DATES = {"L1C": ["2017-02-16", "2017-02-17"], "L2A": ["2019-02-20", "2019-02-21"]}
EXAMPLE_AREAS = {"L1C": "T33UUU near Berlin, 2017-02-16", "L2A": "T56LMM off Queensland, 2019-02-20"}
# two areas inside the L2A example box, for the statistics process
EXAMPLE_FIELDS = {"type": "FeatureCollection", "features": [
    {"type": "Feature", "id": "north", "properties": {},
     "geometry": {"type": "Polygon", "coordinates": [[[152.087, -11.78], [152.097, -11.78], [152.097, -11.79],
                                                      [152.087, -11.79], [152.087, -11.78]]]}},
    {"type": "Feature", "id": "south", "properties": {},
     "geometry": {"type": "Polygon", "coordinates": [[[152.088, -11.80], [152.096, -11.797], [152.098, -11.812],
                                                      [152.089, -11.815], [152.088, -11.80]]]}}]}
STATS_BANDS = ("valid_fraction", "clear", "cloud_shadow", "semi_transparent_cloud", "cloud")
# The DN arrive on Copernicus Data Space as its loader makes them (openeo-geotrellis-extensions,
# FileLayerProvider and ValueOffsetRasterSource): int16, the product's baseline-04.00 offset (-1000) added where the
# catalogue declares one, not clipped, so as low as -1000, a stored 1000 arriving as 0; the no-data value stays
# no-data and reaches the UDF as NaN (float32). The processes say so to the UDF (units "harmonised"), for both
# collections: values that carry no offset (products before 2022) meet the same rule. The L2A offset is applied
# there (openeo-geopyspark-driver issues 1051 and 1212, openeo-geotrellis-extensions issue 144), so the UDF takes
# offset 0. No source cited here says the same of SENTINEL2_L1C: the L1C process takes the offset as a parameter of
# its own (default 0), and the UDF says in the job log when a date's data make an offset that was not removed likely
# (kappamask_core.chain.scale.offset_suspected).
CDSE_UNITS = "harmonised"
CDSE_OFFSET = 0

# Batch jobs: each executor runs EXECUTOR_CORES tasks at once (task-cpus 1), each in a Python worker that holds one
# chunk (2048 px core and 768 px of context: 3584 px) and date (P1D) and the model's session. openeo-geopyspark-driver
# (job_options.py) gives Python python-memory for all the executor's workers together and, when only python-memory is
# set, 128 MiB of JVM overhead; the executor's heap keeps the backend's default (2G). Spark enforces python-memory
# divided by executor-cores on each Python worker as an address-space limit (RLIMIT_AS), not on resident memory, so
# the processes are sized on the worker's peak address space (VmPeak) with the modules a Copernicus Data Space worker
# imports before the UDF (WORKER_IMPORTS), one thread (TASK_CPUS), one date per call and all 13 L1C bands loaded,
# measured with benchmarks/udf_memory.py (WORKER_ADDRESS_MIB; 2026-12-07, 2 cores; resident peaks were 2575, 3338
# and 3296 MiB). Rule: each worker's share is the highest of these times MEMORY_MARGIN, rounded up to 100 MiB;
# python-memory is that share times the workers. The margin is for what differs between machines (allocator arenas,
# library builds); the quantity itself is the one enforced. tests/adapters/test_udf_memory_limit.py runs every
# network under its share.
EXECUTOR_CORES = 2
TASK_CPUS = 1
MEMORY_MARGIN = 1.25
WORKER_IMPORTS = ("pyproj", "shapely", "scipy", "scipy.ndimage", "rasterio")
WORKER_ADDRESS_MIB = {"ukis-csmask": 3298, "kappamask-v2": 4208, "kappamask-v1": 4161}
ORGANIZATION_RE = re.compile(r"[a-z0-9][a-z0-9_]*")


@dataclass(frozen=True)
class Publication:
    """Where the published files will be served: ``base_url`` is the root of a tree in the openEO algorithm
    catalogue's layout (``algorithm_catalog/<organization>/<process>/...``) that also holds the archive; the
    archive's sha256 goes into the processes, so the UDF can check what it downloads."""

    base_url: str
    archive_sha256: str | None = None
    organization: str = "kappamask"
    onnx_deps: bool = False  # onnxruntime from Copernicus Data Space's hosted archive, not from ours

    def __post_init__(self):
        # frozen: the checked form (scheme and host in lower case, no trailing slash) is set through object's own
        object.__setattr__(self, "base_url", checked_url(self.base_url, "--base-url", schemes=("https",)))
        if not ORGANIZATION_RE.fullmatch(self.organization):
            raise InputError(f"the organization id {self.organization!r} must be lower-case letters, digits and _ "
                             "(it names a folder of the algorithm catalogue)")

    def url(self, name: str) -> str:
        return join_path(self.base_url, *name.split("/"))

    def folder(self, pid: str) -> str:
        """The process's folder in the catalogue's layout, relative to the base URL."""
        return f"algorithm_catalog/{self.organization}/{pid}"

    def process_path(self, pid: str) -> str:
        return f"{self.folder(pid)}/openeo_udp/{pid}.json"

    def process_url(self, pid: str) -> str:
        return self.url(self.process_path(pid))

    @property
    def archive_url(self) -> str:
        return self.url(ARCHIVE_NAME)


def worker_address_mib(card) -> int:
    """The measured peak address space of one Python worker running ``card``'s network on a chunk
    (:data:`WORKER_ADDRESS_MIB`)."""
    family = next((name for name in WORKER_ADDRESS_MIB if card.id.startswith(name)), None)
    if family is None:  # another network: the largest figure measured
        log.warning("model %s: its UDF memory was not measured; asking for the largest figure measured (%s)",
                    card.id, max(WORKER_ADDRESS_MIB, key=WORKER_ADDRESS_MIB.get))
        return max(WORKER_ADDRESS_MIB.values())
    return WORKER_ADDRESS_MIB[family]


def worker_limit_mib(cards) -> int:
    """The address space each Python worker gets (python-memory / executor-cores) for the most demanding of
    ``cards``: its measured peak times :data:`MEMORY_MARGIN`, rounded up to 100 MiB per worker."""
    peak = max(worker_address_mib(card) for card in cards)
    return -(-int(peak * MEMORY_MARGIN) // 100) * 100


def job_options(archive_url: str, cards, onnx_deps: bool = False) -> dict:
    """The batch-job options a process carries: our archive (and, with ``onnx_deps``, the hosted onnxruntime
    archive, :data:`HOSTED_ONNX_DEPS`), and Python memory for its workers (:func:`worker_limit_mib` each)."""
    workers = EXECUTOR_CORES // TASK_CPUS
    archives = [f"{archive_url}#{DEPENDENCY_FOLDER}"] + ([f"{HOSTED_ONNX_DEPS}#onnx_deps"] if onnx_deps else [])
    return {"udf-dependency-archives": archives,
            "executor-cores": EXECUTOR_CORES, "task-cpus": TASK_CPUS,
            "python-memory": f"{worker_limit_mib(cards) * workers}m"}


def merge_job_options(*options: dict) -> dict:
    """Job options merged so that nothing is lost: lists are joined (each entry once), objects merged key by key,
    and for any other value the later one wins.

    A backend merges a process's ``default_job_options`` with the caller's shallowly, so a caller who passes
    their own ``udf-dependency-archives`` would drop ours; pass ``merge_job_options(defaults, yours)`` instead.
    """
    merged: dict = {}
    for option in options:
        for key, value in (option or {}).items():
            old = merged.get(key)
            if isinstance(old, list) and isinstance(value, list):
                merged[key] = list(dict.fromkeys([*old, *value]))
            elif isinstance(old, dict) and isinstance(value, dict):
                merged[key] = merge_job_options(old, value)
            else:
                merged[key] = value
    return merged


def udf_context(options, publication: Publication | None, **fixed) -> dict:
    """apply_neighborhood's context: the caller's options under ``options``; beside them the keys this process
    sets itself (the archive, threads, and what ``fixed`` names), which win over the caller's."""
    context = {"options": options, "threads": TASK_CPUS}  # one task's CPUs: never more threads than it has
    if publication is not None:
        context["dependency_archive"] = publication.archive_url
        if publication.archive_sha256:
            context["dependency_sha256"] = publication.archive_sha256
    return {**context, **fixed}


def _options_parameter(card, mask: bool = False, level: str = "L2A"):
    """The process's 'options' parameter: the UDF context as one object."""
    from openeo.api.process import Parameter

    default = {"model": card.id, "stitch": "crop"}
    if level == "L2A":
        default["offset"] = CDSE_OFFSET
    if not mask:
        default["output"] = "classes"
    output = ("" if mask else
              "output ('classes': one band 'kappamask' with 0 missing, 1 clear, 2 cloud shadow, 3 semi-transparent "
              "cloud, 4 cloud; 'usable': 1 clear after buffering, 0 not, 255 missing; 'scores': one band per class; "
              "on Copernicus Data Space the values arrive as float32, missing as 0 or 255, not NaN), ")
    offset = ("" if level == "L1C" else
              "offset (DN offset of the delivered bands: 0 on Copernicus Data Space, whose L2A arrive harmonised; "
              "-1000 for unharmonised DN of baseline 04.00 and later), ")
    return Parameter.object(
        "options", default=default, optional=True,
        description=(
            "The KappaMask UDF context (all keys optional): model (default " + card.id + "; 'auto' picks KappaMask "
            "v2 when the archive holds it), stitch ('crop' keeps tile centres as KappaMask does, 'blend' ramps "
            "weights), " + offset + output + "buffer (metres by class, e.g. {\"cloud\": 300, \"cloud_shadow\": 100}; "
            "exact up to 760 m with the bundled model, 2720 m with KappaMask), tiles ('ground', the default: the whole scene's map in every chunk; 'raster': each "
            "chunk's own tiles), encoding ('kappamask' or 'km_predict'). An object given here replaces the default "
            "as a whole." + (" The output is set by this process (the usable mask) and cannot be changed."
                             if mask else "")))


def _offset_parameter():
    from openeo.api.process import Parameter

    return Parameter.number(
        "offset", default=CDSE_OFFSET, optional=True,
        description=("The DN offset of the delivered L1C bands. Products of processing baseline 04.00 and later "
                     "(from January 2022) store DN + 1000; whether SENTINEL2_L1C on Copernicus Data Space removes it "
                     "is not confirmed. 0 (the default) takes the DN as delivered; give -1000 if they still carry "
                     "it. The UDF writes a warning to the job log for a date whose data make an offset that was not "
                     "removed likely."))


def _extent_parameters(level: str):
    from openeo.api.process import Parameter

    return [Parameter.bounding_box("spatial_extent", default=EXAMPLE_BBOX[level],
                                   description="Area to classify (bounding box). The default is a small example "
                                               f"area ({EXAMPLE_AREAS[level]})."),
            Parameter.temporal_interval("temporal_extent", default=EXAMPLE_DATES[level],
                                        description="Time interval to classify. The default holds one example "
                                                    "acquisition (or a few).")]


def _classes_cube(level: str, card, spatial_extent, temporal_extent, context: dict):
    import openeo
    from openeo.rest.datacube import DataCube

    cube = DataCube.load_collection(COLLECTIONS[level], connection=None, spatial_extent=spatial_extent,
                                    temporal_extent=temporal_extent, bands=list(card.bands), fetch_metadata=False)
    udf = openeo.UDF(UDF_FILE.read_text(), runtime="Python", version=UDF_PYTHON,
                     context={"from_parameter": "context"})
    size = [{"dimension": d, "value": CHUNK, "unit": "px"} for d in ("x", "y")]
    size.append({"dimension": "t", "value": TIME_STEP})
    overlap = [{"dimension": d, "value": OVERLAP, "unit": "px"} for d in ("x", "y")]
    return cube.apply_neighborhood(udf, size=size, overlap=overlap, context=context)


def model_levels(model: str) -> list[str]:
    """The levels ``model`` takes; a one-level model gets only that level's processes (the others would fail)."""
    return [level for level in ("L1C", "L2A") if level in resolve_card(model, level).levels]


def build_templates(model: str = "default", publication: Publication | None = None) -> dict[str, dict]:
    """The user-defined processes, keyed by process id."""
    from openeo.api.process import Parameter
    from openeo.rest.datacube import DataCube
    from openeo.rest.udp import build_process_dict

    templates = {}
    returns = {"description": "A raster data cube.", "schema": {"type": "object", "subtype": "datacube"}}
    levels = model_levels(model)
    skipped = [pid for pid in PROCESS_IDS if not any(pid.endswith(lvl.lower()) for lvl in levels)
               and not (pid in L2A_DERIVED and "L2A" in levels)]
    if skipped:
        log.warning("model %s takes %s products only: %s not written (each would fail on the other level)", model,
                    "/".join(levels), ", ".join(skipped))

    def extras(card):
        return {} if publication is None else {"default_job_options": job_options(publication.archive_url, [card],
                                                                                  publication.onnx_deps)}

    for level in levels:
        card = resolve_card(model, level)
        spatial_extent, temporal_extent = _extent_parameters(level)
        options = _options_parameter(card, level=level)
        parameters = [spatial_extent, temporal_extent, options]
        fixed = {"level": level, "units": CDSE_UNITS}
        if level == "L1C":
            offset = _offset_parameter()
            parameters.append(offset)
            fixed["offset"] = offset
        cube = _classes_cube(level, card, spatial_extent, temporal_extent, udf_context(options, publication, **fixed))
        pid = f"kappamask_{level.lower()}"
        templates[pid] = build_process_dict(
            cube, process_id=pid,
            summary=f"Cloud and cloud-shadow classes for Sentinel-2 {level} ({card.name})",
            description=(f"Loads {COLLECTIONS[level]} with the bands of model {card.id} "
                         f"({', '.join(card.bands)}) and classifies each date with the KappaMask UDF in "
                         f"{CHUNK} px chunks with {OVERLAP} px overlap. Network: {card.name}. {card.description}"),
            parameters=parameters, returns=returns, categories=["cubes", "cloud detection"], **extras(card))
    if "L2A" not in levels:
        return templates
    card = resolve_card(model, "L2A")
    spatial_extent, temporal_extent = _extent_parameters("L2A")
    options = _options_parameter(card, mask=True)
    bands = Parameter.array("bands", item_schema={"type": "string"}, default=["B02", "B03", "B04", "B08"],
                            optional=True, description="Bands of SENTINEL2_L2A to return, masked.")
    usable = _classes_cube("L2A", card, spatial_extent, temporal_extent,
                           udf_context(options, publication, level="L2A", units=CDSE_UNITS, output=MASK_OUTPUT))
    data = DataCube.load_collection(COLLECTIONS["L2A"], connection=None, spatial_extent=spatial_extent,
                                    temporal_extent=temporal_extent, bands=bands, fetch_metadata=False)
    # 1 is usable (clear after buffering); 0 not usable and 255 missing are masked
    masked = data.mask(usable.band(OUTPUT_BANDS[MASK_OUTPUT][0]) != 1)
    templates["kappamask_mask"] = build_process_dict(
        masked, process_id="kappamask_mask",
        summary=f"Sentinel-2 L2A with every pixel that is not clear masked ({card.name})",
        description=(f"Classifies SENTINEL2_L2A with model {card.id} ({card.name}) and returns the requested bands "
                     "with cloud, cloud shadow, semi-transparent cloud and missing pixels set to no-data, for "
                     "example before computing NDVI on clear pixels only. Buffers around clouds and shadows "
                     "(options.buffer) are masked as well."),
        parameters=[spatial_extent, temporal_extent, bands, options],
        returns=returns, categories=["cubes", "cloud detection", "masks"], **extras(card))
    # the same masked cube, reduced over time: each band's median of the clear observations (openEO's median
    # leaves no-data out), as users build it with SCL, here with KappaMask
    composite = masked.reduce_dimension(dimension="t", reducer="median")
    templates["kappamask_composite"] = build_process_dict(
        composite, process_id="kappamask_composite",
        summary=f"A cloud-free median composite of Sentinel-2 L2A over time ({card.name})",
        description=(f"Classifies every date of SENTINEL2_L2A with model {card.id} ({card.name}), masks every pixel "
                     "that is not clear (cloud, cloud shadow, semi-transparent cloud, missing, and the buffers of "
                     "options.buffer) and returns, band by band, the median of the clear observations over the "
                     "time interval; a pixel without a clear observation is no-data. The result has no time "
                     "dimension."),
        parameters=[spatial_extent, temporal_extent, bands, options],
        returns=returns, categories=["cubes", "cloud detection", "composites"], **extras(card))
    templates["kappamask_stats"] = _stats_template(card, publication, returns, extras(card))
    return templates


def _stats_template(card, publication: Publication | None, returns: dict, extras: dict) -> dict:
    """kappamask_stats: the classes of each date aggregated per geometry (aggregate_spatial, pixel centres): the
    share of each geometry with data, and each class's share of that."""
    from openeo.api.process import Parameter
    from openeo.processes import array_create, array_element, divide, eq, neq
    from openeo.rest.udp import build_process_dict

    spatial_extent, temporal_extent = _extent_parameters("L2A")
    options = _options_parameter(card, mask=True)
    geometries = Parameter("geometries", schema={"type": "object", "subtype": "geojson"}, default=EXAMPLE_FIELDS,
                           optional=True, description="The areas (GeoJSON polygons, WGS84) to aggregate over; they "
                                                      "must lie inside spatial_extent. The default: two example "
                                                      "areas in the default extent.")
    classes = _classes_cube("L2A", card, spatial_extent, temporal_extent,
                            udf_context(options, publication, level="L2A", units=CDSE_UNITS, output="classes"))

    def shares(x):
        # per pixel: 1 where it has data, else 0; and for each class 1 or 0 where it has data, no value (0 / 0)
        # where it has none, which the mean leaves out: the class's share of the pixels with data
        k = array_element(x, index=0)
        valid = neq(k, 0)
        return array_create([valid] + [divide(eq(k, c), valid) for c in (1, 2, 3, 4)])

    bands = classes.apply_dimension(dimension="bands", process=shares).rename_labels("bands",
                                                                                      target=list(STATS_BANDS))
    stats = bands.aggregate_spatial(geometries=geometries, reducer="mean")
    return build_process_dict(
        stats, process_id="kappamask_stats",
        summary=f"Cloud statistics per area and date for Sentinel-2 L2A ({card.name})",
        description=(f"Classifies SENTINEL2_L2A over spatial_extent with model {card.id} ({card.name}) and returns, "
                     "for each geometry and date, valid_fraction (the share of its pixels with data) and the share "
                     "of the valid pixels in each class (clear, cloud_shadow, semi_transparent_cloud, cloud; no "
                     "value where none is valid). Pixels count by their centres (openEO's aggregate_spatial); the "
                     "command line's kappamask stats counts the share of each pixel an area covers."),
        parameters=[spatial_extent, temporal_extent, geometries, options], returns={
            "description": "A vector data cube: per geometry, date and statistic.",
            "schema": {"type": "object", "subtype": "datacube"}},
        categories=["cubes", "cloud detection", "statistics"], **extras)


def write_templates(outdir: Path, model: str = "default", publication: Publication | None = None) -> list[Path]:
    """The processes as ``<process>.json`` in ``outdir``, all or none: templates that name no archive, or, with a
    ``publication``, naming its archive."""
    outdir = Path(outdir)
    if outdir.exists() and not outdir.is_dir():
        raise OutputError(f"{outdir} is a file, not a folder for the process graphs")
    specs = build_templates(model, publication)
    paths = [outdir / f"{pid}.json" for pid in specs]
    with atomic_files(*paths) as temps:
        for temp, spec in zip(temps, specs.values()):
            Path(temp).write_text(json.dumps(spec, indent=2) + "\n")
    return paths
