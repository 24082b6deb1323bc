"""Build the Cython packing core (cython_core._kernels); everything else is in pyproject.toml."""
import os

from Cython.Build import cythonize
from setuptools import Extension, setup

# Portable by default (wheels run on any x86-64 / aarch64); JUSTROUND_NATIVE=1 tunes for this CPU.
compile_args = ["-O3"]
if os.environ.get("JUSTROUND_NATIVE") == "1":
    compile_args.append("-march=native")

extensions = [
    Extension("cython_core._kernels", ["cython_core/_kernels.pyx"], extra_compile_args=compile_args),
]

setup(ext_modules=cythonize(extensions, language_level=3, compiler_directives={"embedsignature": True}))
