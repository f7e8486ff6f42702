"""STAC Browser in headless Chromium, for the tests that look at the catalogue as a person would.

:func:`build` makes STAC Browser's static site from its npm package, as its docs describe (``npm install`` and
``npm run build``), once per machine in the test cache; :func:`site` copies it into a folder with a runtime
``config.js`` pointing at the tests' STAC API, to be served with :class:`SinglePage` (unknown paths fall back to
``index.html``, as a single-page application needs); :func:`load` opens a page in Debian's ``chromium``,
keeping a screenshot and the rendered DOM. :func:`missing` says what is not installed (``ci/test.sh`` installs
``nodejs``, ``npm`` and ``chromium`` from Debian).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tarfile
import tempfile
from http.server import SimpleHTTPRequestHandler
from pathlib import Path

VERSION = "4.0.1"
# STAC Browser 4.0.1 declares ol-stac ^1.1.0 beside stac-js ~0.1.9, but npm now resolves ol-stac 1.6, which reads
# STAC through the newer stac-js and draws nothing on the map; 1.1.0 is the release built against stac-js 0.1.
OL_STAC = "1.1.0"
CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "kappamask-tests"


def _chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


def missing() -> str | None:
    """Why STAC Browser cannot be built and shown here, or None."""
    for tool in ("node", "npm"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed (apt-get install nodejs npm)"
    if _chromium() is None:
        return "chromium is not installed (apt-get install chromium)"
    return None


def _npm(args: list[str], cwd: Path) -> None:
    done = subprocess.run(["npm", *args, "--no-audit", "--no-fund", "--loglevel=error"], cwd=cwd,
                          capture_output=True, text=True, timeout=1200)
    if done.returncode:
        raise RuntimeError(f"npm {' '.join(args)} failed: {(done.stderr or done.stdout)[-800:]}")


def build() -> Path:
    """STAC Browser's built site (its ``dist`` folder), built on first use into the test cache."""
    home = CACHE / f"stac-browser-{VERSION}"
    dist = home / "dist"
    if (dist / "index.html").is_file() and (home / ".built").is_file():
        return dist
    CACHE.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="stac-browser-", dir=CACHE))
    try:
        _npm(["pack", f"@radiantearth/stac-browser@{VERSION}"], work)
        with tarfile.open(next(work.glob("*.tgz"))) as archive:
            archive.extractall(work, filter="data")
        source = work / "package"
        _npm(["install"], source)
        _npm(["install", "--no-save", f"ol-stac@{OL_STAC}"], source)
        _npm(["run", "build"], source)
        built = work / "built"  # the site alone: the sources and their 400 MB of node_modules go
        built.mkdir()
        (source / "dist").rename(built / "dist")
        (built / ".built").write_text(VERSION)
        shutil.rmtree(home, ignore_errors=True)
        built.rename(home)  # whole or not at all: a half-built site never sits under the cached name
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return dist


def site(dist: Path, folder: Path, config: dict) -> Path:
    """A copy of the built site whose ``config.js`` holds ``config`` (STAC Browser's runtime configuration)."""
    shutil.copytree(dist, folder)
    index = folder / "index.html"
    html = index.read_text()
    if "/config.js" not in html:  # the built page reads a runtime config only where it names the script
        html = html.replace("<head>", '<head><script src="/config.js"></script>', 1)
        index.write_text(html)
    (folder / "config.js").write_text(f"window.STAC_BROWSER_CONFIG = {json.dumps(config)};\n")
    return folder


class SinglePage(SimpleHTTPRequestHandler):
    """A single-page application's files: a path that names no file gets ``index.html`` (the app routes it)."""

    def log_message(self, *args):
        pass

    def send_head(self):
        if not Path(self.translate_path(self.path.split("?")[0])).exists():
            self.path = "/index.html"
        return super().send_head()


def load(url: str, screenshot: Path, width: int = 1280, height: int = 1400, budget_ms: int = 20000) -> str:
    """Open ``url`` in headless Chromium: keep a screenshot, return the rendered DOM.

    Chromium's virtual time budget lets the page run for ``budget_ms`` of page time, which does not pass while
    requests are outstanding, so map tiles that are still loading are waited for.
    """
    # no background connections: on a closed network they are refused, many at a time
    common = [_chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--no-first-run",
              "--disable-extensions", "--disable-quic", "--disable-background-networking", "--disable-sync",
              "--disable-component-update", f"--window-size={width},{height}",
              f"--virtual-time-budget={budget_ms}"]
    with tempfile.TemporaryDirectory(prefix="chromium-") as profile:
        shot = subprocess.run([*common, f"--user-data-dir={profile}", f"--screenshot={screenshot}", url],
                              capture_output=True, text=True, timeout=180)
    if shot.returncode or not screenshot.is_file():
        raise RuntimeError(f"chromium could not take a screenshot of {url}: {shot.stderr[-800:]}")
    with tempfile.TemporaryDirectory(prefix="chromium-") as profile:
        dom = subprocess.run([*common, f"--user-data-dir={profile}", "--dump-dom", url],
                             capture_output=True, text=True, timeout=180)
    if dom.returncode:
        raise RuntimeError(f"chromium could not render {url}: {dom.stderr[-800:]}")
    return dom.stdout
