"""Tests of theanets.ops.product: 3-D x matrix products in C, NumPy and JAX, and their gradients."""

import ctypes
import logging
import sys

import numpy as np
import pytest

import theanets  # noqa: F401  (sets PyTensor flags first)
import pytensor
import pytensor.tensor as pt
from pytensor.compile.mode import Mode, get_mode

from theanets.ops.product import DotLastOp, DotLeadingOp, dot_last

from jaxmode import jax_mode  # noqa: F401  (a fixture)

PY_MODE = Mode(linker='py', optimizer='fast_compile')


@pytest.fixture(params=['default', 'portable'])
def c_mode(request, monkeypatch):
    monkeypatch.setenv('THEANETS_PORTABLE', '1' if request.param == 'portable' else '0')
    return get_mode('CVM')


def views(x):
    """The layouts layers pass: batch-major, a time-major view, a reversed view."""
    return {'plain': x, 'swapped': x.dimshuffle(1, 0, 2), 'reversed': x[:, ::-1]}


@pytest.mark.parametrize('dtype', ['float32', 'float64'])
@pytest.mark.parametrize('view', ['plain', 'swapped', 'reversed'])
@pytest.mark.parametrize('n, k', [(4, 37), (37, 4)])
def test_products_and_gradients_in_c_numpy_and_jax(dtype, view, n, k, c_mode,
                                                   jax_mode):  # noqa: F811 (fixture)
    x, w = pt.tensor3('x', dtype=dtype), pt.matrix('w', dtype=dtype)
    xv = views(x)[view]
    y = dot_last(xv, w)
    cost = (y.dimshuffle(1, 0, 2) ** 2).sum()   # the gradient arrives as a swapped view
    rng = np.random.RandomState(0)
    args = [rng.randn(3, 20, n).astype(dtype), rng.randn(n, k).astype(dtype)]
    results = [pytensor.function([x, w], [y] + pytensor.grad(cost, [x, w]), mode=m)(*args)
               for m in (c_mode, PY_MODE, 'JAX')]
    x_view = {'plain': args[0], 'swapped': args[0].transpose(1, 0, 2),
              'reversed': args[0][:, ::-1]}[view]
    for result in results:
        _assert_close(result[0], x_view @ args[1])
        for a, b in zip(result[1:], results[1][1:]):
            _assert_close(a, b)


def _assert_close(actual, desired):
    """Equal within rounding: float32 sums of terms up to |desired|'s largest.

    An element that cancels (-2.31 among values up to 225) differs by 3.6e-5
    between summation orders (XLA's, OpenBLAS's on some CPUs).
    """
    if desired.dtype == np.float32:
        tol = dict(rtol=1e-5, atol=1e-6 * np.abs(desired).max())
    else:
        tol = dict(rtol=1e-10)
    np.testing.assert_allclose(actual, desired, **tol)


def test_second_derivatives(c_mode):
    rng = np.random.RandomState(1)

    def cost(x, w):
        return (pytensor.grad((dot_last(x, w) ** 2).sum(), w) ** 2).sum()
    pytensor.gradient.verify_grad(cost, [rng.randn(2, 3, 4), rng.randn(4, 5)], rng=rng,
                                  mode=c_mode)


@pytest.mark.parametrize('mode', ['CVM', PY_MODE], ids=['C', 'NumPy'])
def test_shape_errors(mode):
    x, w, g = pt.tensor3('x'), pt.matrix('w'), pt.tensor3('g')
    fn = pytensor.function([x, w, g], [DotLastOp()(x, w), DotLeadingOp()(x, g)], mode=mode)
    with pytest.raises(ValueError, match=r'dot_last: w has shape \(5, 2\), expected \(4, k\)'):
        fn(np.zeros((2, 3, 4), 'f'), np.zeros((5, 2), 'f'), np.zeros((2, 3, 2), 'f'))
    with pytest.raises(ValueError, match=r'dot_leading: g has shape \(3, 2, 2\), expected '
                                         r'\(2, 3, k\)'):
        fn(np.zeros((2, 3, 4), 'f'), np.zeros((4, 2), 'f'), np.zeros((3, 2, 2), 'f'))
    with pytest.raises(TypeError, match='dot_last: x must have 3 axes, got 2'):
        dot_last(pt.matrix('m'), w)


@pytest.mark.skipif(sys.platform != 'linux' or 'scipy_openblas' not in
                    pytensor.config.blas__ldflags, reason='reads the thread count of the '
                    'scipy-openblas32 library, as linked on Linux')
def test_blas_threads_are_restored(monkeypatch):
    """The ops run BLAS on one thread while their own threads run, then restore it."""
    import scipy_openblas32
    lib = ctypes.CDLL('{}/lib{}.so'.format(scipy_openblas32.get_lib_dir(),
                                           scipy_openblas32.get_library()))
    before = lib.scipy_openblas_get_num_threads()
    monkeypatch.setenv('OMP_NUM_THREADS', '2')
    x, w = pt.tensor3('x'), pt.matrix('w')
    fn = pytensor.function([x, w], dot_last(x, w), mode='CVM')
    out = fn(np.ones((4, 64, 8), 'f'), np.ones((8, 3), 'f'))
    np.testing.assert_array_equal(out, 8)
    assert lib.scipy_openblas_get_num_threads() == before


def test_output_shapes_are_inferred():
    x, w = pt.tensor3('x'), pt.matrix('w')
    y = dot_last(x, w)
    shapes = [y.shape, pytensor.grad(y.sum(), w).shape]
    fn = pytensor.function([x, w], shapes, mode='CVM')
    assert not [n for n in fn.maker.fgraph.toposort() if isinstance(n.op, (DotLastOp,
                                                                         DotLeadingOp))]
    assert [tuple(s) for s in fn(np.zeros((2, 3, 4), 'f'), np.zeros((4, 5), 'f'))] == [
        (2, 3, 5), (4, 5)]


def test_ops_threads_warn_once_when_the_blas_is_not_openblas(caplog, monkeypatch):
    # the ops can hold only OpenBLAS to one thread while theirs run: elsewhere they use one
    from theanets.ops import base
    monkeypatch.setattr(base, '_WARNED', set())
    monkeypatch.setenv('OMP_NUM_THREADS', '2')
    with caplog.at_level(logging.WARNING, logger='theanets.ops.base'):
        assert base.threads() == 2          # OpenBLAS: no warning
        monkeypatch.setattr(base, 'blas_flags', lambda: (['mkl_rt'], [], []))
        base.threads()
        base.threads()
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 1 and 'run on one thread unless' in messages[0], messages
