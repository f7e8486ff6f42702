"""Break the code on purpose, one mutation at a time, and check that the tests named for it fail.

    python tests/mutations.py [--list] [NAME ...]

Each mutation changes one thing a test claims to check (a line of code, a value in a process graph), in a
copy of this checkout (beside a link to ../shared, so the real-data tests run), and runs only the tests that
must catch it. A mutation whose tests still pass is a test that cannot fail: the script lists every outcome
and exits with 1 if any mutation survived. Run it after changing a test or the code it covers.
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parents[1]
# installed import name -> folder of the checkout (pyproject.toml's package-dir)
PACKAGES = {"kappamask_core": "kappamask_core", "kappamask_udf": "udf", "kappamask_stac": "stac_ext"}


@dataclass(frozen=True)
class Mutation:
    name: str
    path: str  # file to change, relative to the checkout
    change: Callable[[str], str]  # the file's text -> the mutated text (must differ)
    tests: tuple[str, ...]  # pytest arguments: the tests that must fail


def replace(old: str, new: str, count: int = 1) -> Callable[[str], str]:
    def change(text: str) -> str:
        if old not in text:
            raise ValueError(f"the text to mutate is not there: {old!r}")
        return text.replace(old, new, count)
    return change


def json_edit(edit: Callable[[dict], None]) -> Callable[[str], str]:
    def change(text: str) -> str:
        data = json.loads(text)
        edit(data)
        return json.dumps(data, indent=2) + "\n"
    return change


def _nodes(graph: dict):
    for node in graph.values():
        yield node
        for value in node["arguments"].values():
            if isinstance(value, dict) and "process_graph" in value:
                yield from _nodes(value["process_graph"])


def graph_node(process_id: str, edit: Callable[[dict], None]) -> Callable[[dict], None]:
    def apply(spec: dict) -> None:
        for node in _nodes(spec["process_graph"]):
            if node["process_id"] == process_id:
                edit(node["arguments"])
    return apply


EXECUTION = ("tests/adapters/test_openeo_execution.py", "-k", "no_arguments or each_output_runs")
MUTATIONS = [
    # issue 18: the openEO tests fail for what a backend refuses
    Mutation("process graph: UDF with a syntax error", "process_graphs/kappamask_l1c.json",
             replace("def apply_datacube(", "def apply_datacube(("), EXECUTION),
    Mutation("process graph: unsupported runtime version", "process_graphs/kappamask_l1c.json",
             replace('"version": "3.11"', '"version": "9.99"'), EXECUTION),
    Mutation("process graph: a band the collection does not have", "process_graphs/kappamask_l1c.json",
             json_edit(graph_node("load_collection", lambda a: a.update(bands=[*a["bands"][:-1], "B13"]))), EXECUTION),
    Mutation("process graph: context dropped", "process_graphs/kappamask_l1c.json",
             json_edit(graph_node("apply_neighborhood", lambda a: a.pop("context"))),
             ("tests/adapters/test_openeo_execution.py", "-k", "drops_the_context or each_output_runs")),
    Mutation("process graph: mask compares the wrong band", "process_graphs/kappamask_mask.json",
             json_edit(graph_node("apply_neighborhood", lambda a: a["context"].pop("output"))),
             ("tests/adapters/test_openeo_execution.py", "-k", "kappamask_mask_masks")),
    Mutation("UDF: archive prepended to sys.path", "udf/kappamask_udf.py",
             replace("sys.path.append(str(folder))", "sys.path.insert(0, str(folder))"),
             ("tests/adapters/test_udf.py", "-k", "never_shadows")),
    # the process graphs embed the UDF: a change to udf/kappamask_udf.py alone fails only the drift test
    Mutation("UDF (as embedded in the graph): buffers not passed on", "process_graphs/kappamask_l1c.json",
             replace('buffers=context.get(\\"buffer\\"),', "buffers=None,"),
             ("tests/adapters/test_openeo_execution.py", "-k", "buffers_are_exact")),
    # issue 22: tests that passed whatever the code did
    Mutation("training: --resume ignored", "kappamask_core/learning/training.py",
             replace("    if resume:\n", "    if False:\n"), ("tests/learning/test_training.py", "-k", "resumed")),
    Mutation("training: optimiser state not restored", "kappamask_core/learning/training.py",
             replace('        self.optimiser.load_state_dict(saved["optimiser"])', "        pass"),
             ("tests/learning/test_training.py", "-k", "resumed")),
    Mutation("training: --from ignored (random start)", "kappamask_core/learning/training_checks.py",
             replace("            networks.load_roles(model, roles)", "            pass"),
             ("tests/learning/test_training.py", "-k", "fine_tuning")),
    Mutation("selection: entropy's sign flipped", "kappamask_core/learning/selection.py",
             replace("entropy = -np.nansum(", "entropy = np.nansum("),
             ("tests/learning/test_selection.py", "-k", "entropy or select")),
    Mutation("pipeline: NaN reaches the model on a 10 m grid", "kappamask_core/chain/strips.py",
             replace("        np.nan_to_num(values, copy=False, nan=0.0, posinf=0.0, neginf=0.0)", "        pass"),
             ("tests/chain/test_missing_values_and_edges.py",)),
    Mutation("resampling: ragged edges padded with zeros", "kappamask_core/chain/resample.py",
             replace('array = np.pad(array, pad, mode="edge")', "array = np.pad(array, pad)"),
             ("tests/chain/test_missing_values_and_edges.py",)),
    Mutation("card: KappaMask v2 L1C maps cloud and semi-transparent cloud the wrong way round",
             "kappamask_core/models/cards/kappamask-v2-l1c.json",
             json_edit(lambda card: [c.update(maps_to={"cloud": "semi_transparent_cloud", "semi_transparent_cloud":
                                                       "cloud"}.get(c["maps_to"], c["maps_to"]))
                                     for c in card["output"]["classes"]]),
             ("tests/models/test_keras_weights.py", "-k", "official_argmax")),
    Mutation("STAC: the core schema left out of validation", "stac_ext/validate.py",
             replace("uris = [CORE[kind]] + extensions", "uris = extensions"), ("tests/adapters/test_stac.py",)),
    Mutation("STAC: 'stac validate' exits 0 for an invalid file", "stac_ext/cli.py",
             replace("return 1 if bad else 0", "return 0"), ("tests/adapters/test_stac.py",)),
    Mutation("CLI: an error over two lines", "kappamask_core/faces/cli/main.py",
             replace("print(f\"kappamask: error: {redaction.redact(' '.join(str(exc).split()))}\"",
                     "print(f\"kappamask: error:\\n{redaction.redact(str(exc))}\""),
             ("tests/faces/test_cli.py",)),
    Mutation("evaluate: overall accuracy over all pixels, excluded ones too", "kappamask_core/learning/evaluate.py",
             replace("return float(np.trace(self.confusion) / self.total) if self.total else np.nan",
                     "return float(np.trace(self.confusion) / (self.total + self.excluded)) if self.total else np.nan"),
             ("tests/learning/test_evaluate.py",)),
    Mutation("quicklook: not cropped to the data", "kappamask_core/foundation/classes.py",
             replace("    bounds = data_bounds(classes)\n    if bounds is None:", "    bounds = None\n    if bounds is None:"),
             ("tests/io/test_writers.py", "-k", "sliver")),
    # issue 17: reduced precision runs only where it was proven
    Mutation("precision: auto takes a variant that failed its check", "kappamask_core/models/variants.py",
             replace("if variant is not None and variant.card.faithful and runnable_here(variant.card):",
                     "if variant is not None and runnable_here(variant.card):"),
             ("tests/models/test_variants.py", "-k", "auto_runs")),
    Mutation("precision: a bf16 variant on a CPU without bfloat16", "kappamask_core/models/variants.py",
             replace("if variant is not None and variant.card.faithful and runnable_here(variant.card):",
                     "if variant is not None and variant.card.faithful:"),
             ("tests/models/test_variants.py", "-k", "bf16_variant_is_checked")),
    # issue 19: the STAC API
    Mutation("STAC search: the whole search listed before the first product", "stac_ext/search.py",
             replace("yield from search.items()", "yield from list(search.items())"),
             ("tests/adapters/test_stac_api.py", "-k", "streams")),
    Mutation("STAC publish: asset hrefs not moved onto --href-base", "stac_ext/publish.py",
             replace('asset["href"] = join_path(href_base, *href.removeprefix("./").split("/"))', "pass"),
             ("tests/adapters/test_stac_api.py", "-k", "search_classify_publish")),
    # issue 28: credentials stay with their host, nothing planted or edited is trusted, one validation
    Mutation("credentials: the session sends them to every origin", "kappamask_core/io/http.py",
             replace("return dict(self.credentials) if origin(url) == self.origin else {}",
                     "return dict(self.credentials)"), ("tests/adapters/test_stac_network.py", "-k", "publish_follows")),
    Mutation("credentials: a write follows a redirect", "kappamask_core/io/http.py",
             replace('if response.status in REDIRECTS and method in ("GET", "HEAD") and',
                     "if response.status in REDIRECTS and"), ("tests/adapters/test_stac_network.py", "-k", "publish_follows")),
    Mutation("credentials: a search sends them to another origin", "stac_ext/search.py",
             replace("if origin(request.url) != api_origin:", "if False:"),
             ("tests/adapters/test_stac_network.py", "-k", "next_link_to_another or redirect_to_another")),
    Mutation("credentials: log lines are not redacted", "kappamask_core/foundation/redaction.py",
             replace("            handler.addFilter(found)", "            pass"), ("tests/adapters/test_stac_network.py", "-k", "vv")),
    Mutation("search: a page that links back is asked for again", "stac_ext/search.py",
             replace("if signature in self.pages:", "if False:"), ("tests/adapters/test_stac_network.py", "-k", "same_page")),
    Mutation("publish: the bulk answer's refusals are not read", "stac_ext/publish.py",
             replace("refused = _bulk_refusals(answer, chunk)", "refused = []"), ("tests/adapters/test_stac_network.py", "-k", "bulk_answer")),
    Mutation("publish: nothing is read back", "stac_ext/publish.py",
             replace("missing = [item_id for item_id in done if item_id not in stored]", "missing = []"),
             ("tests/adapters/test_stac_network.py", "-k", "keeps_nothing")),
    Mutation("UDF: unpacked files are not compared on reuse", "udf/kappamask_udf.py",
             replace("if _listing(folder) != written:", "if False:"), ("tests/adapters/test_udf.py", "-k", "changed_between")),
    Mutation("UDF: entries with '..' are unpacked", "udf/kappamask_udf.py",
             replace(' or ".." in parts', ""), ("tests/adapters/test_udf.py", "-k", "traversal")),
    Mutation("variants: the seal is not checked", "kappamask_core/models/variants.py",
             replace('if variant.get("seal") != seal(card.raw):', "if False:"),
             ("tests/models/test_variants.py", "-k", "look_faithful or resealed")),
    Mutation("variants: decisive fields not compared with the parent's", "kappamask_core/models/variants.py",
             replace("differ = decisive_differences(card, parent, ignore=())", "differ = []"),
             ("tests/models/test_variants.py", "-k", "resealed")),
    Mutation("variants: the card's faithful flag is trusted", "kappamask_core/models/cards.py",
             replace('return not self.variant or check_passes(self.variant.get("check"))',
                     'return not self.variant or bool(self.variant.get("check", {}).get("faithful"))'),
             ("tests/models/test_variants.py", "-k", "look_faithful")),
    Mutation("imported cards: a hand edit is not noticed", "kappamask_core/models/cards.py",
             replace("    if differ or card.id != card_id:", "    if False:"), ("tests/models/test_cards.py", "-k", "imported_card")),
    Mutation("downloads: a cached file is trusted unchecked", "kappamask_core/models/weights.py",
             replace("if target.is_file() and expected and sha256_file(target) == expected:",
                     "if target.is_file():"), ("tests/models/test_weights.py", "-k", "planted_in_the_download_cache")),
    Mutation("readers: a zip member given twice", "kappamask_core/io/safe.py",
             replace("        if info.filename in seen:", "        if False:"), ("tests/io/test_readers.py", "-k", "twice")),
    Mutation("readers: south-up files read as they are", "kappamask_core/io/bandfiles.py",
             replace("flip_y, flip_x = transform.e > 0, transform.a < 0", "flip_y, flip_x = False, False"),
             ("tests/io/test_band_files.py", "-k", "south_up")),
    Mutation("readers: scale and offset tags ignored", "kappamask_core/io/safe.py",
             replace('    merge_scaling(product, *tag_scaling(bands, product.source), "the bands\' scale and offset '
                     'tags")\n', ""), ("tests/io/test_band_files.py", "-k", "scale_and_offset_tags_are_applied")),
    Mutation("readers: 8-bit bands accepted", "kappamask_core/io/product.py",
             replace("and kind.itemsize < 2:", "and kind.itemsize < 1:"), ("tests/io/test_arrays.py", "tests/io/test_band_files.py", "-k", "8_bit")),
    Mutation("pipeline: a pixel is valid where any band has data", "kappamask_core/chain/strips.py",
             replace("if name in exact and invalid.any():", "if name == bands[0] and invalid.any():"),
             ("tests/io/test_band_files.py", "-k", "corner or without_any_data")),
    Mutation("scale: negative DN accepted", "kappamask_core/chain/scale.py",
             replace("    if low < 0:", "    if False:"), ("tests/io/test_band_files.py", "-k", "negative")),
    Mutation("pipeline: any offset accepted", "kappamask_core/chain/job.py",
             replace("OFFSET_RANGE[0] <= offset <= OFFSET_RANGE[1]", "True"), ("tests/adapters/test_udf_context.py", "-k", "implausible_offset")),
    Mutation("STAC reader: an unreadable metadata asset is passed over", "stac_ext/reader.py",
             replace("        except (InputError, OSError) as exc:\n            raise InputError(",
                     "        except (InputError, OSError) as exc:\n            return\n            raise InputError("),
             ("tests/adapters/test_stac_network.py", "-k", "metadata_asset")),
    # issue 26: openEO on Copernicus Data Space, round three
    Mutation("openEO: the scenario's reference lists the GeoTIFF alone", "udf/catalogue.py",
             replace('return [f"openEO_{EXAMPLE_DATES[level][0]}Z.tif", "job-results.json"]',
                     'return [f"openEO_{EXAMPLE_DATES[level][0]}Z.tif"]'), ("tests/adapters/test_openeo_publication.py", "-k", "scenario")),
    Mutation("openEO: the UDF declares onnxruntime inline again", "udf/kappamask_udf.py",
             replace('"""openEO UDF:', '# /// script\n# dependencies = ["onnxruntime"]\n# ///\n"""openEO UDF:'),
             ("tests/adapters/test_udf.py", "-k", "no_inline_dependencies")),
    Mutation("openEO: the archive may come over plain http", "udf/kappamask_udf.py",
             replace('if parts.scheme == "http" and parts.hostname not in LOCAL_HOSTS:', "if False:"),
             ("tests/adapters/test_udf.py", "-k", "not_https")),
    Mutation("openEO: a download without a sha256 is used", "udf/kappamask_udf.py",
             replace('    if not isinstance(sha256, str) or len(sha256) != 64 or any(', '    if False and ('),
             ("tests/adapters/test_udf.py", "-k", "not_https")),
    Mutation("openEO: threads ignore the cgroup quota", "kappamask_core/foundation/machine.py",
             replace("        cores = min(cores, max(1, int(quota)))", "        pass"), ("tests/models/test_runners.py", "-k", "quota")),
    Mutation("openEO: python-memory not sized from the measured peak", "udf/processes.py",
             replace('"python-memory": f"{worker_limit_mib(cards) * workers}m"}',
                     '"python-memory": "3G"}'), ("tests/adapters/test_openeo_publication.py", "-k", "layout")),
    Mutation("openEO: job options merged key by key", "udf/processes.py",
             replace("merged[key] = list(dict.fromkeys([*old, *value]))", "merged[key] = value"),
             ("tests/adapters/test_openeo_dummy_backend.py", "-k", "composition")),
    Mutation("openEO: the offset warning never fires", "kappamask_core/chain/scale.py",
             replace("return bool(lows) and min(lows) >= OFFSET_FLOOR_DN", "return False"),
             ("tests/adapters/test_udf.py", "-k", "offset_is_said")),
    Mutation("openEO: records without the paper to cite", "udf/catalogue.py",
             replace('{"rel": "cite-as", "type": "text/html", "title": KAPPAMASK_PAPER[1], "href": KAPPAMASK_PAPER[0]},',
                     ""), ("tests/adapters/test_openeo_publication.py", "-k", "records")),
    Mutation("openEO: records outside the catalogue's layout", "udf/processes.py",
             replace('return f"algorithm_catalog/{self.organization}/{pid}"', 'return f"records/{pid}"'),
             ("tests/adapters/test_openeo_publication.py", "-k", "records")),
    # issue 25: cubes and composites
    Mutation("cube: a chunk keeps the whole symmetric halo", "kappamask_core/faces/lazycube.py",
             replace("    extra = grid.halo - grid.lead * grid.factor", "    extra = 0"),
             ("tests/faces/test_cube.py", "-k", "sees_its_neighbours")),
    Mutation("cube: inner chunks start their tiles at the model's margin", "kappamask_core/faces/lazycube.py",
             replace("margins = (grid.margin if iy == 0 else 0, grid.margin if ix == 0 else 0)",
                     "margins = (grid.margin, grid.margin)"),
             ("tests/faces/test_cube.py", "-k", "bundled_model or sees_its_neighbours")),
    Mutation("cube: buffers left out of the lazy map", "kappamask_core/faces/lazycube.py",
             replace("    classes = buffered_classes(classes, spec.options.buffers)\n    if spec.output == \"usable\":",
                     "    if spec.output == \"usable\":"),
             ("tests/faces/test_cube.py", "-k", "bundled_model")),
    Mutation("composite: cloudy observations in the median", "kappamask_core/chain/composite.py",
             replace("masked = np.where(usable[:, None], ", "masked = np.where(True, "),
             ("tests/faces/test_composite.py", "-k", "median")),
    Mutation("composite: best-pixel ignores the distance to clouds", "kappamask_core/chain/composite.py",
             replace("np.where(usable, 10.0 + distance, 0.0)", "np.where(usable, 10.0, 0.0)"),
             ("tests/faces/test_composite.py", "-k", "best_pixel")),
    # issue 30: tiles and thumbnails
    Mutation("render: the classes' entry names another asset", "stac_ext/common.py",
             replace('"assets": ["classification"], "resampling": "nearest"', '"assets": ["classes"], "resampling": "nearest"'),
             ("tests/adapters/test_stac_tiles.py", "-k", "items_tiles or mosaic")),
    Mutation("render: a colormap without the class values", "stac_ext/common.py",
             replace('"colormap": {str(c["value"]): f"#{c[\'color_hint\']}" for c in classes if not c.get("nodata")}',
                     '"colormap": {}'),
             ("tests/adapters/test_stac_tiles.py", "-k", "mosaic or items_tiles")),
    Mutation("browser: items link no tiles for maps", "stac_ext/publish.py",
             replace("        if tiler_url:\n            _link_tiles(item, tiler_url, cid)", "        pass"),
             ("tests/adapters/test_stac_tiles.py", "-k", "stac_browser or items_tiles")),
    Mutation("browser: the thumbnail is not an item asset", "stac_ext/writer.py",
             replace('    if paths.get("thumbnail"):', "    if False:"),
             ("tests/adapters/test_stac_tiles.py", "-k", "stac_browser or thumbnail")),
    Mutation("browser: the map's tiles in another palette", "stac_ext/common.py",
             replace('"colormap": {str(c["value"]): f"#{c[\'color_hint\']}"',
                     '"colormap": {str(c["value"]): f"#{c[\'color_hint\'][::-1]}"'),
             ("tests/adapters/test_stac_tiles.py", "-k", "stac_browser")),
    # issue 29: speed
    Mutation("resample: fine columns outside the raster count as data", "kappamask_core/chain/resample.py",
             replace("    cols = _fine_index(col0, width, coarse, width)",
                     "    cols = np.maximum(_fine_index(col0, width, coarse, width), 0)"),
             ("tests/chain/test_scale_and_resample.py", "-k", "bit_for_bit")),
    Mutation("resample: a block counts as holding data only when all of it does", "kappamask_core/chain/resample.py",
             replace("mask.reshape(mask.shape[0] // factor, factor, -1, factor).any(axis=(1, 3))",
                     "mask.reshape(mask.shape[0] // factor, factor, -1, factor).all(axis=(1, 3))"),
             ("tests/chain/test_scale_and_resample.py", "-k", "bit_for_bit")),
    Mutation("preview: the strips leave the colour bands unsampled", "kappamask_core/chain/strips.py",
             replace("        if preview is not None:\n            preview.add(", "        if False:\n            preview.add("),
             ("tests/io/test_writers.py", "-k", "quicklooks_colours")),
    Mutation("preview: rows never read are taken as read", "kappamask_core/chain/preview.py",
             replace("        if not all(self.filled[name][rows].all() for name in RGB_BANDS):", "        if False:"),
             ("tests/io/test_writers.py", "-k", "quicklooks_colours")),
    Mutation("stages: decoding is not timed", "kappamask_core/chain/strips.py",
             replace('        with stages("decode"):\n            return rows[name].read_rows(n0, n1), n0',
                     "        return rows[name].read_rows(n0, n1), n0"),
             ("tests/faces/test_outputs.py", "-k", "stage_by_stage")),
    Mutation("batch: the completion record leaves out the input", "kappamask_core/faces/api.py",
             replace('"input": None if product is None else input_identity(product),', '"input": None,'),
             ("tests/faces/test_reruns.py", "-k", "second_crop")),
    # issue 34: URLs by one rule, no unverified model file, cubes checked like files
    Mutation("urls: a query string kept in a base URL", "kappamask_core/foundation/urls.py",
             replace("    if base and parts.query:", "    if False:"),
             ("tests/adapters/test_stac_network.py", "-k", "tiler_url_that_would or every_url_option")),
    Mutation("urls: credentials kept in a published base URL", "kappamask_core/foundation/urls.py",
             replace("and not credentials:", "and False:"),
             ("tests/adapters/test_openeo_publication.py", "-k", "bad_publication_arguments")),
    Mutation("urls: paths glued, ids not quoted", "kappamask_core/foundation/urls.py",
             replace('(quote(str(segment), safe="") for segment in segments)', "(str(s) for s in segments)"),
             ("tests/adapters/test_stac_network.py", "-k", "built_as_paths")),
    Mutation("urls: the scheme's case matters", "kappamask_core/foundation/urls.py",
             replace("    if scheme not in schemes:", "    if not url.startswith(tuple(s + '://' for s in schemes)):"),
             ("tests/adapters/test_stac_network.py", "-k", "built_as_paths")),
    Mutation("models: a file no card pins runs under KappaMask's name", "kappamask_core/models/weights.py",
             replace("        if card.id in builtin_ids():", "        if False:"),
             ("tests/models/test_resolve.py", "-k", "planted or explicit_weights")),
    Mutation("cubes: axes not checked for order", "kappamask_core/io/array_grid.py",
             replace("    if (diffs > 0).any() and (diffs < 0).any():", "    if False:"),
             ("tests/faces/test_cube_grids.py", "-k", "irregular")),
    Mutation("cubes: pixels not checked for squareness", "kappamask_core/io/array_grid.py",
             replace("        if abs(abs(dx) - abs(dy)) > 0.01 * max(abs(dx), abs(dy)):", "        if False:"),
             ("tests/faces/test_cube_grids.py", "-k", "irregular")),
    Mutation("cubes: a CRS in feet or degrees taken", "kappamask_core/io/array_grid.py",
             replace('    if str(units).lower() not in ("metre", "meter", "m"):', "    if False:"),
             ("tests/faces/test_cube_grids.py", "-k", "irregular")),
    Mutation("cubes: a Dataset's variable attributes dropped", "kappamask_core/io/arrays.py",
             replace("    cube.attrs = {**{k: v for k, v in cube.attrs.items() if k not in VALUE_NAMES}, **attrs}",
                     "    pass"),
             ("tests/faces/test_cube_grids.py", "-k", "dataset_variables_keep")),
    Mutation("cubes: an image's map given made-up coordinates", "kappamask_core/faces/api.py",
             replace("    return like_input(result, source)", "    return result"),
             ("tests/faces/test_cube_grids.py", "-k", "south_up or one_pixel")),
    Mutation("cubes: each lazy chunk decides the units alone", "kappamask_core/faces/lazycube.py",
             replace("values = classify_values(np.asarray(block[0]), spec, peaks=date_peaks,",
                     "values = classify_values(np.asarray(block[0]), spec,"),
             ("tests/faces/test_cube_grids.py", "-k", "units_check")),
    Mutation("cubes: a lazy date's units never checked", "kappamask_core/faces/lazycube.py",
             replace("    values = _checked_by_date(values, data, spec)\n", ""),
             ("tests/faces/test_cube_grids.py", "-k", "reflectance_given")),
    Mutation("cubes: a halo on an axis of one chunk", "kappamask_core/faces/lazycube.py",
             replace("grid.halo if len(chunks[2]) > 1 else 0", "grid.halo"),
             ("tests/faces/test_cube_grids.py", "-k", "one_pixel")),
    # issue 36: Copernicus Data Space's values, memory limit and benchmarks
    Mutation("values: a harmonised 0 taken as missing", "kappamask_core/chain/scale.py",
             replace('    return product.units != "harmonised"', "    return True"),
             ("tests/chain/test_scale_and_resample.py", "-k", "invalid_mask")),
    Mutation("values: harmonised DN refused below 0", "kappamask_core/chain/scale.py",
             replace('floor = 0.0 if product.units == "dn" else HARMONISED_FLOOR - product.offsets.get(band, 0.0)',
                     "floor = 0.0"),
             ("tests/chain/test_scale_and_resample.py", "-k", "lowest_value")),
    Mutation("memory: a refused allocation read as another error", "kappamask_core/foundation/errors.py",
             replace("    return isinstance(exc, MemoryError) or bool(_ALLOCATION_FAILED.search(str(exc)))",
                     "    return isinstance(exc, MemoryError)"),
             ("tests/foundation/test_errors.py", "-k", "allocation")),
    Mutation("benchmark: a recorded reference not named in its scenario", "udf/benchmark.py",
             replace('    recorded["reference_data"] = ', '    recorded["reference_unused"] = '),
             ("tests/adapters/test_openeo_publication.py", "-k", "recorded")),
    # issue 37: cloud statistics per area
    Mutation("stats: a piece's width not carried down its column", "kappamask_core/chain/coverage.py",
             replace("    signed = under + np.cumsum(width_below, axis=0) - width_below", "    signed = under"),
             ("tests/faces/test_stats.py", "-k", "finer")),
    Mutation("stats: the part of an area beyond the map counted as data", "kappamask_core/faces/stats.py",
             replace("min(valid / area_px[i], 1.0) if area_px[i] > 0 else np.nan",
                     "min(valid / max(sums[i, 0], 1e-12), 1.0) if area_px[i] > 0 else np.nan"),
             ("tests/faces/test_stats.py", "-k", "finer")),
    Mutation("stats: a lazy chunk counts only the areas wholly inside it", "kappamask_core/faces/class_maps.py",
             replace("    return r0 < b and a < r1 and c0 < d and c < c1",
                     "    return a <= r0 and r1 <= b and c <= c0 and c1 <= d"),
             ("tests/faces/test_stats.py", "-k", "lazy")),
    Mutation("stats: openEO class shares over every pixel, not the valid ones", "process_graphs/kappamask_stats.json",
             replace('"process_id": "divide"', '"process_id": "multiply"', count=4),
             ("tests/adapters/test_openeo_execution.py", "-k", "statistics")),
    # issue 35: one scene, one map
    Mutation("ground tiles: the first tile that keeps an array's pixels is left out", "kappamask_core/foundation/grid.py",
             replace("first = (lo - kept_to - phase) // self.stride + 1", "first = (lo - kept_to - phase) // self.stride + 2"),
             ("tests/faces/test_one_map.py", "-k", "768x768")),
    Mutation("ground tiles: the tiles anchored at the array, not the ground", "kappamask_core/foundation/grid.py",
             replace("phase = -margin - self.anchor[axis]", "phase = -margin"),
             ("tests/faces/test_one_map.py", "-k", "768x768 or crop")),
    Mutation("ground tiles: 30 m cells start at the array's edge", "kappamask_core/chain/plan.py",
             replace("shift = (0, 0) if anchor is None else (anchor[0] % factor, anchor[1] % factor)",
                     "shift = (0, 0)"),
             ("tests/chain/test_missing_values_and_edges.py", "-k", "grounds_cells")),
    Mutation("ground tiles: a lazy chunk at the cube's edge thinner than a tile's reach", "kappamask_core/foundation/grid.py",
             replace("        edge = max(self.halo, self.reach)", "        edge = self.halo"),
             ("tests/foundation/test_grid.py", "-k", "hand_over")),
    Mutation("ground tiles: pixels without data keep a band's offset", "kappamask_core/chain/strips.py",
             replace("        out[i][values == 0] = 0\n", ""),
             ("tests/faces/test_one_map.py", "-k", "no_data_alike")),
    Mutation("cubes: scores=True gives classes only", "kappamask_core/faces/datacube.py",
             replace('both = output == "classes" and options is not None and options.scores', "both = False"),
             ("tests/faces/test_cube_grids.py", "-k", "scores")),
    Mutation("training: NaN Dice written into the card", "kappamask_core/learning/training.py",
             replace("(None if isinstance(v, float) and not np.isfinite(v) else v)", "v"),
             ("tests/learning/test_training.py", "-k", "absent")),
    Mutation("files: a live run's parts removed", "kappamask_core/io/files.py",
             replace("if _abandoned(path)]", "]"), ("tests/io/test_files.py", "-k", "second_run")),
    Mutation("thumbnail: missing drawn opaque", "kappamask_core/io/writers.py",
             replace("optimize=True, transparency=0)", "optimize=True)"),
             ("tests/io/test_writers.py", "-k", "thumbnail")),
    # issue 35: runners under threads
    Mutation("runners: one OpenVINO infer request shared by every thread", "kappamask_core/models/runners.py",
             replace("request = self._requests.request = self.compiled.create_infer_request()",
                     'request = self._requests.request = self.__dict__.setdefault("_shared", '
                     "self.compiled.create_infer_request())"),
             ("tests/models/test_runners.py", "-k", "many_threads")),
    # issue 38: Landsat and HLS
    Mutation("landsat: level-1 reflectance without the sun's elevation", "kappamask_core/io/landsat.py",
             replace("sun = math.sin(math.radians(elevation))", "sun = 1.0"),
             ("tests/io/test_landsat_hls.py", "-k", "sun_elevation or L1C")),
    Mutation("landsat: QA_RADSAT's saturation bits ignored", "kappamask_core/io/landsat.py",
             replace('"QA_RADSAT": functools.partial(_any_bit, bits=saturated)',
                     '"QA_RADSAT": functools.partial(_any_bit, bits=0)'),
             ("tests/io/test_landsat_hls.py", "-k", "saturation")),
    Mutation("landsat: QA_PIXEL's fill bit ignored", "kappamask_core/io/landsat.py",
             replace('"QA_PIXEL": functools.partial(_any_bit, bits=QA_FILL_BIT)',
                     '"QA_PIXEL": functools.partial(_any_bit, bits=0)'),
             ("tests/io/test_landsat_hls.py", "-k", "saturation")),
    Mutation("sensors: a model runs on a sensor it was not made for", "kappamask_core/models/resolve.py",
             replace("    if sensor not in card.sensors:", "    if False:"),
             ("tests/io/test_landsat_hls.py", "-k", "refused_on_landsat")),
    Mutation("band table: Landsat 8's near infrared read from band 4", "kappamask_core/foundation/bands.py",
             replace('"B4": "B04", "B5": "B08"', '"B5": "B04", "B4": "B08"'),
             ("tests/io/test_landsat_hls.py", "-k", "gives_the_map")),
    Mutation("hls: a 0 read as no data", "kappamask_core/io/landsat.py",
             replace("band.nan_missing = True", "band.nan_missing = False"),
             ("tests/io/test_landsat_hls.py", "-k", "hls_granule")),
    Mutation("hls: Fmask's fill ignored", "kappamask_core/io/landsat.py",
             replace("return fmask == HLS_FILL", "return fmask == 254"),
             ("tests/io/test_landsat_hls.py", "-k", "hls_granule")),
    Mutation("cubes: a 30 m cube's buffers counted in 10 m pixels", "kappamask_core/faces/lazycube.py",
             replace("classes = buffered_classes(classes, spec.options.buffers, spec.pixel_size)",
                     "classes = buffered_classes(classes, spec.options.buffers, 10.0)"),
             ("tests/io/test_landsat_hls.py", "-k", "lazy_landsat")),
    Mutation("cubes: stackstac's corner coordinates taken as centres", "kappamask_core/io/array_grid.py",
             replace('    if at_corner(float(da["x"].values[0]), c, a) and at_corner(float(da["y"].values[0]), f, e):',
                     "    if False:"),
             ("tests/io/test_landsat_hls.py", "-k", "stackstac")),
    Mutation("agreement: QA_PIXEL's cloud bit read as shadow", "kappamask_core/foundation/schemes.py",
             replace("((3, CLOUD), (4, CLOUD_SHADOW)", "((3, CLOUD_SHADOW), (4, CLOUD)"),
             ("tests/io/test_landsat_hls.py", "-k", "agreement")),
]


def checkout_files() -> list[str]:
    listed = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=ROOT, capture_output=True,
                            text=True, check=True).stdout.splitlines()
    return [f for f in listed if (ROOT / f).is_file()]


def prepare(workspace: Path) -> Path:
    """A copy of the checkout in ``workspace``/main, ../shared beside it, and import names pointing into it."""
    copy = workspace / "main"
    for name in checkout_files():
        target = copy / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, target)
    shared = ROOT.parent / "shared"
    if shared.exists():
        (workspace / "shared").symlink_to(shared)
    shim = workspace / "shim"
    shim.mkdir()
    for name, folder in PACKAGES.items():
        (shim / name).symlink_to(copy / folder)
    return copy


def pytest_in(copy: Path, shim: Path, tests) -> tuple[bool, float, str]:
    """Run ``tests`` in ``copy``; (failed, seconds, the first failure or the summary)."""
    env = {**os.environ, "PYTHONPATH": str(shim), "PYTHONDONTWRITEBYTECODE": "1"}
    started = time.perf_counter()
    listed = shim.parent / "tests.txt"  # node ids can outgrow a command line: pytest reads them from @file
    listed.write_text("\n".join(tests) + "\n")
    proc = subprocess.run([sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", f"@{listed}"],
                          cwd=copy, env=env, capture_output=True, text=True, timeout=3600)
    lines = [line for line in proc.stdout.splitlines() if line.startswith(("FAILED", "ERROR"))]
    return proc.returncode != 0, time.perf_counter() - started, (lines[0] if lines else proc.stdout.strip()[-200:])


def collect(copy: Path, shim: Path, files) -> list[str]:
    """The node ids of every test in ``files``, collected once."""
    env = {**os.environ, "PYTHONPATH": str(shim), "PYTHONDONTWRITEBYTECODE": "1"}
    proc = subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider", *files],
                          cwd=copy, env=env, capture_output=True, text=True, timeout=600)
    nodes = [line for line in proc.stdout.splitlines() if "::" in line]
    if proc.returncode != 0 or not nodes:
        raise SystemExit(f"the tests cannot be collected: {proc.stdout[-500:]}{proc.stderr[-500:]}")
    return nodes


def selected(nodes: list[str], tests: tuple[str, ...]) -> list[str]:
    """The node ids that ``pytest TESTS`` runs: its files, filtered by its ``-k`` expression (pytest's own parser;
    a name matches a node when it is part of the node's test or file name, in any case, as -k matches)."""
    from _pytest.mark.expression import Expression

    files, expression, args = [], None, list(tests)
    while args:
        arg = args.pop(0)
        if arg == "-k":
            expression = Expression.compile(args.pop(0))
        else:
            files.append(arg)
    chosen = []
    for node in nodes:
        path, _, name = node.partition("::")
        if path not in files:
            continue
        words = f"{Path(path).stem} {name}".lower()
        if expression is None or expression.evaluate(lambda word, **_: word.lower() in words):
            chosen.append(node)
    if not chosen:
        raise SystemExit(f"no test is selected by {' '.join(tests)}")
    return chosen


def run(mutation: Mutation, copy: Path, shim: Path, nodes: list[str]) -> tuple[bool, float, str]:
    """Apply ``mutation`` in ``copy``, run its tests, restore the file; True when the tests failed."""
    path = copy / mutation.path
    original = path.read_text()
    mutated = mutation.change(original)
    if mutated == original:
        raise ValueError(f"{mutation.name}: the mutation changes nothing")
    path.write_text(mutated)
    try:
        return pytest_in(copy, shim, nodes)
    finally:
        path.write_text(original)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("names", nargs="*", help="run only the mutations whose name contains one of these")
    parser.add_argument("--list", action="store_true", help="list the mutations and the tests that must catch them")
    parser.add_argument("--jobs", type=int, default=2,
                        help="mutations judged at once, each in a copy of its own (default: %(default)s)")
    args = parser.parse_args(argv)
    chosen = [m for m in MUTATIONS if not args.names or any(n in m.name for n in args.names)]
    if args.list:
        for m in chosen:
            print(f"{m.name}\n    {m.path} -> {' '.join(m.tests)}")
        return 0
    survived = []
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="kappamask-mutations-") as tmp:
        workspaces = [prepare(Path(tmp) / f"copy{i}") for i in range(max(1, args.jobs))]
        copy, shim = workspaces[0], workspaces[0].parent / "shim"
        files = list(dict.fromkeys(arg for m in chosen for i, arg in enumerate(m.tests)
                                   if not arg.startswith("-") and (i == 0 or m.tests[i - 1] != "-k")))
        nodes = collect(copy, shim, files)
        chosen_nodes = {m.name: selected(nodes, m.tests) for m in chosen}
        # a test that fails without any mutation would 'catch' every mutation: the unmutated code must pass first,
        # every selected test once, in one run
        union = list(dict.fromkeys(node for m in chosen for node in chosen_nodes[m.name]))
        failed, seconds, detail = pytest_in(copy, shim, union)
        print(f"{'FAILS   ' if failed else 'passes  '} unmutated: {len(union)} tests ({seconds:.0f} s)", flush=True)
        if failed:
            print(f"    {detail}\nthe unmutated code fails these tests: no mutation can be judged", flush=True)
            return 2
        free: queue.Queue = queue.Queue()
        for workspace in workspaces:
            free.put(workspace)

        def judge(mutation: Mutation):
            workspace = free.get()
            try:
                return run(mutation, workspace, workspace.parent / "shim", chosen_nodes[mutation.name])
            finally:
                free.put(workspace)

        with ThreadPoolExecutor(max_workers=len(workspaces)) as pool:
            for mutation, (caught, seconds, detail) in zip(chosen, pool.map(judge, chosen)):
                print(f"{'caught  ' if caught else 'SURVIVED'} {mutation.name} ({seconds:.0f} s)\n    {detail}",
                      flush=True)
                if not caught:
                    survived.append(mutation.name)
    print(f"\n{len(chosen) - len(survived)} of {len(chosen)} mutations caught in {time.perf_counter() - started:.0f} s")
    return 1 if survived else 0


if __name__ == "__main__":
    sys.exit(main())
