r"""Convolution and pooling of channels-last tensors: C ops with NumPy and JAX faces.

Convolution
-----------
:func:`conv1d` and :func:`conv2d` compute a **true convolution**: the kernel is
flipped along every spatial axis, as Theano's ``conv2d`` did (and as
``scipy.signal.convolve`` does). For ``x`` (B, W, H, C) zero-padded to ``xp``
(see the border modes) and weights ``w`` (n, C, fw, fh)::

    out[b, i, j, k] = sum_{u, v, c} xp[b, i*sw + u, j*sh + v, c] * w[k, c, fw-1-u, fh-1-v]

Border modes, with ``f`` a filter length and ``s`` its stride:

``'valid'``
    no padding; output ``(size - f) // s + 1`` (0 when the filter does not fit).
``'full'``
    ``f - 1`` zeros on both sides; output ``(size + f - 2) // s + 1``.
``'same'``
    ``(f - 1) // 2`` zeros before the data and ``f // 2`` after; output
    ``ceil(size / s)``. For odd ``f`` and stride 1 this is the centred result of
    ``scipy.signal.convolve(..., mode='same')``; for even ``f`` the window sits
    one step later than SciPy's.

These rules live in :func:`padding` and :func:`output_length` here, and in
``thn_pad_before`` / ``thn_conv_out_len`` of ``c/theanets.h`` for the C code.

Pooling
-------
:func:`pool1d` / :func:`pool2d` take the maximum or the mean over windows of
``pool_size`` entries moved by ``stride`` (default ``pool_size``). Windows that
do not fit are dropped (Theano's ``ignore_border=True``): the output length is
that of a ``'valid'`` convolution. For a max, the gradient goes to *every*
element equal to its window's maximum (as in Theano).

Operations
----------
:class:`ConvOp` (``c/conv.c``) splits the output positions among threads, each
multiplying the patches of a cache-sized chunk at a time with the flipped kernel
in one single-threaded BLAS product; :class:`ConvGradInputsOp` and
:class:`ConvGradWeightsOp` do the same for ``dx`` and ``dw``, so a graph computes
only the gradients it uses. :class:`PoolOp` and :class:`PoolGradOp` (``c/pool.c``)
are loops over the windows. Gradient ops are differentiable in turn (a
convolution's gradient's gradient is one of the three convolutions; pooling's
gradient is linear, its transpose a :class:`PoolGradOp` too), so Hessian-vector
products (ESGD) work. 1-D convolution and pooling run the 2-D ops on a size-1 axis.

The JAX twins (the ops' third face, see :mod:`theanets.ops.base`) use
``jax.lax.conv_general_dilated``, ``jax.lax.reduce_window`` and ``jax.vjp``.
:class:`ConvOp` and :class:`PoolOp` have no ``infer_shape``: shapes of their
outputs are read from the outputs, as JAX needs (it traces shape arithmetic
into arrays, not integers). Settings (border mode, strides, pool size, mode)
reach the C code as op parameters: one compiled module serves every setting.
"""

import numpy as np
import pytensor.tensor as pt
from pytensor.graph.basic import Apply
from pytensor.link.c.params_type import ParamsType
from pytensor.scalar import int32
from pytensor.tensor.type import TensorType

from .base import CSourceOp, float_inputs, jax_twin, threads

__all__ = ['conv1d', 'conv2d', 'pool1d', 'pool2d', 'padding', 'output_length',
           'output_shape', 'pool_output_shape', 'check_border_mode', 'check_pool_mode',
           'check_ints', 'ConvOp', 'ConvGradInputsOp', 'ConvGradWeightsOp', 'PoolOp', 'PoolGradOp',
           'BORDER_MODES', 'POOL_MODES']

#: in the order of ``enum thn_border`` (c/theanets.h)
BORDER_MODES = ('valid', 'full', 'same')
#: in the order of ``enum thn_pool_mode`` (c/pool.c); 'average' means 'mean'
POOL_MODES = ('max', 'mean')


# ------------------------------------------------------------------ geometry

def check_border_mode(border_mode):
    """Return ``border_mode`` if valid, else raise a ValueError naming the choices."""
    if border_mode not in BORDER_MODES:
        raise ValueError("border_mode must be 'valid', 'full' or 'same', got {!r}".format(
            border_mode))
    return border_mode


def check_pool_mode(mode):
    """Return the pooling ``mode`` ('average' read as 'mean'), else raise a ValueError."""
    if mode not in POOL_MODES + ('average', ):
        raise ValueError("pooling mode must be 'max', 'mean' or 'average', got {!r}".format(mode))
    return 'mean' if mode == 'average' else mode


def check_ints(value, n, what):
    """Return ``value`` as a tuple of ``n`` positive ints (one int: repeated ``n`` times),
    else raise a ValueError naming ``what``."""
    values = (value,) * n if isinstance(value, (int, np.integer)) else tuple(value)
    if len(values) != n or not all(isinstance(v, (int, np.integer)) and v > 0 for v in values):
        raise ValueError('{} must be {} positive int(s), got {!r}'.format(what, n, value))
    return tuple(int(v) for v in values)


def padding(filter, border_mode):
    """Zeros ``(before, after)`` the data along an axis with a ``filter`` taps long filter."""
    check_border_mode(border_mode)
    if border_mode == 'valid':
        return 0, 0
    if border_mode == 'full':
        return filter - 1, filter - 1
    return (filter - 1) // 2, filter // 2


def output_length(size, filter, stride=1, border_mode='valid'):
    """Length of a convolution's output along one axis (None if the input length ``size``
    or the ``filter`` length is None): ``(size + before + after - filter) // stride + 1``,
    at least 0, with :func:`padding`'s zeros ``before`` and ``after`` the data."""
    check_border_mode(border_mode)
    if size is None or filter is None:
        return None
    before, after = padding(filter, border_mode)
    return max((int(size) + before + after - filter) // stride + 1, 0)


def output_shape(sizes, filters, strides=1, border_mode='valid'):
    """Per-axis :func:`output_length` for several spatial axes (tuple)."""
    n = len(sizes)
    return tuple(output_length(s, f, st, border_mode) for s, f, st in zip(
        sizes, check_ints(filters, n, 'filter size'), check_ints(strides, n, 'stride')))


def pool_output_shape(sizes, pool_size, stride=None):
    """Numbers of pooling windows along several spatial axes (tuple): as many as a
    'valid' convolution with filters ``pool_size`` and ``stride`` has outputs."""
    return output_shape(sizes, pool_size, pool_size if stride is None else stride)


def _taps(filters, strides, outs):
    """Index of the strided slice of a (padded) input seen by each filter tap (u, v)."""
    return [(slice(None),) + tuple(slice(t, t + s * (o - 1) + 1, s)
                                   for t, s, o in zip(tap, strides, outs))
            for tap in np.ndindex(*filters)]


# ---------------------------------------------------------- NumPy references

def _np_patches(x, filters, stride, border_mode):
    """Patches (B, W', H', fw, fh, C) of x, and the index under each tap of padded x."""
    pads = [padding(f, border_mode) for f in filters]
    xp = np.pad(x, [(0, 0)] + pads + [(0, 0)])
    outs = output_shape(x.shape[1:3], filters, stride, border_mode)
    taps = _taps(filters, stride, outs)
    patches = np.stack([xp[t] for t in taps], axis=3)
    return patches.reshape(patches.shape[:3] + tuple(filters) + (x.shape[3],)), taps, pads


def np_conv2d(x, w, stride, border_mode):
    """NumPy reference of :class:`ConvOp`: x (B, W, H, C), w (n, C, fw, fh)."""
    patches, _, _ = _np_patches(x, w.shape[2:], stride, border_mode)
    return np.einsum('bijuvc,kcuv->bijk', patches, w[:, :, ::-1, ::-1]).astype(x.dtype)


def np_conv2d_grad_inputs(x, w, dout, stride, border_mode):
    """NumPy reference of :class:`ConvGradInputsOp` (x gives only its shape)."""
    _, taps, pads = _np_patches(x, w.shape[2:], stride, border_mode)
    dpatches = np.einsum('bijk,kcuv->uvbijc', dout, w[:, :, ::-1, ::-1])
    dxp = np.zeros_like(np.pad(x, [(0, 0)] + pads + [(0, 0)]))  # zero-padded x's shape
    for t, d in zip(taps, dpatches.reshape((len(taps),) + dpatches.shape[2:])):
        dxp[t] += d
    return np.ascontiguousarray(
        dxp[:, pads[0][0]:pads[0][0] + x.shape[1], pads[1][0]:pads[1][0] + x.shape[2]])


def np_conv2d_grad_weights(x, w, dout, stride, border_mode):
    """NumPy reference of :class:`ConvGradWeightsOp` (w gives only its shape)."""
    patches, _, _ = _np_patches(x, w.shape[2:], stride, border_mode)
    return np.einsum('bijuvc,bijk->kcuv', patches, dout)[:, :, ::-1, ::-1].astype(x.dtype)


def _pool_taps(shape, pool, stride):
    outs = pool_output_shape(shape[1:3], pool, stride)
    return (shape[0],) + outs + (shape[3],), _taps(pool, stride, outs)


def np_pool2d(x, pool, stride, mode):
    """NumPy reference of :class:`PoolOp`."""
    shape, taps = _pool_taps(x.shape, pool, stride)
    if not all(shape):
        return np.zeros(shape, x.dtype)
    windows = np.stack([x[t] for t in taps])
    return (windows.max(axis=0) if mode == 'max' else windows.mean(axis=0)).astype(x.dtype)


def _pool_weight(x, out, tap, mode, area):
    return (x[tap] == out) if mode == 'max' else 1.0 / area


def pool_gather(x, out, g, pool, stride, mode, xp=np):
    """``h[o] = sum_p weight[p, o] g[p]`` (see c/pool.c), for NumPy or JAX arrays ``xp``."""
    shape, taps = _pool_taps(x.shape, pool, stride)
    total = xp.zeros(shape, x.dtype)
    for tap in taps:
        total = total + _pool_weight(x, out, tap, mode, len(taps)) * g[tap]
    return total


def np_pool2d_scatter(x, out, gz, pool, stride, mode):
    """NumPy reference of the gradient: ``dx[p] = sum_o weight[p, o] gz[o]``."""
    dx = np.zeros_like(x)
    _, taps = _pool_taps(x.shape, pool, stride)
    for tap in taps:
        dx[tap] += _pool_weight(x, out, tap, mode, len(taps)) * gz
    return dx


def _check_shape(op, what, array, expected):
    if tuple(array.shape) != tuple(expected):
        raise ValueError('{}: {} has shape {}, expected {}'.format(
            op, what, tuple(array.shape), tuple(expected)))


def _check_channels(op, xshape, wshape):
    """The channel check of the C code (a shape's None, unknown, passes)."""
    if None not in (xshape[3], wshape[1]) and xshape[3] != wshape[1]:
        raise ValueError('{}: x (B, W, H, C) has shape {} but w (n, C, fw, fh) has {} '
                         'channels'.format(op, tuple(xshape), wshape[1]))


# ------------------------------------------------------------------------ ops

class _Conv(CSourceOp):
    """What the three convolution ops share: settings, input checks, the C call.

    Parameters
    ----------
    border_mode : {'valid', 'full', 'same'}
    stride : (int, int)
        Steps along W and H.
    """

    C_SOURCES = ('parallel.c', 'conv.c')
    USES_BLAS = True
    __props__ = ('border_mode', 'stride')
    params_type = ParamsType(border=int32, sw=int32, sh=int32, threads=int32)
    WHICH = None  # enum thn_conv_which
    REFERENCE = None  # the NumPy implementation
    NAMES = ('x (B, W, H, C)', 'w (n, C, fw, fh)', "dout (B, W', H', n)")

    def __init__(self, border_mode='valid', stride=(1, 1)):
        self.border_mode = check_border_mode(border_mode)
        self.stride = check_ints(stride, 2, 'stride')

    def get_params(self, node):
        return self.params_type.get_params(  # the fields' int32 type converts the ints
            border=BORDER_MODES.index(self.border_mode), sw=self.stride[0], sh=self.stride[1],
            threads=threads())

    def _node(self, *inputs):
        inputs = float_inputs(type(self).__name__, self.NAMES, inputs, [4] * 3)
        x, w = inputs[:2]
        _check_channels(type(self).__name__, x.type.shape, w.type.shape)
        out = inputs[self.WHICH - 1].type if self.WHICH else TensorType(
            x.dtype, shape=self._out_shape(x.type.shape, w.type.shape))
        return Apply(self, inputs, [out()])

    def _out_shape(self, xshape, wshape):
        return (xshape[0],) + tuple(
            output_length(size, f, s, self.border_mode)
            for size, f, s in zip(xshape[1:3], wshape[2:], self.stride)) + (wshape[0],)

    def perform(self, node, inputs, outputs, params=None):
        x, w = inputs[:2]
        name = type(self).__name__      # the run-time checks of the C code
        _check_channels(name, x.shape, w.shape)
        if len(inputs) > 2:
            _check_shape(name, 'the output gradient', inputs[2], self._out_shape(x.shape, w.shape))
        outputs[0][0] = self.REFERENCE(*inputs, self.stride, self.border_mode)

    def c_call(self, node, inputs, outputs, sub):
        args = ', '.join((list(inputs) + ['NULL'])[:3])  # x, w, dout
        return 'thn_conv({}, {}, &{}, {p}->border, {p}->sw, {p}->sh, {p}->threads, "{}")'.format(
            self.WHICH, args, outputs[0], type(self).__name__, p=sub['params'])


class ConvOp(_Conv):
    """True 2-D convolution: ``x`` (B, W, H, C), ``w`` (n, C, fw, fh) -> (B, W', H', n)."""

    WHICH = 0
    REFERENCE = staticmethod(np_conv2d)

    def make_node(self, x, w):
        return self._node(x, w)

    def pullback(self, inputs, outputs, output_grads):
        x, w = inputs
        gz = pt.cast(output_grads[0], x.dtype)
        return [ConvGradInputsOp(*self._props())(x, w, gz),
                ConvGradWeightsOp(*self._props())(x, w, gz)]


class _ConvGrad(_Conv):
    """A gradient of :class:`ConvOp`: inputs ``(x, w, dout)``, output shaped like input
    ``WHICH - 1`` (whose values are not read)."""

    def make_node(self, x, w, dout):
        return self._node(x, w, dout)

    def infer_shape(self, *args):  # (fgraph,) node, shapes: 3.3 dropped fgraph
        return [args[-1][self.WHICH - 1]]

    def pullback(self, inputs, outputs, output_grads):
        # <dx, g> = <conv(g, w), dout> and <dw, g> = <conv(x, g), dout>: linear in dout
        # and in the other input, whose gradient is the other gradient op
        x, w, dout = inputs
        (g,) = output_grads
        props = self._props()
        if self.WHICH == 1:
            return [pt.zeros_like(x), ConvGradWeightsOp(*props)(g, w, dout), ConvOp(*props)(g, w)]
        return [ConvGradInputsOp(*props)(x, g, dout), pt.zeros_like(w), ConvOp(*props)(x, g)]


class ConvGradInputsOp(_ConvGrad):
    """Gradient of :class:`ConvOp` for ``x``: ``dx`` (B, W, H, C) from ``(x, w, dout)``."""

    WHICH = 1
    REFERENCE = staticmethod(np_conv2d_grad_inputs)


class ConvGradWeightsOp(_ConvGrad):
    """Gradient of :class:`ConvOp` for ``w``: ``dw`` (n, C, fw, fh) from ``(x, w, dout)``."""

    WHICH = 2
    REFERENCE = staticmethod(np_conv2d_grad_weights)


class _Pool(CSourceOp):
    """What the pooling ops share.

    Parameters
    ----------
    pool_size : (int, int)
        Window size along W and H.
    stride : (int, int)
        Steps between windows.
    mode : {'max', 'mean'}
    """

    C_SOURCES = ('parallel.c', 'pool.c')
    USES_BLAS = True  # parallel.c sets BLAS's thread count, found through sgemm_
    __props__ = ('pool_size', 'stride', 'mode')
    params_type = ParamsType(mode=int32, pw=int32, ph=int32, sw=int32, sh=int32, threads=int32)

    def __init__(self, pool_size, stride, mode):
        self.mode = check_pool_mode(mode)
        self.pool_size = check_ints(pool_size, 2, 'pool_size')
        self.stride = check_ints(stride, 2, 'stride')

    def get_params(self, node):
        return self.params_type.get_params(
            mode=POOL_MODES.index(self.mode), pw=self.pool_size[0], ph=self.pool_size[1],
            sw=self.stride[0], sh=self.stride[1], threads=threads())

    def _out_shape(self, shape):
        return ((shape[0],) + pool_output_shape(shape[1:3], self.pool_size, self.stride)
                + (shape[3],))

    def c_call(self, node, inputs, outputs, sub):
        args = ', '.join((list(inputs) + ['NULL', 'NULL'])[:3])  # x, out, gz or g
        return 'thn_pool({}, {p}->mode, {}, &{}, {p}->pw, {p}->ph, {p}->sw, {p}->sh, ' \
            '{p}->threads, "{}")'.format(
            self.WHICH, args, outputs[0], type(self).__name__, p=sub['params'])


class PoolOp(_Pool):
    """Max or mean pooling of ``x`` (B, W, H, C) to (B, W', H', C)."""

    WHICH = 0  # enum thn_pool_which

    def make_node(self, x):
        (x,) = float_inputs('PoolOp', ['x (B, W, H, C)'], [x], [4])
        return Apply(self, [x], [TensorType(x.dtype, shape=self._out_shape(x.type.shape))()])

    def perform(self, node, inputs, outputs, params=None):
        outputs[0][0] = np_pool2d(inputs[0], self.pool_size, self.stride, self.mode)

    def pullback(self, inputs, outputs, output_grads):
        gz = pt.cast(output_grads[0], inputs[0].dtype)
        return [PoolGradOp(*self._props())(inputs[0], outputs[0], gz)]


class PoolGradOp(_Pool):
    """Gradient of :class:`PoolOp`, or its transpose.

    Inputs ``(x, out, gz)`` with ``out`` the pooled ``x``: output ``dx`` shaped like
    ``x``, each element receiving the gradient of every window it is the maximum of
    (ties all do), or ``gz / (pw * ph)`` of every window it is in (mean). With
    ``transposed``, inputs ``(x, out, g)`` with ``g`` shaped like ``x``: output
    ``h`` shaped like ``out``, the transposed map (for second derivatives).
    """

    __props__ = _Pool.__props__ + ('transposed',)

    def __init__(self, pool_size, stride, mode, transposed=False):
        super().__init__(pool_size, stride, mode)
        self.transposed = bool(transposed)

    def make_node(self, x, out, g):
        x, out, g = float_inputs('PoolGradOp', ['x', 'out', 'the gradient'], [x, out, g], [4] * 3)
        return Apply(self, [x, out, g], [(out if self.transposed else x).type()])

    def infer_shape(self, *args):  # (fgraph,) node, shapes: 3.3 dropped fgraph
        return [args[-1][1 if self.transposed else 0]]

    def perform(self, node, inputs, outputs, params=None):
        x, out, g = inputs
        _check_shape('PoolGradOp', 'out', out, self._out_shape(x.shape))
        if self.transposed:
            _check_shape('PoolGradOp', 'g', g, x.shape)
            outputs[0][0] = pool_gather(x, out, g, *self._props()[:3])
        else:
            _check_shape('PoolGradOp', 'the output gradient', g, out.shape)
            outputs[0][0] = np_pool2d_scatter(x, out, g, *self._props()[:3])

    @property
    def WHICH(self):  # enum thn_pool_which
        return 2 if self.transposed else 1

    def pullback(self, inputs, outputs, output_grads):
        # linear in its last input; the max's mask is piecewise constant in x and out
        x, out, _ = inputs
        other = PoolGradOp(*self._props()[:3], transposed=not self.transposed)
        return [pt.zeros_like(x), pt.zeros_like(out), other(x, out, output_grads[0])]


# ---------------------------------------------------------------- JAX twins

@jax_twin(ConvOp)
@jax_twin(ConvGradInputsOp)
@jax_twin(ConvGradWeightsOp)
def _conv_jax(op, node=None, **kwargs):
    import jax

    def forward(x, w):
        pads = [padding(f, op.border_mode) for f in w.shape[2:]]
        return jax.lax.conv_general_dilated(x, w[:, :, ::-1, ::-1], op.stride, pads,
                                            dimension_numbers=('NHWC', 'OIHW', 'NHWC'))
    if isinstance(op, ConvOp):
        return forward
    wrt = 0 if isinstance(op, ConvGradInputsOp) else 1

    def gradient(x, w, dout):
        return jax.vjp(forward, x, w)[1](dout)[wrt]
    return gradient


@jax_twin(PoolOp)
def _pool_jax(op, node=None, **kwargs):
    import jax

    def pool(x):
        window, strides = (1,) + op.pool_size + (1,), (1,) + op.stride + (1,)
        init, reduce = (-np.inf, jax.lax.max) if op.mode == 'max' else (0, jax.lax.add)
        out = jax.lax.reduce_window(x, np.array(init, x.dtype), reduce, window, strides, 'VALID')
        return out if op.mode == 'max' else out / np.array(np.prod(op.pool_size), x.dtype)
    return pool


@jax_twin(PoolGradOp)
def _pool_grad_jax(op, node=None, **kwargs):
    import jax
    import jax.numpy as jnp

    def gather(x, out, g):
        return pool_gather(x, out, g, op.pool_size, op.stride, op.mode, xp=jnp)
    if op.transposed:
        return gather

    def scatter(x, out, gz):
        return jax.vjp(lambda g: gather(x, out, g), x)[1](gz)[0]
    return scatter


# ------------------------------------------------------------------- graphs

def conv2d(x, w, stride=(1, 1), border_mode='valid'):
    """Convolve a batch of channels-last images (a true convolution, kernel flipped).

    Parameters
    ----------
    x : symbolic tensor (B, W, H, C)
        Examples, width, height, input channels.
    w : symbolic tensor (n, C, fw, fh)
        Filters; ``fw`` runs along the W axis and ``fh`` along H.
    stride : int or (int, int), optional
        Steps along W and H (default 1).
    border_mode : {'valid', 'full', 'same'}, optional
        See the module docstring; default ``'valid'``.

    Returns
    -------
    symbolic tensor (B, W', H', n)
        ``W' = output_length(W, fw, sw, border_mode)``, likewise ``H'``.
    """
    return ConvOp(border_mode, check_ints(stride, 2, 'stride'))(x, w)


def conv1d(x, w, stride=1, border_mode='valid'):
    """Convolve a batch of sequences along the time axis.

    Parameters
    ----------
    x : symbolic tensor (B, T, C)
        Examples, time steps, input channels.
    w : symbolic tensor (n, C, 1, f)
        Filters, in the weight layout of :class:`theanets.layers.Conv1`.
    stride : int, optional
        Step between filter positions (default 1).
    border_mode : {'valid', 'full', 'same'}, optional

    Returns
    -------
    symbolic tensor (B, T', n)
        ``T' = output_length(T, f, stride, border_mode)``.
    """
    (x,) = float_inputs('conv1d', ['x (B, T, C)'], [x], [3])
    w = pt.as_tensor_variable(w)
    if w.ndim != 4 or w.type.shape[2] not in (1, None):
        raise ValueError('conv1d: w must have shape (n, C, 1, f), got {}'.format(w.type.shape))
    # static width 1 all along: the axis goes without shape arithmetic (JAX needs none)
    w = pt.specify_shape(w, (None, None, 1, None))
    return _on_width_one(conv2d, x, w, (1, stride), border_mode)


def pool2d(x, pool_size, stride=None, mode='max'):
    """Max or mean pooling over the two spatial axes of ``x`` (B, W, H, C).

    Parameters
    ----------
    x : symbolic tensor (B, W, H, C)
    pool_size : int or (int, int)
        Window size along W and H.
    stride : int or (int, int), optional
        Steps between windows; defaults to ``pool_size``.
    mode : {'max', 'mean', 'average'}, optional
        ``'average'`` is an alias of ``'mean'``.

    Returns
    -------
    symbolic tensor (B, W', H', C)
        ``(W', H') = pool_output_shape((W, H), pool_size, stride)``.
    """
    pool_size = check_ints(pool_size, 2, 'pool_size')
    stride = pool_size if stride is None else check_ints(stride, 2, 'stride')
    return PoolOp(pool_size, stride, mode)(x)


def pool1d(x, pool_size, stride=None, mode='max'):
    """Max or mean pooling over the time axis of ``x`` (B, T, C); see :func:`pool2d`."""
    (x,) = float_inputs('pool1d', ['x (B, T, C)'], [x], [3])
    stride = pool_size if stride is None else stride
    return _on_width_one(pool2d, x, (1, pool_size), (1, stride), mode)


def _on_width_one(op2d, x, *args):
    """``op2d(x', *args)`` for ``x`` (B, T, C) seen as ``x'`` (B, 1, T, C), width removed."""
    return op2d(x.dimshuffle(0, 'x', 1, 2), *args).dimshuffle(0, 2, 3)
