"""The peak resident memory and the peak address space of the current process, for the benchmarks' child
processes.

VmHWM (Linux) belongs to the memory a process has since its exec. ru_maxrss does not: a child's starts from the
parent's resident size at the fork, which Linux carries across exec, so a small child of a large parent reports
the parent's peak. Where there is no /proc, ru_maxrss is the fallback (an upper bound).
"""

from __future__ import annotations


def _status_mib(key: str) -> float | None:
    """A size from /proc/self/status (``VmHWM``, ``VmPeak``) in MiB; None where there is no /proc."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith(f"{key}:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def peak_mib() -> float:
    peak = _status_mib("VmHWM")
    if peak is not None:
        return peak
    import resource
    import sys

    scale = 1 if sys.platform == "darwin" else 1024  # bytes on macOS, KiB elsewhere
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale / 2**20


def peak_address_mib() -> float | None:
    """The largest address space the process has held (VmPeak): what an address-space limit (RLIMIT_AS, as Spark
    sets it for Python workers) is checked against. Reserved but untouched memory (thread stacks, allocator arenas,
    mapped libraries) counts here and not in the resident peak. None where there is no /proc."""
    return _status_mib("VmPeak")
