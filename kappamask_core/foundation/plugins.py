"""Adapters the core can use without knowing them: Python entry points.

The core never imports an adapter by name. An installed package declares,
in its ``pyproject.toml``, objects in these groups, and the core loads them:

* ``kappamask.readers``: input formats. An object with ``name``,
  ``accepts(source) -> bool`` and ``open(source, level) -> Product``.
* ``kappamask.outputs``: files written beside each product's COG. An object
  with ``name``, ``file_names(stem) -> {role: file name}``,
  ``write(result, finals, temps, source, encoding)`` (write each role's
  file to its temporary path; ``finals`` are the names it will have) and
  ``finish(written, outdir, encoding)`` after all products of a run; optionally
  ``complete(finals, digest) -> bool``: whether a product's existing files are
  whole and were made with these settings, so that a rerun may skip it.
* ``kappamask.commands``: command-line sub-commands, a ``register(subparsers)``
  function.
* ``kappamask.sources``: where the inputs of ``classify`` can come from besides paths
  (a catalogue search). An object with ``name``, ``add_arguments(parser)``,
  ``wanted(args) -> bool`` and ``inputs(args)``, an iterator of inputs that the
  run takes one at a time (a search of thousands of items is never listed whole).

This package registers its own STAC reader, STAC item writer and the ``stac``
and ``openeo`` commands this way.
"""

from __future__ import annotations

import functools
import logging

log = logging.getLogger(__name__)


@functools.lru_cache(maxsize=None)
def load(group: str) -> tuple:
    """The loaded objects of an entry-point group, in name order; broken ones are skipped with a warning."""
    from importlib.metadata import entry_points

    found = []
    for point in sorted(entry_points(group=group), key=lambda p: p.name):
        try:
            found.append(point.load())
        except ImportError as exc:  # an adapter whose optional dependencies are missing
            log.debug("%s plugin %s not loaded: %s", group, point.name, exc)
    return tuple(found)


def readers() -> tuple:
    return load("kappamask.readers")


def outputs(names=None) -> tuple:
    """Output writers, all of them or those named."""
    return tuple(p for p in load("kappamask.outputs") if names is None or p.name in names)


def commands() -> tuple:
    return load("kappamask.commands")


def sources() -> tuple:
    return load("kappamask.sources")
