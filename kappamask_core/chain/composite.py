"""Cloud-free composites over time, one block of pixels at a time: plain numpy on (time, ...) stacks.

A date's pixel counts as clear where its usable mask says so (clear after buffering). ``median`` takes, band by
band, the median of the clear observations; ``best-pixel`` takes, pixel by pixel, one date's values: the clear
observation farthest from the nearest cloud, semi-transparent cloud or shadow of its own date (within
:data:`DISTANCE_STEPS_M`), then the one with the least cloud and shadow scores; where no date is clear, the
observation with the least cloud and shadow scores. Both count the clear observations of each pixel.
"""

from __future__ import annotations

import warnings

import numpy as np

from ..foundation.classes import CLOUD, CLOUD_SHADOW, MISSING, SEMI_TRANSPARENT_CLOUD
from .buffers import usable_mask, within_disk

METHODS = ("median", "best-pixel")
DISTANCE_STEPS_M = (100.0, 200.0, 300.0, 500.0, 1000.0)  # how far the nearest cloud is, in these steps
HALO_M = DISTANCE_STEPS_M[-1]  # a block's neighbourhood for the distances to be exact
NO_DATE = -1  # the date index of a pixel no date has data for


def clear(classes: np.ndarray) -> np.ndarray:
    """(time, y, x) bool: clear after buffering (the usable mask's 1)."""
    return usable_mask(classes) == 1


def cloud_distance(classes: np.ndarray, resolution: float = 10.0) -> np.ndarray:
    """(time, y, x) uint8: for each pixel, how many of :data:`DISTANCE_STEPS_M` fit between it and the nearest
    cloud, semi-transparent cloud or shadow of its date (0: one lies within the first step)."""
    steps = np.zeros(classes.shape, np.uint8)
    for t, date in enumerate(classes):
        cloudy = np.isin(date, (CLOUD, SEMI_TRANSPARENT_CLOUD, CLOUD_SHADOW))
        if not cloudy.any():
            steps[t] = len(DISTANCE_STEPS_M)
            continue
        for metres in DISTANCE_STEPS_M:
            steps[t] += ~within_disk(cloudy, metres / resolution)
    return steps


def median_composite(values: np.ndarray, classes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(bands, y, x) float32 medians of the clear observations (NaN where there is none) and the (y, x) uint16
    count of clear observations, from (time, bands, y, x) values and (time, y, x) classes."""
    usable = clear(classes)
    masked = np.where(usable[:, None], values.astype(np.float32, copy=False), np.nan)
    with warnings.catch_warnings():  # a pixel without a clear observation is NaN, as it should be
        warnings.simplefilter("ignore", RuntimeWarning)
        medians = np.nanmedian(masked, axis=0).astype(np.float32)
    return medians, usable.sum(axis=0).astype(np.uint16)


def best_pixel(values: np.ndarray, classes: np.ndarray, cloudiness: np.ndarray, distance: np.ndarray
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(bands, y, x) float32 values of the chosen date (NaN where no date has data), the (y, x) int16 index of
    that date (:data:`NO_DATE` where none) and the (y, x) uint16 count of clear observations, from (time, bands,
    y, x) values, (time, y, x) classes, cloudiness (the cloud, semi-transparent cloud and shadow scores summed,
    0..1) and :func:`cloud_distance`."""
    usable = clear(classes)
    # clear dates first, the farthest from a cloud among them; then the least cloudy; a date without data never
    score = np.where(usable, 10.0 + distance, 0.0) - np.clip(cloudiness, 0.0, 1.0)
    score = np.where(classes == MISSING, -np.inf, score)
    chosen = np.argmax(score, axis=0)
    found = np.isfinite(np.take_along_axis(score, chosen[None], axis=0)[0])
    picked = np.take_along_axis(values.astype(np.float32, copy=False), chosen[None, None], axis=0)[0]
    picked[:, ~found] = np.nan
    return picked, np.where(found, chosen, NO_DATE).astype(np.int16), usable.sum(axis=0).astype(np.uint16)
