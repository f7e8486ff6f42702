"""Many products at once with Dask: one task per product (extra ``dask``).

Each task runs :func:`kappamask_core.faces.api.classify_to_files` on one input, so
every output is written atomically exactly as in a sequential run, and a
product whose outputs already exist, made with the same settings, is skipped:
a batch that was interrupted is resumed by running it again. Locally, ONNX
Runtime threads are divided between the worker processes; with ``scheduler``
set to the address of a Dask distributed scheduler (``tcp://host:8786``) the
products run on that cluster, whose workers must see the inputs and the
output folder. The STAC collection over all items is written at the end.
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
from collections.abc import Iterable
from dataclasses import replace
from pathlib import Path
from typing import Any

from ..chain.options import ClassifyOptions
from ..foundation import plugins
from ..foundation.errors import InputError, KappaMaskError
from ..foundation.machine import available_cores
from ..foundation.types import PathLike, ProductSource
from ..io.files import new_folder_removed_on_failure
from ..models.resolve import ModelSpec
from .api import classify_to_files, failures_line

LOCAL_SCHEDULERS = ("processes", "threads", "sync")
SCHEDULER_ADDRESS = re.compile(r"^(tcp|tls|ucx|ws|wss|inproc)://[^\s/]+(:\d+)?/?$")
MAX_WORKERS = 256


def check_parallel(workers, scheduler) -> None:
    """Workers and scheduler, checked before any work starts."""
    if isinstance(workers, bool) or not isinstance(workers, int) or not 1 <= workers <= MAX_WORKERS:
        raise InputError(f"workers must be a whole number from 1 to {MAX_WORKERS}, not {workers!r}")
    if isinstance(scheduler, str) and scheduler not in LOCAL_SCHEDULERS and not SCHEDULER_ADDRESS.match(scheduler):
        raise InputError(f"the scheduler must be one of {', '.join(LOCAL_SCHEDULERS)} or the address of a Dask "
                         f"scheduler such as tcp://host:8786, not {scheduler!r}")


CONNECT_DEADLINE_S = 30


def _connect(client_class, address: str):
    """A client of the scheduler at ``address``, or a clear error within :data:`CONNECT_DEADLINE_S`: Dask's own
    timeout covers the TCP connection, not a peer that accepts it and then never answers. The attempt runs in a
    daemon thread, so a peer that never answers cannot keep the process alive either."""
    import threading

    box: dict = {}

    def connect():
        try:
            box["client"] = client_class(address, timeout="10s", set_as_default=False)
        except BaseException as exc:  # handed to the caller below
            box["error"] = exc

    thread = threading.Thread(target=connect, daemon=True, name="kappamask-dask-connect")
    thread.start()
    thread.join(CONNECT_DEADLINE_S)
    if "client" in box:
        return box["client"]
    if thread.is_alive():
        raise InputError(f"the Dask scheduler at {address} did not answer within {CONNECT_DEADLINE_S} s (the "
                         "address accepts connections but nothing there speaks Dask); check the address")
    raise InputError(f"cannot reach the Dask scheduler at {address}: {box.get('error')}")


def _on_cluster(tasks, address) -> list:
    """Run the tasks on an existing Dask distributed cluster (``address`` or a ``distributed.Client``)."""
    try:
        from distributed import Client
    except ImportError:
        raise InputError("running on a Dask cluster needs distributed: pip install 'kappamask[dask]'") from None
    if isinstance(address, Client):
        return list(address.gather(address.compute(tasks)))
    client = _connect(Client, str(address))
    with client:
        return list(client.gather(client.compute(tasks)))


def _classify_one(source, outdir, model, weights, level, options, encoding, usable=False, force=False):
    """One product in a worker; an error the user can fix comes back as a value, not as a remote traceback."""
    try:
        return classify_to_files([source], outdir, model=model, weights=weights, level=level, options=options,
                                 encoding=encoding, stac=True, usable=usable, force=force, finish=False)[0]
    except KappaMaskError as exc:
        return exc


def classify_many(inputs: Iterable[ProductSource], outdir: PathLike, *, model: ModelSpec = "auto",
                  weights: PathLike | None = None, level: str | None = None, options: ClassifyOptions | None = None,
                  encoding: str = "kappamask", workers: int = 2, scheduler: Any = "processes",
                  progress: bool = True, usable: bool = False, force: bool = False) -> list[dict]:
    """Classify ``inputs`` in parallel with Dask; returns the paths written per input, in input order.

    ``scheduler``: "processes", "threads" or "sync" (local), or the address of a Dask distributed scheduler.
    """
    check_parallel(workers, scheduler)
    try:
        import dask
    except ImportError:
        raise InputError("parallel runs need Dask: pip install 'kappamask[dask]'") from None
    # paths as text; other inputs (pystac items of a search) as they are: Dask hands them to the workers
    inputs = [str(i) if isinstance(i, (str, os.PathLike)) else i for i in inputs]
    with new_folder_removed_on_failure(outdir) as outdir:  # a batch that wrote nothing leaves no folder
        options = options or ClassifyOptions()
        local = scheduler in LOCAL_SCHEDULERS
        if options.threads is None and local:
            options = replace(options, threads=max(1, available_cores() // max(1, workers)))
        options = replace(options, progress=False)  # one bar for the whole batch instead
        tasks = [dask.delayed(_classify_one)(src, str(outdir), model, weights, level, options, encoding, usable, force)
                 for src in inputs]
        if local:
            from dask.diagnostics import ProgressBar

            with ProgressBar(out=sys.stderr) if progress else contextlib.nullcontext():
                written = list(dask.compute(*tasks, scheduler=scheduler, num_workers=workers))
        else:
            written = _on_cluster(tasks, scheduler)
        failed = [(src, result) for src, result in zip(inputs, written) if isinstance(result, KappaMaskError)]
        if failed:  # the other products are complete; say what failed, as one line
            raise type(failed[0][1])(failures_line(failed, len(inputs)))
        for output in plugins.outputs():
            output.finish(written, Path(outdir), encoding)
        return written
