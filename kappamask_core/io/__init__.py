"""Reading and writing at the edges of the chain.

- ``readers``: any input (SAFE folder or zip, band folder, xarray, a reader plugin's) to a :class:`Product`
- ``product``: the :class:`Product` and the rules every reader shares (dtype, level, offsets, scaling)
- ``safe``: SAFE folders and zips, and folders of Sentinel-2 band files
- ``bandfiles``: the band files themselves, read north-up with their masks and tags
- ``arrays``: xarray DataArrays (openEO cubes, odc-stac and stackstac cubes)
- ``array_grid``: where an array lies: its CRS, its checked coordinates, its grid and orientation
- ``landsat``: Landsat Collection 2 and HLS v2.0 folders and products; ``layers``: their quality layers
- ``writers``: Cloud-Optimized GeoTIFFs of classes, scores and usable pixels, and quicklooks
- ``files``: files that appear whole or not at all, output folders, checksums
- ``http``: requests whose credentials stay at their origin, bounded in time and size
- ``gdal``: GDAL's settings, in one place

May import: foundation, io.
"""

from .arrays import from_dataarray
from .bandfiles import open_band_files, tag_scaling
from .files import atomic_files, atomic_path, safe_name, sha256_file, writable_folder
from .http import (
                   CREDENTIAL_HEADERS,
                   REDIRECTS,
                   NetworkError,
                   Session,
                   check_header_values,
                   fetch,
                   origin,
                   split_userinfo,
)
from .landsat import hls_product, landsat_product, landsat_scaling, own_numbers, parse_mtl
from .product import OFFSET_BASELINE, Band, Product, check_level, declared_scaling, merge_scaling, parse_baseline
from .readers import DEMO_DATA, Reader, open_product
from .safe import parse_product_metadata
from .writers import ScoresWriter, write_cog, write_quicklook, write_scores, write_thumbnail, write_usable

__all__ = ["CREDENTIAL_HEADERS", "DEMO_DATA", "NetworkError", "OFFSET_BASELINE", "REDIRECTS", "Band", "Product",
           "Reader", "ScoresWriter", "Session", "atomic_files", "atomic_path", "check_header_values", "check_level",
           "declared_scaling", "fetch", "from_dataarray", "merge_scaling", "open_band_files", "open_product",
           "origin", "parse_baseline", "parse_product_metadata", "safe_name", "sha256_file", "split_userinfo",
           "tag_scaling", "writable_folder", "write_cog", "write_quicklook", "write_scores", "write_thumbnail",
           "write_usable", "hls_product", "landsat_product", "landsat_scaling", "own_numbers", "parse_mtl"]
