"""Tests of the recurrent ops (theanets.ops.recurrent): their C, NumPy and JAX faces agree.

Forward outputs are checked against plain NumPy loops written here; gradients
against ``pytensor.gradient.verify_grad`` (finite differences) and against
PyTensor's own differentiation of the same loop run by ``scan`` (which is also
the reference for ``bptt_limit``: scan's ``truncate_gradient``). The C tests
run twice: compiled for this CPU and on the portable path (THEANETS_PORTABLE=1,
no AVX-512).
"""

import logging
import platform

import numpy as np
import pytest

import theanets  # noqa: F401  (sets PyTensor flags first)
import pytensor
import pytensor.tensor as pt
from pytensor.compile.mode import Mode, get_mode
from pytensor.gradient import NullTypeGradError

from theanets import backend
from theanets.ops import base, recurrent as rec

from jaxmode import jax_mode  # noqa: F401  (a fixture)

PY_MODE = Mode(linker='py', optimizer='fast_compile')   # runs the ops' NumPy perform
T, B, N, F = 5, 3, 4, 3


# ---- NumPy loops (float64) -------------------------------------------------------------------

def sigmoid(z):
    return 1 / (1 + np.exp(-z))


ACT = {'linear': lambda z: z, 'relu': lambda z: np.maximum(z, 0), 'tanh': np.tanh,
       'logistic': sigmoid}


def ref_rnn(x, hh, h0, act):
    h, outs = h0, []
    for x_t in x:
        pre = x_t + h @ hh
        h = ACT[act](pre)
        outs.append((h, pre))
    return outs


def ref_gated(x, rate, hh, hr, hz, h0, act):
    """GRU (rate None), MUT1 (hz None), RRNN (hr and hz None)."""
    n, h, outs = len(hh), h0, []
    for t, x_t in enumerate(x):
        r = sigmoid(x_t[:, n:2 * n] + h @ hr) if hr is not None else 1
        z = sigmoid(x_t[:, 2 * n:] + h @ hz) if hz is not None else rate[t]
        pre = x_t[:, :n] + (r * h) @ hh
        hid = ACT[act](pre)
        h = (1 - z) * h + z * hid
        outs.append((h, pre, hid) + ((z,) if hz is not None else ()))
    return outs


def ref_lstm(x, hh, ci, cf, co, h0, c0):
    n, h, c, outs = len(hh), h0, c0, []
    for x_t in x:
        g = x_t + h @ hh
        i = sigmoid(g[:, :n] + c * ci)
        f = sigmoid(g[:, n:2 * n] + c * cf)
        c = f * c + i * np.tanh(g[:, 2 * n:3 * n])
        o = sigmoid(g[:, 3 * n:] + c * co)
        h = o * np.tanh(c)
        outs.append((h, c))
    return outs


def ref_mrnn(x, xf, hf, fh, h0, act):
    h, outs = h0, []
    for x_t, xf_t in zip(x, xf):
        fac = xf_t * (h @ hf)
        pre = x_t + fac @ fh
        h = ACT[act](pre)
        outs.append((h, pre, fac))
    return outs


def values(cell, rng, steps=T, batch=B, n=N, shared_state=False):
    """Random inputs of the public function of ``cell`` (float64)."""
    def r(*shape):
        return rng.randn(*shape) * 0.5
    h0 = r(1 if shared_state else batch, n)
    seq = (steps, batch)
    return {
        'rnn': [r(*seq, n), r(n, n), h0],
        'gru': [r(*seq, 3 * n), r(n, n), r(n, n), r(n, n), h0],
        'mut1': [r(*seq, 2 * n), sigmoid(r(*seq, n)), r(n, n), r(n, n), h0],
        'rrnn': [r(*seq, n), sigmoid(r(*seq, n)), r(n, n), h0],
        'lstm': [r(*seq, 4 * n), r(n, 4 * n), r(n), r(n), r(n), h0, r(batch, n)],
        'mrnn': [r(*seq, n), r(*seq, F), r(n, F), r(F, n), h0],
    }[cell]


def reference(cell, v, act):
    """The public function's outputs from the NumPy loops, stacked over time."""
    outs = {
        'rnn': lambda: ref_rnn(v[0], v[1], v[2], act),
        'gru': lambda: ref_gated(v[0], None, v[1], v[2], v[3], v[4], act),
        'mut1': lambda: ref_gated(v[0], v[1], v[2], v[3], None, v[4], 'tanh'),
        'rrnn': lambda: ref_gated(v[0], v[1], v[2], None, None, v[3], act),
        'lstm': lambda: ref_lstm(*v),
        'mrnn': lambda: ref_mrnn(*v, act),
    }[cell]()
    return [np.array(k) for k in zip(*outs)]


def call(cell, symbols, act, bptt_limit=-1):
    kwargs = dict(bptt_limit=bptt_limit)
    if cell not in ('lstm', 'mut1'):
        kwargs['activation'] = act
    return getattr(rec, cell)(*symbols, **kwargs)


def symbols(vals, dtype):
    """Symbolic inputs; a (1, n) state gets the static shape that lets scan broadcast it."""
    return [pt.tensor('v{}'.format(k), dtype=dtype, shape=(1, None) if v.ndim == 2 and
                      v.shape[0] == 1 else (None,) * v.ndim) for k, v in enumerate(vals)]


def outputs_and_grads(cell, vals, act, mode, dtype='float64', bptt_limit=-1):
    """The function's outputs and the gradients of a weighted sum of them for every input."""
    syms = symbols(vals, dtype)
    outs = call(cell, syms, act, bptt_limit)
    weights = np.random.RandomState(9)
    cost = sum((o * weights.randn(*[T, B, F if name == 'fac' else N])).sum()
               for o, name in zip(outs, ['h', 'pre', 'fac' if cell == 'mrnn' else 'hid', 'z']))
    fn = pytensor.function(syms, list(outs) + pytensor.grad(cost, syms), mode=mode)
    return fn(*[np.asarray(v, dtype) for v in vals]), len(outs)


def assert_all_close(actual, expected, dtype, what=''):
    tol = dict(rtol=1e-6, atol=1e-7) if dtype == 'float64' else dict(rtol=2e-3, atol=2e-4)
    for k, (a, e) in enumerate(zip(actual, expected)):
        np.testing.assert_allclose(a, e, err_msg='{} #{}'.format(what, k), **tol)


CASES = [(cell, act) for cell in ('rnn', 'gru', 'rrnn', 'mrnn') for act in ACT] + [
    ('lstm', 'tanh'), ('mut1', 'tanh')]
CELLS = ['rnn', 'gru', 'mut1', 'rrnn', 'lstm', 'mrnn']


@pytest.fixture(params=['default', 'portable'])
def c_mode(request, monkeypatch):
    """C mode, compiled for this CPU or on the portable path (no AVX-512)."""
    monkeypatch.setenv('THEANETS_PORTABLE', '1' if request.param == 'portable' else '0')
    return get_mode('CVM')


# ---- values and gradients of the three faces ---------------------------------------------------

@pytest.mark.parametrize('cell, act', CASES)
def test_c_numpy_and_jax_agree_with_the_loops(cell, act, jax_mode):  # noqa: F811 (fixture)
    vals = values(cell, np.random.RandomState(1))
    c, count = outputs_and_grads(cell, vals, act, get_mode('CVM'), 'float32')
    assert_all_close(c[:count], reference(cell, vals, act), 'float32', 'C vs loops')
    assert_all_close(c, outputs_and_grads(cell, vals, act, PY_MODE, 'float32')[0], 'float32',
                     'C vs NumPy')
    assert_all_close(c, outputs_and_grads(cell, vals, act, jax_mode, 'float32')[0], 'float32',
                     'C vs JAX')


@pytest.mark.parametrize('cell', CELLS)
def test_float64_truncated_gradients_and_a_shared_initial_state(cell, c_mode, jax_mode):  # noqa: F811 (fixture)
    vals = values(cell, np.random.RandomState(2), shared_state=True)
    c, count = outputs_and_grads(cell, vals, 'tanh', c_mode, bptt_limit=2)
    assert_all_close(c[:count], reference(cell, vals, 'tanh'), 'float64', 'C vs loops')
    grads = c[count:]
    assert grads[-1 if cell != 'lstm' else -2].shape == (1, N)   # the shared state's gradient
    np.testing.assert_array_equal(grads[-1], 0)   # truncated before the first step
    for mode in (PY_MODE, jax_mode):
        assert_all_close(c, outputs_and_grads(cell, vals, 'tanh', mode, bptt_limit=2)[0],
                         'float64', str(mode))


@pytest.mark.parametrize('cell', ['rnn', 'gru', 'rrnn', 'mrnn'])
@pytest.mark.parametrize('bptt_limit', [-1, 2])
def test_gradients_match_scan(cell, bptt_limit, c_mode):
    """scan runs the same step function with any activation; PyTensor differentiates it."""
    vals = values(cell, np.random.RandomState(3))
    ops, _ = outputs_and_grads(cell, vals, 'relu', c_mode, bptt_limit=bptt_limit)
    scanned, _ = outputs_and_grads(cell, vals, lambda z: pt.maximum(z, 0), 'FAST_COMPILE',
                                   bptt_limit=bptt_limit)
    assert_all_close(ops, scanned, 'float64', 'ops vs scan')


@pytest.mark.parametrize('cell', CELLS)
def test_verify_grad(cell, c_mode):
    rng = np.random.RandomState(4)
    vals = values(cell, rng, steps=3, batch=2, n=3)
    weights = [rng.randn(3, 2, F if (cell == 'mrnn' and k == 2) else 3) for k in range(4)]

    def cost(*args):
        return sum((o * w).sum() for o, w in zip(call(cell, args, 'tanh'), weights))
    pytensor.gradient.verify_grad(cost, vals, rng=rng, mode=c_mode, eps=1e-6)


@pytest.mark.parametrize('cell', CELLS)
def test_batches_split_among_threads(cell, c_mode, monkeypatch):
    """Batches of several row blocks, split among threads, and sizes off the vector width."""
    monkeypatch.setenv('OMP_NUM_THREADS', '3')
    vals = values(cell, np.random.RandomState(5), steps=4, batch=21, n=37)
    syms = symbols(vals, 'float32')
    outs = call(cell, syms, 'tanh')
    cost = sum(o.sum() for o in outs)
    args = [np.asarray(v, 'float32') for v in vals]
    c, py = (pytensor.function(syms, list(outs) + pytensor.grad(cost, syms), mode=m)(*args)
             for m in (c_mode, PY_MODE))
    assert_all_close(c, py, 'float32', 'C vs NumPy')


def test_threads_follow_omp_num_threads(monkeypatch):
    monkeypatch.setenv('OMP_NUM_THREADS', '3')
    assert rec.threads() == 3
    monkeypatch.delenv('OMP_NUM_THREADS')
    assert rec.threads() >= 1


# ---- the input projection computed in the loop ------------------------------------------------

def projected_values(cell, rng, width=5, **sizes):
    """x (T, B, width), w, b and the rest of the inputs of ``cell``, whose xproj is x . w + b."""
    vals = values(cell, rng, **sizes)
    steps, batch, k = vals[0].shape
    return [rng.randn(steps, batch, width) * 0.5, rng.randn(width, k) * 0.5,
            rng.randn(k) * 0.5] + vals[1:]


def projected_outputs_and_grads(cell, vals, mode, dtype, inside):
    """Outputs and gradients for every input, x . w + b given to the op (``inside``) or not."""
    syms = symbols(vals, dtype)
    first = tuple(syms[:3]) if inside else pt.dot(syms[0], syms[1]) + syms[2]
    outs = call(cell, [first] + syms[3:], 'tanh')
    cost = sum(pt.tanh(o).sum() * (k + 1) for k, o in enumerate(outs))
    fn = pytensor.function(syms, list(outs) + pytensor.grad(cost, syms), mode=mode)
    return fn(*[np.asarray(v, dtype) for v in vals]), fn


@pytest.mark.parametrize('cell', CELLS)
def test_the_projection_in_the_loop_equals_the_projection_outside(cell, c_mode, jax_mode):  # noqa: F811 (fixture)
    vals = projected_values(cell, np.random.RandomState(6))
    expected, _ = projected_outputs_and_grads(cell, vals, PY_MODE, 'float64', False)
    for mode in (c_mode, PY_MODE, jax_mode):
        actual, fn = projected_outputs_and_grads(cell, vals, mode, 'float64', True)
        assert_all_close(actual, expected, 'float64', str(mode))
    ops = [n.op for n in fn.maker.fgraph.toposort() if isinstance(n.op, rec.RecurrentOp)]
    assert ops and all(op.project for op in ops)


@pytest.mark.parametrize('cell', CELLS)
def test_the_projection_in_the_loop_split_among_threads(cell, c_mode, monkeypatch):
    """Rows of a projection made by several threads; float32, sizes off the vector width."""
    monkeypatch.setenv('OMP_NUM_THREADS', '3')
    vals = projected_values(cell, np.random.RandomState(7), width=19, steps=4, batch=21, n=37)
    actual, _ = projected_outputs_and_grads(cell, vals, c_mode, 'float32', True)
    expected, _ = projected_outputs_and_grads(cell, vals, PY_MODE, 'float32', True)
    assert_all_close(actual, expected, 'float32', 'C vs NumPy')
    syms = symbols(vals, 'float32')
    predict = backend.function(syms, call(cell, [tuple(syms[:3])] + syms[3:], 'tanh')[0])
    ops = _recurrent_ops(predict)
    assert len(ops) == 1 and ops[0].project and not (ops[0].has_cache and ops[0].keep_cache)


# ---- layouts: strided inputs, shapes, errors --------------------------------------------------

def test_reversed_and_transposed_views_are_read_in_place(c_mode):
    """Layers pass the projection as a (reversed) time-major view of a batch-major product."""
    rng = np.random.RandomState(6)
    x = pt.tensor3('x')   # batch-major (B, T, 4n)
    hh = pt.matrix('hh')
    xt = x.dimshuffle(1, 0, 2)[::-1]
    ci, cf, co = (pt.vector(k) for k in ('ci', 'cf', 'co'))
    h, c = rec.lstm(xt, hh, ci, cf, co)
    g = pytensor.grad(h[::-1].dimshuffle(1, 0, 2).sum() + c.sum(), [x, hh])
    args = [rng.randn(B, T, 4 * N).astype('f'), rng.randn(N, 4 * N).astype('f')] + [
        rng.randn(N).astype('f') for _ in range(3)]
    c_out, py_out = (pytensor.function([x, hh, ci, cf, co], [h, c] + g, mode=m)(*args)
                     for m in (c_mode, PY_MODE))
    assert_all_close(c_out, py_out, 'float32', 'views')
    zeros = np.zeros((1, N))
    expected = reference('lstm', [args[0].transpose(1, 0, 2)[::-1]] + args[1:] + [zeros, zeros],
                         'tanh')
    assert_all_close(c_out[:2], expected, 'float32', 'views vs loops')


def test_one_compile_serves_every_length_and_batch_size():
    x, hh = pt.tensor3('x'), pt.matrix('hh')
    h, pre = rec.rnn(x, hh, activation='tanh')
    fn = pytensor.function([x, hh], [h, pre, pytensor.grad(h.sum(), hh)], mode='CVM')
    rng = np.random.RandomState(7)
    w = rng.randn(N, N).astype('f') * 0.5
    for steps, batch in [(5, 3), (2, 9), (1, 1), (0, 2)]:
        xv = rng.randn(steps, batch, N).astype('f')
        h_c, pre_c, g_c = fn(xv, w)
        assert h_c.shape == pre_c.shape == (steps, batch, N)
        if steps:
            assert_all_close([h_c, pre_c], reference('rnn', [xv, w, np.zeros((1, N))], 'tanh'),
                             'float32')
        else:
            np.testing.assert_array_equal(g_c, 0)


def test_outputs_are_written_again_only_once_nobody_holds_them():
    # CSourceOp.c_code keeps each node's last outputs and reuses them (fresh memory
    # page-faults), but never an array the caller still holds
    x, hh = pt.tensor3('x'), pt.matrix('hh')
    fn = pytensor.function([x, hh], rec.rnn(x, hh)[0], mode='CVM')
    rng = np.random.RandomState(5)
    w = (0.3 * rng.randn(N, N)).astype('f')
    x1, x2 = rng.randn(2, T, B, N).astype('f')
    first = fn(x1, w)
    held = first.copy()
    second = fn(x2, w)
    assert not np.shares_memory(first, second)
    np.testing.assert_array_equal(first, held)
    address = second.ctypes.data
    del second
    third = fn(x1, w)
    assert third.ctypes.data == address
    np.testing.assert_array_equal(third, held)


@pytest.mark.parametrize('mode', ['CVM', PY_MODE], ids=['C', 'NumPy'])
def test_shape_errors_name_the_op_the_input_and_the_shapes(mode):
    x, hh, h0 = pt.tensor3('x'), pt.matrix('hh'), pt.matrix('h0')
    fn = pytensor.function([x, hh, h0], rec.rnn(x, hh, h0), mode=mode)
    x_val = np.zeros((T, B, N), 'f')
    with pytest.raises(ValueError, match=r'rnn: hh has shape \(4, 5\), expected \(4, 4\)'):
        fn(x_val, np.zeros((N, 5), 'f'), np.zeros((B, N), 'f'))
    with pytest.raises(ValueError, match=r'rnn: h0 has shape \(2, 4\), expected '
                                         r'\(3, 4\) or \(1, 4\)'):
        fn(x_val, np.zeros((N, N), 'f'), np.zeros((2, N), 'f'))


def test_wrong_number_of_axes_and_unknown_activations_fail_when_building():
    x, hh = pt.tensor3('x'), pt.matrix('hh')
    with pytest.raises(TypeError, match=r'gru: hz \(n, n\) must have 2 axes, got 1'):
        rec.gru(x, hh, hh, pt.vector('hz'))
    with pytest.raises(ValueError, match="rnn: activation 'softmax' is not supported by the "
                                         "recurrent ops"):
        rec.RecurrentOp('rnn', 'softmax')
    with pytest.raises(ValueError, match="unknown recurrent cell 'elman'; known: gru, lstm"):
        rec.RecurrentOp('elman')


def test_supported_activations():
    assert all(rec.supports_activation(a) for a in ('linear', 'relu', 'rect:max', 'tanh',
                                                    'logistic', 'sigmoid'))
    assert not rec.supports_activation('tanh+norm:z')
    assert not rec.supports_activation(pt.tanh)


def test_other_activations_run_in_scan_with_one_warning(caplog, monkeypatch):
    monkeypatch.setattr(base, '_WARNED', set())
    x, hh = pt.tensor3('x'), pt.matrix('hh')
    with caplog.at_level(logging.WARNING, logger='theanets.ops.base'):
        for _ in range(2):
            h, _ = rec.rnn(x, hh, activation=pt.softplus)
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 1 and 'running the loop with pytensor.scan' in messages[0]
    xv, w = np.ones((2, 1, N), 'f'), np.eye(N, dtype='f')
    out = pytensor.function([x, hh], h, mode='FAST_COMPILE')(xv, w)
    np.testing.assert_allclose(out[1], np.log1p(np.exp(1 + np.log1p(np.e))) * np.ones((1, N)),
                               rtol=1e-5)


# ---- graph-level behaviour -----------------------------------------------------------------------

def _recurrent_ops(fn):
    return [n.op for n in fn.maker.fgraph.toposort() if isinstance(n.op, rec.RecurrentOp)]


@pytest.mark.parametrize('cell', ['gru', 'lstm', 'mut1', 'mrnn'])
def test_predictions_keep_one_step_of_the_cache(cell):
    vals = values(cell, np.random.RandomState(8))
    syms = symbols(vals, 'float32')
    outs = call(cell, syms, 'tanh')
    args = [np.asarray(v, 'float32') for v in vals]
    predict = backend.function(syms, outs[0])
    train = backend.function(syms, pytensor.grad(outs[0].sum(), syms[1]))
    assert [op.keep_cache for op in _recurrent_ops(predict)] == [False]
    assert [op.keep_cache for op in _recurrent_ops(train)] == [True]
    np.testing.assert_allclose(predict(*args), reference(cell, vals, 'tanh')[0], rtol=2e-3,
                               atol=2e-4)
    with pytest.raises(NotImplementedError, match='an op without its cache has no gradient'):
        op = rec.RecurrentOp(cell, 'tanh', keep_cache=False)
        pytensor.grad(op(*syms)[0].sum(), syms[1])


def test_second_derivatives_are_not_implemented():
    x, hh = pt.tensor3('x'), pt.matrix('hh')
    h, _ = rec.rnn(x, hh)
    g = pytensor.grad(h.sum(), hh)
    with pytest.raises(NullTypeGradError, match='RecurrentGradOp'):
        pytensor.grad(g.sum(), hh)


def test_ops_compare_by_their_settings_and_pickle():
    import pickle
    a = rec.RecurrentOp('gru', 'sigmoid', 3)
    assert a == rec.RecurrentOp('gru', 'logistic', 3) and hash(a) == hash(
        rec.RecurrentOp('gru', 'logistic', 3))
    assert a != rec.RecurrentOp('gru', 'logistic', 4)
    assert a != rec.RecurrentOp('gru', 'logistic', 3, keep_cache=False)
    assert pickle.loads(pickle.dumps(a)) == a
    assert rec.RecurrentGradOp('lstm') == pickle.loads(pickle.dumps(rec.RecurrentGradOp('lstm')))


@pytest.mark.parametrize('cell', CELLS)
def test_output_shapes_are_inferred_without_running_the_loop(cell):
    vals = values(cell, np.random.RandomState(10))
    syms = symbols(vals, 'float32')
    outs = call(cell, syms, 'tanh')
    grads = pytensor.grad(outs[0].sum(), syms)
    fn = pytensor.function(syms, [o.shape for o in list(outs) + grads], mode='CVM')
    assert not [n for n in fn.maker.fgraph.toposort() if isinstance(n.op, rec._RecurrentBase)]
    shapes = fn(*[np.asarray(v, 'float32') for v in vals])
    expected = [o.shape for o in reference(cell, vals, 'tanh')] + [v.shape for v in vals]
    assert [tuple(s) for s in shapes] == expected


@pytest.mark.skipif(platform.machine().lower() not in ('x86_64', 'amd64'),
                    reason='the portable path drops AVX-512, an x86 feature')
def test_the_portable_path_drops_every_avx512_flag(monkeypatch):
    """PyTensor adds its -march flags after the ops' own: they must be removed, not overridden."""
    from pytensor.link.c.cmodule import GCC_compiler
    op = rec.RecurrentOp('rnn')
    monkeypatch.setenv('THEANETS_PORTABLE', '1')
    dropped = op.c_no_compile_args(c_compiler=GCC_compiler)
    assert '-mno-avx512f' in op.c_compile_args(c_compiler=GCC_compiler)
    assert all(f in dropped for f in GCC_compiler.compile_args() if f.startswith('-mavx512'))
    monkeypatch.setenv('THEANETS_PORTABLE', '0')
    assert op.c_no_compile_args(c_compiler=GCC_compiler) == []
