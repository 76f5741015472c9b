"""Tests of the row-wise softmax op (theanets.ops.softmax): every face (C, portable C,
NumPy, JAX) against PyTensor's own softmax, values and first and second derivatives."""

import numpy as np
import pytest

import theanets
import pytensor
import pytensor.tensor as pt

from theanets import activations, backend
from theanets.ops import softmax as sm
from op_faces import face  # noqa: F401  (fixture)

SHAPES = [(7, 10), (3, 5, 64), (4, 1), (2, 3, 2, 130)]


def np_softmax(x):
    x = np.asarray(x, 'float64')
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def graphs(impl, dtype):
    """Inputs, and outputs, gradients and Hessian-vector products of <softmax(x), r>."""
    inputs, outputs = [], []
    for shape in SHAPES:
        x, r, v = (pt.tensor(dtype=dtype, shape=(None,) * len(shape)) for _ in 'xrv')
        y = impl(x)
        g = pytensor.grad((y * r).sum(), x)
        inputs += [x, r, v]
        outputs += [y, g, pytensor.grad((g * v).sum(), x)]
    return inputs, outputs


@pytest.mark.parametrize('dtype', ['float32', 'float64'])
def test_values_gradients_and_second_derivatives(face, dtype):
    rng = np.random.RandomState(0)
    values = [(rng.randn(*shape) * 4).astype(dtype) for shape in SHAPES for _ in 'xrv']
    got = face(*graphs(sm.softmax, dtype), *values)
    ins, outs = graphs(lambda z: pt.special.softmax(z, axis=-1), dtype)
    want = pytensor.function(ins, outs, mode='FAST_COMPILE')(*values)
    tol = dict(rtol=1e-5, atol=1e-6) if dtype == 'float32' else dict(rtol=1e-12, atol=1e-14)
    for k, (a, b) in enumerate(zip(got, want)):
        if k % 3 == 0:
            np.testing.assert_allclose(a, np_softmax(values[k]), **tol)
        assert a.dtype == np.dtype(dtype)
        scale = np.abs(b).max()        # float32 rounding differs between the two graphs
        np.testing.assert_allclose(a, b, err_msg=str((SHAPES[k // 3], 'y dx hv'[k % 3])),
                                   rtol=tol['rtol'], atol=max(tol['atol'], tol['rtol'] * scale))


def test_extreme_and_non_contiguous_inputs(face):
    x = pt.matrix(dtype='float32')
    big = np.array([[1e4, -1e4, 0.0, 88.0], [-1e30, 3.0, 3.0, 1e30]], 'float32')
    (got,) = face([x], [sm.softmax(x[:, ::2])], np.repeat(big, 2, axis=1))
    assert np.isfinite(got).all()
    np.testing.assert_allclose(got, np_softmax(big), atol=1e-6)


def test_empty_rows_and_columns(face):
    x = pt.matrix(dtype='float32')
    fn = face.function([x], sm.softmax(x))
    assert fn(np.zeros((0, 5), 'f')).shape == (0, 5)
    assert fn(np.zeros((3, 0), 'f')).shape == (3, 0)


def test_shape_errors(face):
    if face.name == 'jax':
        pytest.skip('JAX checks shapes itself')
    dy, y = pt.matrix(), pt.matrix()
    fn = face.function([dy, y], sm.SoftmaxGradOp()(dy, y))
    with pytest.raises(ValueError, match=r'softmax gradient: dy has shape \(2, 3\), '
                                         r'expected \(2, 4\)'):
        fn(np.zeros((2, 3), 'f'), np.zeros((2, 4), 'f'))


def test_graph_errors_and_casts():
    with pytest.raises(ValueError, match='softmax: x must have one or more axes, got 0'):
        sm.softmax(pt.scalar())
    with pytest.raises(ValueError, match='softmax gradient: dy must have 2 axes, got 1'):
        sm.SoftmaxGradOp()(pt.vector(), pt.matrix())
    assert sm.softmax(pt.imatrix()).dtype == pytensor.config.floatX


@pytest.mark.parametrize('mode', ['CVM', 'JAX'])
def test_the_activation_is_the_op_in_every_mode(mode):
    if mode == 'JAX':
        pytest.importorskip('jax')
    previous = backend.get_mode()
    try:
        backend.set_mode(mode)
        z = pt.matrix('z')
        fn = backend.function([z], activations.build('softmax', None)(z))
        assert any(isinstance(n.op, sm.SoftmaxOp) for n in fn.maker.fgraph.apply_nodes)
        x = np.array([[1, 2, 3], [1000, 0, -1000]], 'f')
        np.testing.assert_allclose(fn(x), np_softmax(x), rtol=1e-6, atol=1e-7)
    finally:
        backend.set_mode(previous)


def test_classifier_trains_with_esgd_through_the_softmax(c_mode):
    # ESGD differentiates the gradient: the softmax gradient op must be differentiable
    rng = np.random.RandomState(2)
    x = rng.randn(40, 4).astype('f')
    y = (x[:, 0] > 0).astype('i')
    net = theanets.Classifier([4, 3, 2])
    losses = [tm['loss'] for tm, _ in net.itertrain([x, y], algo='esgd', learning_rate=0.05,
                                                     batch_size=40, max_updates=10)]
    assert np.isfinite(losses).all()
    assert losses[-1] < losses[0]
