"""openEO UDF: KappaMask cloud and cloud-shadow classes for a Sentinel-2 data cube (Landsat and HLS: context "sensor").

Use it with ``apply_neighborhood`` (:data:`CHUNK_SIZE` px chunks with
:data:`CHUNK_OVERLAP` px overlap, as the published processes ask; one date
per call with a ``t`` size of ``P1D``). The tiles are the ground's (anchored
in the cube's CRS), and a chunk runs only the tiles that keep its core's
pixels, reading the rest of them from the overlap: the core's classes are the
whole scene's, wherever the backend puts its chunks, as long as the overlap
holds those tiles (the job log says when it does not). The cube has dimensions among (t, bands, y, x), bands named as the
backend names them (B01..B12, B8A, AOT, WVP, ...). It returns the same t/y/x
with one band ``kappamask`` (0 missing, 1 clear, 2 cloud shadow, 3
semi-transparent cloud, 4 cloud), one band ``usable`` (1 clear after
buffering, 0 not, 255 missing), or one score band per class;
``apply_metadata`` tells the backend these band names. Backends built on
geopyspark (Copernicus Data Space) hand the result on as float32: the same
values, and missing stays 0 (or 255), not NaN.

Context keys (all optional):
  model        "auto", "default", a model id, alias or card path   (default "auto": KappaMask v2 when the
               cube has its bands and its weights are in the archive or can be downloaded, else the
               bundled offline model)
  weights      ONNX file for cards without bundled weights
  level        "L1C" or "L2A"                          (default: the model's level, else L1C if the cube has
               B10, L2A if it has AOT, WVP or SCL; the process graphs set it)
  units        "dn", "harmonised" or "reflectance"    (default "dn": stored DN, never negative, 0 no data;
               "harmonised": DN whose baseline-04.00 offset the backend already added, as Copernicus Data
               Space's loader delivers them: as low as -1000, a 0 is reflectance 0, NaN no data; the
               published processes set it)
  sensor       "sentinel-2", "landsat-5", "landsat-7", "landsat-8", "landsat-9", "hls-l30" or "hls-s30"
               (default "sentinel-2"): whose bands the cube holds (Landsat 8's B05 is its near infrared)
  offset       DN offset still to add, -1000 for baseline 04.00 DN the backend did not harmonise, or 0
  output       "classes", "usable" or "scores"         (default "classes")
  buffer       grow classes by metres after stitching, e.g. "cloud=300,shadow=100" or {"cloud": 300};
               exact up to the chunk overlap (the overlap less the reach of the model's tiles: with
               the process graphs' 768 px, 760 m for the bundled model, 2720 m for KappaMask)
  encoding     "kappamask" or "km_predict"             (default "kappamask")
  stitch       "crop" or "blend"                       (default "crop")
  tiles        "ground" or "raster"                    (default "ground": the tiles anchored in the CRS, one map
               however the scene is cut; "raster": each chunk's own, as before 2026-12)
  chunk_overlap  the apply_neighborhood overlap in px, the context around each chunk's core (default: 768 for
               chunks of the published size, 2048 + 2 x 768 px; else 0, the whole chunk is classified)
  overlap      tile overlap in working pixels          (default: the model card's)
  margin       tile margin in working pixels           (default: the model card's)
  device       "auto", "cpu", "cuda" or "tensorrt"     (default "auto")
  batch_size   tiles per inference call                (default: 1 on CPU, 8 on CUDA)
  threads      ONNX Runtime threads                    (default: the executor's cores: its CPU affinity
               and cgroup quota, not the node's; the process graphs set it to the executor-cores they ask for)
  precision    "auto", "fp32", "int8" or "bf16"        (default "auto": on CPUs the model's faithful int8 or
               bf16 variant where the archive holds one (bf16: built --with-openvino, and only on CPUs with
               bfloat16 arithmetic), else the network as published; "fp32": always that)
  dependency_folder   where the dependency archive was unpacked (default "kappamask_deps")
  dependency_archive  https URL of the dependency archive, for requests that get no udf-dependency-archives
                      (synchronous requests); needs dependency_sha256
  dependency_sha256   the archive's sha256: nothing downloaded is used before it is checked
  options      an object with the keys above; the keys beside it win. The process graphs pass the
               caller's options here and set the archive (and, for masking, the output) beside it.

Where the code comes from: ``kappamask_core``, onnxruntime and the model files from the dependency archive
built by ``kappamask openeo package --with-onnxruntime``, which batch jobs unpack beside the UDF (job option
``udf-dependency-archives``, as ``<url>#kappamask_deps``); onnxruntime also from the public openEO ONNX
archive unpacked as ``onnx_deps``, or from the runtime itself. These folders are appended to ``sys.path``
once per process, so the runtime's own packages always win. This UDF declares no inline (PEP 723)
dependencies: backends would pip-install them before every batch job, and its archive already carries them.

Synchronous requests get no job options: there the UDF downloads ``dependency_archive`` itself, once per
Python process, into a folder it creates for itself (``tempfile.mkdtemp``: private to the process user). It
never trusts a folder it did not create in this process: the archive's sha256 is checked before it is opened,
its entries are checked (no absolute paths, ``..``, links, duplicates, encryption or unknown compression; at
most :data:`MAX_MEMBERS` files and :data:`MAX_UNPACKED_BYTES`), and every file unpacked is compared with the
list made at unpacking on each later call. The environment of the process is never changed. NaN or nodata
pixels come out as class 0 (missing).
"""

import os
import sys
from pathlib import Path

import xarray

try:  # the openEO runtime provides it; the UDF works without it where no backend asks for metadata
    from openeo.metadata import CubeMetadata
except ImportError:  # pragma: no cover
    CubeMetadata = object

DEFAULT_DEPENDENCY_FOLDER = "kappamask_deps"
ONNX_DEPENDENCY_FOLDER = "onnx_deps"  # the public openEO ONNX dependency archive, as its examples unpack it
DOWNLOAD_TIMEOUT_S = 30  # per network operation
DOWNLOAD_DEADLINE_S = 600  # for the whole archive
MAX_ARCHIVE_BYTES = 512 << 20  # the largest archive downloaded
MAX_UNPACKED_BYTES = 1 << 30  # what it may unpack into, counted as it is written (a zip can lie in its sizes)
MAX_MEMBERS = 20000
LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")  # plain http only to this machine (tests, a local mirror)
# apply_neighborhood in the published processes (udf/processes.py reads these): a 2048 px core with 768 px of context
# on each side, enough for the tiles of every bundled network that keep the core's pixels (KappaMask: 496 px; the
# bundled 30 m network: 692 px with its 30 m cells' alignment) and for buffers of 760 m (bundled) or 2720 m
CHUNK_SIZE, CHUNK_OVERLAP = 2048, 768
STATE_MODULE = "_kappamask_udf_state"  # what this process unpacked and appended; the UDF source runs anew each call
CONTEXT_KEYS = ("model", "weights", "level", "units", "sensor", "offset", "output", "encoding", "stitch", "tiles",
                "chunk_overlap", "overlap", "margin",
                "device", "batch_size", "threads", "precision", "buffer", "dependency_folder", "dependency_archive",
                "dependency_sha256")
# The band labels of each output; apply_metadata runs where the dependency archive may be absent (the backend's
# driver), so they are written here; a test checks them against kappamask_core.faces.datacube.OUTPUT_BANDS.
OUTPUT_BANDS = {
    "classes": ("kappamask",),
    "scores": ("missing", "clear", "cloud_shadow", "semi_transparent_cloud", "cloud"),
    "usable": ("usable",),
}
ONNXRUNTIME_HELP = (
    "KappaMask UDF: onnxruntime is not available in this UDF runtime. Provide it one of these ways: the job "
    "option udf-dependency-archives with our archive built by 'kappamask openeo package --with-onnxruntime' (as "
    "'<url>#kappamask_deps') or with the public openEO ONNX archive for Python 3.11 (as '<url>#onnx_deps'); or, "
    "also for synchronous requests, the context keys dependency_archive (the https URL of an archive built with "
    "--with-onnxruntime) and dependency_sha256.")


def _context(context) -> dict:
    """The effective context: a nested ``options`` object, overridden by the keys beside it."""
    if context is None:
        return {}
    if not isinstance(context, dict):
        raise ValueError(f"KappaMask UDF: the context must be an object (dict), not {type(context).__name__}")
    options = context.get("options")
    if options is None:
        options = {}
    if not isinstance(options, dict):
        raise ValueError(f"KappaMask UDF: context 'options' must be an object (dict), not {type(options).__name__}")
    if "from_parameter" in options:
        raise ValueError("KappaMask UDF: the backend passed the process parameter 'options' unresolved (it does not "
                         "resolve references inside objects, as openeo-python-driver does); call the UDF with the "
                         "options themselves as its context")
    merged = {**options, **{k: v for k, v in context.items() if k != "options"}}
    unknown = sorted(set(merged) - set(CONTEXT_KEYS))
    if unknown:
        raise ValueError(f"KappaMask UDF: unknown context key(s) {unknown}; valid keys: {', '.join(CONTEXT_KEYS)}, "
                         "and options")
    return merged


def _state():
    """This process's record of what the UDF appended to sys.path and unpacked (a module, so that it outlives the
    UDF source, which backends execute anew on every call)."""
    import types

    state = sys.modules.get(STATE_MODULE)
    if state is None:
        state = types.ModuleType(STATE_MODULE)
        state.appended, state.archives = [], {}
        sys.modules[STATE_MODULE] = state
    return state


def _append_path(folder: Path) -> None:
    """Append, never prepend, once per process: a package the runtime has (attrs, numpy) must not be shadowed in
    reused workers."""
    state = _state()
    if str(folder) not in sys.path and str(folder) not in state.appended:
        sys.path.append(str(folder))
        state.appended.append(str(folder))


def _found(name: str) -> bool:
    import importlib.util

    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def _use_folders(context: dict):
    """Append the archives the backend unpacked beside the UDF to sys.path; return ours (with kappamask_core)."""
    here = Path(globals().get("__file__", ".")).resolve().parent
    ours = None
    for name in (context.get("dependency_folder", DEFAULT_DEPENDENCY_FOLDER), ONNX_DEPENDENCY_FOLDER):
        if not isinstance(name, (str, os.PathLike)):
            raise ValueError(f"KappaMask UDF: context 'dependency_folder' must be a folder name, not {name!r}")
        for base in dict.fromkeys((Path(name), Path.cwd() / name, here / name)):
            if base.is_dir():
                base = base.resolve()
                _append_path(base)
                if ours is None and (base / "kappamask_core").is_dir():
                    ours = base
                break
    return ours


def _check_archive_url(url) -> None:
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(url) if isinstance(url, str) else None
        parts and parts.port  # a port that is not a number fails on access
    except ValueError:  # an unclosed IPv6 bracket, a port that is not a number
        parts = None
    if parts is None or parts.scheme not in ("https", "http") or not parts.hostname:
        raise ValueError(f"KappaMask UDF: context 'dependency_archive' must be an https URL, not {url!r}")
    if parts.scheme == "http" and parts.hostname not in LOCAL_HOSTS:
        raise ValueError("KappaMask UDF: context 'dependency_archive' must be an https URL (plain http only to this "
                         f"machine); {parts.scheme}://{parts.hostname}/... was not downloaded")
    if parts.username or parts.password:
        raise ValueError("KappaMask UDF: context 'dependency_archive' must not carry credentials in its URL")


def _download(url: str, target: Path) -> str:
    """Download ``url`` into the new file ``target`` (bounded in time and size); return its sha256."""
    import hashlib
    import time
    import urllib.request

    digest, started, size = hashlib.sha256(), time.monotonic(), 0
    try:
        descriptor = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT_S) as response, os.fdopen(descriptor, "wb") as out:
            while block := response.read1(1 << 20):  # what has arrived: a trickle meets the deadline
                size += len(block)
                if size > MAX_ARCHIVE_BYTES:
                    raise ValueError(f"larger than {MAX_ARCHIVE_BYTES >> 20} MiB")
                out.write(block)
                digest.update(block)
                if time.monotonic() - started > DOWNLOAD_DEADLINE_S:
                    raise TimeoutError(f"not complete after {DOWNLOAD_DEADLINE_S} s")
    except (OSError, ValueError) as exc:
        raise RuntimeError(f"KappaMask UDF: cannot download the dependency archive {url}: "
                           f"{getattr(exc, 'reason', None) or exc}") from None
    return digest.hexdigest()


def _unpack(archive: Path, folder: Path, url: str) -> dict:
    """Unpack ``archive`` into the new ``folder``, entry by entry, refusing what could write outside it or without
    bound; return the list of what was written: {relative path: (size, inode, modification time)}."""
    import stat
    import zipfile
    import zlib

    def refuse(why):
        raise RuntimeError(f"KappaMask UDF: the dependency archive {url} {why}; it was not used")

    written, total = {}, 0
    try:
        with zipfile.ZipFile(archive) as zf:
            members = zf.infolist()
            if len(members) > MAX_MEMBERS:
                refuse(f"holds {len(members)} entries (at most {MAX_MEMBERS})")
            names = set()
            for info in members:
                name = info.filename
                parts = name.split("/")
                if name in names:
                    refuse(f"holds {name} twice")
                names.add(name)
                if name.startswith("/") or "\\" in name or ".." in parts or ":" in parts[0] or "\0" in name:
                    refuse(f"holds an entry outside its folder ({name!r})")
                if stat.S_ISLNK(info.external_attr >> 16):
                    refuse(f"holds a link ({name})")
                if info.flag_bits & 0x1:
                    refuse(f"holds an encrypted entry ({name})")
                if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
                    refuse(f"holds {name} in zip compression method {info.compress_type} (only stored and deflate)")
                target = folder.joinpath(*[p for p in parts if p])
                if info.is_dir():
                    target.mkdir(parents=True, exist_ok=True)
                    continue
                target.parent.mkdir(parents=True, exist_ok=True)
                with zf.open(info) as source, open(target, "xb") as out:
                    while block := source.read(1 << 20):
                        total += len(block)
                        if total > MAX_UNPACKED_BYTES:
                            refuse(f"unpacks to more than {MAX_UNPACKED_BYTES >> 20} MiB")
                        out.write(block)
                st = target.stat()
                written["/".join(p for p in parts if p)] = (st.st_size, st.st_ino, st.st_mtime_ns)
    except (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError, OSError) as exc:
        refuse(f"cannot be unpacked ({' '.join(str(exc).split())})")
    return written


def _listing(folder: Path) -> dict:
    listed = {}
    for path in folder.rglob("*"):
        if path.is_file() or path.is_symlink():
            st = path.lstat()
            listed[path.relative_to(folder).as_posix()] = (st.st_size, st.st_ino, st.st_mtime_ns)
    return listed


def _download_archive(url: str, sha256) -> Path:
    """The dependency archive at ``url``, downloaded and unpacked once per process into a folder this process
    made (``mkdtemp``), its sha256 checked before it is opened; on every later call, the files are compared
    with the list made at unpacking, so nothing changed or planted there is ever imported."""
    import atexit
    import tempfile

    _check_archive_url(url)
    if not isinstance(sha256, str) or len(sha256) != 64 or any(c not in "0123456789abcdefABCDEF" for c in sha256):
        raise ValueError("KappaMask UDF: context 'dependency_archive' needs 'dependency_sha256', the archive's "
                         f"sha256 in hex (nothing downloaded is used unchecked), not {sha256!r}")
    state, key = _state(), (url, sha256.lower())
    known = state.archives.get(key)
    if known is not None:
        folder, written = known
        if _listing(folder) != written:
            raise RuntimeError(f"KappaMask UDF: the files unpacked from {url} in {folder} were changed or added to "
                               "since this process unpacked them; they are not used")
        return folder
    work = Path(tempfile.mkdtemp(prefix="kappamask-udf-"))
    try:
        archive = work / "deps.zip"
        digest = _download(url, archive)
        if digest != sha256.lower():
            raise RuntimeError(f"KappaMask UDF: the dependency archive {url} has sha256 {digest}, not {sha256}; it "
                               "was not used")
        folder = work / "unpacked"
        folder.mkdir()
        written = _unpack(archive, folder, url)
        archive.unlink()
        if not (folder / "kappamask_core").is_dir():
            raise RuntimeError(f"KappaMask UDF: the dependency archive {url} holds no kappamask_core; build it "
                               "with 'kappamask openeo package'")
        # read-only: nothing is added later (Python's own __pycache__ included), so the list stays exact
        for path in sorted(folder.rglob("*"), reverse=True):
            path.chmod(0o500 if path.is_dir() else 0o400)
        folder.chmod(0o500)
    except BaseException:
        _remove(work)
        raise
    atexit.register(_remove, work)
    state.archives[key] = (folder, written)
    return folder


def _remove(folder: Path) -> None:
    """Remove a folder this process made, read-only parts included."""
    import shutil

    for path in [folder, *folder.rglob("*")]:
        if path.is_dir() and not path.is_symlink():
            try:
                path.chmod(0o700)
            except OSError:
                pass
    shutil.rmtree(folder, ignore_errors=True)


def _provide_dependencies(context: dict):
    """kappamask_core and onnxruntime from the runtime, the unpacked archives, or the archive URL, in that order;
    returns the folder of our archive's models, if any."""
    ours = _use_folders(context)
    url, sha256 = context.get("dependency_archive"), context.get("dependency_sha256")
    if url is not None:
        _check_archive_url(url)
    if sha256 is not None and (not isinstance(sha256, str) or len(sha256) != 64):
        raise ValueError(f"KappaMask UDF: context 'dependency_sha256' must be a sha256 in hex, not {sha256!r}")
    if url is not None and not (_found("kappamask_core") and _found("onnxruntime")):
        ours = _download_archive(url, sha256)
        _append_path(ours)
    elif url is not None and _state().archives.get((url, str(sha256).lower())) is not None:
        ours = _download_archive(url, sha256)  # unpacked by an earlier call: compared with its list again
    return ours / "models" if ours is not None and (ours / "models").is_dir() else None


def _warnings_to_job_log():
    """While the UDF runs, the core's warnings (which model ran instead of KappaMask, an offset that looks
    unremoved) go to the job's log through openEO's ``inspect`` (level warning), each message once per process:
    every chunk of a date would otherwise say the same."""
    import contextlib
    import logging

    state = _state()
    said = state.__dict__.setdefault("said", set())

    class JobLog(logging.Handler):
        def emit(self, record):
            message = record.getMessage()
            if message in said:
                return
            said.add(message)
            try:
                from openeo.udf.debug import inspect

                inspect(message=f"KappaMask UDF: {message}", code="KappaMask", level="warning")
            except Exception:  # no openEO here: the warning stays in Python's own log
                pass

    @contextlib.contextmanager
    def forwarding():
        handler, logger = JobLog(logging.WARNING), logging.getLogger("kappamask_core")
        logger.addHandler(handler)
        try:
            yield
        finally:
            logger.removeHandler(handler)

    return forwarding()


def _number(context, key, whole=False, minimum=None):
    """A numeric context value, or None when absent; anything else is an error that names the key."""
    value = context.get(key)
    if value is None:
        return None
    kind = "a whole number" if whole else "a number"
    try:
        number = float(value)
        if whole and number != int(number):
            raise ValueError
        if isinstance(value, bool) or number != number or number in (float("inf"), float("-inf")):
            raise ValueError
    except (TypeError, ValueError, OverflowError):
        raise ValueError(f"KappaMask UDF: context {key!r} must be {kind}, not {value!r}") from None
    if minimum is not None and number < minimum:
        raise ValueError(f"KappaMask UDF: context {key!r} must be at least {minimum}, not {value!r}")
    return int(number) if whole else number


TEXT_KEYS = ("model", "weights", "level", "units", "sensor", "output", "encoding", "stitch", "tiles", "device",
             "precision", "dependency_folder", "dependency_archive", "dependency_sha256")


def _check_types(context: dict) -> None:
    """Context values of the wrong type are errors that name the key (before anything is loaded)."""
    for key in TEXT_KEYS:
        if key in context and context[key] is not None and not isinstance(context[key], str):
            raise ValueError(f"KappaMask UDF: context {key!r} must be a string, not {context[key]!r}")
    buffer = context.get("buffer")
    if buffer is not None and not isinstance(buffer, (str, dict)):
        raise ValueError(f"KappaMask UDF: context 'buffer' must be a string such as \"cloud=300,shadow=100\" or an "
                         f"object such as {{\"cloud\": 300}}, not {buffer!r}")


def apply_metadata(metadata: CubeMetadata, context: dict) -> CubeMetadata:
    """The backend's view of the result: the bands become the output's bands (``kappamask``, ``usable`` or one
    per class), so that later processes can select them by label. Runs where the dependencies may be absent."""
    output = _context(context).get("output", "classes")
    if output not in OUTPUT_BANDS:
        raise ValueError(f"KappaMask UDF: context 'output' must be one of {sorted(OUTPUT_BANDS)}, not {output!r}")
    return metadata.rename_labels(dimension="bands", target=list(OUTPUT_BANDS[output]))


def apply_datacube(cube: xarray.DataArray, context: dict) -> xarray.DataArray:
    context = _context(context)
    _check_types(context)
    models = _provide_dependencies(context)
    try:
        from kappamask_core.chain import ClassifyOptions
        from kappamask_core.faces import classify_datacube
        from kappamask_core.foundation import BandsError, KappaMaskError
        from kappamask_core.models import weights_folder
    except ImportError as exc:
        raise ImportError(
            "KappaMask UDF: kappamask_core is not available. Add the archive built by 'kappamask openeo package' "
            "to the job option 'udf-dependency-archives' (as '<url>#kappamask_deps'), or give its https URL and "
            "sha256 as the context keys dependency_archive and dependency_sha256."
        ) from exc
    overlap, margin = _number(context, "overlap", True, 0), _number(context, "margin", True, 0)
    batch_size, offset = _number(context, "batch_size", True, 1), _number(context, "offset") or 0.0
    threads = _number(context, "threads", True, 1)
    chunk_overlap = _number(context, "chunk_overlap", True, 0)
    if chunk_overlap is None:
        published = CHUNK_SIZE + 2 * CHUNK_OVERLAP
        chunk_overlap = CHUNK_OVERLAP if cube.sizes.get("y") == published and cube.sizes.get("x") == published else 0
    try:
        options = ClassifyOptions(
            stitch=context.get("stitch", "crop"),
            tiles=context.get("tiles", "ground"),
            overlap=overlap,
            margin=margin,
            device=context.get("device", "auto"),
            batch_size=batch_size,
            threads=threads,
            precision=context.get("precision", "auto"),
            buffers=context.get("buffer"),
        )
        import contextlib

        with weights_folder(models) if models is not None else contextlib.nullcontext(), _warnings_to_job_log():
            return classify_datacube(
                cube,
                model=context.get("model", "auto"),
                level=context.get("level"),
                units=context.get("units", "dn"),
                offset=offset,
                output=context.get("output", "classes"),
                encoding=context.get("encoding", "kappamask"),
                weights=context.get("weights"),
                options=options,
                context_px=int(chunk_overlap),
                sensor=context.get("sensor"),
            )
    except BandsError as exc:  # the cube and the model do not fit: the bands loaded are what to change
        bands = [str(b) for b in cube["bands"].values] if "bands" in cube.coords else []
        raise ValueError(
            f"KappaMask UDF: {str(exc).rstrip('.')}. The cube has bands {bands}; change load_collection(bands=...) "
            f"or the UDF context (model, level)."
        ) from None
    except MemoryError as exc:  # the core's MemoryLimitError, or numpy's own: the job's memory, not the input
        from kappamask_core.foundation import memory_limit_text

        text = str(exc) if isinstance(exc, KappaMaskError) else f"out of memory ({exc}); {memory_limit_text()}"
        raise MemoryError(f"KappaMask UDF: {text}. Raise the batch job option 'python-memory' (on Copernicus Data "
                          "Space each Python worker may use python-memory divided by executor-cores of address "
                          "space)") from None
    except KappaMaskError as exc:
        raise ValueError(f"KappaMask UDF: {exc}") from None
    except ModuleNotFoundError as exc:
        if exc.name == "onnxruntime":
            raise ImportError(ONNXRUNTIME_HELP) from None
        raise
