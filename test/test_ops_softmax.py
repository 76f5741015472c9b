"""Tests of the row-wise C softmax (theanets.ops.softmax)."""

import numpy as np
import pytest

import theanets
import pytensor
import pytensor.tensor as pt
from pytensor.compile.mode import Mode

from theanets import activations, backend
from theanets.ops import softmax as sm

PY_MODE = Mode(linker='py', optimizer='fast_compile')   # runs the Ops' perform


def np_softmax(x):
    x = np.asarray(x, 'float64')
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def graphs(impl, dtype, ndim):
    """Outputs, gradient and Hessian-vector product of <softmax(x), r>."""
    x = pt.tensor(dtype=dtype, shape=(None,) * ndim)
    r = pt.tensor(dtype=dtype, shape=(None,) * ndim)
    v = pt.tensor(dtype=dtype, shape=(None,) * ndim)
    y = impl(x)
    g = pytensor.grad((y * r).sum(), x)
    hv = pytensor.grad((g * v).sum(), x)
    return [x, r, v], [y, g, hv]


@pytest.mark.parametrize('dtype', ['float32', 'float64'])
@pytest.mark.parametrize('shape', [(7, 10), (3, 5, 64), (4, 1), (2, 3, 2, 130)])
def test_values_gradients_and_second_derivatives(dtype, shape):
    rng = np.random.RandomState(0)
    vals = [(rng.randn(*shape) * 4).astype(dtype) for _ in range(3)]
    ins, outs = graphs(sm.softmax, dtype, len(shape))
    got = backend.function(ins, outs)(*vals)
    ins, outs = graphs(lambda z: pt.special.softmax(z, axis=-1), dtype, len(shape))
    want = pytensor.function(ins, outs, mode='FAST_COMPILE')(*vals)
    tol = dict(rtol=1e-5, atol=1e-6) if dtype == 'float32' else dict(rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(got[0], np_softmax(vals[0]), **tol)
    for name, a, b in zip(['y', 'dx', 'hv'], got, want):
        assert a.dtype == np.dtype(dtype)
        scale = np.abs(b).max()        # float32 rounding differs between the two graphs
        np.testing.assert_allclose(a, b, err_msg=name, rtol=tol['rtol'],
                                   atol=max(tol['atol'], tol['rtol'] * scale))


def test_perform_matches_c():
    rng = np.random.RandomState(1)
    vals = [rng.randn(6, 9).astype('float32') for _ in range(3)]
    ins, outs = graphs(sm.softmax, 'float32', 2)
    c = backend.function(ins, outs)(*vals)
    py = pytensor.function(ins, outs, mode=PY_MODE)(*vals)
    for a, b in zip(c, py):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_extreme_and_non_contiguous_inputs():
    x = pt.matrix(dtype='float32')
    f = backend.function([x], sm.softmax(x[:, ::2]))
    big = np.array([[1e4, -1e4, 0.0, 88.0], [-1e30, 3.0, 3.0, 1e30]], 'float32')
    got = f(np.repeat(big, 2, axis=1))
    want = np_softmax(big)
    assert np.isfinite(got).all()
    np.testing.assert_allclose(got, want, atol=1e-6)


def test_empty_rows_and_columns():
    x = pt.matrix(dtype='float64')
    f = backend.function([x], sm.softmax(x))
    assert f(np.zeros((0, 5))).shape == (0, 5)
    assert f(np.zeros((3, 0))).shape == (3, 0)


def test_scalar_input_is_rejected():
    with pytest.raises(ValueError, match='at least one axis'):
        sm.softmax(pt.scalar())


def test_integer_input_is_cast_to_floatx():
    assert sm.softmax(pt.imatrix()).dtype == pytensor.config.floatX


def test_activation_uses_the_c_op_only_in_modes_that_run_c_code():
    z = pt.matrix('z')
    f = backend.function([z], activations.build('softmax', None)(z))
    assert any(isinstance(n.op, sm.SoftmaxOp) for n in f.maker.fgraph.apply_nodes)
    previous = backend.get_mode()
    try:
        backend.set_mode('JAX')
        out = activations.build('softmax', None)(z)
        assert not isinstance(out.owner.op, sm.SoftmaxOp)
    finally:
        backend.set_mode(previous)


def test_classifier_trains_with_esgd_through_the_c_softmax(c_mode):
    # ESGD differentiates the gradient: the softmax gradient Op must be differentiable
    rng = np.random.RandomState(2)
    x = rng.randn(40, 4).astype('f')
    y = (x[:, 0] > 0).astype('i')
    net = theanets.Classifier([4, 3, 2])
    losses = [tm['loss'] for tm, _ in net.itertrain([x, y], algo='esgd', learning_rate=0.05,
                                                     batch_size=40, max_updates=10)]
    assert np.isfinite(losses).all()
    assert losses[-1] < losses[0]
