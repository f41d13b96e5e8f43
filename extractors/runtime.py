"""What the real backends share: checking the files their params name, and opening ONNX Runtime and TorchScript
models on the right device with their input / output signatures checked.

Every check runs when a backend is opened, before any utterance: a missing or wrong file stops the stage with a
`BackendSetupError` that names the param, the file expected and where it comes from. Nothing here downloads.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

Dim = int | str | None  # a fixed size, or a symbolic one (any size)


class BackendSetupError(ValueError):
    """A backend cannot be opened: a param names a missing or unusable file, or a model of the wrong kind."""


def require_path(param: str, value: object, expected: str, kind: str = "file") -> Path:
    """`value` (the value of the param `param`) as a path to an existing `kind` ("file" or "folder").

    `expected` says what belongs there and where it comes from (the error message quotes it)."""
    if not value:
        raise BackendSetupError(f"{param} is not set: set it to {expected}")
    path = Path(str(value)).expanduser()
    ok = path.is_file() if kind == "file" else path.is_dir()
    if not ok:
        found = "is a folder" if path.is_dir() else "is a file" if path.exists() else "does not exist"
        raise BackendSetupError(f"{param}: {path} {found}; expected a {kind}: {expected}")
    return path


def _signature_text(sig: Sequence[tuple[str, Sequence[Dim]]]) -> str:
    dims = (",".join(str(d) if isinstance(d, int) else "?" for d in shape) for _, shape in sig)
    return ", ".join(f"{name} [{d}]" for (name, _), d in zip(sig, dims))


def check_signature(
    param: str,
    path: Path,
    found_inputs: Sequence[tuple[str, Sequence[Dim]]],
    found_outputs: Sequence[tuple[str, Sequence[Dim]]],
    expected_inputs: Sequence[Sequence[Dim]],
    expected_outputs: Sequence[Sequence[Dim]],
) -> None:
    """Refuse a model whose inputs / outputs do not have the expected ranks and sizes (a None or str dim in
    `expected_*` matches any size; a symbolic dim in the model matches any expected size). The error shows both."""

    def fits(found: Sequence[tuple[str, Sequence[Dim]]], expected: Sequence[Sequence[Dim]]) -> bool:
        if len(found) != len(expected):
            return False
        for (_, shape), want in zip(found, expected):
            if len(shape) != len(want):
                return False
            if any(isinstance(d, int) and isinstance(w, int) and d != w for d, w in zip(shape, want)):
                return False
        return True

    if not (fits(found_inputs, expected_inputs) and fits(found_outputs, expected_outputs)):
        want_in = _signature_text([(f"input{i}", s) for i, s in enumerate(expected_inputs)])
        want_out = _signature_text([(f"output{i}", s) for i, s in enumerate(expected_outputs)])
        raise BackendSetupError(
            f"{param}: {path} is not the expected model: it takes {_signature_text(found_inputs)} and gives "
            f"{_signature_text(found_outputs)}; expected inputs {want_in} and outputs {want_out}"
        )


def onnx_providers(device: str) -> list[str]:
    """ONNX Runtime execution providers for `device`: `auto` = CUDA when this onnxruntime build has it, else CPU;
    `cpu`; `cuda` (an error when the build has no CUDA provider: install onnxruntime-gpu instead of onnxruntime)."""
    import onnxruntime as ort

    available = ort.get_available_providers()
    if device == "cpu":
        return ["CPUExecutionProvider"]
    if device in ("cuda", "auto") and "CUDAExecutionProvider" in available:
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    if device == "cuda":
        raise BackendSetupError(
            "device: cuda, but this onnxruntime has no CUDA execution provider (it has "
            f"{available}); replace onnxruntime with onnxruntime-gpu of the same version, or set device: cpu"
        )
    if device != "auto":
        raise BackendSetupError(f"device: {device!r}; choose auto, cpu or cuda")
    return ["CPUExecutionProvider"]


def onnx_session(param: str, path: Path, device: str, threads: int = 0):  # -> onnxruntime.InferenceSession
    """An ONNX Runtime session of the model at `path`; a file that is not an ONNX model is an error naming
    `param`. `threads` > 0 caps the intra-op threads (one per worker process when extraction runs in a pool)."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    if threads > 0:
        opts.intra_op_num_threads = threads
    try:
        return ort.InferenceSession(str(path), sess_options=opts, providers=onnx_providers(device))
    except BackendSetupError:
        raise
    except Exception as err:  # onnxruntime raises its own exception types for a file that is not a model
        raise BackendSetupError(f"{param}: {path} is not an ONNX model ONNX Runtime can load ({err})") from err


def onnx_signature(session) -> tuple[list[tuple[str, list[Dim]]], list[tuple[str, list[Dim]]]]:
    """(inputs, outputs) of an ONNX Runtime session as [(name, shape)]."""
    return (
        [(i.name, list(i.shape)) for i in session.get_inputs()],
        [(o.name, list(o.shape)) for o in session.get_outputs()],
    )


def torch_device(device: str):  # -> torch.device
    """`auto` = CUDA when present, else CPU; `cuda` without a GPU is an error naming the option."""
    import torch

    from pipeline.devices import resolve_device

    if device not in ("auto", "cpu", "cuda") and not str(device).startswith("cuda:"):
        raise BackendSetupError(f"device: {device!r}; choose auto, cpu, cuda or cuda:N")
    if str(device).startswith("cuda") and not torch.cuda.is_available():
        raise BackendSetupError(f"device: {device}, but torch sees no CUDA device; set device: cpu or auto")
    return resolve_device(device)


def torch_dtype(dtype: str, device):  # -> torch.dtype
    """`auto` = bfloat16 on CUDA (float16 where the GPU has no bfloat16), float32 on CPU; or float32 / float16 /
    bfloat16 as given (float16 on CPU is refused: CPU kernels for it are slow or missing)."""
    import torch

    names = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
    if dtype == "auto":
        if device.type != "cuda":
            return torch.float32
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if dtype not in names:
        raise BackendSetupError(f"dtype: {dtype!r}; choose auto, float32, float16 or bfloat16")
    if dtype == "float16" and device.type == "cpu":
        raise BackendSetupError("dtype: float16 needs CUDA; on CPU use float32 or bfloat16")
    return names[dtype]


def worker_threads() -> int:
    """Intra-op threads per backend: 1 inside an extraction pool worker (the pool already uses every core)."""
    return int(os.environ.get("SIGNX_BACKEND_THREADS", "0"))
