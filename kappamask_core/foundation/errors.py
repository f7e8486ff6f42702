"""One exception hierarchy for the whole product.

Every error a user can cause (bad input, bad model, unwritable output) is a
``KappaMaskError`` subclass whose message names the file or option at fault, so
the command line can print it as one line and exit non-zero.
"""


class KappaMaskError(Exception):
    """Base class of every error this package raises on purpose."""


class InputError(KappaMaskError):
    """The input product, band files or array cannot be used."""


class BandsError(InputError):
    """The input's bands do not fit the model (missing bands, another product level)."""


class ModelError(KappaMaskError):
    """The model card or the ONNX file is missing, invalid or inconsistent."""


class OutputError(KappaMaskError):
    """An output file cannot be written."""


class TrainingError(KappaMaskError):
    """Training cannot go on (the loss became NaN, the data cannot be split)."""
