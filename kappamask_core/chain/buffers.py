"""Buffers around clouds and cloud shadows, and the usable-pixel mask, on the 10 m class map.

A buffer grows a class by a distance in metres, as a disk (Euclidean distance,
exact at the map's resolution), after stitching. The growth starts from the
class's pixels in the unbuffered map, and a buffer only takes pixels of classes
below it in the order cloud > semi-transparent cloud > cloud shadow > clear: a
cloud buffer may cover shadow, a shadow buffer never covers cloud, and no
buffer ever covers missing pixels. The map is processed in row blocks with a
halo of the buffer's radius, so memory stays bounded on a full product.
"""

from __future__ import annotations

import math
import time

import numpy as np

from ..foundation.classes import (
    CLASS_BY_NAME,
    CLEAR,
    CLOUD,
    CLOUD_SHADOW,
    MISSING,
    NOT_USABLE,
    SEMI_TRANSPARENT_CLOUD,
    USABLE,
    USABLE_MISSING,
)
from ..foundation.errors import InputError
from ..foundation.machine import available_cores

# strongest first: a class's buffer may only take pixels of the classes after it (and clear)
ORDER = (CLOUD, SEMI_TRANSPARENT_CLOUD, CLOUD_SHADOW)
NAMES = {"cloud": CLOUD, "semi_transparent_cloud": SEMI_TRANSPARENT_CLOUD, "cloud_shadow": CLOUD_SHADOW,
         "shadow": CLOUD_SHADOW, "thin": SEMI_TRANSPARENT_CLOUD, "semi_transparent": SEMI_TRANSPARENT_CLOUD}
BLOCK_ROWS = 1024

MAX_BUFFER_M = 5000.0  # wider than any cloud's shadow reach; a larger radius is a typo, and would take hours


def parse_buffers(spec) -> tuple[tuple[str, float], ...]:
    """'cloud=300,shadow=100' or {'cloud': 300} -> (('cloud', 300.0), ('cloud_shadow', 100.0)); empty for None."""
    if spec is None or spec == "" or spec == {} or spec == ():
        return ()
    if isinstance(spec, str):
        pairs = []
        for part in spec.split(","):
            name, sep, value = part.partition("=")
            if not sep:
                raise InputError(f"a buffer is CLASS=METRES, e.g. cloud=300,shadow=100; not {part.strip()!r}")
            pairs.append((name, value))
    elif isinstance(spec, dict):
        pairs = list(spec.items())
    else:
        pairs = list(spec)
    out: dict[str, float] = {}
    for name, value in pairs:
        key = str(name).strip().lower()
        if key not in NAMES:
            raise InputError(f"cannot buffer {name!r}; buffer cloud, semi_transparent_cloud or cloud_shadow (shadow)")
        try:
            metres = float(value)
        except (TypeError, ValueError):
            raise InputError(f"the buffer of {key} must be a distance in metres, not {value!r}") from None
        if not math.isfinite(metres) or metres < 0 or metres > MAX_BUFFER_M:
            raise InputError(f"the buffer of {key} must be a distance from 0 to {MAX_BUFFER_M:g} m, not {value!r}")
        canonical = next(n for n, v in CLASS_BY_NAME.items() if v.value == NAMES[key])
        if canonical in out:
            raise InputError(f"the buffer of {canonical} is given twice ({out[canonical]:g} and {metres:g} m); give it "
                             "once")
        out[canonical] = metres
    return tuple(sorted(out.items()))


def reach_px(buffers, resolution: float = 10.0) -> int:
    """Pixels the widest of ``buffers`` reaches: how far beyond a chunk its classes must be known (0 for none)."""
    return int(np.ceil(max(metres for _, metres in buffers) / resolution)) if buffers else 0


def buffer_classes(classes: np.ndarray, buffers, resolution: float = 10.0) -> np.ndarray:
    """A copy of ``classes`` with each named class grown by its buffer in metres (see the module text).

    Row blocks run on all cores (NumPy releases the GIL on whole-array work); each block writes its own rows.
    """
    from concurrent.futures import ThreadPoolExecutor

    wanted = {CLASS_BY_NAME[name].value: metres for name, metres in parse_buffers(buffers)}
    out = classes.copy()
    height = classes.shape[0]
    for value in ORDER:
        radius = wanted.get(value, 0.0) / resolution
        if radius < 1:  # no other pixel centre is that near
            continue
        halo = math.floor(radius)
        takes = np.zeros(256, bool)  # lookup: which classes this buffer may overwrite
        takes[[CLEAR, *ORDER[ORDER.index(value) + 1:]]] = True

        def grow(row, value=value, radius=radius, halo=halo, takes=takes):
            lo, hi = max(0, row - halo), min(height, row + BLOCK_ROWS + halo)
            source = classes[lo:hi] == value
            if not source.any():
                return
            near = within_disk(source, radius)[row - lo : row - lo + BLOCK_ROWS]
            target = out[row : row + BLOCK_ROWS]
            target[near & takes[target]] = value

        with ThreadPoolExecutor(max_workers=available_cores()) as pool:
            list(pool.map(grow, range(0, height, BLOCK_ROWS)))
    return out


def within_disk(source: np.ndarray, radius: float) -> np.ndarray:
    """Pixels whose centre lies within ``radius`` pixels (Euclidean) of a ``source`` pixel's centre.

    Separable and exact: first each pixel's distance to the nearest source in its own column (capped just above
    the radius), then, for every column offset dx, the pixels whose column dx away has a source within
    sqrt(radius^2 - dx^2) rows. The cost grows with the radius, but for buffers up to a few kilometres it is
    several times cheaper in time and memory than a full Euclidean distance transform.
    """
    height, width = source.shape
    reach = math.floor(radius)
    column = np.full(source.shape, reach + 1, np.uint16)  # rows to the nearest source in the column
    column[source] = 0
    for y in range(1, height):
        np.minimum(column[y], column[y - 1] + 1, out=column[y])
    for y in range(height - 2, -1, -1):
        np.minimum(column[y], column[y + 1] + 1, out=column[y])
    near = column == 0
    for dx in range(0, min(reach, width - 1) + 1):
        rows = math.isqrt(math.floor(radius * radius - dx * dx))  # the largest integer dy with dx^2 + dy^2 <= r^2
        hit = column <= rows
        near[:, : width - dx] |= hit[:, dx:]  # a source dx columns to the right
        near[:, dx:] |= hit[:, : width - dx]  # and to the left
    return near


def usable_mask(classes: np.ndarray) -> np.ndarray:
    """1 where the (buffered) map is clear, 0 where it is not, 255 where it is missing."""
    mask = np.full(classes.shape, NOT_USABLE, np.uint8)  # uint8 throughout: a full product is 120 MB per copy
    mask[classes == CLEAR] = USABLE
    mask[classes == MISSING] = USABLE_MISSING
    return mask


def buffered(classes: np.ndarray, buffers, grid) -> tuple[np.ndarray, float]:
    """``classes`` with ``buffers`` grown on ``grid`` (unchanged without buffers), and the seconds it took."""
    if not buffers:
        return classes, 0.0
    started = time.perf_counter()
    return buffer_classes(classes, buffers, grid.resolution), time.perf_counter() - started
