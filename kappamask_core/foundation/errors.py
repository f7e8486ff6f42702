"""One exception hierarchy for the whole product.

Every error a user can cause (bad input, bad model, unwritable output) is a
``KappaMaskError`` subclass whose message names the file or option at fault, so
the command line can print it as one line and exit non-zero. Each also subclasses the
built-in kind a caller would catch without knowing this package: bad input and bad models
are ``ValueError``, an unwritable output is ``OSError``, a training that cannot go on is
``RuntimeError``.
"""

__all__ = ["BandsError", "InputError", "KappaMaskError", "ModelError", "OutputError", "TrainingError"]


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
