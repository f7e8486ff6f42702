"""The ``kappamask`` command line: a thin adapter over the Python API, one module per group of commands (each
command's parser beside it): ``classify`` (classify, demo), ``models``, ``learning`` (train, select, evaluate); the
adapters add theirs (``stac``, ``openeo``) through entry points.

Errors the user can fix (KappaMaskError) are printed as one line on stderr with exit code 2; anything else is a bug:
one line too, with exit code 1 (``-vv`` logs its traceback first). Every line, log lines included, passes through
:func:`kappamask_core.foundation.redaction.redact`, so no credential is printed.

Each command imports the modules it needs when it runs, so that the command line starts in a fraction of a
second (``--version``, ``models list``) and PyTorch is imported by ``train`` alone.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys

from ...foundation import plugins, redaction
from ...foundation.errors import KappaMaskError
from ...foundation.version import __version__
from ...io.files import write_problem
from . import classify, composite, learning, models, stats
from .common import apply_network_options, log


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="kappamask", description="Cloud and cloud-shadow masks for Sentinel-2.")
    parser.add_argument("--version", action="version", version=f"kappamask {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0,
                        help="say what is happening (-v: each product's model and result; -vv: debugging detail); "
                             "without it only warnings and errors are printed")
    sub = parser.add_subparsers(dest="command", required=True)

    classify.register(sub)
    composite.register(sub)
    learning.register(sub)
    models.register(sub)
    stats.register(sub)
    for register in plugins.commands():  # sub-commands of the adapters (STAC, openEO)
        register(sub)
    return parser


class Terminated(KeyboardInterrupt):
    """SIGTERM, handled like Ctrl-C: every temporary file is removed on the way out."""


def _raise_terminated(signum, frame):
    raise Terminated()


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    level = {0: logging.WARNING, 1: logging.INFO}.get(args.verbose, logging.DEBUG)
    logging.basicConfig(level=level, format="%(levelname)s %(message)s", stream=sys.stderr)
    redaction.install()  # no credential reaches a log line, whichever library writes it (-vv shows request headers)
    # Libraries speak through logging and Python warnings (GDAL's messages about a damaged file, rasterio's about
    # a file without georeferencing): the error they lead to reaches the user as one line that quotes GDAL, so
    # they are shown only with -v (and everything with -vv)
    logging.captureWarnings(True)
    quiet = {0: logging.CRITICAL, 1: logging.WARNING}.get(args.verbose, logging.DEBUG)
    libraries = {name: logging.getLogger(name).level for name in ("rasterio", "py.warnings")}
    for name in libraries:
        logging.getLogger(name).setLevel(quiet)
    try:
        previous = signal.signal(signal.SIGTERM, _raise_terminated)
    except ValueError:  # not the main thread: leave signals alone
        previous = None
    try:
        apply_network_options(args)
        code = args.func(args)
        sys.stdout.flush()  # here, where a reader that went away is caught (not at the interpreter's exit)
        return code
    except BrokenPipeError:  # the reader went away (kappamask models list | head -1): stop quietly, as tools do
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())  # no second error when Python flushes stdout at exit
        except (OSError, ValueError, AttributeError):
            pass
        return 141  # 128 + SIGPIPE
    except KappaMaskError as exc:
        # one line, whatever a library put into the message (ONNX tools, GDAL and PyTorch write several)
        print(f"kappamask: error: {redaction.redact(' '.join(str(exc).split()))}", file=sys.stderr)
        return 2
    except Exception as exc:
        problem = write_problem(exc)  # a full disk or a read-only folder outside the atomic writes: not a bug
        if problem is None:
            # a bug: still one line (exit 1); -vv logs the traceback first, redacted like every log line
            log.debug("the traceback of the unexpected error:", exc_info=True)
            text = redaction.redact(" ".join(f"{type(exc).__name__}: {exc}".split()))[:400]
            print(f"kappamask: error: unexpected {text} (this is a bug; please report it with the output of the "
                  "same command run with -vv)", file=sys.stderr)
            return 1
        where = getattr(exc, "filename", None)
        print(f"kappamask: error: {problem}" + (f": {where}" if where else f" ({redaction.redact(' '.join(str(exc).split()))})"),
              file=sys.stderr)
        return 2
    except KeyboardInterrupt as exc:
        what = "terminated" if isinstance(exc, Terminated) else "interrupted"
        print(f"kappamask: {what}; products that were finished keep all their files, nothing partial was left",
              file=sys.stderr)
        return 143 if isinstance(exc, Terminated) else 130
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
        # main() is also called from Python (tests, notebooks): leave the process's logging as it was
        logging.captureWarnings(False)
        for name, old_level in libraries.items():
            logging.getLogger(name).setLevel(old_level)
