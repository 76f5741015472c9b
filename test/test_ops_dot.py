"""Tests of the float32 matrix product on the fused ops' kernels (theanets.ops.dot)."""

import numpy as np
import pytest

import theanets  # noqa: F401  (sets PyTensor flags first)
import pytensor
import pytensor.tensor as pt
from pytensor.compile.mode import Mode

from theanets import backend
from theanets.ops.dot import DotOp

PY_MODE = Mode(linker='py', optimizer='fast_compile')


def product(layout):
    """(a, b, expression) for A (M, K) . B (K, N) seen through `layout`."""
    a = pt.matrix('a', dtype='float32')
    b = pt.matrix('b', dtype='float32')
    views = {
        'nn': (a, b),
        'tn': (a.T, b),              # A transposed: column-major rows
        'nt': (a, b.T),              # B transposed: packed once per call
        'tt': (a.T, b.T),
        'strided': (a[::2, ::3], b[1::2, ::2]),   # no unit stride on either axis
    }
    x, y = views[layout]
    return a, b, DotOp()(x, y), (x, y)


def operands(rng, layout, M, K, N):
    shapes = {'nn': ((M, K), (K, N)), 'tn': ((K, M), (K, N)), 'nt': ((M, K), (N, K)),
              'tt': ((K, M), (N, K)), 'strided': ((2 * M, 3 * K), (2 * K, 2 * N))}
    return [rng.randn(*s).astype('float32') for s in shapes[layout]]


# sizes around the kernels' tiles (8 rows, 32 columns), row blocks (96) and depth blocks (256)
SIZES = [(1, 1, 1), (3, 5, 2), (8, 32, 32), (17, 33, 65), (200, 300, 70), (97, 513, 31),
         (1, 40, 300), (300, 40, 1), (40, 1, 40)]


@pytest.mark.parametrize('layout', ['nn', 'tn', 'nt', 'tt', 'strided'])
@pytest.mark.parametrize('size', SIZES)
def test_matches_numpy(layout, size):
    rng = np.random.RandomState(sum(size))
    a, b, out, (x, y) = product(layout)
    av, bv = operands(rng, layout, *size)
    got = backend.function([a, b], out)(av, bv)
    xv, yv = pytensor.function([a, b], [x, y], mode=PY_MODE)(av, bv)
    want = xv.astype('float64').dot(yv.astype('float64'))
    assert got.shape == want.shape and got.dtype == np.float32
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4 * np.sqrt(size[1]))


@pytest.mark.parametrize('env', [{'THEANETS_NUM_THREADS': '2'}, {'THEANETS_NUM_THREADS': '1'},
                                 {'THEANETS_FUSED_FAST': '0'}])
def test_threads_and_blas_fallback(env, monkeypatch):
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    rng = np.random.RandomState(5)
    for layout in ('nn', 'tn', 'nt'):
        a, b, out, (x, y) = product(layout)
        av, bv = operands(rng, layout, 301, 270, 75)
        got = backend.function([a, b], out)(av, bv)
        xv, yv = pytensor.function([a, b], [x, y], mode=PY_MODE)(av, bv)
        np.testing.assert_allclose(got, xv.dot(yv), rtol=1e-4, atol=1e-3)


def test_empty_operands():
    a, b, out, _ = product('nn')
    f = backend.function([a, b], out)
    assert f(np.zeros((0, 4), 'f'), np.zeros((4, 3), 'f')).shape == (0, 3)
    assert f(np.zeros((2, 4), 'f'), np.zeros((4, 0), 'f')).shape == (2, 0)
    np.testing.assert_array_equal(f(np.zeros((2, 0), 'f'), np.zeros((0, 3), 'f')), 0)


def test_perform_path():
    rng = np.random.RandomState(6)
    a, b, out, _ = product('nt')
    av, bv = operands(rng, 'nt', 5, 7, 3)
    got = pytensor.function([a, b], out, mode=PY_MODE)(av, bv)
    np.testing.assert_allclose(got, av.dot(bv.T), rtol=1e-5)


def test_mismatched_shapes_name_both():
    a, b, out, _ = product('nn')
    f = backend.function([a, b], out)
    with pytest.raises(ValueError, match=r'\(2, 3\).*\(4, 5\)'):
        f(np.zeros((2, 3), 'f'), np.zeros((4, 5), 'f'))


def test_only_float32_matrices():
    with pytest.raises(TypeError, match='float32'):
        DotOp()(pt.dmatrix(), pt.dmatrix())
    with pytest.raises(TypeError):
        DotOp()(pt.vector(dtype='float32'), pt.matrix(dtype='float32'))


@pytest.mark.skipif(not backend.fast_dot_enabled(), reason='CPU without AVX-512')
def test_float32_products_in_compiled_models_use_it():
    a, b = pt.matrix(dtype='float32'), pt.matrix(dtype='float32')
    f = backend.function([a, b], pt.dot(a, b.T) * 2)
    assert any(isinstance(n.op, DotOp) for n in f.maker.fgraph.apply_nodes)
    a64, b64 = pt.dmatrix(), pt.dmatrix()
    g = backend.function([a64, b64], pt.dot(a64, b64))
    assert not any(isinstance(n.op, DotOp) for n in g.maker.fgraph.apply_nodes)


def test_gradients_through_rewritten_products():
    rng = np.random.RandomState(7)
    w = pytensor.shared(rng.randn(6, 4).astype('f'))
    x = pt.matrix(dtype='float32')
    cost = (pt.tanh(x.dot(w)) ** 2).sum()
    f = backend.function([x], pytensor.grad(cost, [x, w]))
    ref = pytensor.function([x], pytensor.grad(cost, [x, w]), mode='FAST_COMPILE')
    xv = rng.randn(9, 6).astype('f')
    for g, r in zip(f(xv), ref(xv)):
        np.testing.assert_allclose(g, r, rtol=1e-4, atol=1e-5)
