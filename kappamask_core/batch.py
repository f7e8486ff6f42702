"""Many products at once with Dask: one task per product (extra ``dask``).

Each task runs :func:`kappamask_core.api.classify_to_files` on one input, so
every output is written atomically exactly as in a sequential run. ONNX
Runtime threads are divided between the workers so they do not oversubscribe
the cores. The STAC collection over all items is written at the end.
"""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

from . import plugins
from .errors import InputError, KappaMaskError
from .pipeline import ClassifyOptions


def _classify_one(source, outdir, model, weights, level, options, encoding):
    """One product in a worker; an error the user can fix comes back as a value, not as a remote traceback."""
    from .api import classify_to_files

    try:
        return classify_to_files([source], outdir, model=model, weights=weights, level=level, options=options,
                                 encoding=encoding, stac=True)[0]
    except KappaMaskError as exc:
        return exc


def classify_many(inputs, outdir, *, model="auto", weights=None, level=None, options: ClassifyOptions | None = None,
                  encoding: str = "kappamask", workers: int = 2, scheduler: str = "processes",
                  progress: bool = True) -> list[dict]:
    """Classify ``inputs`` in parallel with Dask; returns the paths written per input, in input order."""
    try:
        import dask
    except ImportError:
        raise InputError("parallel runs need Dask: pip install 'kappamask[dask]'") from None
    inputs = [str(i) for i in inputs]
    options = options or ClassifyOptions()
    if options.threads is None:
        options = replace(options, threads=max(1, (os.cpu_count() or 1) // max(1, workers)))
    options = replace(options, progress=False)  # one bar for the whole batch instead
    tasks = [dask.delayed(_classify_one)(src, str(outdir), model, weights, level, options, encoding)
             for src in inputs]
    compute = dict(scheduler=scheduler, num_workers=workers)
    if progress and scheduler in ("processes", "threads", "sync"):
        from dask.diagnostics import ProgressBar

        with ProgressBar(out=__import__("sys").stderr):
            written = list(dask.compute(*tasks, **compute))
    else:
        written = list(dask.compute(*tasks, **compute))
    failed = [(src, result) for src, result in zip(inputs, written) if isinstance(result, KappaMaskError)]
    if failed:  # the other products are complete; say what failed, as one line
        first = failed[0][1]
        more = f" ({len(failed) - 1} more input(s) failed too)" if len(failed) > 1 else ""
        raise type(first)(f"{first}{more}")
    for output in plugins.outputs():
        output.finish(written, Path(outdir), encoding)
    return written
