"""How to run a model: :class:`ClassifyOptions`, one small frozen object every face (API, CLI, batch, UDF) passes
instead of a dozen keywords, checked when it is made."""

from __future__ import annotations

import warnings
from dataclasses import dataclass

from ..foundation.errors import InputError
from ..models.runners import DEVICES
from ..models.variants import PRECISIONS
from . import resample
from .buffers import parse_buffers

DECODES = ("reduced", "full")
TILE_PLACEMENTS = ("ground", "raster")
MAX_THREADS = 1024  # beyond any machine's cores: ONNX Runtime would try to start them all
MAX_BATCH = 1024


@dataclass(frozen=True)
class ClassifyOptions:
    """How to run a model; every face (API, CLI, UDF) passes one of these."""

    overlap: int | None = None  # working-grid pixels; None = the card's
    # tiles start this far before the edge (rows, columns where they differ: a cube's chunks); None = the card's
    margin: int | tuple[int, int] | None = None
    stitch: str = "crop"  # "crop" (KappaMask's centre-crop mosaic) or "blend"
    # "ground": a located raster's tiles are the ground's (anchored in its CRS), so a pixel's class does not depend
    # on how the scene was cut; "raster": its own, from its first pixel, as the reference predictors place them
    tiles: str = "ground"
    batch_size: int | None = None  # tiles per inference call; None: 1 on CPU (least memory, same speed), 8 on CUDA
    device: str = "auto"  # auto | cpu | cuda | tensorrt
    threads: int | None = None  # ONNX Runtime intra-op threads; None = the cores this process may use
    read_threads: int | None = None  # bands decoded at once; None = half the cores this process may use, at least 2
    # auto: a faithful int8/bf16 variant on CPUs where one was made; fp32: the exact network; fp16: the network in
    # float16 (GPUs; needs the gpu extra); int8 / bf16: that variant
    precision: str = "auto"
    resampling: str = "bilinear"  # 20/60 m bands on a 10 m working grid; coarser grids use area averages
    decode: str = "reduced"  # coarser working grid: decode bands at a reduced resolution level ("full": never)
    buffers: tuple = ()  # grow classes by metres after stitching: "cloud=300,shadow=100", a dict, or pairs
    scores: bool = False  # also return per-class scores (float32, 5 x H x W)
    progress: bool = False  # tqdm progress bar on stderr
    # the 10 m rows and columns ((row0, row1), (col0, col1)) whose classes are wanted, the core of a chunk read with
    # its context: a located raster's tiles are placed only for them (the rest of the map is not computed)
    window: tuple | None = None
    fp16: bool = False  # deprecated: precision="fp16"

    def __post_init__(self):
        object.__setattr__(self, "buffers", parse_buffers(self.buffers))  # one hashable form for every spelling
        if self.fp16:  # the earlier spelling of precision "fp16"
            if self.precision not in ("auto", "fp16"):
                raise InputError(f"fp16 and precision {self.precision} exclude each other: choose one")
            warnings.warn("fp16=True is deprecated: use precision='fp16'", DeprecationWarning, stacklevel=3)
            object.__setattr__(self, "precision", "fp16")
            object.__setattr__(self, "fp16", False)
        if self.tiles not in TILE_PLACEMENTS:
            raise InputError(f"tiles must be one of {', '.join(TILE_PLACEMENTS)}, not {self.tiles!r}")
        if self.stitch not in ("crop", "blend"):
            raise InputError(f"stitch must be 'crop' or 'blend', not {self.stitch!r}")
        if self.resampling not in resample.METHODS:
            raise InputError(f"resampling must be one of {resample.METHODS}, not {self.resampling!r}")
        if self.decode not in DECODES:
            raise InputError(f"decode must be one of {DECODES}, not {self.decode!r}")
        if self.device not in DEVICES:
            raise InputError(f"device must be one of {', '.join(DEVICES)}, not {self.device!r}")
        if self.precision not in PRECISIONS:
            raise InputError(f"precision must be one of {', '.join(PRECISIONS)}, not {self.precision!r}")
        for name, most in (("batch_size", MAX_BATCH), ("threads", MAX_THREADS), ("read_threads", MAX_THREADS)):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= most):
                raise InputError(f"{name.replace('_', ' ')} must be a whole number from 1 to {most}, not {value!r}")
        for name in ("overlap", "margin"):
            value = getattr(self, name)
            values = value if name == "margin" and isinstance(value, tuple) and len(value) == 2 else (value,)
            if value is not None and any(isinstance(v, bool) or not isinstance(v, int) for v in values):
                raise InputError(f"{name} must be a whole number of pixels, not {value!r}")
            if value is not None and any(v < 0 for v in values):
                raise InputError(f"{name} must be zero or positive")
