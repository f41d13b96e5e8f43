"""Extractor backends, one module each, registered with `extractors.registry.register`. Importing this package
imports every backend (a new backend adds its module's import here): spelled out rather than discovered by name,
so that `extract`'s import closure (tests/test_dvc_deps.py) sees every backend it may run."""

# their registrations run on import
from extractors.backends import (  # noqa: F401
    depth,
    dwpose_onnx,
    holistic,
    posefile,
    sapiens_torchscript,
    simulated,
    smplerx_import,
)
