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


@pytest.mark.parametrize('method', ['fused', 'im2col', 'im2col_first', 'im2col_last', 'shift',
                                    'signal'])
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


@pytest.mark.parametrize('method', ['fused', 'im2col', 'im2col_first', 'im2col_last', 'shift',
                                    'signal'])
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
    for method in ('im2col_first', 'im2col_last', 'fused', 'signal'):
        y = C.conv2d(tx, tw, stride=(2, 1), border_mode='same', filter_size=(3, 2),
                     method=method)
        cost = (y ** 2).sum()
        fn = _fn([tx, tw], pytensor.grad(cost, [tx, tw]), fast=method in ('signal', 'fused'))
        grads.append(fn(x, w))
    for other in grads[1:]:
        for a, b in zip(grads[0], other):
            np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-3)


def test_im2col_picks_layout_from_static_channels():
    x = RNG.randn(2, 6, 5, 1).astype('f')
    w = RNG.randn(3, 1, 2, 3).astype('f')
    tx = pt.tensor4('x', shape=(None, None, None, 1))
    y = C.conv2d(tx, pt.constant(w), stride=(2, 1), border_mode='full', method='im2col')
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


# ------------------------------------------------------- fused C ops (conv_fused)

from theanets.ops import conv_fused as F  # noqa: E402

PY_LINKED = pytensor.compile.mode.Mode(linker='py', optimizer='fast_compile')
TOL = {'float32': 2e-4, 'float64': 1e-10}


def ref_conv2d_grads(x, w, g, stride, mode):
    """(dx, dw) of sum(conv2d(x, w) * g), one NumPy einsum per filter tap."""
    B, W, H, Cin = x.shape
    n, _, fw, fh = w.shape
    (sw, sh), outs = stride, g.shape[1:3]
    pads = [_pad_for(W, fw, mode), _pad_for(H, fh, mode)]
    size = [max((o - 1) * s + f, p[0] + d) if o else p[0] + d
            for o, s, f, p, d in zip(outs, stride, (fw, fh), pads, (W, H))]
    xp = np.zeros((B, size[0], size[1], Cin))
    xp[:, pads[0][0]:pads[0][0] + W, pads[1][0]:pads[1][0] + H] = x
    dxp, dw = np.zeros_like(xp), np.zeros(w.shape)
    for u, v in itertools.product(range(fw), range(fh)):
        index = (slice(None), slice(u, u + sw * (outs[0] - 1) + 1, sw),
                 slice(v, v + sh * (outs[1] - 1) + 1, sh))
        dw[:, :, fw - 1 - u, fh - 1 - v] = np.einsum('bijk,bijc->kc', g, xp[index])
        dxp[index] += np.einsum('bijk,kc->bijc', g, w[:, :, fw - 1 - u, fh - 1 - v])
    return dxp[:, pads[0][0]:pads[0][0] + W, pads[1][0]:pads[1][0] + H], dw


def ref_pool_grad(x, g, pools, strides, mode):
    """Gradient of sum(pool(x) * g): ties all receive their window's gradient."""
    out = ref_pool(x, pools, strides, mode)
    dx = np.zeros(x.shape)
    for i, j in itertools.product(range(out.shape[1]), range(out.shape[2])):
        index = (slice(None), slice(i * strides[0], i * strides[0] + pools[0]),
                 slice(j * strides[1], j * strides[1] + pools[1]))
        if mode == 'max':
            dx[index] += (x[index] == out[:, i:i + 1, j:j + 1]) * g[:, i:i + 1, j:j + 1]
        else:
            dx[index] += g[:, i:i + 1, j:j + 1] / (pools[0] * pools[1])
    return dx


def _values_and_grads(ops_out, tx, tw, tg):
    """out, dx, dw of sum(out * g) for each fused output."""
    results = []
    for y in ops_out:
        dx, dw = pytensor.grad((y * tg).sum(), [tx, tw])
        results += [y, dx, dw]
    return results


# (x shape, filter (fw, fh)): odd sizes; one example has more rows than the
# default chunk of 256 rows, so that auto-sized chunks also split batches.
FUSED_GEOMETRY = [((3, 7, 6, 2), (3, 2)), ((2, 5, 9, 1), (2, 4))]
# chunk_rows 0 (one chunk for these tiny inputs), 5 and 7 (many; batches not a multiple)
FUSED_VARIANTS = [(0, 'auto'), (5, 'rows'), (7, 'transposed'), (7, 'rows'), (0, 'transposed')]


@pytest.mark.parametrize('dtype', ['float32', 'float64'])
@pytest.mark.parametrize('mode', MODES)
def test_fused_conv2d_values_and_gradients(mode, dtype):
    """C code: every stride/chunking/layout against SciPy and NumPy references."""
    rng = np.random.RandomState(5)
    for xshape, filt in FUSED_GEOMETRY:
        x = rng.randn(*xshape).astype(dtype)
        w = rng.randn(3, xshape[-1], *filt).astype(dtype)
        tx, tw, tg = (pt.tensor4(n, dtype=dtype) for n in 'xwg')
        for stride in [(1, 1), (2, 2), (1, 3), (3, 2)]:
            outs = [F.conv2d(tx, tw, stride, mode, filt, chunk_rows=chunk, layout=layout)
                    for chunk, layout in FUSED_VARIANTS]
            fn = theanets.backend.function([tx, tw, tg], _values_and_grads(outs, tx, tw, tg))
            ref = ref_conv2d(x, w, stride, mode)
            g = rng.randn(*ref.shape).astype(dtype)
            ref_dx, ref_dw = ref_conv2d_grads(x.astype(float), w.astype(float), g, stride, mode)
            got = fn(x, w, g)
            for k in range(len(FUSED_VARIANTS)):
                y, dx, dw = got[3 * k:3 * k + 3]
                assert y.dtype == dx.dtype == dw.dtype == dtype
                for a, b in ((y, ref), (dx, ref_dx), (dw, ref_dw)):
                    np.testing.assert_allclose(a, b, rtol=TOL[dtype], atol=TOL[dtype],
                                               err_msg=str((xshape, stride, FUSED_VARIANTS[k])))


@pytest.mark.parametrize('dtype', ['float32', 'float64'])
def test_fused_conv2d_matches_im2col_with_many_chunks(dtype, monkeypatch):
    """C code with automatic chunks (several per batch) equals the im2col graph."""
    monkeypatch.setattr(F, 'CHUNK_BYTES', 1000)     # read when the function compiles
    monkeypatch.setattr(F, 'MIN_CHUNK_ROWS', 100)   # -> chunks of 100 of the 891 rows
    rng = np.random.RandomState(6)
    x = rng.randn(9, 13, 11, 3).astype(dtype)      # 9 * 11 * 9 = 891 output rows
    w = rng.randn(4, 3, 3, 3).astype(dtype)
    tx, tw = pt.tensor4('x', dtype=dtype), pt.tensor4('w', dtype=dtype)
    outs = []
    for method in ('fused', 'im2col'):
        y = C.conv2d(tx, tw, stride=(1, 1), border_mode='valid', filter_size=(3, 3),
                     method=method)
        outs += [y] + pytensor.grad((y ** 2).sum() / 2, [tx, tw])
    got = theanets.backend.function([tx, tw], outs)(x, w)
    for a, b in zip(got[:3], got[3:]):
        np.testing.assert_allclose(a, b, rtol=TOL[dtype] * 10, atol=TOL[dtype] * 10)


def test_fused_conv2d_float32_products_on_blas():
    """float32 products run on BLAS, in row and transposed layouts."""
    assert '#define THN_CONV_USE_DOT' not in F.Conv2dOp().c_support_code()
    rng = np.random.RandomState(10)
    x = rng.randn(3, 9, 8, 3).astype('f')
    w = rng.randn(5, 3, 3, 2).astype('f')
    tx, tw, tg = pt.tensor4('x'), pt.tensor4('w'), pt.tensor4('g')
    outs = [F.conv2d(tx, tw, (2, 1), 'full', (3, 2), chunk_rows=chunk, layout=layout)
            for chunk, layout in [(0, 'rows'), (11, 'transposed')]]
    fn = theanets.backend.function([tx, tw, tg], _values_and_grads(outs, tx, tw, tg))
    ref = ref_conv2d(x, w, (2, 1), 'full')
    g = rng.randn(*ref.shape).astype('f')
    refs = (ref,) + ref_conv2d_grads(x.astype(float), w.astype(float), g, (2, 1), 'full')
    got = fn(x, w, g)
    for k, (a, b) in enumerate(zip(got, refs + refs)):
        np.testing.assert_allclose(a, b, rtol=2e-4, atol=2e-4, err_msg=str(k))


@pytest.mark.parametrize('mode,stride', [('valid', (1, 1)), ('full', (2, 3)), ('same', (2, 1))])
def test_fused_conv2d_python_linker(mode, stride):
    """The NumPy perform path (Python linker) agrees with the references."""
    rng = np.random.RandomState(7)
    x = rng.randn(2, 7, 5, 2)
    w = rng.randn(3, 2, 3, 2)
    tx, tw, tg = (pt.tensor4(n, dtype='float64') for n in 'xwg')
    y = C.conv2d(tx, tw, stride=stride, border_mode=mode, filter_size=(3, 2), method='fused')
    fn = pytensor.function([tx, tw, tg], _values_and_grads([y], tx, tw, tg), mode=PY_LINKED)
    assert any(isinstance(n.op, F.Conv2dGradInputsOp) for n in fn.maker.fgraph.apply_nodes)
    ref = ref_conv2d(x, w, stride, mode)
    g = rng.randn(*ref.shape)
    out, dx, dw = fn(x, w, g)
    ref_dx, ref_dw = ref_conv2d_grads(x, w, g, stride, mode)
    for a, b in ((out, ref), (dx, ref_dx), (dw, ref_dw)):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-10)


def test_fused_conv2d_verify_grad_float64():
    rng = np.random.RandomState(8)
    verify_grad(lambda a, b: F.conv2d(a, b, (2, 1), 'same', (3, 2), chunk_rows=4),
                [rng.randn(2, 5, 4, 2), rng.randn(3, 2, 3, 2)], rng=rng, mode=PY_LINKED,
                eps=1e-6)


def test_fused_conv2d_graph_has_no_join_or_incsubtensor():
    """In C mode: the fused ops, no patch-matrix Join, no IncSubtensor chain, and no
    input gradient for the first layer (only dw is asked for)."""
    x = pt.tensor4('x', shape=(None, 8, 8, 1))
    w1 = pytensor.shared(RNG.randn(4, 1, 3, 3).astype('f'), name='w1')
    w2 = pytensor.shared(RNG.randn(5, 4, 3, 3).astype('f'), name='w2')
    h = C.pool2d(pt.maximum(C.conv2d(x, w1), 0), 2)
    y = C.conv2d(h, w2, border_mode='same')
    fn = theanets.backend.function([x], pytensor.grad((y ** 2).sum(), [w1, w2]))
    ops = [type(n.op).__name__ for n in fn.maker.fgraph.toposort()]
    assert ops.count('Conv2dOp') == 2 and ops.count('Conv2dGradWeightsOp') == 2
    assert ops.count('Conv2dGradInputsOp') == 1        # layer 2 only
    assert 'Pool2dOp' in ops and 'Pool2dGradOp' in ops
    assert not [op for op in ops if op in ('Join', 'IncSubtensor', 'AdvancedIncSubtensor')], ops
    dw1, dw2 = fn(RNG.randn(3, 8, 8, 1).astype('f'))
    assert dw1.shape == (4, 1, 3, 3) and dw2.shape == (5, 4, 3, 3)


def test_fused_is_default_only_where_custom_ops_run(monkeypatch):
    x, w = pt.tensor4('x'), pt.tensor4('w')
    y = C.conv2d(x, w, filter_size=(2, 2))
    assert isinstance(y.owner.op, F.Conv2dOp)
    assert isinstance(C.pool2d(x, 2).owner.op, F.Pool2dOp)
    # integer data: the pure PyTensor formulation
    ints = C.conv2d(pt.itensor4(), pt.itensor4(), filter_size=(2, 2))
    assert not isinstance(ints.owner.op, F.Conv2dOp)
    monkeypatch.setattr(theanets.backend, 'runs_custom_ops', lambda mode=None: False)
    for out in (C.conv2d(x, w, filter_size=(2, 2)), C.pool2d(x, 2),
                C.conv1d(pt.tensor3(), w, filter_size=2), C.pool1d(pt.tensor3(), 2)):
        ops = [type(v.owner.op) for v in pytensor.graph.traversal.ancestors([out]) if v.owner]
        assert not any(issubclass(op, F._FusedCOp) for op in ops)
    with pytest.raises(ValueError, match='method'):
        C.conv2d(x, w, filter_size=(2, 2), method='winograd')
    with pytest.raises(ValueError, match='method'):
        C.pool2d(x, 2, method='fast')


def test_fused_conv1d_and_pool1d_use_the_2d_ops():
    x = RNG.randn(2, 9, 3).astype('f')
    w = RNG.randn(4, 3, 1, 3).astype('f')
    tx = pt.tensor3('x')
    y = C.conv1d(tx, pt.constant(w), stride=2, border_mode='same', method='fused')
    p = C.pool1d(tx, 3, stride=2, mode='max', method='fused')
    fn = theanets.backend.function([tx], [y, p])
    assert sum(isinstance(n.op, (F.Conv2dOp, F.Pool2dOp)) for n in fn.maker.fgraph.apply_nodes) == 2
    out, pooled = fn(x)
    np.testing.assert_allclose(out, ref_conv1d(x, w, 2, 'same'), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(pooled, ref_pool(x, (3,), (2,), 'max'), rtol=1e-6)


def test_fused_conv2d_errors_name_arguments_and_shapes():
    x = pt.tensor4('x', shape=(None, 5, 5, 3))
    w = pt.tensor4('w', shape=(2, 4, 3, 3))
    shapes = r'channel mismatch.*x.*\(\?, 5, 5, 3\).*w.*\(2, 4, 3, 3\)'
    with pytest.raises(ValueError, match=shapes):
        C.conv2d(x, w)
    with pytest.raises(ValueError, match='filter_size'):
        F.Conv2dOp('valid', (1, 1), (2, 2))(x, pt.tensor4(shape=(2, 3, 3, 3)))
    with pytest.raises(ValueError, match='border_mode'):
        F.Conv2dOp('half')
    with pytest.raises(ValueError, match='w .n, C, fw, fh. must have 4 dimensions'):
        F.Conv2dOp()(x, pt.tensor3())
    with pytest.raises(TypeError, match='float32 or float64'):
        F.Conv2dOp()(pt.itensor4(), pt.itensor4())


@pytest.mark.parametrize('linker', ['c', 'py'])
def test_fused_conv2d_runtime_shape_errors(linker):
    tx, tw, tg = pt.tensor4('x'), pt.tensor4('w'), pt.tensor4('g')
    op = F.Conv2dOp('valid', (1, 1), (3, 3))
    outs = [op(tx, tw), F.Conv2dGradWeightsOp('valid', (1, 1), (3, 3))(tx, tw, tg)]
    if linker == 'c':
        fns = [theanets.backend.function([tx, tw], outs[0]),
               theanets.backend.function([tx, tw, tg], outs[1])]
    else:
        fns = [pytensor.function([tx, tw], outs[0], mode=PY_LINKED),
               pytensor.function([tx, tw, tg], outs[1], mode=PY_LINKED)]
    x = np.zeros((2, 5, 5, 3), 'f')
    with pytest.raises(ValueError, match=r'channel mismatch.*\(2, 5, 5, 3\).*\(4, 2, 3, 3\)'):
        fns[0](x, np.zeros((4, 2, 3, 3), 'f'))
    with pytest.raises(ValueError, match=r'\(4, 3, 2, 3\).*filter_size \(3, 3\)'):
        fns[0](x, np.zeros((4, 3, 2, 3), 'f'))
    shapes = r'output gradient has shape \(2, 3, 3, 5\).*\(2, 3, 3, 4\)'
    with pytest.raises(ValueError, match=shapes):
        fns[1](x, np.zeros((4, 3, 3, 3), 'f'), np.zeros((2, 3, 3, 5), 'f'))
    assert fns[0](x, np.zeros((4, 3, 3, 3), 'f')).shape == (2, 3, 3, 4)


def test_fused_conv2d_empty_output():
    tx, tw = pt.tensor4('x'), pt.tensor4('w')
    y = C.conv2d(tx, tw, filter_size=(3, 3), method='fused')
    gx, gw = pytensor.grad(y.sum(), [tx, tw])
    fn = theanets.backend.function([tx, tw], [y, gx, gw])
    out, dx, dw = fn(np.ones((2, 2, 4, 1), 'f'), np.ones((3, 1, 3, 3), 'f'))   # W < fw
    assert out.shape == (2, 0, 2, 3)
    assert not dx.any() and dx.shape == (2, 2, 4, 1) and not dw.any()


def _second_derivatives(build, shapes, seed):
    """Values of H v (w.r.t. every input) for cost = <tanh(build(*inputs)), R>."""
    rng = np.random.RandomState(seed)
    ins = [pt.tensor(dtype='float64', shape=(None,) * len(sh)) for sh in shapes]
    vals = [rng.randn(*sh) for sh in shapes]
    y = build(*ins)
    r = pt.tensor(dtype='float64', shape=(None,) * 4)
    cost = (pt.tanh(y) * r).sum()
    grads = pytensor.grad(cost, ins)
    vs = [pt.tensor(dtype='float64', shape=(None,) * len(sh)) for sh in shapes]
    hv = pytensor.grad(sum((g * v).sum() for g, v in zip(grads, vs)), ins)
    fn = theanets.backend.function(ins + [r] + vs, hv)
    out_shape = theanets.backend.function(ins, y.shape)(*vals)
    return fn(*(vals + [rng.randn(*out_shape)] + [rng.randn(*sh) for sh in shapes]))


@pytest.mark.parametrize('mode,stride', [('valid', (1, 1)), ('full', (2, 1)), ('same', (2, 2))])
def test_fused_conv2d_second_derivatives_match_im2col(mode, stride):
    """Hessian-vector products (as ESGD takes them) through the fused gradient Ops."""
    shapes = [(2, 7, 6, 3), (4, 3, 3, 2)]
    got, want = (_second_derivatives(
        lambda x, w: C.conv2d(x, w, stride=stride, border_mode=mode, filter_size=(3, 2),
                              method=m), shapes, seed=21) for m in ('fused', 'im2col'))
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, rtol=1e-9, atol=1e-10)


POOL_CASES = [((2, 2), None), ((3, 2), (2, 1)), ((2, 3), (3, 2)), ((3, 3), (2, 2)),
              ((1, 2), (1, 1))]


@pytest.mark.parametrize('dtype', ['float32', 'float64'])
@pytest.mark.parametrize('mode', ['max', 'mean'])
def test_fused_pool2d_values_and_gradients_with_ties(mode, dtype):
    """C code and Python linker against NumPy, on data with many tied maxima."""
    rng = np.random.RandomState(9)
    x = rng.randint(0, 3, size=(2, 9, 7, 3)).astype(dtype)
    tx, tg = pt.tensor4('x', dtype=dtype), pt.tensor4('g', dtype=dtype)
    outs = []
    for pool, stride in POOL_CASES:
        y = F.pool2d(tx, pool, stride, mode)
        outs += [y, pytensor.grad((y * tg[:, :y.shape[1], :y.shape[2]]).sum(), tx)]
    g = rng.randn(2, 9, 7, 3).astype(dtype)
    for fn in (theanets.backend.function([tx, tg], outs),
               pytensor.function([tx, tg], outs, mode=PY_LINKED)):
        got = fn(x, g)
        for k, (pool, stride) in enumerate(POOL_CASES):
            strides = stride or pool
            ref = ref_pool(x, pool, strides, mode)
            gk = g[:, :ref.shape[1], :ref.shape[2]]
            np.testing.assert_allclose(got[2 * k], ref, rtol=1e-6, atol=1e-6)
            np.testing.assert_allclose(got[2 * k + 1], ref_pool_grad(x, gk, pool, strides, mode),
                                       rtol=TOL[dtype], atol=TOL[dtype], err_msg=str(pool))


def test_pool2d_tie_gradients_agree_between_methods():
    """Fused and pure-PyTensor pooling give ties the same gradient (every tied element)."""
    x = np.zeros((1, 5, 5, 2), 'f')
    tx = pt.tensor4('x')
    for pool, stride in [((2, 2), None), ((3, 3), (2, 2))]:
        grads = [pytensor.grad(C.pool2d(tx, pool, stride, method=m).sum(), tx)
                 for m in ('fused', 'pytensor')]
        fused, pure = theanets.backend.function([tx], grads)(x)
        np.testing.assert_array_equal(fused, pure)
        np.testing.assert_array_equal(fused, ref_pool_grad(x, np.ones((1, 2, 2, 2)), pool,
                                                           stride or pool, 'max'))


def test_fused_pool2d_errors():
    with pytest.raises(ValueError, match='mode'):
        F.Pool2dOp((2, 2), None, 'median')
    with pytest.raises(ValueError, match='pool_size'):
        F.Pool2dOp((0, 2))
    tx = pt.tensor4('x')
    y = F.pool2d(tx, (3, 3))
    out = theanets.backend.function([tx], y)(np.ones((1, 2, 5, 1), 'f'))    # window > W
    assert out.shape == (1, 0, 1, 1)


@pytest.mark.parametrize('mode', ['max', 'mean'])
@pytest.mark.parametrize('pool,stride', [((2, 2), None), ((3, 2), (2, 1))])
def test_fused_pool2d_second_derivatives_match_pytensor(mode, pool, stride):
    shapes = [(2, 7, 6, 3)]
    got, want = (_second_derivatives(
        lambda x: C.pool2d(x * x, pool, stride, mode=mode, method=m), shapes, seed=22)
        for m in ('fused', 'pytensor'))
    np.testing.assert_allclose(got[0], want[0], rtol=1e-9, atol=1e-10)


def test_fused_outputs_held_by_the_caller_are_not_reused():
    """A node writes into its previous output only when nobody else holds it."""
    tx, tw = pt.tensor4('x'), pt.tensor4('w')
    y = F.conv2d(tx, tw, filter_size=(2, 2))
    fn = theanets.backend.function([tx, tw], [y, F.pool2d(y * 2, (2, 2)) + 1])
    w = RNG.randn(2, 1, 2, 2).astype('f')
    xs = [RNG.randn(1, 5, 5, 1).astype('f') for _ in range(3)]
    first = fn(xs[0], w)
    second = fn(xs[1], w)
    for got, x in ((first, xs[0]), (second, xs[1])):
        ref = ref_conv2d(x, w, (1, 1), 'valid')
        np.testing.assert_allclose(got[0], ref, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(got[1], ref_pool(2 * ref, (2, 2), (2, 2), 'max') + 1,
                                   rtol=1e-5, atol=1e-5)
    del first, second
    third = fn(xs[2], w)
    np.testing.assert_allclose(third[0], ref_conv2d(xs[2], w, (1, 1), 'valid'),
                               rtol=1e-5, atol=1e-5)
