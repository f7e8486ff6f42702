"""One exception hierarchy for the whole product.

Every error a user can cause (bad input, bad model, unwritable output) is a
``KappaMaskError`` subclass whose message names the file or option at fault, so
the command line can print it as one line and exit non-zero. Each also subclasses the
built-in kind a caller would catch without knowing this package: bad input and bad models
are ``ValueError``, an unwritable output is ``OSError``, a training that cannot go on is
``RuntimeError``, and running out of memory is ``MemoryError``.
"""

import re

__all__ = ["BandsError", "InputError", "KappaMaskError", "MemoryLimitError", "ModelError", "OutputError",
           "TrainingError", "memory_limit_text", "out_of_memory"]


class KappaMaskError(Exception):
    """Base class of every error this package raises on purpose."""


class InputError(KappaMaskError, ValueError):
    """The input product, band files or array cannot be used."""


class BandsError(InputError):
    """The input's bands do not fit the model (missing bands, another product level)."""


class ModelError(KappaMaskError, ValueError):
    """The model card or the ONNX file is missing, invalid or inconsistent."""


class OutputError(KappaMaskError, OSError):
    """An output file cannot be written."""


class TrainingError(KappaMaskError, RuntimeError):
    """Training cannot go on (the loss became NaN, the data cannot be split)."""


class MemoryLimitError(KappaMaskError, MemoryError):
    """The process ran out of memory (an allocation refused inside ONNX Runtime, OpenVINO or numpy): the input and
    the model are fine, the memory the process may use is not enough."""


# What ONNX Runtime, OpenVINO and the C++ runtime say when an allocation is refused (an address-space limit, such
# as Spark's RLIMIT_AS on python-memory, refuses it long before the machine's memory is used up)
_ALLOCATION_FAILED = re.compile(r"bad_alloc|failed to allocate|cannot allocate memory|out of memory|"
                                r"allocation failed|unable to allocate", re.IGNORECASE)


def out_of_memory(exc: BaseException) -> bool:
    """Whether ``exc`` is an allocation that failed, whatever library raised it."""
    return isinstance(exc, MemoryError) or bool(_ALLOCATION_FAILED.search(str(exc)))


def memory_limit_text() -> str:
    """The process's address-space limit (RLIMIT_AS), where one is set: what a refused allocation ran into."""
    try:
        import resource

        soft, _ = resource.getrlimit(resource.RLIMIT_AS)
    except (ImportError, OSError, ValueError):  # pragma: no cover - not on Linux
        return "no address-space limit could be read"
    if soft == resource.RLIM_INFINITY:
        return "no address-space limit is set"
    return f"the process may use {soft / 2**20:.0f} MiB of address space (RLIMIT_AS)"
