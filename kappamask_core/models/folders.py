"""Where models live on this machine: the user cache folder and the weights folder inside it (imported and
downloaded models, variants), and a block-scoped choice of weights folder for hosts that share a process."""

from __future__ import annotations

import contextlib
import contextvars
import os
from collections.abc import Iterator
from pathlib import Path

from ..foundation.errors import ModelError

__all__ = ["WEIGHTS_DIR_ENV", "cache_dir", "weights_dir", "weights_folder"]

WEIGHTS_DIR_ENV = "KAPPAMASK_WEIGHTS_DIR"


def cache_dir() -> Path:
    """The user cache folder: $KAPPAMASK_CACHE, else $XDG_CACHE_HOME/kappamask, else ~/.cache/kappamask."""
    root = os.environ.get("KAPPAMASK_CACHE")
    if not root:
        xdg = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
        root = os.path.join(xdg, "kappamask")
    return Path(root)


_WEIGHTS_FOLDER: contextvars.ContextVar[Path | None] = contextvars.ContextVar("kappamask_weights_folder",
                                                                              default=None)


def weights_dir() -> Path:
    """The user's weights folder: the one :func:`weights_folder` set, else $KAPPAMASK_WEIGHTS_DIR, else ``weights``
    in the cache folder.

    Imported and downloaded models go here (ONNX file and card); a card here
    named like a built-in one (``kappamask-v2-l1c.json``) takes its place.
    """
    chosen = _WEIGHTS_FOLDER.get()
    if chosen is None:
        chosen = Path(os.environ.get(WEIGHTS_DIR_ENV) or cache_dir() / "weights")
    if chosen.exists() and not chosen.is_dir():
        raise ModelError(f"the weights folder {chosen} is a file (set by ${WEIGHTS_DIR_ENV} or $KAPPAMASK_CACHE); "
                         "point it at a folder")
    return chosen


@contextlib.contextmanager
def weights_folder(path: str | os.PathLike) -> Iterator[Path]:
    """Use ``path`` as the weights folder inside the block, without changing the environment (the openEO UDF
    points the core at the models of its dependency archive this way: Python workers that other jobs reuse keep
    their environment as it was)."""
    token = _WEIGHTS_FOLDER.set(Path(path))
    try:
        yield Path(path)
    finally:
        _WEIGHTS_FOLDER.reset(token)
