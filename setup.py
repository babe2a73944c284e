"""The optional C extension of the moment kernels; everything else is in pyproject.toml.

``optional=True``: where no C compiler is available the build goes on without it, and
``moebench.backend`` uses numpy's BLAS instead (the kernels are an accelerator,
not a requirement; ``moebench.backend.FUSED_KERNELS`` says which path runs).
"""

from setuptools import Extension, setup

setup(ext_modules=[Extension("moebench._fused", sources=["moebench/_fused.c"],
                             extra_compile_args=["-O3"], optional=True)])
