"""The checks every real backend runs when it opens: files named by params, model signatures, devices, dtypes."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from extractors import runtime
from extractors.runtime import BackendSetupError


def test_require_path_names_the_param_what_is_there_and_what_belongs(tmp_path):
    (tmp_path / "model.onnx").write_bytes(b"x")
    assert runtime.require_path("t.options.m", tmp_path / "model.onnx", "the model") == tmp_path / "model.onnx"
    with pytest.raises(BackendSetupError, match=r"t.options.m is not set: set it to the model"):
        runtime.require_path("t.options.m", None, "the model")
    with pytest.raises(BackendSetupError, match=r"t.options.m: .* is a folder; expected a file: the model"):
        runtime.require_path("t.options.m", tmp_path, "the model")
    with pytest.raises(BackendSetupError, match=r"t.options.d: .*model.onnx is a file; expected a folder: outputs"):
        runtime.require_path("t.options.d", tmp_path / "model.onnx", "outputs", kind="folder")


def test_signature_check_accepts_free_dims_and_refuses_other_sizes():
    found_in, found_out = [("input", ["N", 3, 640, 640])], [("output", ["N", 8400, 85])]
    runtime.check_signature("p", Path("m"), found_in, found_out, [[None, 3, 640, 640]], [[None, 8400, 85]])
    with pytest.raises(BackendSetupError, match=r"takes input \[\?,3,640,640\] and gives output \[\?,8400,85\]; "
                                                r"expected inputs input0 \[\?,3,320,320\]"):  # fmt: skip
        runtime.check_signature("p", Path("m"), found_in, found_out, [[None, 3, 320, 320]], [[None, 8400, 85]])
    with pytest.raises(BackendSetupError, match="expected inputs"):  # one output too many
        runtime.check_signature("p", Path("m"), found_in, found_out * 2, [[None, 3, 640, 640]], [[None, 8400, 85]])


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusals of a machine without CUDA")
def test_cuda_asked_for_without_cuda_is_refused_with_what_to_do():
    import onnxruntime

    if "CUDAExecutionProvider" not in onnxruntime.get_available_providers():
        with pytest.raises(BackendSetupError, match="onnxruntime-gpu"):
            runtime.onnx_providers("cuda")
    assert runtime.onnx_providers("auto")[-1] == "CPUExecutionProvider"
    with pytest.raises(BackendSetupError, match="device: 'tpu'"):
        runtime.onnx_providers("tpu")
    with pytest.raises(BackendSetupError, match="torch sees no CUDA device; set device: cpu or auto"):
        runtime.torch_device("cuda")
    assert runtime.torch_dtype("auto", torch.device("cpu")) == torch.float32
    with pytest.raises(BackendSetupError, match="dtype: 'half'"):
        runtime.torch_dtype("half", torch.device("cpu"))
