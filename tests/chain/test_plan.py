"""Planning a run: a run that needs more memory than there is is refused with the figure."""

from __future__ import annotations

import pytest
from helpers import dn_cube

from kappamask_core import InputError, classify

SIX = ("B02", "B03", "B04", "B08", "B11", "B12")


def test_a_run_that_needs_more_memory_than_there_is_is_refused_with_the_figure(monkeypatch):
    from kappamask_core.chain import plan

    monkeypatch.setattr(plan, "available_memory", lambda: 2**16)
    with pytest.raises(InputError, match=r"needs about .* GiB of memory .* only 0.0 GiB are available"):
        classify(dn_cube(SIX, 64, 64), "default", level="L1C")
