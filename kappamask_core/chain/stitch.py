"""Stitch tile scores back into a raster, one tile row at a time.

The stitcher keeps a buffer only one tile high: after each tile row it hands
back the rows no later tile can touch, so memory does not grow with the
product. The same weighted accumulation serves KappaMask's centre-crop mosaic
and smooth blending; only the weights differ (see :func:`grid.axis_weights`).
"""

from __future__ import annotations

import numpy as np

from ..foundation.grid import TileLayout, axis_weights


class RowStitcher:
    def __init__(self, layout: TileLayout, channels: int, mode: str = "crop"):
        self.layout = layout
        self.mode = mode
        t = layout.tile
        left, right = layout.col_padding()
        self._x_pad = left  # buffer column = raster column + left padding
        width = left + layout.width + right
        self._sum = np.zeros((channels, t, width), dtype=np.float32)
        self._weight = np.zeros((t, width), dtype=np.float32)
        self._row_starts = layout.row_starts()
        self._col_starts = layout.col_starts()
        self._row = 0
        last_col = len(self._col_starts) - 1
        # the ground's tiles have no edge tiles: each keeps only its own part
        self._edges = edges = not layout.grounded
        self._col_w = [axis_weights(t, layout.overlap, edges and i == 0, edges and i == last_col, mode)
                       for i in range(last_col + 1)]

    def add(self, col: int, scores: np.ndarray | None) -> None:
        """Add one tile of the current tile row; ``scores`` is (channels, tile, tile).

        ``None`` marks a tile that was skipped (no valid input): it adds
        weight but no score, so its pixels come out as zeros.
        """
        rows = len(self._row_starts)
        wy = axis_weights(self.layout.tile, self.layout.overlap, self._edges and self._row == 0,
                          self._edges and self._row == rows - 1, self.mode)
        w = wy[:, None] * self._col_w[col][None, :]
        x0 = self._col_starts[col] + self._x_pad
        t = self.layout.tile
        if scores is not None:
            self._sum[:, :, x0 : x0 + t] += scores * w
        self._weight[:, x0 : x0 + t] += w

    def finish_row(self) -> tuple[int, np.ndarray]:
        """Close the current tile row; return (first raster row, final scores).

        The scores cover the raster rows that later tile rows cannot change,
        cropped to the raster, as (channels, n, width); n may be 0.
        """
        r = self._row
        y0 = self._row_starts[r]
        last = r == len(self._row_starts) - 1
        end = min(y0 + (self.layout.tile if last else self.layout.stride), self.layout.height)
        skip = max(0, -y0)  # buffer rows above the raster (margin)
        first = y0 + skip
        n = max(0, end - first)
        cols = slice(self._x_pad, self._x_pad + self.layout.width)
        weight = self._weight[skip : skip + n, cols]
        out = np.divide(
            self._sum[:, skip : skip + n, cols], weight[None],
            out=np.zeros((self._sum.shape[0], n, self.layout.width), np.float32), where=weight[None] > 0,
        )
        s = self.layout.stride
        self._sum[:, :-s] = self._sum[:, s:]
        self._sum[:, -s:] = 0
        self._weight[:-s] = self._weight[s:]
        self._weight[-s:] = 0
        self._row += 1
        return first, out


def stitch_array(array: np.ndarray, layout: TileLayout, fn, mode: str = "crop", pad_mode: str = "constant"):
    """Run ``fn`` over the tiles of a (channels, height, width) array and stitch.

    A plain in-memory helper (tests, small arrays); the pipeline streams
    instead. ``fn`` maps (n, c, tile, tile) to (n, k, tile, tile).
    """
    c, h, w = array.shape
    t, m, mx = layout.tile, layout.row_padding()[0], layout.col_padding()[0]
    # pad_mode is one of numpy's modes (the card schema's enum); numpy's stubs want it as a literal
    padded = np.pad(array, ((0, 0), layout.row_padding(), layout.col_padding()), mode=pad_mode)  # type: ignore[call-overload]
    stitcher: RowStitcher | None = None
    result: np.ndarray | None = None
    for y0 in layout.row_starts():
        batch = np.stack([padded[:, y0 + m : y0 + m + t, x0 + mx : x0 + mx + t] for x0 in layout.col_starts()])
        scores = fn(batch)
        if stitcher is None or result is None:
            stitcher = RowStitcher(layout, scores.shape[1], mode)
            result = np.zeros((scores.shape[1], h, w), np.float32)
        for i, tile_scores in enumerate(scores):
            stitcher.add(i, tile_scores)
        start, rows = stitcher.finish_row()
        result[:, start : start + rows.shape[1]] = rows
    return result
