"""What several commands share: the options of a run (model, weights, tiling, device, precision, outputs), the
network options, and turning them into a :class:`~kappamask_core.chain.options.ClassifyOptions`."""

from __future__ import annotations

import argparse
import logging
import os
import sys

from ...foundation.urls import checked_url
from ...models.variants import PRECISIONS

log = logging.getLogger("kappamask")


def add_run_options(p: argparse.ArgumentParser, outputs: bool = True) -> None:
    """The options of a run; ``outputs``: also those that choose a product's files (encoding, scores, usable)."""
    p.add_argument("--model", default="auto",
                   help="auto (KappaMask v2 where its weights can be had, else the bundled offline model), default "
                        "(the bundled offline model), a model id or alias, or a card .json (default: %(default)s)")
    p.add_argument("--weights", help="ONNX file for models whose weights are not bundled")
    add_network_options(p)
    p.add_argument("--level", choices=["L1C", "L2A"], help="product level where the input does not say")
    p.add_argument("--overlap", type=int, help="tile overlap in working pixels (default: the model card's)")
    p.add_argument("--margin", type=int, help="pixels the first tile starts before the edge (default: the card's)")
    p.add_argument("--stitch", choices=["crop", "blend"], default="crop", help="mosaic of overlapping tiles")
    p.add_argument("--tiles", choices=["ground", "raster"], default="ground",
                   help="where tiles lie: ground (anchored in the CRS: a pixel gets the same class from any cut of "
                        "the scene) or raster (from the first pixel, as the reference predictors place them)")
    p.add_argument("--batch-size", type=int, help="tiles per inference call (default: 1 on CPU, 8 on CUDA)")
    p.add_argument("--threads", type=int, help="ONNX Runtime threads (default: all cores)")
    p.add_argument("--read-threads", type=int,
                   help="bands decoded at once (default: half the cores, at least 2)")
    p.add_argument("--device", choices=["auto", "cpu", "cuda", "tensorrt"], default="auto")
    p.add_argument("--resampling", choices=["bilinear", "nearest"], default="bilinear",
                   help="upsampling of 20/60 m bands on a 10 m working grid (coarser grids use area averages)")
    p.add_argument("--decode", choices=["reduced", "full"], default="reduced",
                   help="for models with a working grid coarser than 10 m: decode bands at the JPEG 2000 / COG "
                        "reduced resolution closest to it (reduced, faster) or at full resolution")
    p.add_argument("--fp16", action="store_true", help="deprecated: --precision fp16")
    p.add_argument("--precision", choices=PRECISIONS, default="auto",
                   help="auto: on CPUs, the model's faithful int8 or bf16 variant where one was made (kappamask "
                        "models quantize), else the network as published; fp32: always the network as published; "
                        "fp16: the network in float16 (GPUs); int8, bf16: that variant (default: %(default)s)")
    if outputs:
        p.add_argument("--encoding", choices=["kappamask", "km_predict"], default="kappamask",
                       help="class values in the GeoTIFF: kappamask (0 missing .. 4 cloud) or km_predict (1..4, 5 "
                            "missing)")
        p.add_argument("--scores", action="store_true", help="also write per-class scores (STAC asset)")
    p.add_argument("--buffer", metavar="CLASS=METRES,...",
                   help="grow classes after stitching, e.g. cloud=300,shadow=100 (cloud, semi_transparent_cloud, "
                        "shadow); a buffer never covers missing pixels or a stronger class")
    if outputs:
        p.add_argument("--usable", action="store_true",
                       help="also write the usable-pixel mask <id>_usable.tif: 1 clear after buffering, 0 not, 255 "
                            "missing")
    p.add_argument("--no-stac", action="store_true", help="do not write STAC items")
    add_progress_option(p)


def add_progress_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--no-progress", action="store_true", help="no progress bars on stderr (there are none when "
                                                              "stderr is not a terminal)")


def progress_wanted(args) -> bool:
    return not args.no_progress and sys.stderr.isatty()


def add_network_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--offline", action="store_true",
                   help="never use the network (same as KAPPAMASK_OFFLINE=1): no weights download")
    p.add_argument("--weights-mirror", metavar="URL",
                   help="fetch official weights from this mirror instead (same as KAPPAMASK_WEIGHTS_MIRROR)")


def apply_network_options(args) -> None:
    """The network flags are read where weights are found, from the environment (as for API users)."""
    from ...models.weights import MIRROR_ENV, OFFLINE_ENV

    if getattr(args, "offline", False):
        os.environ[OFFLINE_ENV] = "1"
    if getattr(args, "weights_mirror", None):
        # checked now, before any product is read (a password in it goes to the mirror only, as Basic auth)
        os.environ[MIRROR_ENV] = checked_url(args.weights_mirror, "--weights-mirror", credentials=True)


def run_options(args):
    from ...chain.options import ClassifyOptions

    precision = args.precision
    if args.fp16:  # the earlier spelling
        log.warning("--fp16 is deprecated: use --precision fp16")
        if precision not in ("auto", "fp16"):
            from ...foundation.errors import InputError

            raise InputError(f"--fp16 and --precision {precision} exclude each other: choose one")
        precision = "fp16"
    return ClassifyOptions(
        overlap=args.overlap, margin=args.margin, stitch=args.stitch, tiles=args.tiles, batch_size=args.batch_size,
        device=args.device, threads=args.threads, read_threads=args.read_threads, resampling=args.resampling,
        decode=args.decode,
        scores=getattr(args, "scores", False), buffers=args.buffer, precision=precision,
        progress=progress_wanted(args),
    )
