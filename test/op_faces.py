"""The faces of theanets' compiled ops, for their tests.

``face`` is a pytest fixture (import it into a test module) parametrized over:

- ``'c'``: the C code as compiled for this machine (PyTensor's C mode);
- ``'portable'``: the C code compiled without AVX-512 (``THEANETS_PORTABLE=1``);
- ``'numpy'``: the ops' NumPy ``perform`` (Python linker);
- ``'jax'``: the ops' JAX twins (JAX mode; with JAX's x64 enabled for float64 inputs).

In the C faces an op that falls back to its NumPy code fails the test.
"""

import contextlib

import pytest

import theanets
import pytensor
from pytensor.compile.mode import Mode

from theanets.ops import base

FACES = ('c', 'portable', 'numpy', 'jax')


def _c_only(self, node, storage_map, compute_map, no_recycling, impl=None):
    """CSourceOp.make_thunk without the NumPy fallback: a compile error fails."""
    return _MAKE_THUNK(self, node, storage_map, compute_map, no_recycling, impl or 'c')


_MAKE_THUNK = base.CSourceOp.make_thunk


class Face:
    """Compile and run graphs of theanets ops through one face."""

    def __init__(self, name):
        self.name = name

    def function(self, inputs, outputs):
        if self.name == 'numpy':
            return pytensor.function(inputs, outputs, mode=Mode(linker='py',
                                                                 optimizer='fast_compile'))
        if self.name == 'jax':
            base.register_jax_twins()
            return pytensor.function(inputs, outputs, mode='JAX')
        return theanets.backend.function(inputs, outputs)

    def __call__(self, inputs, outputs, *values):
        """Compile ``outputs`` of ``inputs`` and return their values at ``values``."""
        context = contextlib.nullcontext()
        if self.name == 'jax' and any(v.dtype == 'float64' for v in inputs):
            import jax
            context = jax.enable_x64(True)      # else JAX computes in float32
        with context:
            return self.function(inputs, outputs)(*values)


@pytest.fixture(params=FACES)
def face(request, monkeypatch):
    if request.param == 'jax':
        pytest.importorskip('jax')
    if request.param == 'portable':
        monkeypatch.setenv('THEANETS_PORTABLE', '1')
    if request.param in ('c', 'portable'):
        monkeypatch.setattr(base.CSourceOp, 'make_thunk', _c_only)
    return Face(request.param)
