"""The errors: each is a KappaMaskError and also the built-in kind a caller catches without knowing this package."""

from __future__ import annotations

import pytest

import kappamask_core as km


def test_bad_input_is_a_value_error_and_an_unwritable_output_an_os_error(tmp_path):
    with pytest.raises(ValueError) as bad_input:
        km.classify(tmp_path / "no such product")
    assert isinstance(bad_input.value, km.InputError) and isinstance(bad_input.value, km.KappaMaskError)
    with pytest.raises(ValueError) as bad_model:
        km.resolve_model("no-such-model", level="L1C")
    assert isinstance(bad_model.value, km.ModelError)
    blocker = tmp_path / "a file"
    blocker.write_text("")
    with pytest.raises(OSError) as unwritable:
        km.classify_to_files([km.io.DEMO_DATA], blocker / "out", model="default")
    assert isinstance(unwritable.value, km.OutputError)
    assert issubclass(km.TrainingError, RuntimeError) and issubclass(km.BandsError, km.InputError)
