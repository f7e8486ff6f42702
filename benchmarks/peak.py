"""The peak resident memory of the current process, for the benchmarks' child processes.

VmHWM (Linux) belongs to the memory a process has since its exec. ru_maxrss does not: a child's starts from the
parent's resident size at the fork, which Linux carries across exec, so a small child of a large parent reports
the parent's peak. Where there is no /proc, ru_maxrss is the fallback (an upper bound).
"""

from __future__ import annotations


def peak_mib() -> float:
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    import resource
    import sys

    scale = 1 if sys.platform == "darwin" else 1024  # bytes on macOS, KiB elsewhere
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale / 2**20
