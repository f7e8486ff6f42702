"""A real STAC API for the tests: stac-fastapi-pgstac on pgstac, in a PostgreSQL (with PostGIS) started here.

:func:`start` makes a throw-away database cluster in a temporary folder, starts PostgreSQL on 127.0.0.1, installs
the pgstac schema with pypgstac, and serves stac-fastapi-pgstac (Transactions and bulk items on) with uvicorn
on another free port; :func:`start_tiler` serves titiler-pgstac on the same database, as eoAPI pairs them.
:func:`missing` says what is not installed (ci/test.sh installs PostgreSQL's PostGIS package from Debian; the
Python packages are in the test extra).
"""

from __future__ import annotations

import glob
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path


def _bin(name: str) -> str | None:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    return found[-1] if found else shutil.which(name)


def missing() -> str | None:
    """Why a STAC API cannot be started here, or None."""
    if _bin("initdb") is None or _bin("pg_ctl") is None:
        return "PostgreSQL is not installed (apt-get install postgresql)"
    version = Path(_bin("initdb")).parent.parent.name
    if not glob.glob(f"/usr/share/postgresql/{version}/extension/postgis.control"):
        return f"PostGIS is not installed for PostgreSQL {version} (apt-get install postgresql-{version}-postgis-3)"
    if os.geteuid() == 0 and shutil.which("runuser") is None:
        return "running as root without runuser: PostgreSQL refuses to run as root"
    for module in ("stac_fastapi.pgstac", "pypgstac", "uvicorn"):
        try:
            __import__(module)
        except ImportError:
            return f"{module} is not installed (pip install '.[test]')"
    return None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _as_postgres(args: list[str]) -> list[str]:
    """PostgreSQL will not run as root: as root, run it as the postgres user."""
    return ["runuser", "-u", "postgres", "--", *args] if os.geteuid() == 0 else args


@dataclass
class Service:
    """A web application served by uvicorn in a process of its own, with its log."""

    url: str
    server: subprocess.Popen
    log: Path

    def requests_to(self, path: str) -> int:
        """How many requests for ``path`` the service has logged so far."""
        return sum(f'"{method} {path}' in line for line in self.log.read_text().splitlines()
                   for method in ("GET", "POST"))

    def stop(self) -> None:
        self.server.terminate()
        try:
            self.server.wait(10)
        except subprocess.TimeoutExpired:
            self.server.kill()


@dataclass
class StacApi(Service):
    dsn: str = ""
    folder: Path = Path()

    def stop(self) -> None:
        super().stop()
        subprocess.run(_as_postgres([_bin("pg_ctl"), "-D", str(self.folder / "data"), "-m", "immediate", "stop"]),
                       capture_output=True, cwd="/")
        shutil.rmtree(self.folder, ignore_errors=True)


def _uvicorn(app: list[str], env: dict, log: Path, probe: str, name: str) -> Service:
    """Start ``app`` with uvicorn on a free port of 127.0.0.1 and wait until ``probe`` answers."""
    port = _free_port()
    server = subprocess.Popen([sys.executable, "-m", "uvicorn", *app, "--host", "127.0.0.1", "--port", str(port)],
                              env={**os.environ, **env}, cwd="/", stdout=log.open("w"), stderr=subprocess.STDOUT)
    service = Service(f"http://127.0.0.1:{port}", server, log)
    deadline = time.monotonic() + 60
    while True:
        try:
            with urllib.request.urlopen(f"{service.url}{probe}", timeout=2):
                return service
        except OSError:
            if server.poll() is not None or time.monotonic() > deadline:
                service.stop()
                raise RuntimeError(f"{name} did not start: {log.read_text()[-800:]}") from None
            time.sleep(0.3)


def start() -> StacApi:
    folder = Path(tempfile.mkdtemp(prefix="kappamask-pgstac-"))
    if os.geteuid() == 0:
        shutil.chown(folder, "postgres")
    data, port = folder / "data", _free_port()
    run = dict(capture_output=True, text=True, cwd="/")
    done = subprocess.run(_as_postgres([_bin("initdb"), "-D", str(data), "-U", "postgres", "--auth=trust", "-E",
                                        "UTF8"]), **run)
    if done.returncode:
        raise RuntimeError(f"initdb failed: {done.stderr[-500:]}")
    options = f"-p {port} -k {folder} -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off"
    done = subprocess.run(_as_postgres([_bin("pg_ctl"), "-D", str(data), "-o", options, "-l", str(folder / "pg.log"),
                                        "-w", "start"]), **run)
    if done.returncode:
        raise RuntimeError(f"PostgreSQL did not start: {done.stderr[-500:]}")
    dsn = f"postgresql://postgres@127.0.0.1:{port}/postgres"
    done = subprocess.run([sys.executable, "-m", "pypgstac.pypgstac", "migrate", "--dsn", dsn], **run)
    if done.returncode:
        raise RuntimeError(f"pypgstac migrate failed: {done.stderr[-500:]}")
    env = {"PGUSER": "postgres", "PGPASSWORD": "unused", "PGHOST": "127.0.0.1", "PGPORT": str(port),
           "PGDATABASE": "postgres", "ENABLE_TRANSACTIONS_EXTENSIONS": "true",
           "STAC_FASTAPI_TITLE": "KappaMask test catalogue",
           "STAC_FASTAPI_DESCRIPTION": "Cloud and cloud-shadow masks published by the tests"}
    try:
        api = _uvicorn(["stac_fastapi.pgstac.app:create_app", "--factory"], env, folder / "api.log", "/_mgmt/ping",
                       "stac-fastapi-pgstac")
    except RuntimeError:
        subprocess.run(_as_postgres([_bin("pg_ctl"), "-D", str(data), "-m", "immediate", "stop"]), **run)
        shutil.rmtree(folder, ignore_errors=True)
        raise
    return StacApi(api.url, api.server, api.log, dsn, folder)


def post(url: str, path: str, body: dict) -> int:
    """POST JSON; the status."""
    request = urllib.request.Request(f"{url}/{path}", data=json.dumps(body).encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code


def start_tiler(api: StacApi) -> Service:
    """titiler-pgstac on the API's pgstac database, with uvicorn on a free port of 127.0.0.1."""
    env = {"DATABASE_URL": api.dsn, "GDAL_DISABLE_READDIR_ON_OPEN": "EMPTY_DIR", "TITILER_PGSTAC_API_DEBUG": "TRUE"}
    return _uvicorn(["titiler.pgstac.main:app"], env, api.folder / "tiler.log", "/healthz", "titiler-pgstac")
