"""k-bit packing core: CodeLayout, the compiled quantize_pack / gather_unpack kernels (rows at bit stride),
PackedRows; escape-coded rows (EscapeLayout, EscapeRows); and the mixed-width rows of buffers saved before
format 5 (MixedLayout, MixedRows, ExceptionStore, the compiled mixed_* kernels).

The names below load on first use (PEP 562), so ``import cython_core.layout`` (what the planner
imports) never loads the compiled extensions ``cython_core._kernels`` and ``cython_core._mixed`` (built by
``pip install .``).

>>> import numpy as np
>>> from cython_core import CodeLayout, gather_unpack, quantize_pack
>>> spec = CodeLayout.uniform(4, decimals=2, clamp=127.0)
>>> storage = np.zeros(spec.words(10), dtype=np.uint64)
>>> quantize_pack(np.array([[0.123, -5.0, 300.0, 1.005]]), storage, np.array([3]), spec)
1
>>> out = np.empty((1, 4), dtype=np.float32)
>>> gather_unpack(storage, np.array([3]), spec, out)
>>> [round(float(v), 4) for v in out[0]]  # 1.005 is 1.00499... in binary: rounds down
[0.12, -5.0, 127.0, 1.0]
"""

import importlib
from typing import Any

_HOMES = {
    "CodeLayout": "cython_core.uniform",
    "EXCEPTION_DTYPE": "cython_core.exceptions",
    "EscapeLayout": "cython_core.escape",
    "EscapeRows": "cython_core._escape",
    "ExceptionStore": "cython_core.exceptions",
    "MixedRows": "cython_core.mixed",
    "MixedLayout": "cython_core.mixed",
    "NonFiniteError": "cython_core.errors",
    "PackedRows": "cython_core.storage",
    "gather_unpack": "cython_core._kernels",
    "mixed_codes": "cython_core._mixed",
    "mixed_match": "cython_core._mixed",
    "mixed_pack": "cython_core._mixed",
    "mixed_pack_codes": "cython_core._mixed",
    "mixed_unpack": "cython_core._mixed",
    "pack_codes": "cython_core._kernels",
    "quantize_pack": "cython_core._kernels",
    "quantize_continue": "cython_core._kernels",
    "quantize_match": "cython_core._kernels",
    "quantize_codes": "cython_core._kernels",
    "quantize_pack_counts": "cython_core._kernels",
    "unpack_codes": "cython_core._kernels",
}
_COMPILED = ("cython_core._kernels", "cython_core._mixed", "cython_core._escape")
__all__ = sorted(_HOMES)


def __getattr__(name: str) -> Any:
    if name not in _HOMES:
        raise AttributeError(f"module 'cython_core' has no attribute {name!r}")
    try:
        module = importlib.import_module(_HOMES[name])
    except ModuleNotFoundError as err:
        if err.name not in _COMPILED:
            raise
        raise ImportError(f"the compiled packing core {err.name} is not installed: it is built by "
                          "`pip install .`, which needs a C compiler (e.g. apt-get install gcc); install one "
                          "and reinstall") from err
    value = getattr(module, name)
    globals()[name] = value
    return value


def __dir__() -> "list[str]":
    return sorted(set(globals()) | set(_HOMES))
