r"""Softmax over the last axis: one C pass per row, a NumPy reference, a JAX twin.

In C modes PyTensor runs :func:`pytensor.tensor.special.softmax` as several
whole-tensor passes (max, exp, sum, divide) through its generic reduction
code; for a classifier's rows (10 to a few hundred classes) one pass per row is
several times faster, forward and backward. The C code is ``c/softmax.c``.

:func:`softmax` computes::

    y[..., j] = exp(x[..., j] - m) / sum_k exp(x[..., k] - m),   m = max_k x[..., k]

and :class:`SoftmaxGradOp` computes ``dx = y * (dy - sum_k dy[..., k] y[..., k])``.
"""

import numpy as np

import pytensor.tensor as pt
from pytensor.graph.basic import Apply

from .base import CSourceOp, float_inputs, jax_twin

__all__ = ['SoftmaxOp', 'SoftmaxGradOp', 'softmax']


def np_softmax(x):
    """NumPy reference of :class:`SoftmaxOp` (any shape, softmax over the last axis)."""
    if x.shape[-1] == 0:
        return np.empty_like(x)
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return (e / e.sum(axis=-1, keepdims=True)).astype(x.dtype)


def np_softmax_grad(dy, y):
    """NumPy reference of :class:`SoftmaxGradOp`."""
    if dy.shape != y.shape:
        raise ValueError('softmax gradient: dy has shape {}, expected {}'.format(
            dy.shape, y.shape))
    return (y * (dy - (dy * y).sum(axis=-1, keepdims=True))).astype(y.dtype)


class _Softmax(CSourceOp):
    """What the softmax ops share: the C code, the output shaped like the last input."""

    C_SOURCES = ('softmax.c',)
    REFERENCE = None  # the NumPy implementation

    def infer_shape(self, *args):  # (fgraph,) node, shapes: 3.3 dropped fgraph
        return [args[-1][-1]]

    def perform(self, node, inputs, outputs):
        outputs[0][0] = self.REFERENCE(*inputs)

    def c_call(self, node, inputs, outputs, sub):  # thn_softmax(x, NULL, &y) or (dy, y, &dx)
        return 'thn_softmax({}, {}, &{})'.format(*(list(inputs) + ['NULL'])[:2], outputs[0])


class SoftmaxOp(_Softmax):
    """Softmax over the last axis: input ``x`` (..., C), output ``y`` of the same shape."""

    REFERENCE = staticmethod(np_softmax)

    def make_node(self, x):
        (x,) = float_inputs('softmax', ['x'], [x], [None])
        return Apply(self, [x], [x.type()])

    def pullback(self, inputs, outputs, output_grads):
        return [SoftmaxGradOp()(output_grads[0], outputs[0])]


class SoftmaxGradOp(_Softmax):
    """Gradient of :class:`SoftmaxOp`: inputs ``(dy, y)``, output ``dx``, all (..., C)."""

    REFERENCE = staticmethod(np_softmax_grad)

    def make_node(self, dy, y):
        y = pt.as_tensor_variable(y)
        y, dy = float_inputs('softmax gradient', ['y', 'dy'], [y, dy], [None, y.ndim])
        return Apply(self, [dy, y], [y.type()])

    def pullback(self, inputs, outputs, output_grads):
        # dx = y (dy - s), s = <dy, y>; with g the gradient at dx and gy = <g, y>:
        # d/d dy = y (g - gy),  d/dy = g (dy - s) - dy gy (second derivatives, e.g. ESGD)
        dy, y = inputs
        (g,) = output_grads
        s = (dy * y).sum(axis=-1, keepdims=True)
        gy = (g * y).sum(axis=-1, keepdims=True)
        return [y * (g - gy), g * (dy - s) - dy * gy]


@jax_twin(SoftmaxOp)
def _softmax_jax(op, node=None, **kwargs):
    import jax
    return lambda x: jax.nn.softmax(x, axis=-1)


@jax_twin(SoftmaxGradOp)
def _softmax_grad_jax(op, node=None, **kwargs):
    return lambda dy, y: y * (dy - (dy * y).sum(axis=-1, keepdims=True))


def softmax(x):
    """Softmax of ``x`` over its last axis, computed by :class:`SoftmaxOp`.

    Parameters
    ----------
    x : tensor (..., C)
        Scores; integer inputs are cast to ``floatX``.

    Returns
    -------
    tensor (..., C)
        Non-negative values summing to one along the last axis.
    """
    return SoftmaxOp()(x)
