"""Build the openEO user-defined processes, the UDF dependency archive and their catalogue entries.

The processes are generated offline with the openEO client; the UDF inside
them is the content of ``udf/kappamask_udf.py`` as it is, so the two cannot
drift apart (a test regenerates and compares them). Without a base URL they
are templates: no dependency archive is named in them. With one
(:func:`publish`), they name the archive, its sha256 and their own URLs, and
come with the archive, an OGC API Records entry per process and a benchmark
scenario, in the layout of the openEO algorithm catalogue (ESA APEx).
"""

import json
import logging
import re
import tempfile
import zipfile
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from kappamask_core.io.files import atomic_path, sha256_file
from kappamask_core.models.cards import ALIASES
from kappamask_core.models.resolve import resolve_card, resolve_model
from kappamask_core.models.variants import find_variant
from kappamask_core.faces.datacube import OUTPUT_BANDS
from kappamask_core.foundation.errors import InputError, OutputError

log = logging.getLogger(__name__)

UDF_FILE = Path(__file__).with_name("kappamask_udf.py")
CHUNK, OVERLAP = 448, 32  # apply_neighborhood: the UDF sees 448 + 2 x 32 = 512 px
TIME_STEP = "P1D"  # one date per UDF call: a chunk's memory does not grow with the time series
DEPENDENCY_FOLDER = "kappamask_deps"
ARCHIVE_NAME = "kappamask_udf_deps.zip"
COLLECTIONS = {"L1C": "SENTINEL2_L1C", "L2A": "SENTINEL2_L2A"}
PROCESS_IDS = ("kappamask_l1c", "kappamask_l2a", "kappamask_mask")
# pure-Python packages the UDF path imports that openEO UDF runtimes do not promise: affine (BSD-3-Clause) and
# the attrs distribution it needs (packages attrs and attr, MIT)
BUNDLED = ("affine", "attrs", "attr")
UDF_PYTHON = "3.11"  # the runtime the dependency archive is built for (onnxruntime's binary wheel too)
ONNXRUNTIME_PLATFORMS = ("manylinux_2_28_x86_64", "manylinux_2_27_x86_64", "manylinux_2_17_x86_64",
                         "manylinux2014_x86_64")
MASK_OUTPUT = "usable"  # kappamask_mask keeps the pixels whose usable value is 1 (clear after buffering)
# Small areas on real products, so that each process runs with no arguments (the openEO Web Editor, the benchmark):
# a crop of T33UUU near Berlin on 2017-02-16 with thin cloud and haze (the bundled demo scene's product), and the
# same area in June 2023 for L2A.
EXAMPLE_BBOX = {"west": 12.52, "south": 52.46, "east": 12.62, "north": 52.51}
EXAMPLE_DATES = {"L1C": ["2017-02-16", "2017-02-17"], "L2A": ["2023-06-01", "2023-06-06"]}
# The L2A DN arrive on Copernicus Data Space with the baseline-04.00 offset already applied: load_collection
# subtracts 1000 from products of baseline 04.00 and later (openeo-geopyspark-driver issues 1051 and 1212,
# openeo-geotrellis-extensions issue 144), so the UDF takes offset 0. No source cited here says the same of
# SENTINEL2_L1C: its offset on the backend is unverified, and options.offset (-1000) overrides it.
CDSE_OFFSET = 0
# Defaults for the batch jobs, sized by benchmarks/udf_memory.py (one 512 px date per call)
MEMORY_OPTIONS = {"executor-memory": "2G", "executor-memoryOverhead": "3G", "python-memory": "3G"}
CDSE_FEDERATION = "https://openeofed.dataspace.copernicus.eu"
GCMD_SCHEME = "https://gcmd.earthdata.nasa.gov/kms/concepts/concept_scheme/sciencekeywords"


@dataclass(frozen=True)
class Publication:
    """Where the published files will be served: ``base_url`` holds the processes, the archive and the
    reference output; the archive's sha256 goes into the processes, so the UDF can check what it downloads."""

    base_url: str
    archive_sha256: str | None = None

    def __post_init__(self):
        if not self.base_url.startswith("https://"):
            raise InputError(f"the base URL must be a public https:// URL, not {self.base_url!r}")

    def url(self, name: str) -> str:
        return f"{self.base_url.rstrip('/')}/{name}"

    @property
    def archive_url(self) -> str:
        return self.url(ARCHIVE_NAME)


def job_options(archive_url: str) -> dict:
    """The batch job options the processes carry: our archive, and memory for one 512 px date per call."""
    return {"udf-dependency-archives": [f"{archive_url}#{DEPENDENCY_FOLDER}"], **MEMORY_OPTIONS}


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
    sets itself (the archive, and what ``fixed`` names), which win over the caller's."""
    context = {"options": options}
    if publication is not None:
        context["dependency_archive"] = publication.archive_url
        if publication.archive_sha256:
            context["dependency_sha256"] = publication.archive_sha256
    return {**context, **fixed}


def _options_parameter(card, mask: bool = False):
    """The process's one 'options' parameter: the UDF context as one object."""
    from openeo.api.process import Parameter

    default = {"model": card.id, "stitch": "crop", "offset": CDSE_OFFSET}
    if not mask:
        default["output"] = "classes"
    output = ("" if mask else
              "output ('classes': one band 'kappamask' with 0 missing, 1 clear, 2 cloud shadow, 3 semi-transparent "
              "cloud, 4 cloud; 'usable': 1 clear after buffering, 0 not, 255 missing; 'scores': one band per class; "
              "on Copernicus Data Space the values arrive as float32, missing as 0 or 255, not NaN), ")
    return Parameter.object(
        "options", default=default, optional=True,
        description=(
            "The KappaMask UDF context (all keys optional): model (default " + card.id + "; 'auto' picks KappaMask "
            "v2 when the archive holds it), stitch ('crop' keeps tile centres as KappaMask does, 'blend' ramps "
            "weights), offset (DN offset of the delivered bands: 0 on Copernicus Data Space, whose L2A arrive "
            "harmonised; -1000 for unharmonised DN of baseline 04.00 and later), " + output + "buffer (metres by "
            "class, e.g. {\"cloud\": 300, \"cloud_shadow\": 100}; exact up to 320 m), encoding ('kappamask' or "
            "'km_predict'). An object given here replaces the default as a whole."
            + (" The output is set by this process (the usable mask) and cannot be changed." if mask else "")))


def _extent_parameters(level: str):
    from openeo.api.process import Parameter

    return [Parameter.bounding_box("spatial_extent", default=EXAMPLE_BBOX,
                                   description="Area to classify (bounding box). The default is a small example "
                                               "area near Berlin."),
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


def build_templates(model: str = "default", publication: Publication | None = None) -> dict[str, dict]:
    """The user-defined processes, keyed by process id."""
    from openeo.api.process import Parameter
    from openeo.rest.datacube import DataCube
    from openeo.rest.udp import build_process_dict

    templates = {}
    returns = {"description": "A raster data cube.", "schema": {"type": "object", "subtype": "datacube"}}
    extras = {} if publication is None else {"default_job_options": job_options(publication.archive_url)}
    levels = [level for level in ("L1C", "L2A") if level in resolve_card(model, level).levels]
    skipped = [pid for pid in PROCESS_IDS if not any(pid.endswith(lvl.lower()) for lvl in levels)
               and not (pid == "kappamask_mask" and "L2A" in levels)]
    if skipped:
        log.warning("model %s takes %s products only: %s not written (each would fail on the other level)", model,
                    "/".join(levels), ", ".join(skipped))
    for level in levels:
        card = resolve_card(model, level)
        spatial_extent, temporal_extent = _extent_parameters(level)
        options = _options_parameter(card)
        cube = _classes_cube(level, card, spatial_extent, temporal_extent,
                             udf_context(options, publication, level=level))
        pid = f"kappamask_{level.lower()}"
        templates[pid] = build_process_dict(
            cube, process_id=pid,
            summary=f"Cloud and cloud-shadow classes for Sentinel-2 {level} ({card.id})",
            description=(f"Loads {COLLECTIONS[level]} with the bands of model {card.id} "
                         f"({', '.join(card.bands)}) and classifies each date with the KappaMask UDF in "
                         f"{CHUNK} px chunks with {OVERLAP} px overlap. Model: {card.name}. {card.description}"),
            parameters=[spatial_extent, temporal_extent, options],
            returns=returns, categories=["cubes", "cloud detection"], **extras,
        )
    if "L2A" not in levels:
        return templates
    card = resolve_card(model, "L2A")
    spatial_extent, temporal_extent = _extent_parameters("L2A")
    options = _options_parameter(card, mask=True)
    bands = Parameter.array("bands", item_schema={"type": "string"}, default=["B02", "B03", "B04", "B08"],
                            optional=True, description="Bands of SENTINEL2_L2A to return, masked.")
    usable = _classes_cube("L2A", card, spatial_extent, temporal_extent,
                           udf_context(options, publication, level="L2A", output=MASK_OUTPUT))
    data = DataCube.load_collection(COLLECTIONS["L2A"], connection=None, spatial_extent=spatial_extent,
                                    temporal_extent=temporal_extent, bands=bands, fetch_metadata=False)
    # 1 is usable (clear after buffering); 0 not usable and 255 missing are masked
    masked = data.mask(usable.band(OUTPUT_BANDS[MASK_OUTPUT][0]) != 1)
    templates["kappamask_mask"] = build_process_dict(
        masked, process_id="kappamask_mask",
        summary="Sentinel-2 L2A with every pixel that is not clear masked",
        description=(f"Classifies SENTINEL2_L2A with model {card.id} and returns the requested bands with "
                     "cloud, cloud shadow, semi-transparent cloud and missing pixels set to no-data, "
                     "for example before computing NDVI on clear pixels only. Buffers around clouds and "
                     "shadows (options.buffer) are masked as well."),
        parameters=[spatial_extent, temporal_extent, bands, options],
        returns=returns, categories=["cubes", "cloud detection", "masks"], **extras,
    )
    return templates


def _write_json(path: Path, data) -> Path:
    with atomic_path(path) as tmp:
        Path(tmp).write_text(json.dumps(data, indent=2) + "\n")
    return path


def write_templates(outdir: Path, model: str = "default", publication: Publication | None = None) -> list[Path]:
    outdir = Path(outdir)
    if outdir.exists() and not outdir.is_dir():
        raise OutputError(f"{outdir} is a file, not a folder for the process graphs")
    outdir.mkdir(parents=True, exist_ok=True)
    return [_write_json(outdir / f"{pid}.json", spec) for pid, spec in build_templates(model, publication).items()]


# ----------------------------------------------------------------------------- the dependency archive

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
# an error (tests/test_udf.py runs a bf16 variant from such an archive).
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


# ----------------------------------------------------------------------------- catalogue entries

@dataclass(frozen=True)
class Contact:
    name: str = "KappaMask openEO/STAC developers"
    organization: str | None = None
    email: str | None = None
    url: str | None = None


def record(pid: str, spec: dict, publication: Publication, code_url: str, contact: Contact,
           preview_url: str | None = None) -> dict:
    """An OGC API Records entry for one process, as the openEO algorithm catalogue (ESA APEx) lists services."""
    now = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    process_url = publication.url(f"{pid}.json")
    person = {"name": contact.name, "roles": ["principal investigator", "processor"],
              "contactInstructions": f"Issues and questions: {code_url}"}
    if contact.organization:
        person["organization"] = contact.organization
    if contact.email:
        person["emails"] = [{"value": contact.email}]
    if contact.url:
        person["links"] = [{"href": contact.url, "rel": "about", "type": "text/html", "title": contact.name}]
    links = [
        {"rel": "application", "type": "application/vnd.openeo+json;type=process", "title": "openEO process definition",
         "href": process_url},
        {"rel": "service", "type": "application/json", "title": "Copernicus Data Space openEO federation",
         "href": CDSE_FEDERATION},
        {"rel": "platform", "type": "application/json", "title": "CDSE openEO federation",
         "href": "../../../../platform_catalog/cdse_openeo_federation.json"},
        {"rel": "provider", "type": "application/json", "title": contact.organization or contact.name,
         "href": "../../record.json"},
        {"rel": "code", "type": "text/html", "title": "Source code", "href": code_url},
        {"rel": "webapp", "type": "text/html", "title": "openEO Web Editor",
         "href": f"https://editor.openeo.org/?wizard=UDP&wizard~process={pid}&wizard~processUrl={process_url}"
                 f"&server={CDSE_FEDERATION}"},
    ]
    if preview_url:
        links.append({"rel": "preview", "type": "image/png", "title": "Example output (true colour and classes)",
                      "href": preview_url})
    return {
        "id": pid,
        "type": "Feature",
        "conformsTo": ["https://www.opengis.net/spec/ogcapi-records-1/1.0/req/record-core",
                       "https://apex.esa.int/core/openeo-udp"],
        "geometry": None,
        "properties": {
            "created": now, "updated": now, "type": "service",
            "title": spec["summary"], "description": spec["description"],
            "keywords": ["Sentinel-2", "Data Analysis and Visualization"],
            "language": {"code": "en-US", "name": "English (United States)"},
            "languages": [{"code": "en-US", "name": "English (United States)"}],
            "contacts": [person],
            "themes": [{"concepts": [{"id": "CLOUDS"}, {"id": "IMAGERY"}, {"id": "Sentinel-2 MSI"}],
                        "scheme": GCMD_SCHEME}],
            "formats": [{"name": "GeoTiff"}, {"name": "netCDF"}],
            "license": "Apache-2.0",
        },
        "linkTemplates": [],
        "links": links,
    }


REFERENCE_DATE = EXAMPLE_DATES["L1C"][0]
REFERENCE_FILE = f"openEO_{REFERENCE_DATE}Z.tif"  # what a GTiff batch job names the date's result


def benchmark_scenarios(publication: Publication, pixel_tolerance: float = 5.0) -> list[dict]:
    """The catalogue's benchmark scenario: kappamask_l1c called from its URL on the example area, against a
    reference output made by ``python benchmarks/openeo_reference.py`` and served beside the processes."""
    return [{
        "id": "kappamask_l1c",
        "type": "openeo",
        "description": ("KappaMask classes of a small L1C area near Berlin on 2017-02-16 (thin cloud, haze), the "
                        "process called from its URL with its example extents. The reference was made by the "
                        "project's own execution of the same process on the same product (see "
                        "benchmarks/openeo_reference.py), not yet by Copernicus Data Space."),
        "backend": CDSE_FEDERATION.removeprefix("https://"),
        "process_graph": {"kappamask1": {
            "process_id": "kappamask_l1c", "namespace": publication.url("kappamask_l1c.json"),
            "arguments": {"spatial_extent": EXAMPLE_BBOX, "temporal_extent": EXAMPLE_DATES["L1C"]},
            "result": True}},
        "reference_data": {REFERENCE_FILE: publication.url(f"reference/{REFERENCE_FILE}")},
        # class values either match or not: any difference counts, and up to pixel_tolerance % of pixels may differ
        "reference_options": {"atol": 0.5, "rtol": 0.0, "pixel_tolerance": pixel_tolerance},
    }]


def publish(outdir: Path, base_url: str, *, model: str = "default", archive_models=None, weights=None,
            onnxruntime: Path | None = None, code_url: str, contact: Contact | None = None) -> list[Path]:
    """Everything to serve under ``base_url``, written into ``outdir``: the archive (with onnxruntime), the three
    processes naming it, and for the catalogue an OGC API Records entry per process and a benchmark scenario."""
    outdir = Path(outdir)
    if outdir.exists() and not outdir.is_dir():
        raise OutputError(f"{outdir} is a file, not a folder to publish into")
    if not code_url.startswith("https://"):
        raise InputError(f"the code URL must be a public https:// URL, not {code_url!r}")
    outdir.mkdir(parents=True, exist_ok=True)
    models = list(archive_models or ([model] if model != "default" else ["ukis-csmask-6b-l1c", "ukis-csmask-6b-l2a"]))
    with tempfile.TemporaryDirectory(prefix="kappamask-wheels-") as wheels:
        wheel = Path(onnxruntime) if onnxruntime is not None else onnxruntime_wheel(Path(wheels))
        archive, _, digest = build_archive(outdir / ARCHIVE_NAME, models, weights, wheel)
    publication = Publication(base_url, digest)
    written = [archive, *write_templates(outdir, model, publication)]
    specs = {pid: json.loads((outdir / f"{pid}.json").read_text()) for pid in PROCESS_IDS
             if (outdir / f"{pid}.json").is_file()}
    preview = publication.url("reference/preview.png")
    for pid, spec in specs.items():
        written.append(_write_json(outdir / "records" / f"{pid}.json",
                                   record(pid, spec, publication, code_url, contact or Contact(), preview)))
    written.append(_write_json(outdir / "benchmark_scenarios" / "kappamask.json", benchmark_scenarios(publication)))
    return written
