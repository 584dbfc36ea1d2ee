"""The one place that imports CrypTen.

CrypTen 0.4.1 is installed with `pip install --no-deps crypten==0.4.1` (its metadata names
the broken `sklearn` package; its real dependencies are in requirements.lock). On torch
2.13 its ONNX converter imports `torch.onnx._internal.registration`, which no longer
exists; a stand-in module is registered before the import. Only CrypTen's ONNX model
conversion (`crypten.nn.from_pytorch` / `from_onnx`) depends on it and is unusable here;
the MPC tensors this project uses are unaffected. Nothing else may `import crypten`.
"""

from __future__ import annotations

import sys
import types
from typing import Any

_STAND_IN = "torch.onnx._internal.registration"


def import_crypten() -> Any:
    """Import and return the `crypten` module, installing the torch 2.13 stand-in first."""
    if "crypten" in sys.modules:
        return sys.modules["crypten"]
    import torch.onnx._internal  # noqa: F401  (the stand-in's parent package must exist)

    if _STAND_IN not in sys.modules:
        stand_in = types.ModuleType(_STAND_IN)
        stand_in.registry = None  # type: ignore[attr-defined]  # read only by ONNX export
        sys.modules[_STAND_IN] = stand_in
    import crypten

    return crypten
