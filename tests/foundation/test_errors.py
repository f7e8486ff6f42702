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


def test_an_allocation_refused_inside_onnx_runtime_is_a_memory_error_that_says_so(monkeypatch):
    """ONNX Runtime reports a refused allocation as a RuntimeError ("std::bad_alloc", "Failed to allocate memory"):
    loading or running a network, it becomes a MemoryLimitError (a MemoryError) that says memory, not a model
    error that points away from it."""
    import onnxruntime as ort

    from kappamask_core.foundation.errors import MemoryLimitError, out_of_memory
    from kappamask_core.models import resolve_model
    from kappamask_core.models.runners import OnnxRunner

    assert out_of_memory(RuntimeError("[ONNXRuntimeError] : 6 : RUNTIME_EXCEPTION : std::bad_alloc"))
    assert out_of_memory(MemoryError()) and not out_of_memory(ValueError("band B13 is not a band"))
    model = resolve_model("default", level="L1C")
    runner = OnnxRunner(model, threads=1)

    class Refusing:
        def __init__(self, *args, **kwargs):
            raise RuntimeError("[ONNXRuntimeError] : 6 : RUNTIME_EXCEPTION : Failed to allocate memory for 2 GB")

        run = __init__

    runner.session = Refusing.__new__(Refusing)
    import numpy as np

    with pytest.raises(MemoryLimitError, match="out of memory while model .* ran a batch") as running:
        runner.run(np.zeros((1, len(model.card.bands), model.card.tile_size, model.card.tile_size), np.float32))
    assert isinstance(running.value, MemoryError) and "address-space limit" in str(running.value)
    monkeypatch.setattr(ort, "InferenceSession", Refusing)
    with pytest.raises(MemoryLimitError, match="out of memory while ONNX Runtime loaded model file"):
        OnnxRunner(model, threads=1)
