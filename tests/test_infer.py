"""ONNX Runtime runner options that a GPU uses, checked on the CPU: I/O binding, fp16, providers."""

import numpy as np
import pytest

from kappamask_core.models.cards import load_card
from kappamask_core.foundation.errors import ModelError
from kappamask_core.chain.infer import OnnxRunner, choose_providers
from kappamask_core.models.resolve import Model

from conftest import identity_card, identity_onnx

BANDS = ("B02", "B03", "B04", "B08")


@pytest.fixture
def identity(tmp_path):
    identity_onnx(tmp_path / "identity.onnx", 4)
    card = load_card(identity_card(tmp_path / "card.json", BANDS, ("clear", "cloud", "cloud_shadow", "cloud")))
    return tmp_path / "identity.onnx", card


def test_io_binding_gives_the_same_scores(identity):
    path, card = identity
    x = np.random.default_rng(0).random((3, 4, 16, 16), dtype=np.float32)
    plain = OnnxRunner(Model(card, path), "cpu", batch_size=2).run(x)
    bound = OnnxRunner(Model(card, path), "cpu", batch_size=2, io_binding=True).run(x)
    np.testing.assert_array_equal(plain, bound)
    np.testing.assert_array_equal(plain, x)


def test_fp16_keeps_float32_inputs_and_outputs(identity):
    path, card = identity
    runner = OnnxRunner(Model(card, path), "cpu", fp16=True)
    assert runner.session.get_inputs()[0].type == "tensor(float)"
    x = np.random.default_rng(1).random((1, 4, 16, 16), dtype=np.float32)
    out = runner.run(x)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, x, rtol=1e-3)


def test_providers():
    assert choose_providers("cpu") == ["CPUExecutionProvider"]
    assert choose_providers("auto")[-1] == "CPUExecutionProvider"
    import onnxruntime as ort

    if "CUDAExecutionProvider" not in ort.get_available_providers():
        with pytest.raises(ModelError, match="gpu"):
            choose_providers("cuda")
    with pytest.raises(ModelError, match="unknown device"):
        choose_providers("tpu")


def test_weights_from_a_url_are_downloaded_cached_and_checksummed(identity, tmp_path, monkeypatch):
    import json
    import threading
    from functools import partial
    from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

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
