"""Training data: labelled sub-tiles (KappaSet netCDF, or image / label GeoTIFF pairs), split by product, read
through a declared class scheme and scaled by the card's own scaling (the same code as inference), in batches that
never leave one sub-tile alone, with random flips and rotations."""

from __future__ import annotations

import hashlib
import random
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..chain.scale import apply_value_scaling
from ..foundation.classes import CLASS_BY_NAME, CLASSES, MISSING
from ..foundation.errors import InputError, TrainingError
from ..foundation.schemes import SCHEMES, UNDEFINED, to_classes
from ..io.files import sha256_file
from .kappaset import read_label, read_subtile

TRAINED_CLASSES = tuple(c.name for c in CLASSES if c.value != MISSING)  # clear, shadow, semi-transparent, cloud
IGNORE = -1  # target value of pixels left out of the loss


@dataclass(frozen=True)
class SubTile:
    image: Path  # .nc sub-tile or image .tif
    label: Path | None  # the label .tif of an image; None for .nc (the label is inside)
    product: str

    @property
    def name(self) -> str:
        return self.image.stem


def product_of(name: str) -> str:
    """The product a sub-tile belongs to: its file name without the trailing sub-tile number."""
    stem = Path(name).stem
    return re.sub(r"([_-](tile|subtile|patch))?[_-]?\d+$", "", stem) or stem


def find_subtiles(folder) -> list[SubTile]:
    """KappaSet .nc sub-tiles in ``folder``, or image / label GeoTIFF pairs in ``folder/images`` and ``labels``."""
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(f"{folder}: no such folder of training sub-tiles")
    found = [SubTile(p, None, product_of(p.name)) for p in sorted(folder.glob("*.nc"))]
    images, labels = folder / "images", folder / "labels"
    if images.is_dir():
        for image in sorted(images.glob("*.tif")):
            label = labels / image.name
            if not label.is_file():
                raise InputError(f"{image}: no label {label}")
            found.append(SubTile(image, label, product_of(image.name)))
    if not found:
        raise InputError(f"{folder}: no training sub-tiles (KappaSet *.nc, or images/*.tif with labels/*.tif)")
    return found


def split_by_product(subtiles, fraction: float = 0.2, seed: int = 0) -> tuple[list[SubTile], list[SubTile]]:
    """(training, validation): whole products on each side, about ``fraction`` of the products for validation."""
    products = sorted({s.product for s in subtiles})
    if len(products) < 2:
        raise TrainingError(f"the sub-tiles come from one product ({products[0]}); validation needs sub-tiles of "
                            "another product, so that neighbouring sub-tiles are never on both sides")
    random.Random(seed).shuffle(products)
    n_val = min(len(products) - 1, max(1, round(len(products) * fraction)))
    validation = set(products[:n_val])
    return ([s for s in subtiles if s.product not in validation], [s for s in subtiles if s.product in validation])


def targets_of(card) -> np.ndarray:
    """A 256-entry table: five-class value -> the network output channel to learn, or IGNORE."""
    table = np.full(256, IGNORE, np.int64)
    for channel in sorted(card.outputs, key=lambda c: c.index, reverse=True):
        if channel.maps_to in TRAINED_CLASSES:
            table[CLASS_BY_NAME[channel.maps_to].value] = channel.index
    return table


def load_sample(sub: SubTile, card, scheme: str) -> tuple[np.ndarray, np.ndarray]:
    """(scaled input (bands, H, W) float32, target (H, W) int64 with IGNORE for missing and undefined)."""

    if sub.label is None:
        image, label = read_subtile(sub.image, card), read_label(sub.image)
    else:
        import rasterio

        try:
            with rasterio.open(sub.image) as ds:
                dn = ds.read().astype(np.float32)
            with rasterio.open(sub.label) as ds:
                label = ds.read(1)
        except Exception as exc:
            raise InputError(f"cannot read training pair {sub.image}: {exc}") from None
        if dn.shape[0] != len(card.bands):
            raise InputError(f"{sub.image} has {dn.shape[0]} bands; model {card.id} takes {len(card.bands)} "
                             f"({', '.join(card.bands)})")
        divisor = 65535.0 if card.units == "dn_fraction" else 10000.0
        image = apply_value_scaling(dn / np.float32(divisor), card.value_scaling, card.clip_min)
    if image.shape[1:] != label.shape:
        raise InputError(f"{sub.image}: the image is {image.shape[1]} x {image.shape[2]} px but its label "
                         f"{label.shape[0]} x {label.shape[1]}")
    outside = sorted(set(np.unique(label).tolist()) - set(SCHEMES[scheme]))
    if outside:
        raise InputError(f"{sub.label or sub.image}: label values {outside[:8]} are outside the class scheme "
                         f"{scheme!r} ({sorted(SCHEMES[scheme])})")
    classes = to_classes(label, scheme)
    classes[classes == UNDEFINED] = MISSING
    return np.ascontiguousarray(image, np.float32), targets_of(card)[classes]


def training_set_digest(subtiles) -> str:
    """A hash of the training data: every file's name and sha256."""

    digest = hashlib.sha256()
    for sub in sorted(subtiles, key=lambda s: s.image.name):
        for path in filter(None, (sub.image, sub.label)):
            digest.update(f"{path.name}:{sha256_file(path)}\n".encode())
    return digest.hexdigest()


def batches(count: int, size: int) -> list[range]:
    """Index ranges of ``size`` items; a last batch of one item joins the one before it.

    Batch normalisation in training mode needs two values per channel: KappaMask v2's image-pooling branch
    normalises one value per sub-tile, so a batch of one sub-tile cannot train.
    """
    starts = list(range(0, count, size))
    bounds = [(a, min(a + size, count)) for a in starts]
    if len(bounds) > 1 and bounds[-1][1] - bounds[-1][0] == 1:
        bounds[-2:] = [(bounds[-2][0], count)]
    return [range(a, b) for a, b in bounds]


def augment(x, y, generator):
    """Random flips and 90 degree rotations, the same for the image and its target."""
    import torch

    k = int(torch.randint(0, 4, (1,), generator=generator))
    flip = bool(torch.randint(0, 2, (1,), generator=generator))
    x, y = torch.rot90(x, k, dims=(-2, -1)), torch.rot90(y, k, dims=(-2, -1))
    if flip:
        x, y = torch.flip(x, dims=(-1,)), torch.flip(y, dims=(-1,))
    return x, y


class Samples:
    """Samples loaded once and kept in memory while small enough, else read for every batch."""

    def __init__(self, subtiles, card, scheme, keep_mib: int = 2048):
        self.subtiles, self.card, self.scheme = subtiles, card, scheme
        self.cache: dict[int, tuple] = {}
        self.keep = keep_mib * 2**20

    def __len__(self):
        return len(self.subtiles)

    def __getitem__(self, i):
        if i in self.cache:
            return self.cache[i]
        sample = load_sample(self.subtiles[i], self.card, self.scheme)
        if sum(a.nbytes + b.nbytes for a, b in self.cache.values()) < self.keep:
            self.cache[i] = sample
        return sample
