"""Tests of theanets.ops.conv: every face of the ops (C, portable C, NumPy, JAX) against
SciPy and loop references, values and first and second derivatives."""

import itertools

import numpy as np
import pytest
import scipy.signal

import theanets  # noqa: F401  (sets PyTensor flags first)
import pytensor
import pytensor.tensor as pt
from pytensor.compile.mode import Mode
from pytensor.gradient import verify_grad

from theanets.ops import conv as C
from op_faces import face  # noqa: F401  (fixture)

MODES = C.BORDER_MODES
TOL = {'float32': dict(rtol=2e-4, atol=2e-4), 'float64': dict(rtol=1e-9, atol=1e-9)}
PY_MODE = Mode(linker='py', optimizer='fast_compile')


# ---------------------------------------------------------------- references

def _pads(f, mode):
    return {'valid': (0, 0), 'full': (f - 1, f - 1), 'same': ((f - 1) // 2, f // 2)}[mode]


def ref_conv2d(x, w, stride, mode):
    """Per example, filter and channel, scipy.signal.convolve of the padded image."""
    (sw, sh), (n, _, fw, fh) = stride, w.shape
    outs = C.output_shape(x.shape[1:3], (fw, fh), stride, mode)
    out = np.zeros((x.shape[0],) + outs + (n,))
    for b, k, c in itertools.product(range(x.shape[0]), range(n), range(x.shape[3])):
        img = np.pad(x[b, :, :, c].astype(float), (_pads(fw, mode), _pads(fh, mode)))
        full = scipy.signal.convolve(img, w[k, c].astype(float), mode='valid')
        out[b, :, :, k] += full[::sw, ::sh][:outs[0], :outs[1]]
    return out


def ref_conv2d_grads(x, w, g, stride, mode):
    """(dx, dw) of sum(conv2d(x, w) * g), one einsum per filter tap."""
    (sw, sh), (n, _, fw, fh), (wo, ho) = stride, w.shape, g.shape[1:3]
    (pw, _), (ph, _) = _pads(fw, mode), _pads(fh, mode)
    xp = np.pad(x.astype(float), [(0, 0), _pads(fw, mode), _pads(fh, mode), (0, 0)])
    dxp, dw = np.zeros_like(xp), np.zeros(w.shape)
    for u, v in itertools.product(range(fw), range(fh)):
        index = (slice(None), slice(u, u + sw * (wo - 1) + 1, sw),
                 slice(v, v + sh * (ho - 1) + 1, sh))
        dw[:, :, fw - 1 - u, fh - 1 - v] = np.einsum('bijk,bijc->kc', g, xp[index])
        dxp[index] += np.einsum('bijk,kc->bijc', g, w[:, :, fw - 1 - u, fh - 1 - v])
    return dxp[:, pw:pw + x.shape[1], ph:ph + x.shape[2]], dw


def _windows(x, pool, stride):
    """(window index into x, output position) for every pooling window."""
    outs = [(s - p) // st + 1 for s, p, st in zip(x.shape[1:3], pool, stride)]
    for i, j in itertools.product(*map(range, outs)):
        yield ((slice(None), slice(i * stride[0], i * stride[0] + pool[0]),
                slice(j * stride[1], j * stride[1] + pool[1])), (slice(None), i, j))


def ref_pool(x, pool, stride, mode):
    outs = [(s - p) // st + 1 for s, p, st in zip(x.shape[1:3], pool, stride)]
    out = np.zeros((x.shape[0],) + tuple(outs) + (x.shape[3],))
    for window, at in _windows(x, pool, stride):
        out[at] = x[window].max(axis=(1, 2)) if mode == 'max' else x[window].mean(axis=(1, 2))
    return out


def ref_pool_grad(x, g, pool, stride, mode):
    """Gradient of sum(pool(x) * g): every tied maximum receives its window's gradient."""
    out, dx = ref_pool(x, pool, stride, mode), np.zeros(x.shape)
    for window, at in _windows(x, pool, stride):
        gi = g[at][:, None, None]
        dx[window] += (x[window] == out[at][:, None, None]) * gi if mode == 'max' \
            else gi / (pool[0] * pool[1])
    return dx


def conv_cases():
    """(border, stride, filter): every border mode, strides > 1, odd and even filters."""
    return [(m, s, f) for m in MODES for s in [(1, 1), (2, 3)] for f in [(3, 2), (1, 4)]]


# ---------------------------------------------------------------- geometry

def test_output_lengths():
    assert C.output_length(None, 3, 1, 'valid') is None
    assert [C.output_length(10, 3, 1, m) for m in MODES] == [8, 12, 10]
    assert [C.output_length(10, 3, 2, m) for m in MODES] == [4, 6, 5]
    assert [C.output_length(10, 4, 3, m) for m in MODES] == [3, 5, 4]
    assert C.output_length(2, 3) == 0 and C.output_length(1, 5, 2) == 0
    assert C.output_shape((28, None), (5, 5)) == (24, None)
    assert C.pool_output_shape((None, 9), 2) == (None, 4)
    assert C.pool_output_shape((9, 9), (2, 3), (2, 2)) == (4, 4)
    assert C.pool_output_shape((24, 7), (3, 2), (2, 1)) == (11, 6)
    with pytest.raises(ValueError, match="border_mode must be 'valid', 'full' or 'same', "
                                         "got 'half'"):
        C.output_length(10, 3, 1, 'half')


@pytest.mark.parametrize('border,stride,filt', conv_cases())
def test_numpy_reference_matches_scipy(border, stride, filt):
    rng = np.random.RandomState(1)
    x, w = rng.randn(2, 7, 6, 2), rng.randn(3, 2, *filt)
    out = C.np_conv2d(x, w, stride, border)
    ref = ref_conv2d(x, w, stride, border)
    assert out.shape == ref.shape
    np.testing.assert_allclose(out, ref, rtol=1e-10, atol=1e-10)
    g = rng.randn(*out.shape)
    for got, want in zip((C.np_conv2d_grad_inputs(x, w, g, stride, border),
                          C.np_conv2d_grad_weights(x, w, g, stride, border)),
                         ref_conv2d_grads(x, w, g, stride, border)):
        np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-10)


def test_same_border_with_an_odd_filter_is_scipys_same():
    rng = np.random.RandomState(2)
    x, w = rng.randn(7, 6), rng.randn(3, 5)
    got = C.np_conv2d(x[None, :, :, None], w[None, None], (1, 1), 'same')[0, :, :, 0]
    np.testing.assert_allclose(got, scipy.signal.convolve(x, w, 'same'))


# --------------------------------------------------- convolution, every face

@pytest.mark.parametrize('dtype', ['float32', 'float64'])
def test_conv2d_values_and_gradients(face, dtype):
    rng = np.random.RandomState(3)
    x = rng.randn(2, 7, 6, 3).astype(dtype)
    tx, tg = pt.tensor4('x', dtype=dtype), pt.tensor4('g', dtype=dtype)
    inputs, outputs, values, refs = [tx], [], [x], []
    for border, stride, filt in conv_cases():
        w = rng.randn(4, 3, *filt).astype(dtype)
        tw, tg = pt.tensor4(dtype=dtype), pt.tensor4(dtype=dtype)
        y = C.conv2d(tx, tw, stride, border)
        ref = ref_conv2d(x, w, stride, border)
        g = rng.randn(*ref.shape).astype(dtype)
        inputs += [tw, tg]
        values += [w, g]
        outputs += [y] + pytensor.grad((y * tg).sum(), [tx, tw])
        refs += [ref] + list(ref_conv2d_grads(x, w, g, stride, border))
    got = face(inputs, outputs, *values)
    for k, (a, b) in enumerate(zip(got, refs)):
        assert a.dtype == dtype and a.shape == b.shape
        np.testing.assert_allclose(a, b, err_msg=str(conv_cases()[k // 3]), **TOL[dtype])


@pytest.mark.parametrize('border,stride', [('valid', 1), ('full', 2), ('same', 3)])
def test_conv1d(face, border, stride):
    rng = np.random.RandomState(4)
    x, w = rng.randn(3, 11, 2).astype('f'), rng.randn(5, 2, 1, 4).astype('f')
    tx, tw = pt.tensor3('x'), pt.tensor4('w')
    y = C.conv1d(tx, tw, stride, border)
    out, dw = face([tx, tw], [y, pytensor.grad(y.sum(), tw)], x, w)
    ref = ref_conv2d(x[:, None], w, (1, stride), border)[:, 0]
    np.testing.assert_allclose(out, ref, **TOL['float32'])
    g = np.ones((3, 1) + ref.shape[1:])
    np.testing.assert_allclose(dw, ref_conv2d_grads(x[:, None], w, g, (1, stride), border)[1],
                               **TOL['float32'])


def _hessian_vector(face, build, values, out_shape, cost_grads, dtype):
    """H v of cost = <tanh(build(*inputs)), r>, from the ops and by finite differences of
    the reference gradient ``cost_grads(values, r)``."""
    rng = np.random.RandomState(5)
    ins = [pt.tensor(dtype=dtype, shape=(None,) * v.ndim) for v in values]
    vs = [pt.tensor(dtype=dtype, shape=(None,) * v.ndim) for v in values]
    y = build(*ins)
    r = pt.tensor(dtype=dtype, shape=(None,) * 4)
    grads = pytensor.grad((pt.tanh(y) * r).sum(), ins)
    hv = pytensor.grad(sum((g * v).sum() for g, v in zip(grads, vs)), ins)
    r_value = rng.randn(*out_shape).astype(dtype)
    directions = [rng.randn(*v.shape).astype(dtype) for v in values]
    got = face(ins + [r] + vs, hv, *(values + [r_value] + directions))
    eps = 1e-5
    plus = cost_grads([v + eps * d for v, d in zip(values, directions)], r_value)
    minus = cost_grads([v - eps * d for v, d in zip(values, directions)], r_value)
    for a, p, m in zip(got, plus, minus):
        want = (p - m) / (2 * eps)
        tol = TOL[dtype]['rtol'] * 10 if dtype == 'float32' else 1e-6
        np.testing.assert_allclose(a, want, rtol=tol, atol=tol * np.abs(want).max())


@pytest.mark.parametrize('dtype', ['float32', 'float64'])
@pytest.mark.parametrize('border,stride', [('valid', (1, 1)), ('full', (2, 1)),
                                           ('same', (2, 3))])
def test_conv2d_second_derivatives(face, dtype, border, stride):
    """Hessian-vector products (as ESGD takes them) through the gradient ops."""
    rng = np.random.RandomState(6)
    # small values: tanh far from saturation, where float32 loses its second derivative
    values = [(rng.randn(*shape) * 0.4).astype(dtype) for shape in [(2, 7, 6, 3), (4, 3, 3, 2)]]

    def cost_grads(xw, r):
        x, w = (v.astype(float) for v in xw)
        gz = r * (1 - np.tanh(ref_conv2d(x, w, stride, border)) ** 2)
        return ref_conv2d_grads(x, w, gz, stride, border)
    out_shape = ref_conv2d(*values, stride, border).shape
    _hessian_vector(face, lambda x, w: C.conv2d(x, w, stride, border), values, out_shape,
                    cost_grads, dtype)


@pytest.mark.parametrize('op', ['inputs', 'weights'])
def test_gradient_ops_have_gradients(op):
    """verify_grad of the gradient ops themselves (their pullbacks)."""
    rng = np.random.RandomState(7)
    x, w = rng.randn(2, 5, 4, 2), rng.randn(3, 2, 3, 2)
    if op == 'inputs':      # dx is linear in w and dout (x gives its shape)
        verify_grad(lambda w, g: C.ConvGradInputsOp('full', (2, 1))(pt.constant(x), w, g),
                    [w, rng.randn(2, 4, 5, 3)], rng=rng, mode=PY_MODE)
    else:                   # dw is linear in x and dout (w gives its shape)
        verify_grad(lambda x, g: C.ConvGradWeightsOp('same', (1, 2))(x, pt.constant(w), g),
                    [x, rng.randn(2, 5, 2, 3)], rng=rng, mode=PY_MODE)


@pytest.mark.parametrize('xshape,filt,border', [
    ((1, 44, 37, 3), (2, 4), 'valid'),     # patches in rows: 2 chunks, split mid-line
    ((2, 40, 50, 1), (30, 8), 'full')])    # in columns (few channels): 4 chunks
def test_chunks(face, xshape, filt, border):
    rng = np.random.RandomState(12)
    x, w = rng.randn(*xshape), rng.randn(2, xshape[3], *filt)
    tx, tw, tg = (pt.tensor4(dtype='float64') for _ in 'xwg')
    y = C.conv2d(tx, tw, 1, border)
    ref = C.np_conv2d(x, w, (1, 1), border)
    g = rng.randn(*ref.shape)
    got = face([tx, tw, tg], [y] + pytensor.grad((y * tg).sum(), [tx, tw]), x, w, g)
    refs = [ref, C.np_conv2d_grad_inputs(x, w, g, (1, 1), border),
            C.np_conv2d_grad_weights(x, w, g, (1, 1), border)]
    for a, b in zip(got, refs):
        np.testing.assert_allclose(a, b, **TOL['float64'])


def test_empty_output(face):
    tx, tw = pt.tensor4('x'), pt.tensor4('w')
    y = C.conv2d(tx, tw)
    out, dx, dw = face([tx, tw], [y] + pytensor.grad(y.sum(), [tx, tw]),
                       np.ones((2, 2, 4, 1), 'f'), np.ones((3, 1, 3, 3), 'f'))  # W < fw
    assert out.shape == (2, 0, 2, 3) and dx.shape == (2, 2, 4, 1) and dw.shape == (3, 1, 3, 3)
    assert not dx.any() and not dw.any()


# ----------------------------------------------------- pooling, every face

POOL_CASES = [((2, 2), (2, 2)), ((3, 2), (2, 1)), ((2, 3), (3, 2)), ((1, 2), (1, 1))]


@pytest.mark.parametrize('dtype', ['float32', 'float64'])
@pytest.mark.parametrize('mode', ['max', 'mean'])
def test_pool2d_values_and_gradients_with_ties(face, mode, dtype):
    rng = np.random.RandomState(8)
    x = rng.randint(0, 3, size=(2, 9, 7, 3)).astype(dtype)      # many tied maxima
    tx = pt.tensor4('x', dtype=dtype)
    inputs, values, outputs, refs = [tx], [x], [], []
    for pool, stride in POOL_CASES:
        ref = ref_pool(x, pool, stride, mode)
        g = rng.randn(*ref.shape).astype(dtype)
        tg = pt.tensor4(dtype=dtype)
        y = C.pool2d(tx, pool, stride, mode)
        inputs.append(tg)
        values.append(g)
        outputs += [y, pytensor.grad((y * tg).sum(), tx)]
        refs += [ref, ref_pool_grad(x, g, pool, stride, mode)]
    for k, (a, b) in enumerate(zip(face(inputs, outputs, *values), refs)):
        assert a.dtype == dtype
        np.testing.assert_allclose(a, b, err_msg=str(POOL_CASES[k // 2]), **TOL[dtype])


@pytest.mark.parametrize('mode', ['max', 'mean'])
def test_pool1d(face, mode):
    x = np.random.RandomState(9).randn(3, 11, 2).astype('f')
    tx = pt.tensor3('x')
    out, dx = face([tx], [C.pool1d(tx, 3, 2, mode), pytensor.grad(C.pool1d(tx, 3, 2, mode)
                                                                  .sum(), tx)], x)
    np.testing.assert_allclose(out, ref_pool(x[:, None], (1, 3), (1, 2), mode)[:, 0], rtol=1e-6)
    g = np.ones((3, 1, 5, 2))
    np.testing.assert_allclose(dx, ref_pool_grad(x[:, None], g, (1, 3), (1, 2), mode)[:, 0],
                               rtol=1e-6)


@pytest.mark.parametrize('dtype', ['float32', 'float64'])
@pytest.mark.parametrize('mode', ['max', 'mean'])
def test_pool2d_second_derivatives(face, mode, dtype):
    x = (np.random.RandomState(10).permutation(2 * 7 * 6 * 3).reshape(2, 7, 6, 3) * 0.1 + 1)

    def cost_grads(xs, r):
        (x,) = xs
        gz = r * (1 - np.tanh(ref_pool(x * x, (3, 2), (2, 1), mode)) ** 2)
        return [2 * x * ref_pool_grad(x * x, gz, (3, 2), (2, 1), mode)]
    _hessian_vector(face, lambda x: C.pool2d(x * x, (3, 2), (2, 1), mode), [x.astype(dtype)],
                    ref_pool(x, (3, 2), (2, 1), mode).shape, cost_grads, dtype)


@pytest.mark.parametrize('transposed', [False, True])
def test_pool_gradient_op_has_gradients(transposed):
    rng = np.random.RandomState(11)
    x = rng.permutation(2 * 6 * 5 * 2).reshape(2, 6, 5, 2) * 0.1
    out = C.np_pool2d(x, (3, 2), (2, 1), 'max')
    g = rng.randn(*(x.shape if transposed else out.shape))
    op = C.PoolGradOp((3, 2), (2, 1), 'max', transposed)
    verify_grad(lambda g: op(pt.constant(x), pt.constant(out), g), [g], rng=rng, mode=PY_MODE)


# -------------------------------------------------------- settings and errors

def test_settings_are_parameters_of_one_c_module():
    """Ops that differ only in their settings generate the same C code (one module)."""
    x, w, g = pt.tensor4('x'), pt.tensor4('w'), pt.tensor4('g')
    sub = dict(params='P', fail='FAIL')
    pairs = [(C.ConvOp('valid', 1)(x, w), C.ConvOp('same', (2, 3))(x, w)),
             (C.ConvGradInputsOp('full', 2)(x, w, g), C.ConvGradInputsOp()(x, w, g)),
             (C.PoolOp(2, 2, 'max')(x), C.PoolOp((3, 2), (1, 2), 'mean')(x))]
    for a, b in pairs:
        codes = {y.owner.op.c_code(y.owner, 'node', ['X', 'W', 'G'][:len(y.owner.inputs)],
                                   ['Y'], sub) for y in (a, b)}
        assert len(codes) == 1, codes


@pytest.mark.parametrize('face_name', ['c', 'numpy'])
def test_run_time_shape_errors(face_name):
    from op_faces import Face
    run = Face(face_name)
    tx, tw, tg = pt.tensor4('x'), pt.tensor4('w'), pt.tensor4('g')
    forward = run.function([tx, tw], C.conv2d(tx, tw))
    weights = run.function([tx, tw, tg], C.ConvGradWeightsOp()(tx, tw, tg))
    pool = run.function([tx, tw, tg], C.PoolGradOp((2, 2), (2, 2), 'max')(tx, tw, tg))
    x = np.zeros((2, 5, 5, 3), 'f')
    with pytest.raises(ValueError, match=r'ConvOp: x \(B, W, H, C\) has shape \(2, 5, 5, 3\) '
                                         r'but w \(n, C, fw, fh\) has 2 channels'):
        forward(x, np.zeros((4, 2, 3, 3), 'f'))
    with pytest.raises(ValueError, match=r'ConvGradWeightsOp: the output gradient has shape '
                                         r'\(2, 3, 3, 5\), expected \(2, 3, 3, 4\)'):
        weights(x, np.zeros((4, 3, 3, 3), 'f'), np.zeros((2, 3, 3, 5), 'f'))
    with pytest.raises(ValueError, match=r'PoolGradOp: out has shape \(2, 3, 2, 3\), '
                                         r'expected \(2, 2, 2, 3\)'):
        pool(x, np.zeros((2, 3, 2, 3), 'f'), np.zeros((2, 3, 2, 3), 'f'))
    assert forward(x, np.zeros((4, 3, 3, 3), 'f')).shape == (2, 3, 3, 4)


def test_graph_errors():
    x = pt.tensor4('x', shape=(None, 5, 5, 3))
    with pytest.raises(ValueError, match=r'ConvOp: x \(B, W, H, C\) has shape \(None, 5, 5, '
                                         r'3\) but w \(n, C, fw, fh\) has 4 channels'):
        C.conv2d(x, pt.tensor4('w', shape=(2, 4, 3, 3)))
    with pytest.raises(ValueError, match=r'ConvOp: w \(n, C, fw, fh\) must have 4 axes, got 3'):
        C.conv2d(x, pt.tensor3())
    with pytest.raises(ValueError, match="border_mode must be 'valid', 'full' or 'same'"):
        C.conv2d(x, pt.tensor4(), border_mode='half')
    with pytest.raises(ValueError, match=r'stride must be 2 positive int\(s\), got \(1, 0\)'):
        C.conv2d(x, pt.tensor4(), stride=(1, 0))
    with pytest.raises(ValueError, match=r'conv1d: w must have shape \(n, C, 1, f\)'):
        C.conv1d(pt.tensor3(), pt.tensor4(shape=(2, 3, 2, 2)))
    with pytest.raises(ValueError, match="pooling mode must be 'max', 'mean' or 'average', "
                                         "got 'median'"):
        C.pool2d(x, 2, mode='median')
    with pytest.raises(ValueError, match=r'pool_size must be 2 positive int\(s\)'):
        C.pool2d(x, (0, 2))
    assert C.conv2d(pt.itensor4(), pt.itensor4()).dtype == pytensor.config.floatX


def test_outputs_held_by_the_caller_are_not_overwritten():
    """A node writes into its last output again only when nobody else holds it."""
    rng = np.random.RandomState(13)
    tx, tw = pt.tensor4('x'), pt.tensor4('w')
    y = C.conv2d(tx, tw)
    fn = theanets.backend.function([tx, tw], [y, C.pool2d(y * 2, 2) + 1])
    w = rng.randn(2, 1, 2, 2).astype('f')
    xs = [rng.randn(1, 5, 5, 1).astype('f') for _ in range(3)]
    held = [fn(x, w) for x in xs[:2]]
    held.append(fn(xs[2], w))
    del held[1]
    held.append(fn(xs[1], w))
    for (out, pooled), x in zip(held, [xs[0], xs[2], xs[1]]):
        ref = ref_conv2d(x, w, (1, 1), 'valid')
        np.testing.assert_allclose(out, ref, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(pooled, ref_pool(2 * ref, (2, 2), (2, 2), 'max') + 1,
                                   rtol=1e-5, atol=1e-5)


def test_only_the_gradients_a_graph_uses_are_computed():
    """The first layer's input gradient is never computed; no PyTensor im2col graph."""
    x = pt.tensor4('x', shape=(None, 8, 8, 1))
    w1 = pytensor.shared(np.ones((4, 1, 3, 3), 'f'))
    w2 = pytensor.shared(np.ones((5, 4, 3, 3), 'f'))
    y = C.conv2d(C.pool2d(pt.maximum(C.conv2d(x, w1), 0), 2), w2, border_mode='same')
    fn = theanets.backend.function([x], pytensor.grad((y ** 2).sum(), [w1, w2]))
    ops = [type(n.op).__name__ for n in fn.maker.fgraph.toposort()]
    assert ops.count('ConvOp') == 2 and ops.count('ConvGradWeightsOp') == 2
    assert ops.count('ConvGradInputsOp') == 1 and 'PoolGradOp' in ops
    assert not {'Join', 'IncSubtensor', 'AdvancedIncSubtensor'} & set(ops), ops
