"""Build the Cython packing core (cython_core._kernels, cython_core._mixed); everything else is in pyproject.toml.

The extension is optional: without a C compiler ``pip install .`` still installs the planner
(estimate, reproduce, fit, profiles need no compiled code) and warns; importing the kernels then says
how to get them. The test suite fails without them.

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
from setuptools.command.build_ext import build_ext

if sys.platform == "win32":
    compile_args = ["/O2", "/fp:precise"]
else:
    compile_args = ["-O3", "-ffp-contract=off"]
    if os.environ.get("JUSTROUND_NATIVE") == "1":
        compile_args.append("-march=native")

extensions = [
    Extension("cython_core._kernels", ["cython_core/_kernels.pyx"], extra_compile_args=compile_args),
    Extension("cython_core._mixed", ["cython_core/_mixed.pyx"], extra_compile_args=compile_args),
    Extension("cython_core._escape", ["cython_core/_escape.pyx"], extra_compile_args=compile_args),
]


class OptionalBuildExt(build_ext):
    """Build the kernels, or warn and go on without them (setuptools' own ``optional=True`` misses the
    CompileError of a missing compiler in setuptools 84)."""

    def build_extension(self, ext: Extension) -> None:
        try:
            super().build_extension(ext)
        except Exception as err:  # noqa: BLE001 - any failure to compile leaves the planner usable
            self.warn(f"could not build {ext.name} ({err}): the planner works without it; the packing core, "
                      "the quantized buffers and the tests need it (install a C compiler and reinstall)")

setup(cmdclass={"build_ext": OptionalBuildExt},
      ext_modules=cythonize(extensions, language_level=3, compiler_directives={"embedsignature": True}))
