"""ONNX Runtime runner options that a GPU uses, checked on the CPU: I/O binding, fp16, providers."""

from __future__ import annotations

import numpy as np
import pytest
import rasterio
from helpers import conv3x3_onnx, fail, identity_card, identity_onnx, leftovers

from kappamask_core.faces.cli import main
from kappamask_core.foundation.errors import ModelError
from kappamask_core.models.resolve import Model
from kappamask_core.models.runners import OnnxRunner, choose_providers

BANDS = ("B02", "B03", "B04", "B08")


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


def test_threads_follow_the_cgroup_quota_and_the_affinity(tmp_path, monkeypatch):
    """On a large node a small executor's share is what its cgroup allows, not os.cpu_count()."""
    import os

    from kappamask_core.foundation.machine import available_cores

    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(64)))  # a 64-core node
    (tmp_path / "cpu.max").write_text("200000 100000\n")  # cgroup v2: 2 cores
    assert available_cores(str(tmp_path)) == 2
    (tmp_path / "cpu.max").write_text("150000 100000\n")  # 1.5 cores: rounded down, at least 1
    assert available_cores(str(tmp_path)) == 1
    (tmp_path / "cpu.max").write_text("max 100000\n")  # no quota: the affinity
    assert available_cores(str(tmp_path)) == 64
    (tmp_path / "cpu.max").unlink()
    (tmp_path / "cpu").mkdir()
    (tmp_path / "cpu" / "cpu.cfs_quota_us").write_text("400000\n")  # cgroup v1: 4 cores
    (tmp_path / "cpu" / "cpu.cfs_period_us").write_text("100000\n")
    assert available_cores(str(tmp_path)) == 4
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1})  # pinned to 2 CPUs under a 4-core quota
    assert available_cores(str(tmp_path)) == 2


def test_a_runner_takes_the_threads_the_process_may_use(monkeypatch, tmp_path):
    from helpers import identity_card

    from kappamask_core.models import runners as infer
    from kappamask_core.models.resolve import resolve_model

    identity_onnx(tmp_path / "identity.onnx", 2)
    card = identity_card(tmp_path / "identity.json", ["B02", "B03"], ["clear", "cloud"])
    monkeypatch.setattr(infer, "available_cores", lambda: 3)
    runner = infer.open_runner(resolve_model(str(card)), "cpu")
    assert runner.session.get_session_options().intra_op_num_threads == 3
    runner = infer.open_runner(resolve_model(str(card)), "cpu", threads=1)
    assert runner.session.get_session_options().intra_op_num_threads == 1


def test_fp16_of_a_model_that_is_already_float16_is_one_line(band_folder, tmp_path, capsys):
    """The bundled networks ship in float16: converting them again is refused, in one line (the converter's own
    message has a line break)."""
    line = fail(capsys, band_folder, "-o", tmp_path / "out", "--model", "default", "--fp16", "--device", "cpu")
    assert "--fp16" in line and "float16" in line and leftovers(tmp_path / "out") == []


def test_fp16_runs_a_float32_model_and_keeps_its_classes(band_folder, tmp_path):
    """A float32 network runs in float16 (inputs and outputs stay float32) and gives the float32 run's map."""
    from helpers import conv3x3_onnx

    bands = ("B02", "B03", "B04", "B08")
    conv3x3_onnx(tmp_path / "conv.onnx", 4)
    card = identity_card(tmp_path / "card.json", bands, ("clear", "cloud_shadow", "semi_transparent_cloud", "cloud"),
                         tile=64, overlap=8, weights="conv.onnx", levels=("L1C",))
    maps = {}
    for name, extra in (("fp32", []), ("fp16", ["--fp16"])):
        out = tmp_path / name
        assert main(["classify", str(band_folder), "-o", str(out), "--model", str(card), "--device", "cpu",
                     "--no-progress", *extra]) == 0
        with rasterio.open(next(out.glob("*.tif"))) as ds:
            maps[name] = ds.read(1)
    agreement = float((maps["fp16"] == maps["fp32"]).mean())
    print(f"fp16 map equal to the fp32 map on {100 * agreement:.3f} % of pixels")
    assert (maps["fp32"] > 0).all() and agreement > 0.999


def test_a_network_that_returns_nan_is_an_error_not_a_missing_map(band_folder, tmp_path, capsys):
    import onnx
    from onnx import numpy_helper

    conv3x3_onnx(tmp_path / "conv.onnx", 3)
    model = onnx.load(str(tmp_path / "conv.onnx"))
    kernel = numpy_helper.to_array(model.graph.initializer[0]).copy()
    kernel[1, 0, 1, 1] = np.nan
    model.graph.initializer[0].CopyFrom(numpy_helper.from_array(kernel, "kernel"))
    onnx.save(model, str(tmp_path / "conv.onnx"))
    card = identity_card(tmp_path / "conv.json", ["B02", "B08", "B11"], ["cloud", "clear", "cloud_shadow"], tile=64,
                         weights="conv.onnx")
    line = fail(capsys, band_folder, "-o", tmp_path / "out", "--model", card)
    assert "NaN or infinite scores" in line and not leftovers(tmp_path / "out")


def test_every_runner_can_be_called_from_many_threads_at_once(tmp_path):
    """Dask's threaded scheduler runs tasks of one worker in threads that share the process's runner: ONNX
    Runtime's session and OpenVINO's compiled model (one infer request per thread) give each call its own
    answer. A shared OpenVINO request raised 'Infer Request is busy' under two threads."""
    from concurrent.futures import ThreadPoolExecutor

    from helpers import require

    from kappamask_core.models.cards import load_card
    from kappamask_core.models.runners import OpenVinoRunner

    conv3x3_onnx(tmp_path / "conv.onnx", 4)
    card = load_card(identity_card(tmp_path / "card.json", BANDS, ("clear", "cloud", "cloud_shadow", "cloud"),
                                   tile=64, overlap=8, weights="conv.onnx"))
    model = Model(card, tmp_path / "conv.onnx")
    batches = [np.random.default_rng(i).random((1, 4, 64, 64), dtype=np.float32) for i in range(48)]
    runners = [OnnxRunner(model, "cpu", threads=1)]
    require("openvino")
    runners.append(OpenVinoRunner(model, "cpu", threads=1))
    for runner in runners:
        alone = [runner.run(b) for b in batches]
        with ThreadPoolExecutor(max_workers=8) as pool:
            together = list(pool.map(runner.run, batches))
        for a, b in zip(alone, together):
            np.testing.assert_array_equal(a, b)
