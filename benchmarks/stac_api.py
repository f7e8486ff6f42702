"""Publishing into and searching a real STAC API at scale: time and requests.

    python benchmarks/stac_api.py [--items 1000] [--page-size 100]

Starts the tests' STAC API (stac-fastapi-pgstac on a throw-away PostgreSQL with PostGIS; see
tests/helpers/stac_api_server.py for what must be installed), classifies the bundled demo scene once with the bundled
model, and copies its item N times. Then it measures:

* ``kappamask stac publish`` of the N items (``publish()``): time, requests, and again (an upsert of the same
  items: the catalogue must not change);
* a search over the N items as ``kappamask classify --stac-api`` takes them (``search_items``): the time to the
  first item and the requests made by then (a streaming search asks for one page), and the time and requests
  to go through all of them.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from helpers import stac_api_server  # noqa: E402  (the tests' own server, so the benchmark measures what the tests check)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--items", type=int, default=1000)
    parser.add_argument("--page-size", type=int, default=100)
    args = parser.parse_args()
    reason = stac_api_server.missing()
    if reason:
        print(f"cannot start a STAC API here: {reason}", file=sys.stderr)
        return 2

    from kappamask_stac.publish import publish
    from kappamask_stac.search import search_items

    from kappamask_core.faces.api import classify_to_files
    from kappamask_core.io import DEMO_DATA

    api = stac_api_server.start()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / "out"
            written = classify_to_files([DEMO_DATA], out, model="default")
            item_file = Path(written[0]["stac_item"])
            template = json.loads(item_file.read_text())
            item_file.unlink()
            for i in range(args.items):
                template.update(id=f"mask-{i:05d}")
                (out / f"mask-{i:05d}.json").write_text(json.dumps(template))

            first = publish(out, api.url, collection="bench", href_base="https://example.org/masks/")
            again = publish(out, api.url, collection="bench", href_base="https://example.org/masks/")
            print(f"publish {first.items} items: {first.seconds:.2f} s, {first.requests} requests "
                  f"({'bulk' if first.bulk else 'one by one'}); again (upsert): {again.seconds:.2f} s, "
                  f"{again.requests} requests")

            before = api.requests_to("/search")
            started = time.perf_counter()
            items = search_items(api.url, ["bench"], page_size=args.page_size)
            next(items)
            to_first, requests_first = time.perf_counter() - started, api.requests_to("/search") - before
            count = 1 + sum(1 for _ in items)
            total, requests_all = time.perf_counter() - started, api.requests_to("/search") - before
            print(f"search {count} items, {args.page_size} per page: first item after {to_first:.2f} s and "
                  f"{requests_first} request(s); all after {total:.2f} s and {requests_all} requests "
                  f"({to_first / total:.1%} of the time to go through all)")
    finally:
        api.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
