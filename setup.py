"""Build the Cython packing core (cython_core._kernels); everything else is in pyproject.toml.

Compiler flags (GCC/Clang; MSVC gets /O2 /fp:precise):
  -O3                 vectorizes the dequantize loop and specializes the k = 12 / 15 unpack loops;
  -ffp-contract=off   no fused multiply-add: x * scale is rounded before the rounding to an integer,
                      as numpy does it (an FMA rounds once and can move a value across a .5 boundary,
                      breaking bit-for-bit agreement with the numpy reference).
Portable by default, so a wheel runs on any x86-64 / aarch64 CPU; JUSTROUND_NATIVE=1 adds -march=native
(AVX2 conversions and an inline `roundsd` on this machine, no longer portable).
"""
import os
import sys

from Cython.Build import cythonize
from setuptools import Extension, setup

if sys.platform == "win32":
    compile_args = ["/O2", "/fp:precise"]
else:
    compile_args = ["-O3", "-ffp-contract=off"]
    if os.environ.get("JUSTROUND_NATIVE") == "1":
        compile_args.append("-march=native")

extensions = [
    Extension("cython_core._kernels", ["cython_core/_kernels.pyx"], extra_compile_args=compile_args),
]

setup(ext_modules=cythonize(extensions, language_level=3, compiler_directives={"embedsignature": True}))
