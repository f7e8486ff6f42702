"""KappaMask's official weights: import from Keras HDF5, exactness against the official Keras outputs,
download on demand (against a local server), and what 'auto' gives a user.

The golden fixture (../shared/data/kappamask_keras_golden) holds official-format files with RANDOM,
untrained weights and the official Keras networks' outputs on two real tiles; see its README."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from helpers import GOLDEN, GOLDEN_FILES, TOLERANCE, fail, leftovers, need, official_input, readme_maxima, session
from helpers import GOLDEN_FILES as FILES

from kappamask_core.faces.cli import main
from kappamask_core.foundation.errors import ModelError

MIN_ARGMAX_AGREEMENT = 0.999


# The official network's six outputs, in km_predict's order, as five-class values (stated here, not read from the
# card, so that a card that maps them wrongly fails): UNDEFINED and MISSING -> 0 missing, CLEAR -> 1,
# CLOUD_SHADOW -> 2, SEMI_TRANSPARENT_CLOUD -> 3, CLOUD -> 4
OFFICIAL_OUTPUTS_AS_FIVE_CLASSES = np.array([0, 1, 2, 3, 4, 0], np.uint8)


def _keras_file(path: Path, layers: list[tuple[str, list[tuple[int, ...]]]]):
    """A Keras-2-format HDF5 file with the given layers (zero weights, allocated lazily)."""
    import h5py

    with h5py.File(path, "w") as f:
        f.attrs["layer_names"] = [name.encode() for name, _ in layers]
        f.attrs["keras_version"] = b"2.4.0"
        for name, shapes in layers:
            group = f.create_group(name)
            weight_names = [f"{name}/w{i}:0" for i in range(len(shapes))]
            group.attrs["weight_names"] = [w.encode() for w in weight_names]
            for w, shape in zip(weight_names, shapes):
                group.create_dataset(w, shape=shape, dtype="f4")
    return path


@pytest.mark.parametrize("version", ["v2", "v1"])
def test_imported_network_reproduces_the_official_keras_outputs(imported, golden, version):
    onnx_path, card_path = imported[version]
    x = official_input(golden["dn"], version).astype(np.float32)
    out = session(onnx_path).run(None, {"input": x})[0].transpose(0, 2, 3, 1)  # NCHW -> Keras' NHWC
    expected = golden[f"p_{version}"]
    diff = float(np.abs(out - expected).max())
    agreement = float((out.argmax(-1) == expected.argmax(-1)).mean())
    print(f"KappaMask {version} (RANDOM weights) imported vs official Keras, 2 tiles: max abs difference "
          f"{diff:.2e}, argmax agreement {100 * agreement:.4f} %")
    assert diff <= TOLERANCE[version]
    assert agreement >= MIN_ARGMAX_AGREEMENT


@pytest.mark.parametrize("version", ["v2", "v1"])
def test_cards_and_the_product_scaling_reproduce_the_official_network_input(imported, golden, version):
    import xarray as xr

    from kappamask_core.chain.scale import apply_value_scaling
    from kappamask_core.chain.strips import open_rows, working_rows
    from kappamask_core.io import from_dataarray
    from kappamask_core.models.cards import load_card

    card = load_card(imported[version][1])
    assert list(card.bands) == [str(b) for b in golden["bands"]]
    np.testing.assert_array_equal([s["maximum"] for s in card.value_scaling], readme_maxima(version))
    for tile in range(2):
        cube = xr.DataArray(golden["dn"][tile], dims=("bands", "y", "x"), coords={"bands": list(golden["bands"])})
        product = from_dataarray(cube, level="L1C")
        with open_rows(product, card.bands) as rows:
            stack, _ = working_rows(product, rows, card.bands, card.units, 1, 0, 512, "bilinear")
        ours = apply_value_scaling(stack, card.value_scaling, card.clip_min)
        np.testing.assert_allclose(ours, official_input(golden["dn"][tile : tile + 1], version)[0], rtol=2e-7,
                                   atol=1e-12)


def test_classify_with_the_imported_v2_reproduces_the_official_argmax(imported, golden):
    """The whole product chain (read, scale, tile, infer, stitch, class table) on a 512 px tile."""
    import xarray as xr

    from kappamask_core import classify

    for tile in range(2):
        cube = xr.DataArray(golden["dn"][tile], dims=("bands", "y", "x"), coords={"bands": list(golden["bands"])})
        classes = classify(cube, str(imported["v2"][1]), level="L1C").values
        expected = OFFICIAL_OUTPUTS_AS_FIVE_CLASSES[golden["p_v2"][tile].argmax(-1)]
        expected[(golden["dn"][tile] == 0).all(axis=0)] = 0
        agreement = float((classes == expected).mean())
        print(f"tile {tile}: five-class map equal to the official network's argmax on {100 * agreement:.4f} %")
        assert agreement >= MIN_ARGMAX_AGREEMENT


def test_models_verify_on_kappaset_subtiles_made_from_the_golden_tiles(imported, golden, tmp_path, capsys):
    import xarray as xr

    card_path = imported["v2"][1]
    for tile in range(2):
        ds = xr.Dataset({str(b): (("y", "x"), golden["dn"][tile, i].astype(np.float32) / 65535)
                         for i, b in enumerate(golden["bands"])})
        ds["KML1C"] = (("y", "x"), golden["p_v2"][tile].argmax(-1).astype(np.uint8))
        ds.to_netcdf(tmp_path / f"T00XXX_golden_{tile}.nc", engine="h5netcdf")
    assert main(["models", "verify", str(card_path), "--subtiles", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    shares = [float(s) for s in re.findall(r"([\d.]+) % of pixels equal", out)]
    print(out)
    assert len(shares) == 2 and min(shares) >= 99.9

    with xr.open_dataset(tmp_path / "T00XXX_golden_0.nc", engine="h5netcdf") as ds:
        damaged = ds.load()
    damaged["KML1C"] = (("y", "x"), np.roll(damaged["KML1C"].values, 7, axis=0))
    damaged.to_netcdf(tmp_path / "T00XXX_golden_0.nc", engine="h5netcdf")
    assert main(["models", "verify", str(card_path), "--subtiles", str(tmp_path)]) == 2
    captured = capsys.readouterr()
    assert "DIFFERS T00XXX_golden_0.nc" in captured.out and "1 of 2 sub-tiles" in captured.err


def test_import_detects_architecture_and_level_and_marks_untrained_files(imported):
    from kappamask_core.models.cards import load_card

    for version, (onnx_path, card_path) in imported.items():
        card = load_card(card_path)
        assert card.id == f"kappamask-{version}-l1c" and card.levels == ("L1C",)
        assert not card.trained and "UNTRAINED" in card.name and "UNTRAINED" in card.description
        assert card.provenance["weights_source"]["file"] == FILES[version]
        assert card.weights["path"] == onnx_path.name and len(card.weights["sha256"]) == 64


def test_import_command_prints_both_paths_and_writes_into_the_weights_folder(tmp_path, monkeypatch, capsys):
    from kappamask_core.models.resolve import resolve_card

    folder = tmp_path / "weights"
    monkeypatch.setenv("KAPPAMASK_WEIGHTS_DIR", str(folder))
    assert main(["models", "import", str(need(GOLDEN) / FILES["v2"]), "--untrained"]) == 0
    lines = capsys.readouterr().out.split()
    assert lines == [str(folder / "kappamask_v2_l1c.onnx"), str(folder / "kappamask-v2-l1c.json")]
    card = resolve_card("kappamask-v2", "L1C")  # the alias now finds the imported card
    assert card.source == lines[1] and not card.trained
    assert main(["models", "list"]) == 0
    assert re.search(r"kappamask-v2-l1c .* ready, UNTRAINED ", capsys.readouterr().out)  # imported --untrained


def test_v1_level_comes_from_the_file_name_or_the_option(tmp_path, capsys):
    anonymous = tmp_path / "unet_weights.hdf5"
    anonymous.symlink_to(need(GOLDEN) / FILES["v1"])
    code = main(["models", "import", str(anonymous), "-o", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 2 and "pass --level" in err and "13" in err
    named = tmp_path / "l2a_unet.hdf5"  # the official name of the v1 L2A file
    named.symlink_to(need(GOLDEN) / FILES["v1"])
    assert main(["models", "import", str(named), "-o", str(tmp_path / "out"), "--untrained"]) == 0
    card = json.loads((tmp_path / "out" / "kappamask-v1-l2a.json").read_text())
    assert card["levels"] == ["L2A"] and "B07" not in card["input"]["bands"]


def test_level_that_contradicts_the_file_is_refused(capsys, tmp_path):
    code = main(["models", "import", str(need(GOLDEN) / FILES["v2"]), "--level", "L2A", "-o", str(tmp_path)])
    assert code == 2 and "13 input features, which is L1C, not L2A" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_full_model_save_imports_like_weights_only(imported, tmp_path):
    import h5py
    import onnx
    from onnx import numpy_helper

    from kappamask_core.models.weights import import_keras

    full = tmp_path / "full_model.hdf5"
    with h5py.File(need(GOLDEN) / FILES["v1"], "r") as src, h5py.File(full, "w") as dst:
        dst.attrs["model_config"] = "{}"
        group = dst.create_group("model_weights")
        for key, value in src.attrs.items():
            group.attrs[key] = value
        for name in src:
            src.copy(src[name], group, name=name)
    onnx_path, _ = import_keras(full, level="L1C", outdir=tmp_path / "out", trained=False)
    ours = {t.name: numpy_helper.to_array(t) for t in onnx.load(str(onnx_path)).graph.initializer}
    reference = {t.name: numpy_helper.to_array(t) for t in onnx.load(str(imported["v1"][0])).graph.initializer}
    assert ours.keys() == reference.keys() and all(np.array_equal(ours[k], reference[k]) for k in ours)


def test_damaged_or_foreign_files_get_one_clear_error_each(tmp_path):
    import h5py

    from kappamask_core.models.keras_weights import v1_layout
    from kappamask_core.models.weights import import_keras

    def error(path, **kw):
        with pytest.raises(ModelError) as info:
            import_keras(path, outdir=tmp_path / "out", **kw)
        return str(info.value)

    text = tmp_path / "weights.hdf5"
    text.write_text("<html>404 Not Found</html>")
    assert "is not an HDF5 file" in error(text)
    keras3 = tmp_path / "model.weights.h5"
    with h5py.File(keras3, "w") as f:
        f.create_group("layers")
    assert "not a Keras 2 weights file" in error(keras3) and "Keras 3" in error(keras3)
    dense = _keras_file(tmp_path / "dense.hdf5", [("dense", [(10, 5), (5,)])])
    assert "not a convolution" in error(dense)
    other = _keras_file(tmp_path / "resnet.hdf5", [("conv2d", [(7, 7, 13, 64)]), ("conv2d_1", [(3, 3, 64, 64)])])
    message = error(other)
    assert "is not a KappaMask network file" in message and "2 layers with weights" in message
    layout = [(f"conv2d_{i}", s.keras_shapes()) for i, s in enumerate(v1_layout(13))]
    layout[5] = (layout[5][0], [(3, 3, 128, 99), (99,)])
    wrong = _keras_file(tmp_path / "l1c_unet.hdf5", layout)
    message = error(wrong, arch="kappamask-v1")
    assert "layer 6 ('conv2d_5')" in message and "(3, 3, 128, 99)" in message and "down2.conv2" in message
    truncated = tmp_path / "l1c_deeplabv3plus.hdf5"
    with open(need(GOLDEN) / FILES["v2"], "rb") as src:
        truncated.write_bytes(src.read(5_000_000))
    assert "cannot read Keras weights" in error(truncated) or "not an HDF5" in error(truncated)
    assert not (tmp_path / "out").exists() or list((tmp_path / "out").iterdir()) == []


def test_importing_weights_with_nan_is_refused(tmp_path, capsys):
    import h5py

    damaged = tmp_path / "l1c_deeplabv3plus.hdf5"
    shutil.copy(need(GOLDEN) / GOLDEN_FILES["v2"], damaged)
    with h5py.File(damaged, "r+") as f:
        names = []
        f.visit(lambda n: names.append(n) if isinstance(f[n], h5py.Dataset) and "kernel" in n else None)
        data = f[names[3]][()]
        data.flat[0] = np.nan
        f[names[3]][...] = data
    line = fail(capsys, "import", damaged, "-o", tmp_path / "out", "--untrained", command="models")
    assert "NaN or infinite" in line and not leftovers(tmp_path / "out")
