"""What the machine gives this process: its cores, as a container or an openEO executor sees them."""

from __future__ import annotations

import os


def available_cores(cgroup: str = "/sys/fs/cgroup") -> int:
    """The cores this process may use: the CPUs it is pinned to (``os.sched_getaffinity``), and no more than its
    cgroup's CPU quota (cgroup v2 ``cpu.max``, v1 ``cpu.cfs_quota_us`` / ``cpu.cfs_period_us``), rounded down,
    at least 1. On a large node a container's share is much less than ``os.cpu_count()``: one ONNX Runtime thread
    per core of the node would oversubscribe it."""
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cores = os.cpu_count() or 1
    quota = None
    for quota_file, period_file in ((f"{cgroup}/cpu.max", None),
                                    (f"{cgroup}/cpu/cpu.cfs_quota_us", f"{cgroup}/cpu/cpu.cfs_period_us")):
        try:
            with open(quota_file) as fh:
                fields = fh.read().split()
            if period_file is not None:
                with open(period_file) as fh:
                    fields = fields[:1] + fh.read().split()[:1]
            if len(fields) >= 2 and fields[0] not in ("max", "-1"):
                quota = float(fields[0]) / float(fields[1])
                break
        except (OSError, ValueError, ZeroDivisionError):
            continue
    if quota is not None and quota > 0:
        cores = min(cores, max(1, int(quota)))
    return max(1, cores)
