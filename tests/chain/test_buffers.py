"""Buffered masks and the usable-pixel mask (hand-made maps), resumable batches, and Dask clusters."""

from __future__ import annotations

import numpy as np
import pytest

from kappamask_core import InputError
from kappamask_core.chain.buffers import buffer_classes, parse_buffers, usable_mask
from kappamask_core.foundation.classes import CLEAR, CLOUD, CLOUD_SHADOW, MISSING, SEMI_TRANSPARENT_CLOUD


def disk(shape, centre, radius):
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    return (yy - centre[0]) ** 2 + (xx - centre[1]) ** 2 <= radius**2


def test_a_buffer_is_a_disk_of_the_given_metres():
    classes = np.full((41, 41), CLEAR, np.uint8)
    classes[20, 20] = CLOUD
    out = buffer_classes(classes, "cloud=70", resolution=10)
    np.testing.assert_array_equal(out == CLOUD, disk(classes.shape, (20, 20), 7))
    assert (buffer_classes(classes, {"cloud": 0}) == classes).all()


def test_within_disk_equals_brute_force_euclidean_distance():
    """Random sources, sizes and radii (integer, fractional, wider than the map) against every pair of pixels."""
    from kappamask_core.chain.buffers import within_disk

    rng = np.random.default_rng(11)
    for _ in range(150):
        h, w = (int(v) for v in rng.integers(1, 40, 2))
        source = rng.random((h, w)) < rng.choice([0.002, 0.02, 0.1, 0.5])
        radius = float(rng.choice([1, 1.5, 2, 2.5, 3, 4.99, 5, 7.07, 12.3, 45]))
        yy, xx = np.mgrid[:h, :w]
        sy, sx = np.nonzero(source)
        d2 = (yy[..., None] - sy) ** 2 + (xx[..., None] - sx) ** 2
        expected = (d2 <= radius**2).any(axis=-1) if len(sy) else np.zeros((h, w), bool)
        np.testing.assert_array_equal(within_disk(source, radius), expected, err_msg=f"{h}x{w}, radius {radius}")


def test_buffers_never_cover_missing_pixels_or_a_stronger_class():
    classes = np.full((30, 30), CLEAR, np.uint8)
    classes[10, 10] = CLOUD
    classes[10, 12] = CLOUD_SHADOW  # within the cloud's buffer: becomes cloud
    classes[10, 14] = MISSING  # within both buffers: stays missing
    classes[20, 10] = CLOUD_SHADOW
    classes[20, 13] = CLOUD  # within the shadow's buffer: stays cloud
    classes[20, 7] = SEMI_TRANSPARENT_CLOUD  # within the shadow's buffer: stays semi-transparent
    out = buffer_classes(classes, "cloud=50,shadow=40")
    assert out[10, 12] == CLOUD and out[10, 14] == MISSING
    assert out[20, 13] == CLOUD and out[20, 7] == SEMI_TRANSPARENT_CLOUD
    assert out[20, 6] == CLOUD_SHADOW and out[20, 5] == CLEAR  # 4 px and 5 px from the shadow, 7 and 8 from the cloud
    # the shadow grows from the unbuffered map: pixels the cloud buffer turned into cloud do not grow shadow
    assert (out == MISSING).sum() == 1


def test_row_blocks_give_the_same_map_as_one_block(monkeypatch):
    import kappamask_core.chain.buffers as buffers

    rng = np.random.default_rng(3)
    classes = rng.choice([CLEAR, CLOUD, CLOUD_SHADOW, SEMI_TRANSPARENT_CLOUD, MISSING], p=[.9, .03, .03, .02, .02],
                         size=(97, 61)).astype(np.uint8)
    whole = buffer_classes(classes, "cloud=40,semi_transparent_cloud=20,shadow=30")
    monkeypatch.setattr(buffers, "BLOCK_ROWS", 7)
    np.testing.assert_array_equal(buffer_classes(classes, "cloud=40,semi_transparent_cloud=20,shadow=30"), whole)


@pytest.mark.parametrize("spec,message", [("cloud=abc", "distance in metres"), ("sky=10", "cannot buffer 'sky'"),
                                          ("cloud=-5", "distance from 0 to 5000 m"), ("cloud300", "CLASS=METRES")])
def test_bad_buffer_specifications(spec, message):
    with pytest.raises(InputError, match=message):
        parse_buffers(spec)


def test_usable_mask_values():
    classes = np.array([[MISSING, CLEAR, CLOUD_SHADOW], [SEMI_TRANSPARENT_CLOUD, CLOUD, CLEAR]], np.uint8)
    np.testing.assert_array_equal(usable_mask(classes), [[255, 1, 0], [0, 0, 1]])
