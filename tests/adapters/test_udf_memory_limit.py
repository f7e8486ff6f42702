"""The UDF under the memory limit Copernicus Data Space enforces: Spark gives each Python worker python-memory divided
by executor-cores as an address-space limit (RLIMIT_AS). In a child process with that limit, the modules such a
worker imports before the UDF, one thread and one date of a published-size chunk (2048 px core, 768 px context: all
13 bands, float32), the UDF runs every network the published processes can run within the share the processes ask
for; under a share too small for the network it fails with one message that says memory and names the job option
to raise."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from helpers import ROOT

from kappamask_core.models import resolve_card
from kappamask_udf.processes import (CHUNK, OVERLAP, EXECUTOR_CORES, TASK_CPUS, WORKER_IMPORTS, job_options,
                                     worker_limit_mib)

pytestmark = pytest.mark.slow
if not sys.platform.startswith("linux"):
    pytest.skip("RLIMIT_AS is Linux's", allow_module_level=True)

_CHILD = r"""
import importlib, json, resource, sys
limit_mib, model, size = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
for name in sys.argv[4].split(","):  # what the worker imported before the UDF
    importlib.import_module(name)
import numpy as np, xarray as xr
from kappamask_core.chain.resample import nearest_rows
from kappamask_core.io import DEMO_DATA, open_product

product = open_product(DEMO_DATA)
names = sorted(product.bands)
h, w = product.grid.shape
scene = np.stack([nearest_rows(product.bands[n].read(), product.bands[n].factor, 0, h, w) for n in names])
del product
chunk = np.pad(scene, ((0, 0), (0, size - h), (0, size - w)), mode="symmetric").astype(np.float32)
del scene
# the limit from here on: the worker's modules and the chunk are inside it, as they are on the backend (set after the
# chunk is made only so that making it, which needs a copy, does not count)
resource.setrlimit(resource.RLIMIT_AS, (limit_mib << 20, limit_mib << 20))
cube = xr.DataArray(chunk, dims=("bands", "y", "x"), coords={
    "bands": names, "y": (5800000 - 10 * (np.arange(size) + 0.5)).astype(np.float32),
    "x": (300000 + 10 * (np.arange(size) + 0.5)).astype(np.float32)})
namespace = {}
exec(compile(open(sys.argv[5]).read(), "kappamask_udf.py", "exec"), namespace)
try:
    out = namespace["apply_datacube"](cube, {"model": model, "level": "L1C", "units": "harmonised", "threads": 1})
except BaseException as exc:
    print(json.dumps({"error": type(exc).__name__, "message": str(exc)}))
else:
    o = int(sys.argv[6])
    core = out.values[..., o:-o, o:-o]  # the chunk's core: the context around it is the neighbours' to map
    print(json.dumps({"shape": list(out.shape), "classified": float((core > 0).mean()),
                      "classes": sorted(int(v) for v in set(core.ravel().tolist()))}))
"""


def _run_limited(limit_mib: int, model: str) -> dict:
    proc = subprocess.run([sys.executable, "-c", _CHILD, str(limit_mib), model, str(CHUNK + 2 * OVERLAP),
                           ",".join(WORKER_IMPORTS), str(ROOT / "udf" / "kappamask_udf.py"), str(OVERLAP)],
                          capture_output=True, text=True, cwd=ROOT, timeout=1800,
                          env={**os.environ, "KAPPAMASK_OFFLINE": "1", "PYTHONPATH": str(ROOT)})
    lines = proc.stdout.strip().splitlines()
    assert lines, f"the child died under {limit_mib} MiB (exit {proc.returncode}): {proc.stderr[-1500:]}"
    return json.loads(lines[-1])


def _models(imported) -> list[tuple[str, object]]:
    """(the UDF's model, its card): the bundled network, and KappaMask v2 and v1 imported from the golden files."""
    from kappamask_core.models.cards import load_card

    bundled = resolve_card("default", "L1C")
    return [(bundled.id, bundled)] + [(str(imported[v][1]), load_card(imported[v][1])) for v in ("v2", "v1")]


@pytest.mark.parametrize("which", [0, 1, 2], ids=["bundled", "kappamask-v2", "kappamask-v1"])
def test_every_network_runs_within_the_address_space_the_processes_ask_for(imported, which):
    model, card = _models(imported)[which]
    limit = worker_limit_mib([card])
    workers = EXECUTOR_CORES // TASK_CPUS
    assert job_options("https://example.org/a.zip", [card])["python-memory"] == f"{limit * workers}m"
    result = _run_limited(limit, model)
    assert "error" not in result, f"{model} under {limit} MiB: {result}"
    assert result["shape"][-2:] == [CHUNK + 2 * OVERLAP] * 2 and set(result["classes"]) <= {0, 1, 2, 3, 4}
    if which == 0:  # trained: every pixel of the core classified (the golden weights are random: any class)
        assert result["classified"] == 1.0


def test_too_little_address_space_says_memory_and_names_the_job_option():
    """900 MiB, what 1800m of python-memory gives each of two workers: the chunk alone needs 637 MiB."""
    result = _run_limited(900, resolve_card("default", "L1C").id)
    assert result.get("error") == "MemoryError", result
    message = result["message"]
    assert "out of memory" in message and "python-memory" in message and "RLIMIT_AS" in message
    assert "\n" not in message
