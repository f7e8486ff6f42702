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

Every file is written together or not at all, after every argument was checked. The records link the paper
behind the classes (cite-as) and the network the process runs (about), name the organization and carry a cost
estimate from the measured UDF time. A scenario's reference data list what a job's results hold when the
catalogue downloads them (``include_stac_metadata=True``): the GeoTIFF of the date and ``job-results.json``;
``benchmarks/openeo_reference.py`` makes them by running the process, to be served under ``<process>/reference/``.
"""

import json
import shutil
import tempfile
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from urllib.parse import urlencode

from kappamask_core.foundation import OutputError, checked_url
from kappamask_core.io import atomic_files
from kappamask_core.models import resolve_card

from .archive import build_archive, onnxruntime_wheel
from .processes import (ARCHIVE_NAME, CHUNK, EXAMPLE_AREAS, EXAMPLE_DATES, TIMELESS, Publication, build_templates,
                        model_levels)

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


def tiles_per_chunk(card) -> float:
    """The tiles a chunk's core needs on average: the ground's tiles that keep its pixels, about core / stride + 1
    along each axis (a core that starts anywhere cuts one tile more than it holds)."""
    stride_px = (card.tile_size - card.overlap) * card.resolution / 10
    return (CHUNK / stride_px + 1) ** 2
REFERENCE_FOLDER = "reference"


@dataclass(frozen=True)
class Contact:
    name: str = "KappaMask openEO/STAC developers"
    organization: str | None = None
    email: str | None = None
    url: str | None = None

    def __post_init__(self):
        if self.url is not None:  # published in every record
            object.__setattr__(self, "url", checked_url(self.url, "the contact's URL", base=False))


def reference_files(pid: str) -> list[str]:
    """What a GTiff batch job of the process's example returns, as the catalogue downloads it: the first example
    date's GeoTIFF and the results' metadata (``download_results(include_stac_metadata=True)``)."""
    level = "L1C" if pid.endswith("l1c") else "L2A"
    if pid in TIMELESS:  # a cube without dates: one file, named without a date
        return ["openEO.tif", "job-results.json"]
    return [f"openEO_{EXAMPLE_DATES[level][0]}Z.tif", "job-results.json"]


def _family(card) -> str:
    return next((name for name in SECONDS_PER_TILE if card.id.startswith(name)), max(SECONDS_PER_TILE,
                                                                                      key=SECONDS_PER_TILE.get))


def record(pid: str, spec: dict, card, publication: Publication, code_url: str, contact: Contact,
           preview: bool) -> dict:
    """An OGC API Records entry for one process, as the catalogue lists services."""
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
        {"rel": "application", "type": "application/vnd.openeo+json;type=process", "title": "openEO process definition",
         "href": process_url},
        {"rel": "service", "type": "application/json", "title": "Copernicus Data Space openEO federation",
         "href": CDSE_FEDERATION},
        {"rel": "platform", "type": "application/json", "title": "CDSE openEO federation", "href": PLATFORM_RECORD},
        {"rel": "provider", "type": "application/json", "title": organization, "href": "../../record.json"},
        {"rel": "code", "type": "text/html", "title": "Source code", "href": code_url},
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
    per_tile, tiles = SECONDS_PER_TILE[_family(card)], tiles_per_chunk(card)
    seconds = per_tile * tiles
    return {
        "id": pid,
        "type": "Feature",
        "conformsTo": ["https://www.opengis.net/spec/ogcapi-records-1/1.0/req/record-core",
                       "https://apex.esa.int/core/openeo-udp"],
        "geometry": None,
        "properties": {
            "created": now, "updated": now, "type": "service",
            "title": spec["summary"], "description": spec["description"],
            "cost_estimate": round(seconds / CHUNK_KM2, 4),
            "cost_unit": (f"CPU-seconds per km² and date of the UDF's own work (network {card.id}; measured "
                          f"{per_tile} s per tile, about {tiles:.1f} tiles per {CHUNK} px chunk); loading the data and "
                          "the backend's work come on top"),
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
                           "acl": {"admin": [f"@{contact.email.rpartition('@')[2]}"] if contact.email else []}},
            "linkTemplates": [], "links": links}


def benchmark_scenario(pid: str, spec: dict, publication: Publication, pixel_tolerance: float = 5.0) -> list[dict]:
    """The catalogue's benchmark scenario of one process: called from its URL with its example extents, against the
    reference made by ``python benchmarks/openeo_reference.py`` and served under ``<process>/reference/``."""
    level = "L1C" if pid.endswith("l1c") else "L2A"
    return [{
        "id": pid,
        "type": "openeo",
        "description": (f"{pid} on its example area ({EXAMPLE_AREAS[level]}), the process called from its URL with "
                        "its example extents. The reference was made by the "
                        "project's own execution of the same process on the same product (benchmarks/"
                        "openeo_reference.py), not yet by Copernicus Data Space."),
        "backend": CDSE_FEDERATION.removeprefix("https://"),
        "process_graph": {"kappamask1": {
            "process_id": pid, "namespace": publication.process_url(pid),
            "arguments": {"spatial_extent": spec_default(spec, "spatial_extent"),
                          "temporal_extent": spec_default(spec, "temporal_extent")},
            "result": True}},
        "reference_data": {name: publication.url(f"{publication.folder(pid)}/{REFERENCE_FOLDER}/{name}")
                           for name in reference_files(pid)},
        # class values either match or not: any difference counts, and up to pixel_tolerance % of pixels may differ
        "reference_options": {"atol": 0.5, "rtol": 0.0, "pixel_tolerance": pixel_tolerance},
    }]


def spec_default(spec: dict, name: str):
    return next(p["default"] for p in spec["parameters"] if p["name"] == name)


def write_preview(path: Path, card) -> bool:
    """A picture of the process's example output where one can be made here: the bundled demo scene (L1C) classified
    with the process's network. False where there is none (L2A: no L2A scene is bundled)."""
    if "L1C" not in card.levels:
        return False
    from kappamask_core import run
    from kappamask_core.io import DEMO_DATA, write_quicklook

    result = run(DEMO_DATA, card)
    write_quicklook(path, result.classes, result.preview, f"example output (T33UUU, 2017-02-16)  model: {card.name}",
                    card.predicts, result.preview_window)
    return True


def publish(outdir: Path, base_url: str, *, model: str = "default", archive_models=None, weights=None,
            onnxruntime: Path | None = None, code_url: str, contact: Contact | None = None,
            organization: str = "kappamask") -> list[Path]:
    """Everything to serve under ``base_url``, in the catalogue's layout (see the module text), written into
    ``outdir`` together or not at all; every argument is checked before anything is built."""
    outdir = Path(outdir)
    if outdir.exists() and not outdir.is_dir():
        raise OutputError(f"{outdir} is a file, not a folder to publish into")
    code_url = checked_url(code_url, "--code-url", schemes=("https",))
    Publication(base_url, organization=organization)  # checks the base URL and the organization id first
    contact = contact or Contact()
    levels = model_levels(model)
    models = list(archive_models or ([model] if model != "default" else
                                     [resolve_card(model, level).id for level in levels]))
    with tempfile.TemporaryDirectory(prefix="kappamask-publish-") as work:
        work = Path(work)
        wheel = Path(onnxruntime) if onnxruntime is not None else onnxruntime_wheel(work / "wheels")
        archive, _, digest = build_archive(work / ARCHIVE_NAME, models, weights, wheel)
        publication = Publication(base_url, digest, organization)
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

