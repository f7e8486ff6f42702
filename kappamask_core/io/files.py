"""Files that appear whole or not at all, and their checksums.

Every file this package writes is written under a temporary name beside its final name and renamed into
place only when complete, so an interrupted run never leaves a partial file under the final name.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import os
import tempfile
from pathlib import Path

from ..foundation.errors import OutputError


def temp_beside(final: Path) -> str:
    try:
        final.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=final.parent, prefix=f".{final.name}.", suffix=".part")
        os.close(fd)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp creates 0600; outputs are ordinary files
    except OSError as exc:
        raise OutputError(f"cannot write to {final.parent}: {exc}") from None
    return tmp


@contextlib.contextmanager
def atomic_files(*finals: str | os.PathLike):
    """Yield a temporary path beside each final path; when the block succeeds, rename them all into place.

    If the block fails, or a rename fails, none of the files is left under its
    final name, and no temporary file is left either.
    """
    finals = [Path(f) for f in finals]
    temps: list[str] = []
    try:
        for final in finals:
            temps.append(temp_beside(final))
        yield temps
        started = 0
        try:
            for tmp, final in zip(temps, finals):
                started += 1
                os.replace(tmp, final)
        except BaseException as exc:  # a failed rename, or Ctrl-C / SIGTERM between two renames: none stays
            for tmp, final in list(zip(temps, finals))[:started]:
                if not os.path.exists(tmp):  # it was moved into place (perhaps just before the interruption)
                    final.unlink(missing_ok=True)
            if isinstance(exc, OSError):
                raise OutputError(f"cannot move {final.name} into place in {final.parent}: {exc}") from None
            raise
    finally:
        for tmp in temps:
            if os.path.exists(tmp):
                os.unlink(tmp)


@contextlib.contextmanager
def atomic_path(final: str | os.PathLike):
    """Yield a temporary path beside ``final``; rename it into place on success."""
    with atomic_files(final) as (tmp,):
        yield tmp


def sha256_file(path: str | os.PathLike) -> str:
    """sha256 of a file, computed once per process for each (path, size, modification time)."""
    st = os.stat(path)
    return _sha256_cached(os.path.abspath(path), st.st_size, st.st_mtime_ns)


@functools.lru_cache(maxsize=64)
def _sha256_cached(path: str, size: int, mtime_ns: int, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()
