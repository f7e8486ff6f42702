"""Files that appear whole or not at all, and their checksums.

Every file this package writes is written under a temporary name beside its final name and renamed into
place only when complete, so an interrupted run never leaves a partial file under the final name.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import glob
import hashlib
import os
import re
import shutil
import socket
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from ..foundation.errors import OutputError


def writable_folder(outdir: str | os.PathLike | None) -> Path:
    """The output folder, created and checked for writing before any work starts."""
    if outdir is None or not str(outdir).strip():
        raise OutputError("no output folder given (an empty path); name one with -o")
    path = Path(outdir)
    if path.exists() and not path.is_dir():
        raise OutputError(f"{path} is a file; name a folder for the outputs (-o)")
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path, prefix=".kappamask-write-test-"):
            pass
    except OSError as exc:
        raise OutputError(f"cannot write to the output folder {path}: {exc.strerror or exc}") from None
    return path


@contextlib.contextmanager
def new_folder_removed_on_failure(outdir):
    """The output folder (:func:`writable_folder`); if this call created it and the block fails leaving it empty,
    it is removed again: a run that wrote nothing leaves nothing, not even an empty folder."""
    created, path = [], Path(outdir) if outdir is not None else None
    while path is not None and str(path).strip() and not path.exists() and path != path.parent:
        created.append(path)  # deepest first
        path = path.parent
    folder = writable_folder(outdir)
    try:
        yield folder
    except BaseException:
        for made in created:
            try:
                made.rmdir()  # only when empty; products finished before the failure keep their files
            except OSError:
                break
        raise


def _owner_tag() -> str:
    """Who writes a temporary file: this machine and process, in its name (another run can tell it is alive)."""
    host = re.sub(r"[^0-9A-Za-z-]", "-", socket.gethostname())[:32] or "host"
    return f"{host}-{os.getpid()}"


_OWNER = re.compile(r"\.(?P<host>[0-9A-Za-z-]*)-(?P<pid>\d+)\.[^.]*\.part$")
LEFT_BEHIND_S = 24 * 3600  # a part of another machine's run older than this is not being written any more


def _abandoned(path: Path) -> bool:
    """Whether the temporary file ``path`` belongs to no live run: its process on this machine is gone, or it
    comes from another machine and has not changed for :data:`LEFT_BEHIND_S`."""
    found = _OWNER.search(path.name)
    if found is None:  # an earlier version's part: no owner recorded
        return True
    if found["host"] != _owner_tag().rsplit("-", 1)[0]:
        try:
            return time.time() - path.stat().st_mtime > LEFT_BEHIND_S
        except FileNotFoundError:
            return False
    pid = int(found["pid"])
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # alive, another user's
        return False
    return False


def remove_stale_parts(final: Path) -> list[Path]:
    """Remove the temporary files an earlier run left beside ``final`` when it was killed (SIGKILL, power loss:
    no clean-up ran). A part of a run that is still writing (two runs into one folder) is left alone: removing it
    would fail that run midway."""
    stale = [path for path in sorted(final.parent.glob(f".{glob.escape(final.name)}.*.part")) if _abandoned(path)]
    for path in stale:
        path.unlink(missing_ok=True)
    return stale


def temp_beside(final: Path) -> str:
    try:
        final.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=final.parent, prefix=f".{final.name}.{_owner_tag()}.", suffix=".part")
        os.close(fd)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp creates 0600; outputs are ordinary files
    except OSError as exc:
        raise OutputError(f"cannot write to {final.parent}: {exc}") from None
    return tmp


@contextlib.contextmanager
def atomic_files(*paths: str | os.PathLike) -> Iterator[list[str]]:
    """Yield a temporary path beside each final path; when the block succeeds, rename them all into place.

    If the block fails, or a rename fails, none of the files is left under its
    final name, and no temporary file is left either.
    """
    finals = [Path(f) for f in paths]
    temps: list[str] = []
    try:
        for final in finals:
            temps.append(temp_beside(final))
        try:
            yield temps
        except Exception as exc:
            problem = write_problem(exc, finals[0].parent)
            if problem is None:
                raise
            names = ", ".join(f.name for f in finals)
            raise OutputError(f"cannot write {names} in {finals[0].parent}: {problem}; nothing was left "
                              "behind") from None
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


WRITE_ERRNOS = {errno.ENOSPC: "No space left on device", errno.EDQUOT: "Disk quota exceeded",
                errno.EROFS: "Read-only file system", errno.EACCES: "Permission denied", errno.EFBIG: "File too large"}


FULL_BELOW_BYTES = 1 << 20


def write_problem(exc: BaseException, folder: Path | None = None) -> str | None:
    """What went wrong in a write, in the system's words, where it is the file system's doing (a full disk, a
    quota, permissions) rather than a bug. GDAL and PyTorch report these in exception types of their own, with
    the system's words in the exception or its cause, or only in GDAL's log: then a ``folder`` with less than
    1 MiB free tells."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, OSError) and seen.errno in WRITE_ERRNOS:
            return seen.strerror or WRITE_ERRNOS[seen.errno]
        text = str(seen).lower()
        found = next((words for words in WRITE_ERRNOS.values() if words.lower() in text), None)
        if found:
            return found
        seen = seen.__cause__ or seen.__context__
    if folder is not None:
        try:
            free = shutil.disk_usage(folder).free
        except OSError:
            return None
        if free < FULL_BELOW_BYTES:
            return f"No space left on device ({free // 1024} KiB free)"
    return None


@contextlib.contextmanager
def atomic_path(final: str | os.PathLike) -> Iterator[str]:
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


SAFE_NAME = re.compile(r"[0-9A-Za-z][0-9A-Za-z._-]*")


def safe_name(product_id: str) -> str:
    """A file name for a product id, different for different ids: an id that is a safe name already is kept;
    any other is made safe and followed by a short hash of the id itself ("A B" and "A_B" get two names)."""
    if SAFE_NAME.fullmatch(product_id) and len(product_id) <= 200:
        return product_id
    cleaned = re.sub(r"[^0-9A-Za-z._-]+", "_", product_id).strip("_.-")[:180] or "product"
    return f"{cleaned}-{hashlib.sha256(product_id.encode()).hexdigest()[:10]}"
