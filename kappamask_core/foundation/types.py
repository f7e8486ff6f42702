"""Names for the kinds of values the public functions take, so that their signatures say what they accept."""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import Any, Union

PathLike = Union[str, "os.PathLike[str]"]  # a file or folder
Bands = Iterable[str]  # band names such as "B02"
# anything kappamask_core.io.open_product reads: a path (SAFE folder or zip, band folder, STAC item), an xarray
# DataArray, a Product, or what a reader plugin takes (a pystac Item): the readers decide, so it is not narrowed
ProductSource = Any
