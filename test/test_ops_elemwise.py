"""Tests of FlatElemwise (theanets.ops.elemwise): in theanets' C modes, an element-wise
node of full arrays and broadcast scalars runs as one flat loop, with the values of
PyTensor's own Elemwise, in place where the Elemwise was, and with its loop for
operands that are not C-contiguous."""

import numpy as np
import pytest

import pytensor
import pytensor.tensor as pt
from pytensor.compile.mode import Mode

from theanets import backend
from theanets.ops.elemwise import FLAT_ELEMWISE_TAG, FlatElemwise


def flat_nodes(fn):
    return [n for n in fn.maker.fgraph.toposort() if isinstance(n.op, FlatElemwise)]


def rmsprop_step(dtype, shape, mode=None):
    """An RMSProp-like update of two shared arrays from x; returns (function, shared values)."""
    rng = np.random.RandomState(0)
    w, g2 = (pytensor.shared(rng.rand(*shape).astype(dtype), shape=shape) for _ in 'wg')
    lr, rho = (pytensor.shared(np.asarray(v, dtype)) for v in (0.1, 0.9))
    x = pt.tensor(dtype=dtype, shape=(None,) * len(shape))
    g = x * w - 1
    new_g2 = rho * g2 + (1 - rho) * g * g
    updates = [(g2, new_g2), (w, w - lr * g / pt.sqrt(new_g2 + 1e-8))]
    if mode is None:
        fn = backend.function([x], g.sum(), updates=updates, staged=False)
    else:
        fn = pytensor.function([x], g.sum(), updates=updates, mode=mode)
    return fn, (w, g2)


def run(fn, shared, inputs):
    return [fn(x) for x in inputs] + [v.get_value() for v in shared]


@pytest.mark.filterwarnings('ignore:theanets FlatElemwise')  # the strided inputs
@pytest.mark.parametrize('dtype', ['float32', 'float64'])
@pytest.mark.parametrize('shape', [(7, 33), (129,), (2, 3, 17)])
def test_values_equal_pytensors_elemwise_in_both_loops(dtype, shape):
    rng = np.random.RandomState(1)
    contiguous = rng.randn(*shape).astype(dtype)
    strided = np.asfortranarray(contiguous) if len(shape) > 1 else \
        rng.randn(2 * shape[0]).astype(dtype)[::2]   # not C-contiguous: the Elemwise loop
    inputs = [contiguous, strided, contiguous]
    fn, shared = rmsprop_step(dtype, shape)
    nodes = flat_nodes(fn)
    assert len(nodes) == 1 and nodes[0].op.inplace_pattern  # both updates, in place
    node = nodes[0]
    assert 'thn_flat_' in node.op.c_code(node, 'n', ['a%d' % k for k in range(len(node.inputs))],
                                         ['o%d' % k for k in range(len(node.outputs))],
                                         {'fail': 'return;'})
    got = run(fn, shared, inputs)
    ref_fn, ref_shared = rmsprop_step(dtype, shape, mode='CVM')
    assert not flat_nodes(ref_fn)
    want = run(ref_fn, ref_shared, inputs)
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, rtol=1e-6 if dtype == 'float32' else 1e-13)


def test_scalar_code_it_cannot_use_falls_back_with_a_warning(monkeypatch, caplog):
    from theanets.ops import base
    x, s = pt.matrix('x'), pt.scalar('s')
    (node,) = flat_nodes(backend.function([x, s], pt.exp(x * s), staged=False))
    names = (['a0', 'a1'], ['o0'], {'fail': 'return;', 'params': 'p'})
    assert 'thn_flat_' in node.op.c_code(node, 'n', *names)

    scalar_code = node.op.scalar_op.c_code

    def needs_params(scalar, name, inputs, outputs, sub):  # a key the flat loop does not give
        return scalar_code(scalar, name, inputs, outputs, sub) + sub['params'][:0]
    monkeypatch.setattr(base, '_WARNED', set())
    monkeypatch.setattr(node.op.scalar_op, 'c_code', needs_params)
    assert 'thn_flat_' not in node.op.c_code(node, 'n', *names)
    assert "running PyTensor's element-wise loop" in caplog.text


def test_operands_not_c_contiguous_run_pytensors_loop_and_say_so():
    x, s = pt.matrix('x'), pt.scalar('s')
    fn = backend.function([x, s], pt.exp(x.T * s) * 0.8125, staged=False)  # a graph of its own
    assert flat_nodes(fn)
    xv = (np.arange(12) / 12).reshape(3, 4).astype(pytensor.config.floatX)
    with pytest.warns(RuntimeWarning, match='not C-contiguous'):
        got = fn(xv, 0.5)
    np.testing.assert_allclose(got, np.exp(xv.T * 0.5) * 0.8125, rtol=1e-6)


def test_python_linker_runs_the_elemwise_implementation():
    mode = Mode(linker='py', optimizer='fast_run').including(FLAT_ELEMWISE_TAG)
    fn, shared = rmsprop_step('float64', (4, 5), mode)
    assert flat_nodes(fn)
    ref_fn, ref_shared = rmsprop_step('float64', (4, 5), mode='CVM')
    x = np.arange(20.0).reshape(4, 5)
    for got, want in zip(run(fn, shared, [x]), run(ref_fn, ref_shared, [x])):
        np.testing.assert_allclose(got, want, rtol=1e-13)


def test_output_not_inplace_and_with_several_scalars():
    x, y = pt.matrix('x'), pt.matrix('y')
    a, b = pt.scalar('a'), pt.scalar('b')
    out = pt.exp(a * x) - b * y / (a + 1)
    fn = backend.function([x, y, a, b], out, staged=False)
    assert flat_nodes(fn) and not any(n.op.inplace_pattern for n in flat_nodes(fn))
    rng = np.random.RandomState(2)
    xv, yv = rng.randn(2, 5, 6).astype(pytensor.config.floatX)
    for _ in range(2):  # the second call writes into the first call's output
        got = fn(xv, yv, 0.5, 2.0)
        np.testing.assert_allclose(got, np.exp(0.5 * xv) - 2.0 * yv / 1.5, rtol=1e-5)


def test_shape_mismatch_raises_the_elemwise_error():
    x, y, s = pt.matrix('x'), pt.matrix('y'), pt.scalar('s')
    fn = backend.function([x, y, s], x + s * y, staged=False)
    assert flat_nodes(fn)
    with pytest.raises(ValueError):
        fn(np.ones((3, 4), pytensor.config.floatX), np.ones((3, 5), pytensor.config.floatX), 2)


@pytest.mark.parametrize('make', [
    lambda x, r: x + r,                       # a broadcast row: not a scalar
    lambda x, r: pt.eq(x, 2.0),               # a boolean output
    lambda x, r: x * x,                       # no scalar: PyTensor's contiguous loop
])
def test_other_elemwise_nodes_stay(make):
    x, r = pt.matrix('x'), pt.row('r')
    fn = backend.function([x, r], make(x, r), staged=False, on_unused_input='ignore')
    assert not flat_nodes(fn)
