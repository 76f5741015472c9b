r"""Softmax over the last axis as one C loop per row.

PyTensor 3.0 runs :func:`pytensor.tensor.special.softmax` in C modes either as
a Python Op wrapping an inner compiled function or, inlined, as four separate
reductions and elementwise loops (max, exp, sum, divide), each a pass over the
whole tensor with PyTensor's generic reduction code. For the row lengths of a
classifier's output (10 to a few hundred classes) one C pass per row is several
times faster, forward and backward.

:func:`softmax` returns::

    y[..., j] = exp(x[..., j] - m) / sum_k exp(x[..., k] - m),   m = max_k x[..., k]

and its gradient Op computes ``dx = y * (dy - sum_k dy[..., k] y[..., k])``.
"""

import numpy as np

import pytensor
import pytensor.tensor as pt
from pytensor.graph.basic import Apply
from pytensor.link.c.op import COp

from . import cmath

_C_VERSION = 1

_SUPPORT_CODE = cmath.ELEMENTWISE + r"""
#ifndef THN_SOFTMAX_SUPPORT
#define THN_SOFTMAX_SUPPORT

/* y = softmax(x) for R rows of C contiguous values */
template <typename T>
static void thn_softmax_rows(npy_intp R, npy_intp C, const T* x, T* y) {
    for (npy_intp r = 0; r < R; ++r) {
        const T* xr = x + r * C;
        T* yr = y + r * C;
        T m = xr[0];
        for (npy_intp j = 1; j < C; ++j) m = xr[j] > m ? xr[j] : m;
        T s = 0;
#pragma omp simd reduction(+ : s)
        for (npy_intp j = 0; j < C; ++j) {
            const T e = thn_rec_exp(xr[j] - m);
            yr[j] = e;
            s += e;
        }
        const T inv = (T)1 / s;
#pragma omp simd
        for (npy_intp j = 0; j < C; ++j) yr[j] *= inv;
    }
}

/* dx = y * (dy - <dy, y>) row by row */
template <typename T>
static void thn_softmax_grad_rows(npy_intp R, npy_intp C, const T* dy, const T* y, T* dx) {
    for (npy_intp r = 0; r < R; ++r) {
        const T* dyr = dy + r * C;
        const T* yr = y + r * C;
        T* dxr = dx + r * C;
        T s = 0;
#pragma omp simd reduction(+ : s)
        for (npy_intp j = 0; j < C; ++j) s += dyr[j] * yr[j];
#pragma omp simd
        for (npy_intp j = 0; j < C; ++j) dxr[j] = yr[j] * (dyr[j] - s);
    }
}

/* a C-contiguous array like `like` in *out, reused when it already fits */
static int thn_softmax_alloc(PyArrayObject** out, PyArrayObject* like) {
    PyArrayObject* o = *out;
    const int nd = PyArray_NDIM(like);
    if (o && PyArray_NDIM(o) == nd && PyArray_TYPE(o) == PyArray_TYPE(like) &&
        PyArray_IS_C_CONTIGUOUS(o) && PyArray_ISWRITEABLE(o) &&
        PyArray_CompareLists(PyArray_DIMS(o), PyArray_DIMS(like), nd))
        return 0;
    Py_XDECREF(o);
    *out = (PyArrayObject*)PyArray_EMPTY(nd, PyArray_DIMS(like), PyArray_TYPE(like), 0);
    return *out ? 0 : -1;
}

#endif
"""


def _rows(shape):
    """(rows, columns) of an array seen as rows along its last axis."""
    columns = shape[-1]
    return (int(np.prod(shape[:-1], dtype=np.int64)), columns)


class _RowCOp(COp):
    """Shared plumbing of the row-wise softmax Ops."""

    __props__ = ()

    def c_support_code(self, **kwargs):
        return _SUPPORT_CODE

    def c_compile_args(self, **kwargs):
        return ['-fopenmp-simd']

    def c_code_cache_version(self):
        return (_C_VERSION,) + cmath.VERSION


def _float_input(x, what):
    x = pt.as_tensor_variable(x)
    if x.ndim < 1:
        raise ValueError('softmax: {} must have at least one axis, got a scalar'.format(what))
    if x.dtype not in ('float32', 'float64'):
        x = pt.cast(x, pytensor.config.floatX if x.dtype != 'float64' else 'float64')
    return x


class SoftmaxOp(_RowCOp):
    """Softmax over the last axis: input ``x`` (..., C), output ``y`` of the same shape."""

    def make_node(self, x):
        x = _float_input(x, 'x')
        return Apply(self, [x], [x.type()])

    def infer_shape(self, fgraph, node, shapes):
        return [shapes[0]]

    def perform(self, node, inputs, outputs):
        (x,) = inputs
        if x.shape[-1] == 0:
            outputs[0][0] = np.empty_like(x)
            return
        e = np.exp(x - x.max(axis=-1, keepdims=True))
        outputs[0][0] = (e / e.sum(axis=-1, keepdims=True)).astype(x.dtype)

    def c_code(self, node, name, inputs, outputs, sub):
        return r"""
{
    PyArrayObject* xc = PyArray_GETCONTIGUOUS(%(x)s);
    if (!xc) %(fail)s
    if (thn_softmax_alloc(&%(y)s, xc)) { Py_DECREF(xc); %(fail)s }
    const npy_intp C = PyArray_NDIM(xc) ? PyArray_DIMS(xc)[PyArray_NDIM(xc) - 1] : 1;
    if (C > 0)
        thn_softmax_rows<dtype_%(x)s>(PyArray_SIZE(xc) / C, C,
            (const dtype_%(x)s*)PyArray_DATA(xc), (dtype_%(x)s*)PyArray_DATA(%(y)s));
    Py_DECREF(xc);
}
""" % dict(x=inputs[0], y=outputs[0], fail=sub['fail'])

    def pullback(self, inputs, outputs, output_grads):
        return [SoftmaxGradOp()(output_grads[0], outputs[0])]


class SoftmaxGradOp(_RowCOp):
    """Gradient of :class:`SoftmaxOp`: inputs ``(dy, y)``, output ``dx``, all (..., C)."""

    def make_node(self, dy, y):
        y = _float_input(y, 'y')
        dy = pt.as_tensor_variable(dy)
        if dy.ndim != y.ndim:
            raise ValueError('softmax gradient: dy has {} axes, y has {}'.format(dy.ndim, y.ndim))
        dy = pt.cast(dy, y.dtype) if dy.dtype != y.dtype else dy
        return Apply(self, [dy, y], [y.type()])

    def infer_shape(self, fgraph, node, shapes):
        return [shapes[1]]

    def perform(self, node, inputs, outputs):
        dy, y = inputs
        if dy.shape != y.shape:
            raise ValueError('softmax gradient: dy has shape {}, y has shape {}'.format(
                dy.shape, y.shape))
        s = (dy * y).sum(axis=-1, keepdims=True)
        outputs[0][0] = (y * (dy - s)).astype(y.dtype)

    def c_code(self, node, name, inputs, outputs, sub):
        return r"""
{
    if (PyArray_NDIM(%(dy)s) != PyArray_NDIM(%(y)s) ||
        !PyArray_CompareLists(PyArray_DIMS(%(dy)s), PyArray_DIMS(%(y)s), PyArray_NDIM(%(y)s))) {
        PyErr_SetString(PyExc_ValueError, "softmax gradient: dy and y differ in shape");
        %(fail)s
    }
    PyArrayObject* dyc = PyArray_GETCONTIGUOUS(%(dy)s);
    PyArrayObject* yc = PyArray_GETCONTIGUOUS(%(y)s);
    if (!dyc || !yc || thn_softmax_alloc(&%(dx)s, yc)) {
        Py_XDECREF(dyc); Py_XDECREF(yc); %(fail)s
    }
    const npy_intp C = PyArray_NDIM(yc) ? PyArray_DIMS(yc)[PyArray_NDIM(yc) - 1] : 1;
    if (C > 0)
        thn_softmax_grad_rows<dtype_%(y)s>(PyArray_SIZE(yc) / C, C,
            (const dtype_%(y)s*)PyArray_DATA(dyc), (const dtype_%(y)s*)PyArray_DATA(yc),
            (dtype_%(y)s*)PyArray_DATA(%(dx)s));
    Py_DECREF(dyc);
    Py_DECREF(yc);
}
""" % dict(dy=inputs[0], y=inputs[1], dx=outputs[0], fail=sub['fail'])

    def pullback(self, inputs, outputs, output_grads):
        # dx = y (dy - s), s = <dy, y>; with g the gradient at dx and gy = <g, y>:
        # d/d dy = y (g - gy),  d/dy = g (dy - s) - dy gy (second derivatives, e.g. ESGD)
        dy, y = inputs
        (g,) = output_grads
        s = (dy * y).sum(axis=-1, keepdims=True)
        gy = (g * y).sum(axis=-1, keepdims=True)
        return [y * (g - gy), g * (dy - s) - dy * gy]


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
