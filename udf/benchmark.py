"""``kappamask openeo benchmark``: the published processes' benchmark scenarios run on a real openEO backend.

A scenario's reference data must be what the backend returns, never a stand-in: :func:`run_scenario` runs the
scenario as the catalogue's benchmark does (a batch job of its process graph and job options, its results
downloaded with their metadata, ``job-results.json``), :func:`compare` checks them against the scenario's
reference with the catalogue's own comparison, and :func:`record` makes them the reference: it writes them into
the process's ``reference/`` folder of a publication and names them in the scenario, all together or not at all.
A maintainer records once per release, on the backend the scenario names (Copernicus Data Space); until then a
scenario carries no reference, and the catalogue's benchmark checks only that the job succeeds.
"""

import json
import shutil
import tempfile
from pathlib import Path
from urllib.parse import urlsplit

from kappamask_core.foundation import InputError, KappaMaskError, checked_url
from kappamask_core.io import atomic_files

REFERENCE_FOLDER = "reference"
LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")  # where a login may go over plain http (tests, a local backend)
METADATA_FILE = "job-results.json"  # what download_files(include_stac_metadata=True) writes beside the files
# class values either match or not: any difference counts, and up to PIXEL_TOLERANCE % of the pixels may differ
# (a backend's chunk grid cannot move the map: one scene, one map; its software versions can, a little)
REFERENCE_OPTIONS = {"atol": 0.5, "rtol": 0.0, "pixel_tolerance": 1.0}


class BackendError(KappaMaskError, RuntimeError):
    """The backend refused the job, or the job failed there."""


def scenarios(published: Path) -> list[tuple[Path, dict]]:
    """(scenario file, scenario) of every process in a publication, in the catalogue's layout."""
    found = []
    for path in sorted(Path(published).glob("algorithm_catalog/*/*/benchmark_scenarios/*.json")):
        try:
            entries = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise InputError(f"{path}: not a benchmark scenario file ({exc})") from None
        if not isinstance(entries, list) or len(entries) != 1 or not isinstance(entries[0], dict):
            raise InputError(f"{path}: a scenario file holds a list of one scenario")
        found.append((path, entries[0]))
    if not found:
        raise InputError(f"{published}: no benchmark scenarios (algorithm_catalog/<organization>/<process>/"
                         "benchmark_scenarios/<process>.json); give the folder 'kappamask openeo build --base-url' "
                         "wrote")
    return found


def run_scenario(scenario: dict, connection, outdir: Path, log=print) -> Path:
    """The scenario run as a batch job on ``connection`` (its process graph and job options), its results and
    their metadata downloaded into ``outdir`` as the catalogue's benchmark downloads them."""
    try:
        job = connection.create_job(scenario["process_graph"], title=f"kappamask benchmark {scenario['id']}",
                                    additional=scenario.get("job_options") or None)
        log(f"{scenario['id']}: job {job.job_id} created; running")
        job.start_and_wait(print=lambda *a, **k: None)
        results = job.get_results()
        outdir.mkdir(parents=True, exist_ok=True)
        results.download_files(outdir, include_stac_metadata=True)
    except KappaMaskError:
        raise
    except Exception as exc:  # the client's own errors: an HTTP refusal, a failed job
        text = " ".join(str(exc).split())[:400]
        raise BackendError(f"{scenario['id']}: the backend's job failed: {text}") from None
    if not (outdir / METADATA_FILE).is_file():
        raise BackendError(f"{scenario['id']}: the job's results came without {METADATA_FILE}")
    return outdir


def compare(scenario: dict, results: Path, reference: Path) -> None:
    """The catalogue's comparison of a run's results with the scenario's reference (AssertionError if they
    differ beyond the scenario's reference options)."""
    from openeo.testing.results import assert_job_results_allclose

    assert_job_results_allclose(results, reference, **scenario.get("reference_options", REFERENCE_OPTIONS))


def reference(path: Path, scenario: dict, outdir: Path) -> Path:
    """The scenario's reference files: from the publication's own ``reference/`` folder beside the scenario where
    it holds them (what is served), else downloaded from the scenario's URLs into ``outdir``."""
    names = list(scenario["reference_data"])
    if any(Path(name).name != name for name in names):
        raise InputError(f"{scenario['id']}: its reference data name {names}; each must be a file name")
    local = path.parents[1] / REFERENCE_FOLDER
    if all((local / name).is_file() for name in names) and {p.name for p in local.iterdir()} == set(names):
        return local
    import requests

    outdir.mkdir(parents=True, exist_ok=True)
    for name, url in scenario["reference_data"].items():
        url = checked_url(url, f"the reference {name}", schemes=("https",))
        with requests.get(url, timeout=60, stream=True) as answer:
            answer.raise_for_status()
            with open(outdir / name, "wb") as out:
                shutil.copyfileobj(answer.raw, out)
    return outdir


def base_url(scenario: dict) -> str:
    """The publication's base URL, from the scenario's process namespace (``<base>/algorithm_catalog/...``)."""
    (node,) = scenario["process_graph"].values()
    namespace = str(node.get("namespace", ""))
    base, found, _ = namespace.partition("/algorithm_catalog/")
    if not found:
        raise InputError(f"{scenario['id']}: its process namespace {namespace!r} is not in a publication's layout")
    return base


def record(path: Path, scenario: dict, results: Path, backend: str) -> list[Path]:
    """The run's results as the scenario's reference: copied into ``<process>/reference/`` beside the scenario
    and named in it (URLs under the publication's base URL), with the backend and the date said in its
    description. Written all together or not at all."""
    from datetime import datetime, timezone

    folder = path.parents[1] / REFERENCE_FOLDER
    files = sorted(p for p in results.iterdir() if p.is_file())
    if not any(p.suffix.lower() in (".tif", ".tiff", ".nc") for p in files):
        raise BackendError(f"{scenario['id']}: the job returned no GeoTIFF or netCDF file to take as reference")
    relative = path.parents[1].relative_to(path.parents[3].parent)  # algorithm_catalog/<org>/<process>
    base = base_url(scenario)
    when = datetime.now(timezone.utc).strftime("%Y-%m-%d")
    recorded = dict(scenario)
    recorded["reference_data"] = {p.name: f"{base}/{relative.as_posix()}/{REFERENCE_FOLDER}/{p.name}" for p in files}
    recorded["reference_options"] = scenario.get("reference_options", REFERENCE_OPTIONS)
    described = scenario.get("description", "")
    for earlier in (" No reference yet", " Reference:"):  # what an unrecorded or earlier scenario says of it
        described = described.split(earlier)[0]
    recorded["description"] = (described + f" Reference: the results of this scenario's job on {backend}, recorded on {when} "
                               "with 'kappamask openeo benchmark --record'.")
    finals = [folder / p.name for p in files] + [path]
    stale = [p for p in folder.glob("*") if p.is_file() and p.name not in {f.name for f in files}] \
        if folder.is_dir() else []
    with atomic_files(*finals) as temps:
        for temp, source in zip(temps, files):
            shutil.copyfile(source, temp)
        Path(temps[-1]).write_text(json.dumps([recorded], indent=2) + "\n")
    for old in stale:  # an earlier reference's files that this one does not have
        old.unlink()
    return finals


def connect(url: str, auth: str, user: str | None):
    """A connection to the backend at ``url``: OpenID Connect (the client's own device flow and refresh tokens), basic
    authentication (the password from KAPPAMASK_OPENEO_PASSWORD, sent only to this backend) or none."""
    import os

    import openeo

    url = checked_url(url, "--backend", schemes=("https", "http"))
    parts = urlsplit(url)
    if auth != "none" and parts.scheme == "http" and parts.hostname not in LOCAL_HOSTS:
        raise InputError(f"--backend {url}: a login goes over https only (plain http only to this machine); "
                         "give the https URL, or --auth none")
    connection = openeo.connect(url)
    if auth == "oidc":
        connection.authenticate_oidc()
    elif auth == "basic":
        password = os.environ.get("KAPPAMASK_OPENEO_PASSWORD")
        if not user or not password:
            raise InputError("--auth basic needs --user and the password in the environment variable "
                             "KAPPAMASK_OPENEO_PASSWORD (never on the command line)")
        connection.authenticate_basic(user, password)
    return connection


def benchmark(published: Path, *, backend: str | None, processes=None, record_reference: bool = False,
              auth: str = "oidc", user: str | None = None, log=print) -> int:
    """Run the scenarios of a publication; compare each with its reference, or record it as the reference.
    Returns the number of scenarios whose results differ from their reference."""
    chosen = [(p, s) for p, s in scenarios(published) if not processes or s["id"] in processes]
    unknown = set(processes or ()) - {s["id"] for _, s in chosen}
    if unknown:
        raise InputError(f"no scenario for process(es) {', '.join(sorted(unknown))} in {published}")
    differing = 0
    connections: dict = {}
    for path, scenario in chosen:
        url = backend or ("https://" + scenario["backend"].removeprefix("https://"))
        if url not in connections:
            connections[url] = connect(url, auth, user)
        with tempfile.TemporaryDirectory(prefix="kappamask-benchmark-") as work:
            results = run_scenario(scenario, connections[url], Path(work) / "results", log)
            if record_reference:
                for written in record(path, scenario, results, url):
                    log(str(written))
                continue
            if "reference_data" not in scenario:
                log(f"{scenario['id']}: the job succeeded; the scenario has no reference yet (record one with "
                    "--record)")
                continue
            try:
                compare(scenario, results, reference(path, scenario, Path(work) / "reference"))
                log(f"{scenario['id']}: the results match the reference")
            except AssertionError as exc:
                differing += 1
                log(f"{scenario['id']}: the results differ from the reference: {' '.join(str(exc).split())[:600]}")
    return differing

