r"""Symbolic convolution and pooling for channels-last tensors.

PyTensor no longer ships Theano's ``conv2d`` or ``pool_2d``. This module provides
them in two ways: fused Ops with C code (:mod:`theanets.ops.conv_fused`, the
default in modes that run C/Python Ops, see
:func:`theanets.backend.runs_custom_ops`), and formulations built out of
ordinary PyTensor operations, so that gradients, shape inference and every
compilation mode (JAX, Numba, ...) work without custom code.

Convolution convention
----------------------
:func:`conv1d` and :func:`conv2d` compute a **true convolution**: the kernel is
flipped along every spatial axis, as Theano's legacy ``conv2d`` did (and as
``scipy.signal.convolve`` does). For a 2-D input ``x`` of shape
``(B, W, H, C)`` zero-padded to ``xp`` (see border modes below) and weights
``w`` of shape ``(n, C, fw, fh)``::

    out[b, i, j, k] = sum_{c, u, v} xp[b, i*sw + u, j*sh + v, c]
                                    * w[k, c, fw-1-u, fh-1-v]

Border modes
------------
``'valid'``
    no padding; output ``(size - f) // s + 1``.
``'full'``
    ``f - 1`` zeros on both sides; output ``(size + f - 2) // s + 1``
    (the full convolution, subsampled).
``'same'``
    output ``ceil(size / s)``; ``(f - 1) // 2`` zeros before the data and as
    many as needed after it. For odd ``f`` and stride 1 this is the centred
    result of ``scipy.signal.convolve(..., mode='same')``; for even ``f`` the
    window sits one step later than SciPy's (SciPy pads ``f // 2`` before).

Formulations
------------
``method=None`` picks ``'fused'`` when the current theanets mode runs custom
Ops (:func:`theanets.backend.runs_custom_ops`: PyTensor's C and Python modes,
not JAX/Numba/PyTorch/MLX) and the inputs are float32/float64, else
:data:`DEFAULT_METHOD` (``'im2col'``).

``'fused'`` (fastest measured on CPU, see ``benchmarks/bench_ops_conv.py``)
    one Op in C (:class:`theanets.ops.conv_fused.Conv2dOp`) that copies the
    patches of a cache-sized chunk of output positions at a time and
    multiplies them with the kernel in one matrix product per chunk (BLAS,
    or AVX-512 kernels for float32 where available); its gradient Ops do the
    same for ``dx`` and ``dw`` (and are differentiable). :func:`conv1d` runs
    it on a size-1 width axis.
``'im2col'`` (the default of the pure-PyTensor formulations)
    every filter offset is one strided slice of the padded input; the slices
    are stacked into one patch matrix and a single matrix product with the
    flattened kernel gives the output. Picks ``'im2col_first'`` when the input's
    channel count is statically known and below 8 (e.g. the first layer on
    images: copies run along the width instead of a single channel), else
    ``'im2col_last'``; the two differ by 5-10% at most.
``'im2col_last'``
    windows joined along the channel axis: patch matrix ``(B*W'*H', f1*f2*C)``.
``'im2col_first'``
    windows of a channels-first contiguous copy of the input stacked on a new
    leading axis: patch matrix ``(f1*f2*C, B*W'*H')``.
``'shift'``
    one matrix product per filter offset, summed.
``'signal'``
    PyTensor's own :func:`pytensor.tensor.signal.convolve2d` /
    ``convolve1d`` (a Blockwise over every example, channel and filter, run by
    SciPy in Python): correct but very slow; kept for comparison. Strides are
    applied by subsampling the stride-1 result.

Pooling
-------
:func:`pool1d` / :func:`pool2d` take the maximum or the mean over windows of
``pool_size`` steps moved by ``stride`` (default ``pool_size``). Windows that
do not fit entirely inside the input are dropped (Theano's
``ignore_border=True``), so the output has ``(size - p) // s + 1`` steps. For a
max over tied values the gradient goes to every tied element (as in Theano).
In modes that run custom Ops, pooling of float32/float64 data uses the fused
:class:`theanets.ops.conv_fused.Pool2dOp` (one C loop; its gradient Op too;
``pool1d`` runs it on a size-1 width axis). Otherwise (or with
``method='pytensor'``), non-overlapping windows (``stride == pool_size``, the
usual case) are pooled by cropping, reshaping each axis into (windows, pool)
and one reduction; other strides stack one strided slice per window offset
and reduce over the stack (a mean adds the slices).
"""

import itertools

import numpy as np
import pytensor
import pytensor.tensor as pt
from pytensor.tensor.extra_ops import cpu_contiguous

__all__ = ['conv1d', 'conv2d', 'output_length', 'output_shape',
           'pool1d', 'pool2d', 'pool_output_length', 'pool_output_shape',
           'BORDER_MODES', 'POOL_MODES', 'METHODS', 'POOL_METHODS']

BORDER_MODES = ('valid', 'full', 'same')
POOL_MODES = ('max', 'mean', 'average')
METHODS = ('fused', 'im2col', 'im2col_first', 'im2col_last', 'shift', 'signal')
POOL_METHODS = ('fused', 'pytensor')

#: pure-PyTensor formulation used when ``method`` is not given and the fused
#: Op cannot run (see :func:`_use_fused`).
DEFAULT_METHOD = 'im2col'


# ---------------------------------------------------------------- shape helpers

def _check_border_mode(border_mode):
    if border_mode not in BORDER_MODES:
        raise ValueError('border_mode must be one of {}, not {!r}'.format(
            BORDER_MODES, border_mode))


def _tuple(value, n, what):
    if isinstance(value, (int, np.integer)):
        value = (int(value),) * n
    value = tuple(int(v) for v in value)
    if len(value) != n:
        raise ValueError('{} must have {} entries, got {!r}'.format(what, n, value))
    if any(v < 1 for v in value):
        raise ValueError('{} must be positive, got {!r}'.format(what, value))
    return value


def output_length(size, filter, stride=1, border_mode='valid'):
    """Length of a convolution's output along one axis.

    Parameters
    ----------
    size : int or None
        Input length; ``None`` when unknown.
    filter : int
        Filter length.
    stride : int, optional
        Step between successive filter positions (default 1).
    border_mode : {'valid', 'full', 'same'}, optional

    Returns
    -------
    int or None
        ``None`` if ``size`` is ``None``.
    """
    _check_border_mode(border_mode)
    if size is None or filter is None:
        return None
    size, filter, stride = int(size), int(filter), int(stride)
    if border_mode == 'valid':
        return max(0, (size - filter) // stride + 1)
    if border_mode == 'full':
        return (size + filter - 2) // stride + 1
    return -(-size // stride)


def output_shape(sizes, filters, strides=1, border_mode='valid'):
    """Per-axis :func:`output_length` for several spatial axes (tuple)."""
    n = len(sizes)
    filters = _tuple(filters, n, 'filter size')
    strides = _tuple(strides, n, 'stride')
    return tuple(output_length(s, f, st, border_mode)
                 for s, f, st in zip(sizes, filters, strides))


def _padding(filter, border_mode):
    """(before, after) zeros for one axis; 'after' is enough for any size/stride."""
    if border_mode == 'valid':
        return 0, 0
    if border_mode == 'full':
        return filter - 1, filter - 1
    before = (filter - 1) // 2
    return before, filter - 1 - before


def pool_output_length(size, pool_size, stride=None):
    """Number of pooling windows along one axis (``None`` in, ``None`` out).

    Windows that do not fit in the input are dropped: ``(size - p) // s + 1``.
    """
    if size is None:
        return None
    stride = pool_size if stride is None else stride
    return max(0, (int(size) - int(pool_size)) // int(stride) + 1)


def pool_output_shape(sizes, pool_size, stride=None):
    """Per-axis :func:`pool_output_length` for several spatial axes (tuple)."""
    n = len(sizes)
    pool_size = _tuple(pool_size, n, 'pool size')
    stride = pool_size if stride is None else _tuple(stride, n, 'stride')
    return tuple(pool_output_length(s, p, st)
                 for s, p, st in zip(sizes, pool_size, stride))


# ----------------------------------------------------------------- convolution

def _use_fused(*variables):
    """Whether the fused C Ops can run for these inputs in the current mode."""
    from .. import backend
    from . import conv_fused
    return backend.runs_custom_ops() and conv_fused.supports_dtype(
        *[v.dtype for v in variables])


def _conv_method(method, x, w):
    """The formulation to use: ``method``, or the automatic choice for ``None``."""
    if method is None:
        return 'fused' if _use_fused(x, w) else DEFAULT_METHOD
    if method not in METHODS:
        raise ValueError('method must be one of {}, not {!r}'.format(METHODS, method))
    return method


def _filter_shape(w, nspatial, filter_size):
    """Static spatial filter sizes of ``w`` (n, C, f1, ..., fk)."""
    if filter_size is not None:
        return _tuple(filter_size, nspatial, 'filter_size')
    shape = w.type.shape[2:]
    if all(s is not None for s in shape):
        return tuple(int(s) for s in shape)
    if isinstance(w, pytensor.compile.SharedVariable):
        return tuple(int(s) for s in w.get_value(borrow=True).shape[2:])
    raise ValueError('the filter size of {} is not known when building the graph: '
                     'pass filter_size=...'.format(w))


def _pad(x, pads):
    """Zero-pad the spatial axes 1..k of channels-last ``x``."""
    if not any(b or a for b, a in pads):
        return x
    shape = [x.shape[0]]
    index = [slice(None)]
    for axis, (before, after) in enumerate(pads, start=1):
        shape.append(x.shape[axis] + before + after)
        index.append(slice(before, before + x.shape[axis]) if (before or after)
                     else slice(None))
    shape.append(x.shape[-1])
    index.append(slice(None))
    return pt.set_subtensor(pt.zeros(shape, dtype=x.dtype)[tuple(index)], x)


def _window(xp, offsets, strides, outs, channels_last=True):
    """Strided slice of ``xp`` seen by the filter tap at ``offsets``.

    ``xp`` is (B, S1..Sk, C) when ``channels_last``, else (C, B, S1..Sk).
    """
    index = [slice(None)] if channels_last else [slice(None), slice(None)]
    for offset, stride, out in zip(offsets, strides, outs):
        if stride == 1:
            index.append(slice(offset, offset + out))
        else:
            index.append(slice(offset, offset + stride * (out - 1) + 1, stride))
    if channels_last:
        index.append(slice(None))
    return xp[tuple(index)]


def _conv_nd(x, w, filters, strides, border_mode, method):
    """Convolution over axes 1..k of ``x`` (B, S1..Sk, C) with ``w`` (n, C, f1..fk)."""
    k = len(filters)
    if method == 'signal':
        return _conv_signal(x, w, filters, strides, border_mode)
    pads = [_padding(f, border_mode) for f in filters]
    xp = _pad(x, pads)
    outs = []
    for axis, (f, s, (before, after)) in enumerate(zip(filters, strides, pads), start=1):
        size = x.shape[axis]
        if border_mode == 'same':
            outs.append((size + s - 1) // s)
        else:
            outs.append((size + before + after - f) // s + 1)
    # flipped kernel as (f1, ..., fk, C, n): rows in the order of the patches.
    flipped = w[(slice(None), slice(None)) + (slice(None, None, -1),) * k]
    kernel = flipped.dimshuffle(*range(2, 2 + k), 1, 0)
    nfilt = w.shape[0]
    offsets = list(itertools.product(*[range(f) for f in filters]))
    out_shape = [x.shape[0]] + outs + [nfilt]
    if method == 'im2col':
        channels = x.type.shape[-1]
        method = 'im2col_first' if channels is not None and channels < 8 else 'im2col_last'
    if method == 'im2col_first':
        # patch matrix (f1*..*fk*C, B*S1'*..*Sk'): each window moved channels-first
        # and stacked; its transpose times the flattened kernel is the output.
        # The input is made channels-first and C-contiguous once, so that the stacked
        # windows come out C-contiguous too and the reshape below is a view.
        xc = cpu_contiguous(xp.dimshuffle(k + 1, *range(k + 1)))
        windows = [_window(xc, o, strides, outs, channels_last=False) for o in offsets]
        cols = pt.stack(windows).reshape((len(offsets) * x.shape[-1], -1))
        out = pt.dot(cols.T, kernel.reshape((-1, nfilt)))
    elif method == 'im2col_last':
        # patch tensor (B, S1'..Sk', f1*..*fk*C): windows joined on the channel axis.
        windows = [_window(xp, o, strides, outs) for o in offsets]
        cols = windows[0] if len(windows) == 1 else pt.concatenate(windows, axis=-1)
        out = pt.dot(cols.reshape((-1, cols.shape[-1])), kernel.reshape((-1, nfilt)))
    elif method == 'shift':
        out = None
        for o in offsets:
            win = _window(xp, o, strides, outs)
            term = pt.dot(win.reshape((-1, x.shape[-1])), kernel[o])
            out = term if out is None else out + term
    else:
        raise ValueError('method must be one of {}, not {!r}'.format(METHODS, method))
    return out.reshape(out_shape, ndim=k + 2)


def _conv_signal(x, w, filters, strides, border_mode):
    """Formulation on PyTensor's Blockwise signal convolutions (slow; comparison)."""
    from pytensor.tensor.signal import convolve1d, convolve2d
    k = len(filters)
    conv = {1: convolve1d, 2: convolve2d}[k]
    mode = 'full' if border_mode == 'full' else 'valid'
    if border_mode == 'same':
        x = _pad(x, [_padding(f, 'same') for f in filters])
    # x -> (B, 1, C, S...), w -> (1, n, C, f...); sum over C.
    xs = x.dimshuffle(0, 'x', k + 1, *range(1, k + 1))
    ws = w.dimshuffle('x', *range(k + 2))
    y = conv(xs, ws, mode=mode).sum(axis=2)        # (B, n, S'...)
    index = [slice(None), slice(None)]
    for axis, s in enumerate(strides, start=1):
        if border_mode == 'same':
            out = (x.shape[axis] - filters[axis - 1] + 1 + s - 1) // s
            index.append(slice(None, out * s, s))
        else:
            index.append(slice(None, None, s))
    y = y[tuple(index)]
    return y.dimshuffle(0, *range(2, k + 2), 1)


def conv1d(x, w, stride=1, border_mode='valid', filter_size=None, method=None):
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
        See the module docstring; default ``'valid'``.
    filter_size : int or (1, int), optional
        ``f``; needed only when it cannot be read from ``w`` (static shape or
        shared value).
    method : {'fused', 'im2col', 'im2col_first', 'im2col_last', 'shift', 'signal'}, optional
        Formulation (see the module docstring); default: ``'fused'`` where it
        can run, else :data:`DEFAULT_METHOD`.

    Returns
    -------
    symbolic tensor (B, T', n)
        True convolution (kernel flipped), ``T' = output_length(T, f, stride,
        border_mode)``. No bias, no activation.
    """
    _check_border_mode(border_mode)
    x = pt.as_tensor_variable(x)
    w = w if isinstance(w, pytensor.compile.SharedVariable) else pt.as_tensor_variable(w)
    if x.ndim != 3 or w.ndim != 4:
        raise ValueError('conv1d needs x (B, T, C) and w (n, C, 1, f); got ndim {} '
                         'and {}'.format(x.ndim, w.ndim))
    if filter_size is not None:
        filter_size = tuple(np.ravel([filter_size]).astype(int))
        filter_size = (1,) + filter_size if len(filter_size) == 1 else filter_size
    f = _filter_shape(w, 2, filter_size)
    if f[0] != 1:
        raise ValueError('conv1d weights must have shape (n, C, 1, f), got (n, C, {}, {})'
                         .format(*f))
    stride = _tuple(stride, 1, 'stride')
    method = _conv_method(method, x, w)
    if method == 'fused':
        from . import conv_fused
        # a size-1 width axis: (B, 1, T, C) convolved with (n, C, 1, f).
        out = conv_fused.conv2d(x.dimshuffle(0, 'x', 1, 2), w, stride=(1,) + stride,
                                border_mode=border_mode, filter_size=f)
        return out[:, 0]
    return _conv_nd(x, w[:, :, 0, :], (f[1],), stride, border_mode, method)


def conv2d(x, w, stride=(1, 1), border_mode='valid', filter_size=None, method=None):
    """Convolve a batch of channels-last images.

    Parameters
    ----------
    x : symbolic tensor (B, W, H, C)
        Examples, width, height, input channels.
    w : symbolic tensor (n, C, fw, fh)
        Filters; ``fw`` runs along the W axis and ``fh`` along H.
    stride : int or (int, int), optional
        Steps along W and H (default ``(1, 1)``).
    border_mode : {'valid', 'full', 'same'}, optional
        See the module docstring; default ``'valid'``.
    filter_size : (int, int), optional
        ``(fw, fh)``; needed only when it cannot be read from ``w``.
    method : {'fused', 'im2col', 'im2col_first', 'im2col_last', 'shift', 'signal'}, optional
        Formulation (see the module docstring); default: ``'fused'`` where it
        can run, else :data:`DEFAULT_METHOD`.

    Returns
    -------
    symbolic tensor (B, W', H', n)
        True convolution (kernel flipped, as Theano's legacy ``conv2d``), with
        ``W' = output_length(W, fw, sw, border_mode)`` and likewise ``H'``.
    """
    _check_border_mode(border_mode)
    x = pt.as_tensor_variable(x)
    w = w if isinstance(w, pytensor.compile.SharedVariable) else pt.as_tensor_variable(w)
    if x.ndim != 4 or w.ndim != 4:
        raise ValueError('conv2d needs x (B, W, H, C) and w (n, C, fw, fh); got ndim {} '
                         'and {}'.format(x.ndim, w.ndim))
    filters = _filter_shape(w, 2, filter_size)
    stride = _tuple(stride, 2, 'stride')
    method = _conv_method(method, x, w)
    if method == 'fused':
        from . import conv_fused
        return conv_fused.conv2d(x, w, stride=stride, border_mode=border_mode,
                                 filter_size=filters)
    return _conv_nd(x, w, filters, stride, border_mode, method)


# --------------------------------------------------------------------- pooling

def _check_pool_mode(mode):
    if mode not in POOL_MODES:
        raise ValueError('pooling mode must be one of {}, not {!r}'.format(POOL_MODES, mode))
    return 'mean' if mode == 'average' else mode


def _pool_method(method, x):
    if method is None:
        return 'fused' if _use_fused(x) else 'pytensor'
    if method not in POOL_METHODS:
        raise ValueError('pooling method must be one of {}, not {!r}'.format(
            POOL_METHODS, method))
    return method


def _pool_nd(x, pools, strides, mode):
    """Pool over axes 1..k of channels-last ``x``."""
    k = len(pools)
    outs = [(x.shape[a] - p) // s + 1 for a, (p, s) in enumerate(zip(pools, strides), 1)]
    if all(p == 1 for p in pools) and all(s == 1 for s in strides):
        return x
    if tuple(pools) == tuple(strides):
        # non-overlapping windows: crop, split each axis into (windows, pool), reduce.
        index = [slice(None)] + [slice(None, o * p) for o, p in zip(outs, pools)] \
            + [slice(None)]
        cropped = x[tuple(index)]
        shape = [x.shape[0]]
        for o, p in zip(outs, pools):
            shape.extend([o, p])
        shape.append(x.shape[-1])
        blocks = cropped.reshape(shape, ndim=2 * k + 2)
        axes = tuple(2 + 2 * i for i in range(k))
        return blocks.max(axis=axes) if mode == 'max' else blocks.mean(axis=axes)
    # overlapping or gapped windows: one strided slice per window offset.
    windows = [_window(x, o, strides, outs)
               for o in itertools.product(*[range(p) for p in pools])]
    if len(windows) == 1:
        return windows[0]
    if mode == 'max':
        # a reduction over the stacked windows (not a chain of pt.maximum, whose
        # gradient gives a tie to the first element only): ties all get the gradient.
        return pt.stack(windows).max(axis=0)
    return pt.add(*windows) / np.asarray(len(windows), dtype=x.dtype)


def pool1d(x, pool_size, stride=None, mode='max', method=None):
    """Max or mean pooling over the time axis of ``x`` (B, T, C).

    Parameters
    ----------
    x : symbolic tensor (B, T, C)
    pool_size : int
        Window length.
    stride : int, optional
        Step between windows; defaults to ``pool_size``.
    mode : {'max', 'mean', 'average'}, optional
        ``'average'`` is an alias of ``'mean'``.
    method : {'fused', 'pytensor'}, optional
        The fused C Op or the pure-PyTensor formulation; default ``'fused'``
        where it can run (see the module docstring).

    Returns
    -------
    symbolic tensor (B, T', C)
        ``T' = pool_output_length(T, pool_size, stride)``; windows that do not
        fit are dropped.
    """
    mode = _check_pool_mode(mode)
    x = pt.as_tensor_variable(x)
    if x.ndim != 3:
        raise ValueError('pool1d needs x (B, T, C); got ndim {}'.format(x.ndim))
    pools = _tuple(pool_size, 1, 'pool_size')
    strides = pools if stride is None else _tuple(stride, 1, 'stride')
    if pools == (1,) and strides == (1,):
        return x
    if _pool_method(method, x) == 'fused':
        from . import conv_fused
        out = conv_fused.pool2d(x.dimshuffle(0, 'x', 1, 2), (1,) + pools, (1,) + strides, mode)
        return out[:, 0]
    return _pool_nd(x, pools, strides, mode)


def pool2d(x, pool_size, stride=None, mode='max', method=None):
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
    method : {'fused', 'pytensor'}, optional
        The fused C Op or the pure-PyTensor formulation; default ``'fused'``
        where it can run (see the module docstring).

    Returns
    -------
    symbolic tensor (B, W', H', C)
        ``(W', H') = pool_output_shape((W, H), pool_size, stride)``; windows that
        do not fit are dropped.
    """
    mode = _check_pool_mode(mode)
    x = pt.as_tensor_variable(x)
    if x.ndim != 4:
        raise ValueError('pool2d needs x (B, W, H, C); got ndim {}'.format(x.ndim))
    pools = _tuple(pool_size, 2, 'pool_size')
    strides = pools if stride is None else _tuple(stride, 2, 'stride')
    if pools == (1, 1) and strides == (1, 1):
        return x
    if _pool_method(method, x) == 'fused':
        from . import conv_fused
        return conv_fused.pool2d(x, pools, strides, mode)
    return _pool_nd(x, pools, strides, mode)
