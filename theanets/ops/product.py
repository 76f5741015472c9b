"""Products over the last axis of a 3-D tensor: ``x (A, C, n) . w (n, k)``, one GEMM each.

Recurrent layers project their (batch, time, n) inputs and outputs with such
products. PyTensor writes ``dot`` of a 3-D tensor as reshapes to shapes it
computes from the input's shape; its JAX backend cannot compile their
gradients (JAX needs static shapes), and ``matmul``'s weight gradient becomes
a batched product and a sum in the C modes. :func:`dot_last` is one matrix
product in C (``c/product.c``) and ``jnp.matmul`` in JAX; its weight gradient
:class:`DotLeadingOp` is one product too.
"""

import numpy as np

from pytensor.graph.basic import Apply
from pytensor.link.c.params_type import ParamsType
from pytensor.scalar import int32
from pytensor.tensor.type import TensorType

from .base import CSourceOp, float_inputs, jax_twin, threads

__all__ = ['dot_last', 'DotLastOp', 'DotLeadingOp']


class _ProductOp(CSourceOp):
    """C sources and settings of the product ops: the rows of their output are split
    among threads (c/parallel.c)."""

    C_SOURCES = ('parallel.c', 'product.c')
    USES_BLAS = True
    params_type = ParamsType(threads=int32)

    def get_params(self, node):
        return self.params_type.get_params(threads=threads())

    def c_call(self, node, inputs, outputs, sub):
        return '{}({}, {}, &{}, {}->threads)'.format(self.C_FUNCTION, *inputs, outputs[0],
                                                     sub['params'])


class DotLastOp(_ProductOp):
    """``y = x . w`` for ``x`` (A, C, n) and ``w`` (n, k): y is (A, C, k)."""

    C_FUNCTION = 'thn_dot_last'

    def make_node(self, x, w):
        x, w = float_inputs('dot_last', ['x', 'w'], [x, w], [3, 2])
        shape = x.type.shape[:2] + w.type.shape[1:]
        return Apply(self, [x, w], [TensorType(x.dtype, shape=shape)()])

    def infer_shape(self, *args):  # (fgraph, node, shapes) in PyTensor 3.0, (node, shapes) later
        shapes = args[-1]
        return [shapes[0][:2] + shapes[1][1:]]

    def perform(self, node, inputs, outputs, params=None):
        x, w = inputs
        if w.shape[0] != x.shape[2]:
            raise ValueError('dot_last: w has shape {}, expected ({}, k)'.format(
                w.shape, x.shape[2]))
        outputs[0][0] = np.matmul(x, w).astype(x.dtype)

    def pullback(self, inputs, outputs, output_grads):
        x, w = inputs
        (g,) = output_grads
        return [DotLastOp()(g, w.T), DotLeadingOp()(x, g)]


class DotLeadingOp(_ProductOp):
    """``dw = sum_{a, c} x[a, c]^T g[a, c]`` for ``x`` (A, C, n), ``g`` (A, C, k): (n, k)."""

    C_FUNCTION = 'thn_dot_leading'

    def make_node(self, x, g):
        x, g = float_inputs('dot_leading', ['x', 'g'], [x, g], [3, 3])
        return Apply(self, [x, g], [TensorType(x.dtype, shape=(x.type.shape[2],
                                                             g.type.shape[2]))()])

    def infer_shape(self, *args):  # (fgraph, node, shapes) in PyTensor 3.0, (node, shapes) later
        shapes = args[-1]
        return [(shapes[0][2], shapes[1][2])]

    def perform(self, node, inputs, outputs, params=None):
        x, g = inputs
        if g.shape[:2] != x.shape[:2]:
            raise ValueError('dot_leading: g has shape {}, expected ({}, {}, k)'.format(
                g.shape, *x.shape[:2]))
        outputs[0][0] = np.tensordot(x, g, axes=([0, 1], [0, 1])).astype(x.dtype)

    def pullback(self, inputs, outputs, output_grads):
        x, g = inputs
        (h,) = output_grads
        return [DotLastOp()(g, h.T), DotLastOp()(x, h)]


@jax_twin(DotLastOp)
def _dot_last_jax(op, node=None, **kwargs):
    import jax.numpy as jnp
    return jnp.matmul


@jax_twin(DotLeadingOp)
def _dot_leading_jax(op, node=None, **kwargs):
    import jax.numpy as jnp
    return lambda x, g: jnp.tensordot(x, g, axes=((0, 1), (0, 1)))


def dot_last(x, w):
    """Product of ``x`` (A, C, n) with ``w`` (n, k) over the last axis of ``x``.

    Parameters
    ----------
    x : tensor3
    w : matrix

    Returns
    -------
    tensor3 (A, C, k)
        ``x[a, c] . w`` for every ``a, c``.
    """
    return DotLastOp()(x, w)
