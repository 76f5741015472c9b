"""Tests of theanets.ops.conv against NumPy/SciPy references."""

import itertools

import numpy as np
import pytest
import scipy.signal

import theanets  # noqa: F401  (sets PyTensor flags first)
import pytensor
import pytensor.graph.traversal
import pytensor.tensor as pt
from pytensor.gradient import verify_grad

from theanets.ops import conv as C

RNG = np.random.RandomState(13)
MODES = ('valid', 'full', 'same')


# the library's own compile mode (C code) for the default formulation; Python-linked
# for the rest, so that a cold compile cache does not make the tests slow.
PY_MODE = pytensor.compile.mode.Mode(linker='py', optimizer='fast_run')


def _fn(inputs, output, fast=True):
    if fast:
        return pytensor.function(inputs, output, mode=PY_MODE)
    return theanets.backend.function(inputs, output)


# ---------------------------------------------------------------- references

def _pad_for(size, f, mode):
    """(before, after) padding that turns a border mode into a 'valid' window."""
    if mode == 'valid':
        return 0, 0
    if mode == 'full':
        return f - 1, f - 1
    return (f - 1) // 2, f - 1 - (f - 1) // 2


def ref_conv2d(x, w, stride, mode):
    """Per example, channel and filter, scipy.signal.convolve (true convolution)."""
    B, W, H, Cin = x.shape
    n, _, fw, fh = w.shape
    sw, sh = stride
    pw, ph = _pad_for(W, fw, mode), _pad_for(H, fh, mode)
    Wo = C.output_length(W, fw, sw, mode)
    Ho = C.output_length(H, fh, sh, mode)
    out = np.zeros((B, Wo, Ho, n))
    for b, k, c in itertools.product(range(B), range(n), range(Cin)):
        img = np.pad(x[b, :, :, c].astype(np.float64), (pw, ph))
        full = scipy.signal.convolve(img, w[k, c].astype(np.float64), mode='valid')
        out[b, :, :, k] += full[::sw, ::sh][:Wo, :Ho]
    return out


def ref_conv1d(x, w, stride, mode):
    B, T, Cin = x.shape
    n, _, _, f = w.shape
    pad = _pad_for(T, f, mode)
    To = C.output_length(T, f, stride, mode)
    out = np.zeros((B, To, n))
    for b, k, c in itertools.product(range(B), range(n), range(Cin)):
        seq = np.pad(x[b, :, c].astype(np.float64), pad)
        full = scipy.signal.convolve(seq, w[k, c, 0].astype(np.float64), mode='valid')
        out[b, :, k] += full[::stride][:To]
    return out


def ref_pool(x, pools, strides, mode):
    """Loop reference over spatial axes 1..k of channels-last x."""
    k = len(pools)
    sizes = x.shape[1:1 + k]
    outs = [(s - p) // st + 1 for s, p, st in zip(sizes, pools, strides)]
    out = np.zeros((x.shape[0],) + tuple(outs) + (x.shape[-1],))
    for pos in itertools.product(*[range(o) for o in outs]):
        index = (slice(None),) + tuple(slice(i * st, i * st + p)
                                       for i, p, st in zip(pos, pools, strides))
        window = x[index]
        axes = tuple(range(1, 1 + k))
        out[(slice(None),) + pos] = window.max(axis=axes) if mode == 'max' \
            else window.mean(axis=axes)
    return out


# ---------------------------------------------------------------- shape helpers

def test_output_length():
    assert C.output_length(None, 3, 1, 'valid') is None
    assert C.output_length(10, 3) == 8
    assert C.output_length(10, 3, 1, 'full') == 12
    assert C.output_length(10, 3, 1, 'same') == 10
    assert C.output_length(10, 3, 2, 'valid') == 4
    assert C.output_length(10, 3, 2, 'full') == 6
    assert C.output_length(10, 3, 3, 'same') == 4
    assert C.output_shape((28, None), (5, 5)) == (24, None)
    with pytest.raises(ValueError):
        C.output_length(10, 3, 1, 'half')


def test_pool_output_length():
    assert C.pool_output_length(None, 2) is None
    assert C.pool_output_length(9, 2) == 4
    assert C.pool_output_length(9, 3, 2) == 4
    assert C.pool_output_shape((24, 7), 2) == (12, 3)
    assert C.pool_output_shape((24, 7), (3, 2), (2, 1)) == (11, 6)


# ----------------------------------------------------------------- convolution

CONV2_CASES = [(m, (1, 1)) for m in MODES] + [(m, (2, 3)) for m in MODES] + [('same', (3, 2))]


@pytest.mark.parametrize('method', ['im2col', 'im2col_first', 'im2col_last', 'shift', 'signal'])
@pytest.mark.parametrize('mode,stride', CONV2_CASES)
def test_conv2d_matches_scipy(mode, stride, method):
    x = RNG.randn(2, 9, 8, 3).astype('f')
    w = RNG.randn(4, 3, 3, 2).astype('f')   # even fh checks the same-padding rule
    tx, tw = pt.tensor4('x'), pt.tensor4('w')
    y = C.conv2d(tx, tw, stride=stride, border_mode=mode, filter_size=(3, 2), method=method)
    out = _fn([tx, tw], y, fast=method != 'im2col' or stride == (1, 1))(x, w)
    ref = ref_conv2d(x, w, stride, mode)
    assert out.shape == ref.shape == (2,) + C.output_shape((9, 8), (3, 2), stride, mode) + (4,)
    np.testing.assert_allclose(out, ref, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize('method', ['im2col', 'im2col_first', 'im2col_last', 'shift', 'signal'])
@pytest.mark.parametrize('mode,stride', [(m, s) for s in (1, 2, 3) for m in MODES])
def test_conv1d_matches_scipy(mode, stride, method):
    x = RNG.randn(3, 11, 2).astype('f')
    w = RNG.randn(5, 2, 1, 4).astype('f')
    tx, tw = pt.tensor3('x'), pt.tensor4('w')
    y = C.conv1d(tx, tw, stride=stride, border_mode=mode, filter_size=4, method=method)
    out = _fn([tx, tw], y, fast=method != 'im2col' or stride != 2)(x, w)
    ref = ref_conv1d(x, w, stride, mode)
    assert out.shape == ref.shape == (3, C.output_length(11, 4, stride, mode), 5)
    np.testing.assert_allclose(out, ref, rtol=1e-4, atol=1e-4)


def test_conv_same_matches_scipy_same_for_odd_filter():
    x = RNG.randn(1, 7, 6, 1).astype('f')
    w = RNG.randn(1, 1, 3, 5).astype('f')
    y = _fn([], C.conv2d(pt.constant(x), pt.constant(w), border_mode='same'))()
    ref = scipy.signal.convolve(x[0, :, :, 0], w[0, 0], mode='same')
    np.testing.assert_allclose(y[0, :, :, 0], ref, rtol=1e-5, atol=1e-5)


def test_filter_size_from_shared_weights():
    w = pytensor.shared(RNG.randn(2, 1, 3, 3).astype('f'))
    x = RNG.randn(1, 5, 5, 1).astype('f')
    tx = pt.tensor4('x')
    out = _fn([tx], C.conv2d(tx, w), fast=False)(x)
    np.testing.assert_allclose(out, ref_conv2d(x, w.get_value(), (1, 1), 'valid'),
                               rtol=1e-4, atol=1e-4)
    with pytest.raises(ValueError):
        C.conv2d(tx, pt.tensor4('w'))          # unknown filter size
    with pytest.raises(ValueError):
        C.conv1d(pt.tensor3('x'), pt.tensor4('w'), filter_size=(2, 3))  # fw != 1


def test_conv_gradient_matches_pytensor_signal():
    """im2col gradients equal those of the (independent) SciPy-backed formulation."""
    x = RNG.randn(2, 7, 6, 2).astype('f')
    w = RNG.randn(3, 2, 3, 2).astype('f')
    tx, tw = pt.tensor4('x'), pt.tensor4('w')
    grads = []
    for method in ('im2col_first', 'im2col_last', 'signal'):
        y = C.conv2d(tx, tw, stride=(2, 1), border_mode='same', filter_size=(3, 2),
                     method=method)
        cost = (y ** 2).sum()
        fn = _fn([tx, tw], pytensor.grad(cost, [tx, tw]), fast=method == 'signal')
        grads.append(fn(x, w))
    for other in grads[1:]:
        for a, b in zip(grads[0], other):
            np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-3)


def test_im2col_picks_layout_from_static_channels():
    x = RNG.randn(2, 6, 5, 1).astype('f')
    w = RNG.randn(3, 1, 2, 3).astype('f')
    tx = pt.tensor4('x', shape=(None, None, None, 1))
    y = C.conv2d(tx, pt.constant(w), stride=(2, 1), border_mode='full')
    graph = pytensor.graph.traversal.ancestors([y])
    assert any(getattr(v.owner, 'op', None) is C.cpu_contiguous for v in graph)
    np.testing.assert_allclose(_fn([tx], y, fast=False)(x), ref_conv2d(x, w, (2, 1), 'full'),
                               rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize('mode,stride', [('valid', (1, 1)), ('full', (2, 1)), ('same', (2, 2))])
def test_conv2d_verify_grad(mode, stride):
    rng = np.random.RandomState(1)
    x = rng.randn(2, 5, 4, 2)
    w = rng.randn(3, 2, 3, 2)
    verify_grad(lambda a, b: C.conv2d(a, b, stride=stride, border_mode=mode,
                                      filter_size=(3, 2)),
                [x, w], rng=rng, mode=PY_MODE, eps=1e-6)


@pytest.mark.parametrize('mode,stride', [('valid', 1), ('full', 2), ('same', 3)])
def test_conv1d_verify_grad(mode, stride):
    rng = np.random.RandomState(2)
    x = rng.randn(2, 7, 2)
    w = rng.randn(3, 2, 1, 3)
    verify_grad(lambda a, b: C.conv1d(a, b, stride=stride, border_mode=mode, filter_size=3),
                [x, w], rng=rng, mode=PY_MODE, eps=1e-6)


# --------------------------------------------------------------------- pooling

@pytest.mark.parametrize('mode', ['max', 'mean', 'average'])
@pytest.mark.parametrize('pool,stride', [((2, 2), None), ((3, 2), (2, 1)), ((2, 3), (3, 2)),
                                         ((3, 3), (2, 2))])
def test_pool2d_matches_numpy(pool, stride, mode):
    x = RNG.randn(2, 9, 8, 3).astype('f')
    tx = pt.tensor4('x')
    out = _fn([tx], C.pool2d(tx, pool, stride=stride, mode=mode), fast=stride is not None)(x)
    ref = ref_pool(x, pool, stride or pool, 'max' if mode == 'max' else 'mean')
    assert out.shape == ref.shape == (2,) + C.pool_output_shape((9, 8), pool, stride) + (3,)
    np.testing.assert_allclose(out, ref, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize('mode', ['max', 'mean'])
@pytest.mark.parametrize('pool,stride', [(2, None), (3, 2), (2, 3), (4, 1)])
def test_pool1d_matches_numpy(pool, stride, mode):
    x = RNG.randn(3, 11, 2).astype('f')
    tx = pt.tensor3('x')
    out = _fn([tx], C.pool1d(tx, pool, stride=stride, mode=mode), fast=True)(x)
    ref = ref_pool(x, (pool,), (stride or pool,), mode)
    assert out.shape == ref.shape == (3, C.pool_output_length(11, pool, stride), 2)
    np.testing.assert_allclose(out, ref, rtol=1e-5, atol=1e-6)


def test_pool_rejects_unknown_mode():
    with pytest.raises(ValueError):
        C.pool2d(pt.tensor4(), 2, mode='median')


@pytest.mark.parametrize('mode', ['max', 'mean'])
@pytest.mark.parametrize('pool,stride', [((2, 2), None), ((3, 2), (2, 1))])
def test_pool2d_verify_grad(pool, stride, mode):
    rng = np.random.RandomState(3)
    x = rng.permutation(2 * 6 * 5 * 2).reshape(2, 6, 5, 2) * 0.1  # distinct: no ties
    verify_grad(lambda a: C.pool2d(a, pool, stride=stride, mode=mode),
                [x], rng=rng, mode=PY_MODE, eps=1e-6)


@pytest.mark.parametrize('mode', ['max', 'mean'])
@pytest.mark.parametrize('pool,stride', [(2, None), (3, 2)])
def test_pool1d_verify_grad(pool, stride, mode):
    rng = np.random.RandomState(4)
    x = rng.permutation(2 * 7 * 3).reshape(2, 7, 3) * 0.1
    verify_grad(lambda a: C.pool1d(a, pool, stride=stride, mode=mode),
                [x], rng=rng, mode=PY_MODE, eps=1e-6)
