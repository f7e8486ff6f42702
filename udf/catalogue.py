"""Publishing the processes the way the openEO algorithm catalogue (ESA APEx) takes them.

:func:`publish` writes, under one folder to be served at a public https base URL, a tree in the catalogue's
layout::

    kappamask_udf_deps.zip                                   the UDF's dependency archive (with onnxruntime)
    algorithm_catalog/<organization>/record.json             the provider's record, logo.png beside it
    algorithm_catalog/<organization>/<process>/
        openeo_udp/<process>.json                            the process, naming the archive and its sha256
        records/<process>.json                               its OGC API Records entry
        records/preview.png                                  a picture of its example output (L1C processes)
        benchmark_scenarios/<process>.json                   its benchmark scenario

Every file is written together or not at all, after every argument was checked. The records link the
documentation and the code at the released version (the Documentation and Code buttons), the paper behind the
classes (cite-as) and the network the process runs (about), show a thumbnail, name the organization and carry a cost
estimate in platform credits from the measured UDF time and the memory the processes ask for. Files and links name
one released version: the base URL must hold it. A scenario carries no reference data until one is recorded on the
backend it names (``kappamask openeo benchmark --record``, :mod:`kappamask_udf.benchmark`); until then the
catalogue's benchmark checks that the job succeeds.
"""

import json
import shutil
import tempfile
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from urllib.parse import urlencode

from kappamask_core.foundation import InputError, OutputError, __version__, checked_url
from kappamask_core.io import atomic_files
from kappamask_core.models import resolve_card

from .archive import build_archive, onnxruntime_wheel
from .processes import (ARCHIVE_NAME, CHUNK, EXAMPLE_AREAS, EXECUTOR_CORES, Publication, build_templates,
                        model_levels, worker_limit_mib)

CDSE_FEDERATION = "https://openeofed.dataspace.copernicus.eu"
PLATFORM_RECORD = "../../../../platform_catalog/cdse_openeo_federation.json"  # the catalogue's own record of CDSE
GCMD_SCHEME = "https://gcmd.earthdata.nasa.gov/kms/concepts/concept_scheme/sciencekeywords"
KAPPAMASK_PAPER = ("https://doi.org/10.3390/rs13204100",
                   "Domnich et al. (2021): KappaMask, AI-based cloudmask processor for Sentinel-2, Remote Sensing 13, 4100")
NETWORK_SOURCES = {  # card id prefix -> where the network comes from (the record's 'about' link)
    "ukis-csmask": ("https://github.com/dlr-eoc/ukis-csmask",
                    "ukis-csmask (DLR): the network this process runs; not a KappaMask network"),
    "kappamask": ("https://github.com/kappazeta/km_predict", "KappaMask (KappaZeta): the network this process runs"),
}
# Seconds of the UDF's own work for one of the network's tiles and date, one core, measured with
# benchmarks/udf_memory.py on a quiet 2-core machine (a 512 px chunk, one tile each): what the records' cost estimate
# is made of, with the tiles a chunk runs (:func:`tiles_per_chunk`). Loading the data and the backend's own work come
# on top.
SECONDS_PER_TILE = {"ukis-csmask": 0.06, "kappamask-v2": 0.35, "kappamask-v1": 0.55}
CHUNK_KM2 = (CHUNK * 10 / 1000) ** 2
# Platform credits, as openEO Platform's accounting documentation works its example out (1.4 CPU-hours: 2.12 credits;
# 3.64 GB-hours: 3.64 credits); Copernicus Data Space charges the same quantities (CPU, memory, storage; 2 credits per
# batch job). The memory a task holds is its share of the executor: the backend's default heap and the JVM overhead
# beside python-memory, divided among the executor's cores.
CREDITS_PER_CPU_HOUR = 1.5
CREDITS_PER_GB_HOUR = 1.0
EXECUTOR_HEAP_MIB, JVM_OVERHEAD_MIB = 2048, 128


def tiles_per_chunk(card) -> float:
    """The tiles a chunk's core needs on average: the ground's tiles that keep its pixels, about core / stride + 1
    along each axis (a core that starts anywhere cuts one tile more than it holds)."""
    stride_px = (card.tile_size - card.overlap) * card.resolution / 10
    return (CHUNK / stride_px + 1) ** 2


def credits_per_km2(card) -> tuple[float, str]:
    """The cost estimate of one date over one km² in platform credits, and the rule it was made with."""
    per_tile, tiles = SECONDS_PER_TILE[_family(card)], tiles_per_chunk(card)
    task_s = per_tile * tiles / CHUNK_KM2
    memory_gb = ((EXECUTOR_HEAP_MIB + JVM_OVERHEAD_MIB) / EXECUTOR_CORES + worker_limit_mib([card])) / 1024
    cost = task_s / 3600 * (CREDITS_PER_CPU_HOUR + CREDITS_PER_GB_HOUR * memory_gb)
    rule = (f"platform credits per km² and date: the UDF's measured {per_tile} CPU-seconds per tile of network "
            f"{card.id} (about {tiles:.1f} tiles per {CHUNK} px chunk) at {CREDITS_PER_CPU_HOUR} credits per "
            f"CPU-hour, and the {memory_gb:.1f} GB a task holds meanwhile at {CREDITS_PER_GB_HOUR} credit per "
            "GB-hour; loading the data and the job's start come on top")
    return round(cost, 6), rule


@dataclass(frozen=True)
class Contact:
    name: str = "KappaMask openEO/STAC developers"
    organization: str | None = None
    email: str | None = None
    url: str | None = None

    def __post_init__(self):
        if self.url is not None:  # published in every record
            object.__setattr__(self, "url", checked_url(self.url, "the contact's URL", base=False))


def _family(card) -> str:
    return next((name for name in SECONDS_PER_TILE if card.id.startswith(name)), max(SECONDS_PER_TILE,
                                                                                      key=SECONDS_PER_TILE.get))


def pinned(code_url: str, path: str = "") -> str:
    """A page of the code repository at the released version's tag (v<version>), as GitHub and GitLab address
    it."""
    return f"{code_url}/{'blob' if path else 'tree'}/v{__version__}" + (f"/{path}" if path else "")


def record(pid: str, spec: dict, card, publication: Publication, code_url: str, contact: Contact,
           preview: bool) -> dict:
    """An OGC API Records entry for one process, as the catalogue lists services. The catalogue's Documentation
    button opens the first 'about' link (the project's openEO guide), its Code button the 'code' link."""
    now = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    process_url = publication.process_url(pid)
    organization = contact.organization or contact.name
    person = {"name": contact.name, "organization": organization, "roles": ["principal investigator", "processor"],
              "contactInstructions": f"Issues and questions: {code_url}"}
    if contact.email:
        person["emails"] = [{"value": contact.email}]
    if contact.url:
        person["links"] = [{"href": contact.url, "rel": "about", "type": "text/html", "title": contact.name}]
    network = next((source for prefix, source in NETWORK_SOURCES.items() if card.id.startswith(prefix)), None)
    links = [
        {"rel": "about", "type": "text/html", "title": "Documentation: KappaMask on openEO",
         "href": pinned(code_url, "docs/guide/openeo.md")},
        {"rel": "application", "type": "application/vnd.openeo+json;type=process", "title": "openEO process definition",
         "href": process_url},
        {"rel": "service", "type": "application/json", "title": "Copernicus Data Space openEO federation",
         "href": CDSE_FEDERATION},
        {"rel": "platform", "type": "application/json", "title": "CDSE openEO federation", "href": PLATFORM_RECORD},
        {"rel": "provider", "type": "application/json", "title": organization, "href": "../../record.json"},
        {"rel": "code", "type": "text/html", "title": f"Source code (v{__version__})", "href": pinned(code_url)},
        {"rel": "cite-as", "type": "text/html", "title": KAPPAMASK_PAPER[1], "href": KAPPAMASK_PAPER[0]},
        {"rel": "webapp", "type": "text/html", "title": "openEO Web Editor",
         # a URL inside a query is encoded as a value, never glued in
         "href": "https://editor.openeo.org/?" + urlencode({"wizard": "UDP", "wizard~process": pid,
                                                            "wizard~processUrl": process_url,
                                                            "server": CDSE_FEDERATION})},
    ]
    if network is not None:
        links.append({"rel": "about", "type": "text/html", "title": network[1], "href": network[0]})
    if preview:
        links.append({"rel": "preview", "type": "image/png", "title": "Example output (true colour and classes)",
                      "href": publication.url(f"{publication.folder(pid)}/records/preview.png")})
    links.append({"rel": "thumbnail", "type": "image/png",
                  "title": "Thumbnail: example output" if preview else "Thumbnail: the five classes' colours",
                  "href": publication.url(f"{publication.folder(pid)}/records/thumbnail.png")})
    cost, rule = credits_per_km2(card)
    return {
        "id": pid,
        "type": "Feature",
        "conformsTo": ["https://www.opengis.net/spec/ogcapi-records-1/1.0/req/record-core",
                       "https://apex.esa.int/core/openeo-udp"],
        "geometry": None,
        "properties": {
            "created": now, "updated": now, "type": "service",
            "title": spec["summary"], "description": spec["description"],
            "cost_estimate": cost,
            "cost_unit": rule,
            "keywords": ["Sentinel-2", "Land Use/Land Cover Classification", "Data Analysis and Visualization"],
            "language": {"code": "en-US", "name": "English (United States)"},
            "languages": [{"code": "en-US", "name": "English (United States)"}],
            "contacts": [person],
            "themes": [{"concepts": [{"id": "CLOUDS"}, {"id": "IMAGERY"}, {"id": "Sentinel-2 MSI"}],
                        "scheme": GCMD_SCHEME}],
            "formats": [{"name": "GeoTIFF"}, {"name": "netCDF"}],
            "license": "Apache-2.0",
        },
        "linkTemplates": [],
        "links": links,
    }


def write_thumbnail(path: Path, preview: Path | None) -> Path:
    """The record's thumbnail: the example output's picture made small where there is one, else the classes'
    colours (no example can be classified here for L2A: no L2A scene is bundled)."""
    from PIL import Image

    if preview is None:
        return write_logo(path)
    with Image.open(preview) as image:
        image.thumbnail((320, 320))
        image.save(path, format="PNG")
    return path


def write_logo(path: Path) -> Path:
    """The provider's logo: the five classes' colours as stripes (the catalogue asks for a light and a dark one;
    the stripes read on both)."""
    from PIL import Image

    from kappamask_core.foundation import CLASSES

    image = Image.new("RGB", (160, 40))
    for i, cls in enumerate(CLASSES):
        image.paste(cls.rgb if cls.value else (40, 40, 40), (i * 32, 0, i * 32 + 32, 40))
    image.save(path, format="PNG")
    return path


def provider_record(publication: Publication, contact: Contact, code_url: str) -> dict:
    """The provider's record (``algorithm_catalog/<organization>/record.json``), with the logo beside it."""
    now = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    logo = publication.url(f"algorithm_catalog/{publication.organization}/logo.png")
    links = [{"rel": "website", "type": "text/html", "title": contact.organization or contact.name,
              "href": contact.url or code_url},
             {"rel": "logo-light", "type": "image/png", "title": "Logo", "href": logo},
             {"rel": "logo-dark", "type": "image/png", "title": "Logo", "href": logo}]
    return {"id": publication.organization, "type": "Feature",
            "conformsTo": ["https://www.opengis.net/spec/ogcapi-records-1/1.0/req/record-core"],
            "properties": {"created": now, "updated": now, "type": "algorithm_provider",
                           "title": contact.organization or contact.name, "description": "",
                           "keywords": [], "language": {"code": "en-US", "name": "English (United States)"},
                           "languages": [{"code": "en-US", "name": "English (United States)"}],
                           "contacts": [], "themes": [], "license": "other",
                           # who may edit the provider's entries in the catalogue: the contact's e-mail domain
                           "acl": {"admin": [f"@{contact.email.rpartition('@')[2]}"]}},
            "linkTemplates": [], "links": links}


def benchmark_scenario(pid: str, spec: dict, publication: Publication) -> list[dict]:
    """The catalogue's benchmark scenario of one process: called from its URL with its example extents. It has no
    reference data: those are what the backend returns, recorded there (``kappamask openeo benchmark --record``)."""
    level = "L1C" if pid.endswith("l1c") else "L2A"
    return [{
        "id": pid,
        "type": "openeo",
        "description": (f"{pid} on its example area ({EXAMPLE_AREAS[level]}), the process called from its URL with "
                        "its example extents. No reference yet: it is recorded from a run on this backend "
                        "('kappamask openeo benchmark --record'); until then the job's success is what is checked."),
        "backend": CDSE_FEDERATION.removeprefix("https://"),
        "process_graph": {"kappamask1": {
            "process_id": pid, "namespace": publication.process_url(pid),
            "arguments": {"spatial_extent": spec_default(spec, "spatial_extent"),
                          "temporal_extent": spec_default(spec, "temporal_extent")},
            "result": True}},
    }]


def spec_default(spec: dict, name: str):
    return next(p["default"] for p in spec["parameters"] if p["name"] == name)


def write_preview(path: Path, card) -> bool:
    """A picture of the process's example output where one can be made here: the bundled demo scene (L1C) classified
    with the process's network as published (float32: the archive a publication builds carries no faster variant,
    so no variant installed here may make the picture). False where there is none (L2A: no L2A scene is bundled)."""
    if "L1C" not in card.levels:
        return False
    from kappamask_core import ClassifyOptions, run
    from kappamask_core.io import DEMO_DATA, write_quicklook

    result = run(DEMO_DATA, card, options=ClassifyOptions(precision="fp32"))
    if result.card.variant:
        raise OutputError(f"the example output ran {result.card.id} ({result.card.precision}), not the network the "
                          "archive carries")
    write_quicklook(path, result.classes, result.preview, f"example output (T33UUU, 2017-02-16)  model: {card.name}",
                    card.predicts, result.preview_window)
    return True


def publish(outdir: Path, base_url: str, *, model: str = "default", archive_models=None, weights=None,
            onnxruntime: Path | None = None, code_url: str, contact: Contact | None = None,
            organization: str = "kappamask", onnx_deps: bool = False) -> list[Path]:
    """Everything to serve under ``base_url``, in the catalogue's layout (see the module text), written into
    ``outdir`` together or not at all; every argument is checked before anything is built. ``onnx_deps``: the
    archive carries no onnxruntime, and the processes' batch jobs take it from the archive Copernicus Data Space
    hosts (:data:`~kappamask_udf.processes.HOSTED_ONNX_DEPS`)."""
    outdir = Path(outdir)
    if outdir.exists() and not outdir.is_dir():
        raise OutputError(f"{outdir} is a file, not a folder to publish into")
    code_url = checked_url(code_url, "--code-url", schemes=("https",)).rstrip("/")
    Publication(base_url, organization=organization)  # checks the base URL and the organization id first
    if __version__ not in base_url:
        raise InputError(f"--base-url {base_url} does not name the released version {__version__} (for example "
                         f".../v{__version__}): the processes and records published there must keep naming the "
                         "files of this version when the next one is published")
    contact = contact or Contact()
    if not contact.email or "@" not in contact.email:
        raise InputError("--contact-email is needed: the provider record names who may edit its catalogue entries "
                         "(its acl, the e-mail's domain)")
    levels = model_levels(model)
    models = list(archive_models or ([model] if model != "default" else
                                     [resolve_card(model, level).id for level in levels]))
    with tempfile.TemporaryDirectory(prefix="kappamask-publish-") as work:
        work = Path(work)
        if onnx_deps and onnxruntime is not None:
            raise InputError("--onnx-deps takes onnxruntime from the hosted archive: give no --onnxruntime-wheel")
        wheel = None if onnx_deps else (Path(onnxruntime) if onnxruntime is not None
                                        else onnxruntime_wheel(work / "wheels"))
        archive, _, digest = build_archive(work / ARCHIVE_NAME, models, weights, wheel)
        publication = Publication(base_url, digest, organization, onnx_deps)
        files = {Path(ARCHIVE_NAME): archive,
                 Path(f"algorithm_catalog/{organization}/record.json"): provider_record(publication, contact, code_url),
                 Path(f"algorithm_catalog/{organization}/logo.png"): write_logo(work / "logo.png")}
        for pid, spec in build_templates(model, publication).items():
            folder = Path(publication.folder(pid))
            card = resolve_card(model, "L1C" if pid.endswith("l1c") else "L2A")
            preview = work / pid / "preview.png"
            preview.parent.mkdir()
            has_preview = write_preview(preview, card)
            if has_preview:
                files[folder / "records" / "preview.png"] = preview
            files[folder / "records" / "thumbnail.png"] = write_thumbnail(work / pid / "thumbnail.png",
                                                                          preview if has_preview else None)
            files[Path(publication.process_path(pid))] = spec
            files[folder / "records" / f"{pid}.json"] = record(pid, spec, card, publication, code_url, contact,
                                                               has_preview)
            files[folder / "benchmark_scenarios" / f"{pid}.json"] = benchmark_scenario(pid, spec, publication)
        finals = [outdir / relative for relative in files]
        with atomic_files(*finals) as temps:
            for temp, content in zip(temps, files.values()):
                if isinstance(content, Path):
                    shutil.copyfile(content, temp)
                else:
                    Path(temp).write_text(json.dumps(content, indent=2) + "\n")
    return finals

