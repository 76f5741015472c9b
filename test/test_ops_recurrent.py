"""Tests of the fused recurrent Ops (theanets.ops.recurrent)."""

import os
import pickle

import numpy as np
import pytest

import theanets  # noqa: F401  (sets PyTensor flags first)
import pytensor
import pytensor.tensor as pt
from pytensor.compile.mode import Mode

from theanets import backend
from theanets.ops import recurrent as rec

PY_MODE = Mode(linker='py', optimizer='fast_compile')   # runs the Ops' perform
REF_MODE = 'FAST_COMPILE'                               # quick compiles for scan references

T, B, N = 5, 3, 4


# ---------------------------------------------------------------------------
# NumPy step-by-step references (float64)
# ---------------------------------------------------------------------------

def sigmoid(z):
    return 1 / (1 + np.exp(-z))


ACT = {
    'linear': lambda z: z,
    'relu': lambda z: np.maximum(z, 0),
    'tanh': np.tanh,
    'logistic': sigmoid,
    'sigmoid': sigmoid,
}


def np_lstm(x, hh, ci, cf, co, h0, c0):
    n = hh.shape[0]
    h, c, hs, cs = h0, c0, [], []
    for xt in x:
        g = xt + h @ hh
        i = sigmoid(g[:, :n] + c * ci)
        f = sigmoid(g[:, n:2 * n] + c * cf)
        c = f * c + i * np.tanh(g[:, 2 * n:3 * n])
        o = sigmoid(g[:, 3 * n:] + c * co)
        h = o * np.tanh(c)
        hs.append(h)
        cs.append(c)
    return np.array(hs), np.array(cs)


def np_gru(x, hh, hr, hz, h0, act):
    n = hh.shape[0]
    h, outs = h0, []
    for xt in x:
        r = sigmoid(xt[:, n:2 * n] + h @ hr)
        z = sigmoid(xt[:, 2 * n:] + h @ hz)
        pre = xt[:, :n] + (r * h) @ hh
        hid = ACT[act](pre)
        h = (1 - z) * h + z * hid
        outs.append((h, pre, hid, z))
    return tuple(np.array(k) for k in zip(*outs))


def np_rnn(x, hh, h0, act):
    h, outs = h0, []
    for xt in x:
        pre = xt + h @ hh
        h = ACT[act](pre)
        outs.append((h, pre))
    return tuple(np.array(k) for k in zip(*outs))


# ---------------------------------------------------------------------------
# problem set-up
# ---------------------------------------------------------------------------

def lstm_values(rng, nT=T, nB=B, n=N, dtype='float32'):
    return [rng.randn(nT, nB, 4 * n), rng.randn(n, 4 * n) * 0.5,
            rng.randn(n) * 0.5, rng.randn(n) * 0.5, rng.randn(n) * 0.5,
            rng.randn(nB, n) * 0.5, rng.randn(nB, n) * 0.5]


def gru_values(rng, nT=T, nB=B, n=N):
    return [rng.randn(nT, nB, 3 * n), rng.randn(n, n) * 0.5, rng.randn(n, n) * 0.5,
            rng.randn(n, n) * 0.5, rng.randn(nB, n) * 0.5]


def rnn_values(rng, nT=T, nB=B, n=N):
    return [rng.randn(nT, nB, n), rng.randn(n, n) * 0.5, rng.randn(nB, n) * 0.5]


def symbols(values, dtype):
    kinds = {1: pt.vector, 2: pt.matrix, 3: pt.tensor3}
    return [kinds[v.ndim]('v{}'.format(k), dtype=dtype) for k, v in enumerate(values)]


def cast(values, dtype):
    return [np.asarray(v, dtype) for v in values]


CELLS = {
    # name: (values, fused, scan, numpy reference, number of outputs)
    'lstm': (lstm_values, lambda a, act: rec.lstm(*a), lambda a, act: rec.lstm_scan(*a),
             lambda v, act: np_lstm(*v)),
    'gru': (gru_values, lambda a, act: rec.gru(*a, activation=act),
            lambda a, act: rec.gru_scan(*a, activation=act),
            lambda v, act: np_gru(*v, act)),
    'rnn': (rnn_values, lambda a, act: rec.rnn(*a, activation=act),
            lambda a, act: rec.rnn_scan(*a, activation=act),
            lambda v, act: np_rnn(*v, act)),
}

CASES = [('lstm', None), ('gru', 'tanh'), ('gru', 'relu'), ('gru', 'logistic'),
         ('gru', 'linear'), ('rnn', 'tanh'), ('rnn', 'relu'), ('rnn', 'sigmoid'),
         ('rnn', 'linear')]


def weighted_cost(outputs, rng, use=None):
    """sum_k <output_k, R_k> over the outputs selected by `use`."""
    use = use or range(len(outputs))
    total = 0
    for k in use:
        weights = rng.randn(T, B, N).astype(outputs[k].dtype)
        total = total + (outputs[k] * weights).sum()
    return total


# ---------------------------------------------------------------------------
# tests
# ---------------------------------------------------------------------------

@pytest.mark.parametrize('cell,act', CASES)
def test_forward_matches_numpy_and_scan(cell, act):
    make, fused, scan, ref = CELLS[cell]
    values = make(np.random.RandomState(1))
    expected = ref(values, act)
    v32 = cast(values, 'float32')
    syms = symbols(v32, 'float32')
    got_c = backend.function(syms, list(fused(syms, act)))(*v32)
    got_py = pytensor.function(syms, list(fused(syms, act)), mode=PY_MODE)(*v32)
    got_scan = pytensor.function(syms, list(scan(syms, act)), mode=REF_MODE)(*v32)
    assert len(got_c) == len(expected)
    for c, p, s, e in zip(got_c, got_py, got_scan, expected):
        assert c.dtype == np.float32 and c.shape == e.shape
        np.testing.assert_allclose(c, e, rtol=1e-5, atol=2e-6)
        np.testing.assert_allclose(p, e, rtol=1e-5, atol=2e-6)
        np.testing.assert_allclose(c, s, rtol=1e-5, atol=2e-6)


@pytest.mark.parametrize('cell,act', CASES)
def test_gradients_match_scan(cell, act):
    make, fused, scan, _ = CELLS[cell]
    v32 = cast(make(np.random.RandomState(2)), 'float32')
    syms = symbols(v32, 'float32')
    f_cost = weighted_cost(fused(syms, act), np.random.RandomState(3))
    s_cost = weighted_cost(scan(syms, act), np.random.RandomState(3))
    got = backend.function(syms, pytensor.grad(f_cost, syms))(*v32)
    got_py = pytensor.function(syms, pytensor.grad(f_cost, syms), mode=PY_MODE)(*v32)
    want = pytensor.function(syms, pytensor.grad(s_cost, syms), mode=REF_MODE)(*v32)
    for g, p, w, v in zip(got, got_py, want, v32):
        assert g.shape == v.shape and g.dtype == np.float32
        np.testing.assert_allclose(g, w, rtol=2e-4, atol=2e-5)
        np.testing.assert_allclose(p, w, rtol=2e-4, atol=2e-5)


@pytest.mark.parametrize('cell,act,use', [
    ('lstm', None, [0]),         # h only: the cell output is disconnected
    ('lstm', None, [1]),         # c only
    ('gru', 'tanh', [0]),
    ('gru', 'tanh', [2, 3]),     # hid and rate, not out
    ('rnn', 'tanh', [1]),        # pre only
])
def test_gradients_with_some_outputs_unused(cell, act, use):
    make, fused, scan, _ = CELLS[cell]
    v32 = cast(make(np.random.RandomState(4)), 'float32')
    syms = symbols(v32, 'float32')
    f_cost = weighted_cost(fused(syms, act), np.random.RandomState(5), use)
    s_cost = weighted_cost(scan(syms, act), np.random.RandomState(5), use)
    got = backend.function(syms, pytensor.grad(f_cost, syms))(*v32)
    want = pytensor.function(syms, pytensor.grad(s_cost, syms), mode=REF_MODE)(*v32)
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, rtol=2e-4, atol=2e-5)


@pytest.mark.parametrize('cell,act', [('lstm', None), ('gru', 'tanh'), ('gru', 'relu'),
                                      ('rnn', 'logistic')])
@pytest.mark.parametrize('mode', ['CVM', 'py'])
def test_verify_grad_float64(cell, act, mode):
    make, fused, _, _ = CELLS[cell]
    values = make(np.random.RandomState(6), nT=3, nB=2, n=3)
    if act == 'relu':   # keep the relu arguments away from the kink at 0
        values[0] = values[0] + np.sign(values[0]) * 0.5
    weights = [np.random.RandomState(7 + k).randn(3, 2, 3) for k in range(4)]

    def cost(*args):
        outs = fused(list(args), act)
        return sum((o * w).sum() for o, w in zip(outs, weights))

    pytensor.gradient.verify_grad(cost, values, rng=np.random.RandomState(8),
                                  mode=PY_MODE if mode == 'py' else 'CVM',
                                  abs_tol=1e-6, rel_tol=1e-5)


def test_one_compile_serves_other_batch_sizes_and_lengths():
    rng = np.random.RandomState(9)
    v32 = cast(lstm_values(rng), 'float32')
    syms = symbols(v32, 'float32')
    h, c = rec.lstm(*syms[:5])          # zero initial states, sized from the batch
    cost = (h ** 2).sum() + c.sum()
    grads = pytensor.grad(cost, syms[:5])
    f = backend.function(syms[:5], [h, c] + grads)
    s = pytensor.function(syms[:5], [h, c] + pytensor.grad(
        (lambda hc: (hc[0] ** 2).sum() + hc[1].sum())(rec.lstm_scan(*syms[:5])), syms[:5]),
        mode=REF_MODE)
    for nT, nB in [(5, 3), (2, 1), (7, 1), (1, 4)]:
        vals = [rng.randn(nT, nB, 4 * N).astype('float32')] + v32[1:5]
        for g, w in zip(f(*vals), s(*vals)):
            np.testing.assert_allclose(g, w, rtol=2e-4, atol=2e-5)
        zeros = np.zeros((nB, N))
        h_ref, _ = np_lstm(*(vals + [zeros, zeros]))
        np.testing.assert_allclose(f(*vals)[0], h_ref, rtol=1e-5, atol=2e-6)


def test_non_contiguous_inputs_and_batch_major_projection():
    """Projection of batch-major inputs, dimshuffled: a strided xproj."""
    rng = np.random.RandomState(10)
    x = pt.tensor3('x', dtype='float32')                     # (B, T, nin)
    w = pt.matrix('w', dtype='float32')
    hh, hr, hz = (pt.matrix(k, dtype='float32') for k in ('hh', 'hr', 'hz'))
    xproj = x.dot(w).dimshuffle(1, 0, 2)                     # (T, B, 3n), not contiguous
    out = rec.gru(xproj, hh, hr, hz)[0]
    ref = rec.gru_scan(xproj, hh, hr, hz)[0]
    cost_f = (out.dimshuffle(1, 0, 2)[:, ::2] ** 2).sum()    # strided output gradient
    cost_s = (ref.dimshuffle(1, 0, 2)[:, ::2] ** 2).sum()
    ins = [x, w, hh, hr, hz]
    vals = [rng.randn(B, T, 2).astype('float32'), rng.randn(2, 3 * N).astype('float32')] + \
        [(rng.randn(N, N) * 0.5).astype('float32') for _ in range(3)]
    got = backend.function(ins, [out] + pytensor.grad(cost_f, ins))(*vals)
    want = pytensor.function(ins, [ref] + pytensor.grad(cost_s, ins), mode=REF_MODE)(*vals)
    for g, v in zip(got, want):
        np.testing.assert_allclose(g, v, rtol=2e-4, atol=2e-5)


def test_initial_state_broadcast_and_float64():
    rng = np.random.RandomState(11)
    values = lstm_values(rng)
    syms = symbols(values, 'float64')
    h0 = pt.vector('h0', dtype='float64')                    # (n,) broadcast over the batch
    h, c = rec.lstm(*syms[:5], h0=h0, c0=None)
    f = backend.function(syms[:5] + [h0], [h, c])
    h0v = rng.randn(N)
    got = f(*(values[:5] + [h0v]))
    want = np_lstm(*(values[:5] + [np.tile(h0v, (B, 1)), np.zeros((B, N))]))
    for g, w in zip(got, want):
        assert g.dtype == np.float64
        np.testing.assert_allclose(g, w, rtol=1e-10, atol=1e-12)


def test_ops_compare_by_parameters_and_pickle():
    assert rec.GRUOp('tanh') == rec.GRUOp('tanh')
    assert hash(rec.RNNOp('sigmoid')) == hash(rec.RNNOp('logistic'))
    assert rec.RNNOp('relu') != rec.RNNOp('tanh')
    assert rec.LSTMOp() == rec.LSTMOp()
    assert rec.GRUGradOp('relu') != rec.GRUGradOp('tanh')
    for op in (rec.LSTMOp(), rec.GRUOp('relu'), rec.RNNGradOp('tanh')):
        assert pickle.loads(pickle.dumps(op)) == op
    with pytest.raises(ValueError):
        rec.RNNOp('softmax')

    rng = np.random.RandomState(12)
    v32 = cast(rnn_values(rng), 'float32')
    syms = symbols(v32, 'float32')
    out = rec.rnn(*syms, activation='tanh')[0]
    f = backend.function(syms, [out, pytensor.grad(out.sum(), syms[1])])
    g = pickle.loads(pickle.dumps(f))
    for a, b in zip(f(*v32), g(*v32)):
        np.testing.assert_allclose(a, b)
    # equal ops merge: two identical fused layers compute once
    out2 = rec.rnn(*syms, activation='tanh')[0]
    f2 = backend.function(syms, out + out2)
    assert sum(isinstance(n.op, rec.RNNOp) for n in f2.maker.fgraph.apply_nodes) == 1


@pytest.mark.parametrize('mode', ['threads', 'solo', 'generic'])
@pytest.mark.parametrize('cell,act', [('lstm', None), ('gru', 'relu'), ('rnn', 'tanh')])
def test_medium_size_threaded_and_generic_kernels(cell, act, mode, monkeypatch):
    """Sizes where the float32 kernels split units over threads (n = 70 is
    not a multiple of the 32-unit panels; batch 25 is not a multiple of the
    8-row tiles); threads that switch to one thread mid-loop (as they do on
    a busy machine); and the generic BLAS kernels (THEANETS_FUSED_FAST=0)."""
    monkeypatch.setenv('THEANETS_NUM_THREADS', '2')
    monkeypatch.setenv('THEANETS_FUSED_FAST', '0' if mode == 'generic' else '1')
    if mode == 'solo':
        monkeypatch.setenv('THEANETS_FUSED_SOLO_CYCLES', '0')
    make, fused, scan, ref = CELLS[cell]
    values = make(np.random.RandomState(14), nT=4, nB=25, n=70)
    values = [v * 0.3 for v in values]
    v32 = cast(values, 'float32')
    syms = symbols(v32, 'float32')
    outs = fused(syms, act)
    rng = np.random.RandomState(15)
    cost = sum((o * rng.randn(4, 25, 70).astype('float32')).sum() for o in outs)
    got = backend.function(syms, list(outs) + pytensor.grad(cost, syms))(*v32)
    scan_outs = scan(syms, act)
    rng = np.random.RandomState(15)
    cost = sum((o * rng.randn(4, 25, 70).astype('float32')).sum() for o in scan_outs)
    want = pytensor.function(syms, list(scan_outs) + pytensor.grad(cost, syms),
                             mode=REF_MODE)(*v32)
    for k, e in enumerate(ref(values, act)):
        np.testing.assert_allclose(got[k], e, rtol=1e-4, atol=1e-5)
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, rtol=5e-4, atol=5e-5)


@pytest.mark.parametrize('cell,act', [('lstm', None), ('gru', 'logistic'), ('rnn', 'tanh')])
def test_saturating_inputs(cell, act):
    """Huge pre-activations saturate the gates without overflow or NaN."""
    make, fused, _, ref = CELLS[cell]
    values = make(np.random.RandomState(16))
    values[0] = values[0] * 1000
    v32 = cast(values, 'float32')
    syms = symbols(v32, 'float32')
    with np.errstate(over='ignore'):
        expected = ref(values, act)
    got = backend.function(syms, list(fused(syms, act)))(*v32)
    for g, e in zip(got, expected):
        assert np.isfinite(g).all()
        np.testing.assert_allclose(g, e, rtol=1e-5, atol=1e-3 * max(1, abs(e).max()))


def test_supports_activation():
    for name in ('linear', 'relu', 'rect:max', 'tanh', 'logistic', 'sigmoid'):
        assert rec.supports_activation(name)
    for name in ('softmax', 'tanh+norm:z', 'prelu', 'elu', None, 'Tanh'):
        assert not rec.supports_activation(name)


def test_second_derivative_is_reported_not_implemented():
    v = symbols(cast(rnn_values(np.random.RandomState(13)), 'float32'), 'float32')
    g = pytensor.grad(rec.rnn(*v)[0].sum(), v[1])
    with pytest.raises(pytensor.gradient.NullTypeGradError, match='is not implemented'):
        pytensor.grad(g.sum(), v[1])


# ---------------------------------------------------------------------------
# The shared thread pool (float32 kernels on AVX-512 CPUs)
# ---------------------------------------------------------------------------

def test_blas_products_after_a_threaded_loop_are_exact(monkeypatch):
    # After the first threaded fused loop, OpenBLAS runs its parallel jobs on
    # the ops' thread pool; products of every shape must stay exact.
    monkeypatch.setenv('THEANETS_NUM_THREADS', '2')
    rng = np.random.RandomState(3)
    n = 128
    xp = pt.tensor3()
    loop = backend.function([xp], rec.lstm(xp, rng.randn(n, 4 * n).astype('f') * 0.05,
                                           *(np.zeros(n, 'f') for _ in range(3)))[0])
    loop(rng.randn(20, 64, 4 * n).astype('f'))
    a, b = pt.matrix(), pt.matrix()
    product = backend.function([a, b], pt.dot(a, b))
    for shape in [(512, 300, 700), (64, 1000, 64), (1, 5, 3)]:
        x = rng.randn(*shape[:2]).astype('f')
        y = rng.randn(*shape[1:]).astype('f')
        np.testing.assert_allclose(product(x, y), x.dot(y), rtol=1e-4, atol=1e-3)


def _threads():
    return len(os.listdir('/proc/self/task'))


@pytest.mark.skipif(not os.path.isdir('/proc/self/task'), reason='needs /proc')
def test_every_op_module_shares_one_pool(monkeypatch):
    # each Op is its own C module; they must share one set of worker threads
    monkeypatch.setenv('THEANETS_NUM_THREADS', '2')
    rng = np.random.RandomState(4)
    n = 128
    xp = pt.tensor3()
    h = rec.lstm(xp, rng.randn(n, 4 * n).astype('f') * 0.05,
                 *(np.zeros(n, 'f') for _ in range(3)))[0]
    backend.function([xp], pytensor.grad(h.sum(), xp))(rng.randn(20, 64, 4 * n).astype('f'))
    if rec._thn_pool is None:
        pytest.skip('the float32 kernels of this CPU run without the thread pool')
    assert type(rec._thn_pool).__name__ == 'PyCapsule'
    before = _threads()
    x3 = pt.tensor3()
    out = rec.gru(x3, *(rng.randn(n, n).astype('f') * 0.05 for _ in range(3)))[0]
    backend.function([x3], pytensor.grad(out.sum(), x3))(rng.randn(20, 64, 3 * n).astype('f'))
    assert _threads() == before


# ---------------------------------------------------------------------------
# LSTM with the input projection inside the Op (xw, xb)
# ---------------------------------------------------------------------------

def _projected_lstm_case(dtype, layout, nT, nB, nin, n, seed):
    """Fused LSTM on raw inputs (xw, xb given) and on inputs projected
    outside the Op; returns both graphs' outputs and gradients."""
    rng = np.random.RandomState(seed)
    x = pt.tensor3('x', dtype=dtype)
    xw = pytensor.shared((rng.randn(nin, 4 * n) * 0.3).astype(dtype), name='xw')
    xb = pytensor.shared(rng.randn(4 * n).astype(dtype), name='xb')
    hh = pytensor.shared((rng.randn(n, 4 * n) * 0.1).astype(dtype), name='hh')
    peeps = [pytensor.shared((rng.randn(n) * 0.1).astype(dtype)) for _ in range(3)]
    xt = x if layout == 'time-major' else x.dimshuffle(1, 0, 2)   # (T, B, nin)
    xproj = xt.dot(xw) + xb
    weights = [rng.randn(nT, nB, n).astype(dtype) for _ in range(2)]
    params = [xw, xb, hh] + peeps
    graphs = []
    for outs in (rec.lstm(xt, hh, *peeps, xw=xw, xb=xb), rec.lstm(xproj, hh, *peeps)):
        cost = sum((o * w).sum() for o, w in zip(outs, weights))
        graphs.append(list(outs) + pytensor.grad(cost, [x] + params))
    shape = (nT, nB, nin) if layout == 'time-major' else (nB, nT, nin)
    return x, graphs, rng.randn(*shape).astype(dtype)


@pytest.mark.parametrize('dtype,layout,size,mode', [
    ('float32', 'time-major', 'small', 'c'),
    ('float32', 'batch-major', 'small', 'c'),
    ('float32', 'batch-major', 'medium', 'c'),
    ('float32', 'time-major', 'medium', 'threads'),
    ('float64', 'batch-major', 'small', 'c'),
    ('float32', 'batch-major', 'small', 'perform'),
])
def test_lstm_input_projection_inside_the_op(dtype, layout, size, mode, monkeypatch):
    """lstm(x, ..., xw=, xb=) equals lstm(x.dot(xw) + xb, ...): outputs and
    every gradient (inputs, xw, xb, hh, peepholes), whatever the layout of x."""
    if mode == 'threads':
        monkeypatch.setenv('THEANETS_NUM_THREADS', '2')
    sizes = {'small': (T, B, 6, N), 'medium': (6, 25, 33, 70)}[size]
    x, (fused, reference), xval = _projected_lstm_case(dtype, layout, *sizes, seed=21)
    compile_fused = (lambda o: pytensor.function([x], o, mode=PY_MODE)) \
        if mode == 'perform' else (lambda o: backend.function([x], o))
    got = compile_fused(fused)(xval)
    want = backend.function([x], reference)(xval)
    tol = dict(rtol=1e-9, atol=1e-11) if dtype == 'float64' else dict(rtol=5e-4, atol=5e-5)
    names = ['h', 'c', 'dx', 'dxw', 'dxb', 'dhh', 'dci', 'dcf', 'dco']
    for name, g, w in zip(names, got, want):
        assert g.dtype == np.dtype(dtype), name
        np.testing.assert_allclose(g, w, err_msg=name, **tol)


def test_lstm_projection_is_one_op_without_a_separate_product():
    x = pt.tensor3('x', dtype='float32')
    rng = np.random.RandomState(22)
    xw = pytensor.shared(rng.randn(6, 4 * N).astype('float32'))
    xb = pytensor.shared(rng.randn(4 * N).astype('float32'))
    hh = pytensor.shared(rng.randn(N, 4 * N).astype('float32'))
    peeps = [np.zeros(N, 'float32')] * 3
    h = rec.lstm(x, hh, *peeps, xw=xw, xb=xb)[0]
    f = backend.function([x], h)
    ops = [type(node.op).__name__ for node in f.maker.fgraph.apply_nodes]
    assert ops.count('LSTMOp') == 1
    assert not any('Gemm' in k or 'Dot' in k for k in ops), ops


def test_lstm_projection_rejects_a_bias_without_weights():
    v = symbols(cast(lstm_values(np.random.RandomState(23)), 'float32'), 'float32')
    with pytest.raises(ValueError, match='xb'):
        rec.lstm(*v, xb=pt.vector(dtype='float32'))


def _lstm_nodes(f):
    return [n.op for n in f.maker.fgraph.apply_nodes if isinstance(n.op, rec.LSTMOp)]


@pytest.mark.parametrize('project', [False, True])
def test_lstm_without_a_reader_of_its_cache_runs_forward_only(project):
    rng = np.random.RandomState(30)
    x = pt.tensor3('x', dtype='float32')
    n, nin = 40, 7
    xw = pytensor.shared((rng.randn(nin, 4 * n) * 0.3).astype('float32'))
    xb = pytensor.shared(rng.randn(4 * n).astype('float32'))
    hh = pytensor.shared((rng.randn(n, 4 * n) * 0.1).astype('float32'))
    peeps = [pytensor.shared((rng.randn(n) * 0.1).astype('float32')) for _ in range(3)]
    if project:
        h, c = rec.lstm(x, hh, *peeps, xw=xw, xb=xb)
    else:
        h, c = rec.lstm(x.dot(xw) + xb, hh, *peeps)
    predict = backend.function([x], [h, c])
    train = backend.function([x], [h, c] + pytensor.grad((h ** 2).sum(), [hh]))
    assert [op.keep_cache for op in _lstm_nodes(predict)] == [False]
    assert [op.keep_cache for op in _lstm_nodes(train)] == [True]
    xv = rng.randn(9, 5, nin).astype('float32')
    for a, b in zip(predict(xv), train(xv)):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)


def test_lstm_forward_only_perform_and_no_gradient():
    values = cast(lstm_values(np.random.RandomState(31)), 'float32')
    syms = symbols(values, 'float32')
    h, c, cache = rec.LSTMOp(keep_cache=False)(*syms)
    got = pytensor.function(syms, [h, c, cache], mode=PY_MODE)(*values)
    want = np_lstm(*values)
    np.testing.assert_allclose(got[0], want[0], rtol=1e-5, atol=1e-6)
    assert got[2].shape == (1, B, 4 * N)
    with pytest.raises(NotImplementedError, match='cache'):
        pytensor.grad(h.sum(), syms[1])
