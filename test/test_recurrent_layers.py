"""Tests for theanets.layers.recurrent: every layer against a NumPy loop, plus gradients.

The layers of one shared network (all reading the same input) are compiled
once, in FAST_COMPILE mode (the fused ops then run their NumPy ``perform``);
each test compares some of its outputs with a NumPy reference that reads the
layer's weights. A second small network checks the default C mode.
"""

import pickle

import numpy as np
import pytensor
import pytensor.tensor as TT
import pytest

import theanets
from theanets import util
from theanets.layers import recurrent as R

import util as U

B, T, NIN, N = 3, 5, 3, 4

# name -> layer keywords; every layer reads 'in' (B, T, NIN).
LAYERS = {
    'rnn': dict(form='rnn', activation='relu'),
    'rnn_back': dict(form='rnn', activation='tanh', direction='backward'),
    'rnn_h0': dict(form='rnn', activation='tanh', h_0='h0'),
    'rnn_norm': dict(form='rnn', activation='tanh+norm:z'),
    'rrnn_matrix': dict(form='rrnn', activation='tanh'),
    'rrnn_vector': dict(form='rrnn', activation='tanh', rate='vector'),
    'rrnn_uniform': dict(form='rrnn', activation='tanh', rate='uniform'),
    'rrnn_log': dict(form='rrnn', activation='tanh', rate='log', direction='backward'),
    'mut1': dict(form='mut1'),
    'gru': dict(form='gru', activation='tanh'),
    'gru_back': dict(form='gru', activation='relu', direction='backward', h_0='h0'),
    'lstm': dict(form='lstm'),
    'lstm_back': dict(form='lstm', direction='backward', h_0='h0', c_0='c0'),
    'mrnn': dict(form='mrnn', activation='tanh', factors=3),
    'scrn': dict(form='scrn', activation='tanh', s_0='c0'),
    'scrn_ctx': dict(form='scrn', activation='sigmoid', rate='uniform', context_size=2),
    'clockwork': dict(form='clockwork', activation='tanh', periods=(3, 1)),
    'bidi': dict(form='bidirectional', activation='tanh'),
    'bidi_lstm': dict(form='bidirectional', worker='lstm'),
}


@pytest.fixture(scope='module')
def net():
    specs = [dict(form='input', name='in', size=NIN),
             dict(form='input', name='h0', size=N, ndim=2),
             dict(form='input', name='c0', size=N, ndim=2)]
    for name, kw in LAYERS.items():
        specs.append(dict(kw, name=name, size=N, inputs='in'))
    specs.append(dict(form='ff', name='out', size=2, inputs='lstm', activation='linear'))
    return theanets.recurrent.Regressor(specs)


@pytest.fixture(scope='module')
def data():
    rng = np.random.RandomState(7)
    return (rng.randn(B, T, NIN).astype('f'), rng.randn(B, N).astype('f'),
            rng.randn(B, N).astype('f'))


@pytest.fixture(scope='module')
def outputs(net, data):
    """Every graph output of the shared network, computed by one compiled function."""
    mode = theanets.backend.get_mode()
    theanets.backend.set_mode('FAST_COMPILE')
    try:
        return net.feed_forward(*data)
    finally:
        theanets.backend.set_mode(mode)


def act(name):
    return {'tanh': np.tanh, 'relu': U.relu, 'sigmoid': U.sigmoid, 'linear': lambda z: z,
            'tanh+norm:z': lambda z: _norm_z(np.tanh(z))}[name]


def _norm_z(z):
    c = z - z.mean(axis=-1, keepdims=True)
    return c / (z.std(axis=-1, keepdims=True) + 1e-8)


def steps(backward):
    return range(T - 1, -1, -1) if backward else range(T)


def state(init, data):
    """The initial state (B, n) named by a layer option, or zeros."""
    return {None: np.zeros((B, N)), 'h0': data[1].astype(float), 'c0': data[2].astype(float)}[
        init]


def close(actual, expected, atol=2e-5):
    np.testing.assert_allclose(actual, expected, rtol=1e-4, atol=atol)


# ----- NumPy references: each returns {output: (B, T, k) float64} ---------------------------

def ref_rnn(x, xh, hh, b, g, h, backward=False):
    out = {'pre': np.zeros((len(x), T, len(b))), 'out': np.zeros((len(x), T, len(b)))}
    for t in steps(backward):
        pre = x[:, t].dot(xh) + b + h.dot(hh)
        h = g(pre)
        out['pre'][:, t], out['out'][:, t] = pre, h
    return out


def ref_rrnn(x, xh, hh, b, g, rate, h, backward=False):
    out = {k: np.zeros((B, T, N)) for k in ('pre', 'hid', 'out', 'rate')}
    for t in steps(backward):
        r = rate(x[:, t])
        pre = x[:, t].dot(xh) + b + h.dot(hh)
        hid = g(pre)
        h = (1 - r) * h + r * hid
        for k, v in dict(pre=pre, hid=hid, out=h, rate=r).items():
            out[k][:, t] = v
    return out


def ref_mut1(x, p, h):
    s = U.sigmoid
    out = {k: np.zeros((B, T, N)) for k in ('pre', 'hid', 'out', 'rate')}
    for t in steps(False):
        z = s(x[:, t].dot(p['xz']) + p['bz'])
        r = s(x[:, t].dot(p['xr']) + p['br'] + h.dot(p['hr']))
        pre = np.tanh(x[:, t].dot(p['xh']) + p['bh']) + (r * h).dot(p['hh'])
        hid = np.tanh(pre)
        h = (1 - z) * h + z * hid
        for k, v in dict(pre=pre, hid=hid, out=h, rate=z).items():
            out[k][:, t] = v
    return out


def ref_gru(x, p, g, h, backward=False):
    s = U.sigmoid
    out = {k: np.zeros((B, T, N)) for k in ('pre', 'hid', 'out', 'rate')}
    for t in steps(backward):
        xp = x[:, t].dot(p['w']) + p['b']
        r = s(xp[:, N:2 * N] + h.dot(p['hr']))
        z = s(xp[:, 2 * N:] + h.dot(p['hz']))
        pre = xp[:, :N] + (r * h).dot(p['hh'])
        hid = g(pre)
        h = (1 - z) * h + z * hid
        for k, v in dict(pre=pre, hid=hid, out=h, rate=z).items():
            out[k][:, t] = v
    return out


def ref_lstm(x, p, h, c, backward=False):
    s, n = U.sigmoid, len(p['ci'])
    out = {'out': np.zeros((x.shape[0], T, n)), 'cell': np.zeros((x.shape[0], T, n))}
    for t in steps(backward):
        a = x[:, t].dot(p['xh']) + p['b'] + h.dot(p['hh'])
        i = s(a[:, :n] + c * p['ci'])
        f = s(a[:, n:2 * n] + c * p['cf'])
        c = f * c + i * np.tanh(a[:, 2 * n:3 * n])
        o = s(a[:, 3 * n:] + c * p['co'])
        h = o * np.tanh(c)
        out['out'][:, t], out['cell'][:, t] = h, c
    return out


def ref_mrnn(x, p, g, h):
    f = p['xf'].shape[1]
    out = {'pre': np.zeros((B, T, N)), 'out': np.zeros((B, T, N)),
           'factors': np.zeros((B, T, f))}
    for t in steps(False):
        fac = x[:, t].dot(p['xf']) * h.dot(p['hf'])
        pre = x[:, t].dot(p['xh']) + p['b'] + fac.dot(p['fh'])
        h = g(pre)
        out['pre'][:, t], out['out'][:, t], out['factors'][:, t] = pre, h, fac
    return out


def ref_scrn(x, p, g, rate, h, s):
    c = p['sh'].shape[0]
    out = {'hid': np.zeros((B, T, N)), 'state': np.zeros((B, T, c))}
    for t in steps(False):
        xp = x[:, t].dot(p['w'])
        s = (1 - rate) * s + rate * xp[:, N:]
        h = g(xp[:, :N] + h.dot(p['hh']) + s.dot(p['sh']))
        out['hid'][:, t], out['state'][:, t] = h, s
    out['pre'] = out['hid'].dot(p['ho']) + out['state'].dot(p['so']) + p['b']
    out['out'] = g(out['pre'])
    out['rate'] = np.broadcast_to(rate, (B, T, c))
    return out


def ref_clockwork(x, xh, hh, b, g, periods):
    mask = (periods[:, None] >= periods[None, :])
    out = {'pre': np.zeros((B, T, N)), 'out': np.zeros((B, T, N))}
    h, pre = np.zeros((B, N)), np.zeros((B, N))
    for t in steps(False):
        active = t % periods == 0
        new = x[:, t].dot(xh) + b + h.dot(hh * mask)
        pre = np.where(active, new, pre)
        h = np.where(active, g(new), h)
        out['pre'][:, t], out['out'][:, t] = pre, h
    return out


def layer_named(net, name):
    return [l for l in net.layers if l.name == name][0]


def params(net, layer, worker=None):
    """{param suffix: float64 value} of a layer (or of its worker named ``worker``)."""
    prefix = (worker or layer) + '.'
    return {p.name[len(prefix):]: p.get_value().astype(float)
            for p in layer_named(net, layer).params if p.name.startswith(prefix)}


def check(outputs, layer, expected):
    for key, value in expected.items():
        close(outputs['{}:{}'.format(layer, key)], value)


# ----- layer outputs against the references ------------------------------------------------

@pytest.mark.parametrize('name', ['rnn', 'rnn_back', 'rnn_h0', 'rnn_norm'])
def test_rnn(net, data, outputs, name):
    kw = LAYERS[name]
    p = params(net, name)
    expected = ref_rnn(data[0].astype(float), p['xh'], p['hh'], p['b'], act(kw['activation']),
                       state(kw.get('h_0'), data), backward='direction' in kw)
    check(outputs, name, expected)


@pytest.mark.parametrize('name', ['rrnn_matrix', 'rrnn_vector', 'rrnn_uniform', 'rrnn_log'])
def test_rrnn(net, data, outputs, name):
    kw = LAYERS[name]
    layer = layer_named(net, name)
    p = params(net, name)
    if layer.rate == 'matrix':
        def rate(x):
            return U.sigmoid(x.dot(p['xr']) + p['r'])
    elif layer.rate == 'vector':
        def rate(x):
            return U.sigmoid(p['r'])
    else:
        def rate(x):
            return layer._rates.astype(float)
        assert sorted(p) == ['b', 'hh', 'xh']
        assert 0 < layer._rates.min() and layer._rates.max() <= 1
    expected = ref_rrnn(data[0].astype(float), p['xh'], p['hh'], p['b'], np.tanh, rate,
                        np.zeros((B, N)), backward='direction' in kw)
    check(outputs, name, expected)


def test_rrnn_fixed_rates_come_from_the_seeded_stream():
    def rates(rng):
        net = theanets.recurrent.Regressor([NIN, dict(form='rrnn', size=N, rate='log'), 2],
                                           rng=rng)
        return net.layers[1]._rates
    np.testing.assert_array_equal(rates(3), rates(3))
    assert not np.allclose(rates(3), rates(4))
    log = rates(3)
    assert 1e-3 <= log.min() and log.max() <= 1


def test_mut1(net, data, outputs):
    check(outputs, 'mut1', ref_mut1(data[0].astype(float), params(net, 'mut1'),
                                    np.zeros((B, N))))


@pytest.mark.parametrize('name', ['gru', 'gru_back'])
def test_gru(net, data, outputs, name):
    kw = LAYERS[name]
    expected = ref_gru(data[0].astype(float), params(net, name), act(kw['activation']),
                       state(kw.get('h_0'), data), backward='direction' in kw)
    check(outputs, name, expected)


@pytest.mark.parametrize('name', ['lstm', 'lstm_back'])
def test_lstm(net, data, outputs, name):
    kw = LAYERS[name]
    expected = ref_lstm(data[0].astype(float), params(net, name), state(kw.get('h_0'), data),
                        state(kw.get('c_0'), data), backward='direction' in kw)
    check(outputs, name, expected)


def test_lstm_bias_starts_with_mean_two():
    net = theanets.recurrent.Regressor([NIN, (50, 'lstm'), 2])
    b = net.find('hid1', 'b').get_value()
    assert b.shape == (200, )
    assert 1.7 < b.mean() < 2.3


def test_mrnn(net, data, outputs):
    check(outputs, 'mrnn', ref_mrnn(data[0].astype(float), params(net, 'mrnn'), np.tanh,
                                    np.zeros((B, N))))


def test_mrnn_default_factors():
    net = theanets.recurrent.Regressor([NIN, (10, 'mrnn'), 2])
    assert net.find('hid1', 'hf').get_value().shape == (10, 4)
    assert net.layers[1].output_shapes()['hid1:factors'] == (None, 4)


def test_scrn(net, data, outputs):
    p = params(net, 'scrn')
    expected = ref_scrn(data[0].astype(float), p, np.tanh, U.sigmoid(p['r']),
                        np.zeros((B, N)), state('c0', data))
    check(outputs, 'scrn', expected)


def test_scrn_context_size_and_fixed_rate(net, data, outputs):
    layer = layer_named(net, 'scrn_ctx')
    p = params(net, 'scrn_ctx')
    assert p['w'].shape == (NIN, N + 2) and p['sh'].shape == (2, N) and 'r' not in p
    with pytest.raises(util.ConfigurationError, match='shape \\(batch, 2\\)'):
        theanets.recurrent.Regressor([
            dict(form='input', name='s0', size=N, ndim=2), dict(form='input', name='in', size=2),
            dict(form='scrn', size=N, context_size=2, s_0='s0'), 2])
    expected = ref_scrn(data[0].astype(float), p, U.sigmoid, layer._rates.astype(float),
                        np.zeros((B, N)), np.zeros((B, 2)))
    check(outputs, 'scrn_ctx', expected)


def test_clockwork(net, data, outputs):
    layer = layer_named(net, 'clockwork')
    assert layer.periods == [1, 3]
    periods = layer.unit_periods()
    np.testing.assert_array_equal(periods, [1, 1, 3, 3])
    p = params(net, 'clockwork')
    expected = ref_clockwork(data[0].astype(float), p['xh'], p['hh'], p['b'], np.tanh, periods)
    check(outputs, 'clockwork', expected)
    out = outputs['clockwork:out']
    slow, fast = out[:, :, 2:], out[:, :, :2]
    for t in range(1, T):
        assert np.array_equal(slow[:, t], slow[:, t - 1]) == (t % 3 != 0)
        assert not np.allclose(fast[:, t], fast[:, t - 1])


def test_clockwork_mask_lets_slow_modules_feed_fast_ones():
    layer = theanets.recurrent.Regressor(
        [NIN, dict(form='clockwork', size=6, periods=[1, 2, 4]), 2]).layers[1]
    mask = layer.recurrent_mask()
    # rows: from-unit, columns: to-unit; the slowest module only hears itself.
    np.testing.assert_array_equal(mask[:, 4:], np.r_[np.zeros((4, 2)), np.ones((2, 2))])
    np.testing.assert_array_equal(mask[4:, :], np.ones((2, 6)))
    np.testing.assert_array_equal(mask[:2, 2:], np.zeros((2, 4)))


def test_clockwork_size_must_be_a_multiple_of_the_periods():
    with pytest.raises(util.ConfigurationError, match='multiple'):
        theanets.recurrent.Regressor([NIN, dict(form='clockwork', size=5, periods=[1, 2]), 2])
    with pytest.raises(util.ConfigurationError, match='periods'):
        theanets.recurrent.Regressor([NIN, dict(form='clockwork', size=4), 2])


def test_bidirectional_halves(net, data, outputs):
    x = data[0].astype(float)
    fw, bw = params(net, 'bidi', 'bidi_fw'), params(net, 'bidi', 'bidi_bw')
    ref_fw = ref_rnn(x, fw['xh'], fw['hh'], fw['b'], np.tanh, np.zeros((B, 2)))
    # the backward half is a forward worker run on the time-reversed input, re-reversed.
    rev = ref_rnn(x[:, ::-1], bw['xh'], bw['hh'], bw['b'], np.tanh, np.zeros((B, 2)))
    close(outputs['bidi:fw_out'], ref_fw['out'])
    close(outputs['bidi:bw_out'], rev['out'][:, ::-1])
    close(outputs['bidi:out'], np.concatenate([ref_fw['out'], rev['out'][:, ::-1]], axis=-1))
    close(outputs['bidi:pre'], np.concatenate([ref_fw['pre'], rev['pre'][:, ::-1]], axis=-1))


def test_bidirectional_lstm_outputs(net, data, outputs):
    x = data[0].astype(float)
    fw, bw = params(net, 'bidi_lstm', 'bidi_lstm_fw'), params(net, 'bidi_lstm', 'bidi_lstm_bw')
    zeros = np.zeros((B, 2))
    ref_fw = ref_lstm(x, fw, zeros, zeros)
    ref_bw = ref_lstm(x, bw, zeros, zeros, backward=True)
    names = sorted(k.split(':')[1] for k in outputs if k.startswith('bidi_lstm:'))
    assert names == ['bw_cell', 'bw_out', 'cell', 'fw_cell', 'fw_out', 'out']
    close(outputs['bidi_lstm:out'], np.concatenate([ref_fw['out'], ref_bw['out']], axis=-1))
    close(outputs['bidi_lstm:cell'], np.concatenate([ref_fw['cell'], ref_bw['cell']], axis=-1))
    layer = layer_named(net, 'bidi_lstm')
    assert [w.name for w in layer.workers] == ['bidi_lstm_fw', 'bidi_lstm_bw']
    assert layer.output_shapes()['bidi_lstm:cell'] == (None, N)


def test_outputs_are_batch_major_in_forward_order(net, outputs):
    shapes = {}
    for layer in net.layers:
        shapes.update(layer.output_shapes())
    assert sorted(shapes) == sorted(outputs)
    for name, value in outputs.items():
        if name.split(':')[0] in LAYERS:
            assert value.shape == (B, T, shapes[name][-1]), name


def test_compiled_c_code_matches_the_references(data, c_mode):
    """The library's default (C) mode, where the recurrent ops run their C code."""
    names = ['rnn', 'gru_back', 'lstm_back', 'rrnn_matrix', 'mut1', 'mrnn', 'scrn', 'clockwork']
    net = theanets.recurrent.Regressor(
        [dict(form='input', name='in', size=NIN), dict(form='input', name='h0', size=N, ndim=2),
         dict(form='input', name='c0', size=N, ndim=2)] +
        [dict(LAYERS[n], name=n, size=N, inputs='in') for n in names] +
        [dict(form='ff', name='out', size=2, inputs='rnn')])
    outputs = net.feed_forward(*data)
    x = data[0].astype(float)
    p = params(net, 'rnn')
    check(outputs, 'rnn', ref_rnn(x, p['xh'], p['hh'], p['b'], U.relu, np.zeros((B, N))))
    check(outputs, 'gru_back', ref_gru(x, params(net, 'gru_back'), U.relu, state('h0', data),
                                       backward=True))
    check(outputs, 'lstm_back', ref_lstm(x, params(net, 'lstm_back'), state('h0', data),
                                         state('c0', data), backward=True))
    p = params(net, 'rrnn_matrix')
    check(outputs, 'rrnn_matrix', ref_rrnn(x, p['xh'], p['hh'], p['b'], np.tanh,
                                           lambda x_t: U.sigmoid(x_t.dot(p['xr']) + p['r']),
                                           np.zeros((B, N))))
    check(outputs, 'mut1', ref_mut1(x, params(net, 'mut1'), np.zeros((B, N))))
    check(outputs, 'mrnn', ref_mrnn(x, params(net, 'mrnn'), np.tanh, np.zeros((B, N))))
    p = params(net, 'scrn')
    check(outputs, 'scrn', ref_scrn(x, p, np.tanh, U.sigmoid(p['r']), np.zeros((B, N)),
                                    state('c0', data)))
    p = params(net, 'clockwork')
    check(outputs, 'clockwork', ref_clockwork(x, p['xh'], p['hh'], p['b'], np.tanh,
                                              layer_named(net, 'clockwork').unit_periods()))


def test_batch_of_one_and_other_lengths(net, data):
    mode = theanets.backend.get_mode()
    theanets.backend.set_mode('FAST_COMPILE')
    try:
        x, h0, c0 = data
        full = net.feed_forward(x, h0, c0)
        one = net.feed_forward(x[:1, :2], h0[:1], c0[:1])
    finally:
        theanets.backend.set_mode(mode)
    for name in ('rnn:out', 'lstm:out', 'gru:out', 'clockwork:out', 'mrnn:out', 'scrn:out'):
        assert one[name].shape[:2] == (1, 2)
        # forward layers only see the past, so a prefix gives the same first outputs.
        close(one[name], full[name][:1, :2])


# ----- parameters ----------------------------------------------------------------------------

def count(net, layer):
    return sum(p.get_value().size for l in net.layers if l.name == layer for p in l.params)


@pytest.mark.parametrize('form, expected', [
    ('rnn', N * (1 + NIN + N)),
    ('lstm', N * (7 + 4 * N + 4 * NIN)),
    ('gru', 3 * N * (1 + NIN + N)),
    ('mut1', N * (3 + 3 * NIN + 2 * N)),
    ('scrn', 2 * N * (1 + NIN + 2 * N)),
    ('mrnn', (7 + NIN) * N + 3 * NIN),
    ('clockwork', N * (1 + NIN + N)),
    ('rrnn_matrix', N * (2 + 2 * NIN + N)),
    ('rrnn_vector', N * (2 + NIN + N)),
    ('rrnn_uniform', N * (1 + NIN + N)),
    ('bidi', 2 * 2 * (1 + NIN + 2)),
])
def test_parameter_counts(net, form, expected):
    assert count(net, form) == expected


def test_parameter_names(net):
    def names(layer):
        return [p.name for l in net.layers if l.name == layer for p in l.params]
    assert names('lstm') == ['lstm.xh', 'lstm.hh', 'lstm.b', 'lstm.ci', 'lstm.cf', 'lstm.co']
    assert names('gru') == ['gru.w', 'gru.b', 'gru.hh', 'gru.hr', 'gru.hz']
    assert names('mrnn') == ['mrnn.xh', 'mrnn.xf', 'mrnn.hf', 'mrnn.fh', 'mrnn.b']
    assert net.find('bidi', 'bidi_bw.hh').get_value().shape == (2, 2)
    assert net.find('lstm', 'hh').get_value().shape == (N, 4 * N)


@pytest.mark.parametrize('form', ['lstm', 'mut1'])
def test_fixed_nonlinearity_layers_refuse_another_activation(form):
    with pytest.raises(util.ConfigurationError, match=r"always uses logistic gates and tanh, so "
                                                 r"activation='prelu' cannot apply"):
        theanets.recurrent.Regressor([NIN, (N, form, 'prelu'), 2])
    net = theanets.recurrent.Regressor([NIN, (N, form, 'tanh'), (N, form), (N, 'rnn', 'prelu'),
                                        2])
    names = [p.name for p in net.params]
    assert [l.activation for l in net.layers[1:3]] == ['tanh', 'tanh']
    assert 'hid3.leak' in names and not any(n.startswith(('hid1.', 'hid2.')) and
                                            n.endswith('leak') for n in names)


def test_diagonal_and_radius_apply_to_square_recurrent_blocks():
    net = theanets.recurrent.Regressor([
        NIN, dict(form='lstm', size=N, diagonal_hh=0.5),
        dict(form='rnn', size=N, radius=0.9), dict(form='gru', size=N, diagonal=1), 2])
    hh = net.find('hid1', 'hh').get_value()
    np.testing.assert_allclose(hh, np.tile(0.5 * np.eye(N), 4))
    assert not np.allclose(net.find('hid1', 'xh').get_value(), 0)
    top = np.linalg.svd(net.find('hid2', 'hh').get_value(), compute_uv=False)[0]
    assert abs(top - 0.9) < 1e-5
    np.testing.assert_allclose(net.find('hid3', 'hz').get_value(), np.eye(N))


def test_bptt_limit_truncates_gradients():
    net = theanets.recurrent.Regressor([2, dict(form='rnn', size=2, bptt_limit=1,
                                                activation='tanh'), 1])
    outputs, _ = net.build_graph()
    x = net.inputs[0]
    grad = TT.grad(outputs['hid1:out'][:, -1].sum(), x)
    fn = pytensor.function([x], grad, mode='FAST_COMPILE')
    g = fn(np.random.RandomState(0).randn(2, 4, 2).astype('f'))
    assert np.abs(g[:, -1]).sum() > 0
    np.testing.assert_array_equal(g[:, :-1], 0)


# ----- gradients in float64 ----------------------------------------------------------------

@pytest.mark.parametrize('form', ['lstm', 'gru', 'scrn', 'clockwork'])
def test_gradients_match_finite_differences(monkeypatch, form):
    """d loss / d params of a tiny model in float64 (C mode) against central differences."""
    monkeypatch.setattr(util, 'FLOAT', 'float64')
    monkeypatch.setattr(theanets.losses.Loss, 'TARGET_DTYPE', 'float64')
    layer = dict(form=form, size=2, activation='tanh', periods=(1, 2)) if form == 'clockwork' \
        else dict(form=form, size=2, activation='tanh')
    net = theanets.recurrent.Regressor([2, layer, 1])
    assert all(p.dtype == 'float64' for p in net.params)
    rng = np.random.RandomState(3)
    x, y = rng.randn(2, 3, 2), rng.randn(2, 3, 1)
    loss = net.loss()
    fn = theanets.backend.function(net.variables, [loss] + pytensor.grad(loss, net.params))
    analytic = fn(x, y)[1:]
    eps = 1e-6
    for param, grad in zip(net.params, analytic):
        value = param.get_value()
        numeric = np.zeros_like(value)
        for i in np.ndindex(value.shape):
            for sign in (1, -1):
                v = value.copy()
                v[i] += sign * eps
                param.set_value(v)
                numeric[i] += sign * fn(x, y)[0] / (2 * eps)
        param.set_value(value)
        np.testing.assert_allclose(grad, numeric, rtol=1e-5, atol=1e-8, err_msg=param.name)


# ----- configuration -----------------------------------------------------------------------

def test_registry_names():
    for key, cls in [('recurrent', R.Recurrent), ('rnn', R.RNN), ('rrnn', R.RRNN),
                     ('mut1', R.MUT1), ('gru', R.GRU), ('lstm', R.LSTM), ('mrnn', R.MRNN),
                     ('scrn', R.SCRN), ('clockwork', R.Clockwork),
                     ('bidirectional', R.Bidirectional)]:
        assert theanets.Layer.get_class(key) is cls
    assert theanets.layers.LSTM is R.LSTM


def test_recurrent_layer_needs_time_axis():
    with pytest.raises(util.ConfigurationError, match='batch, time, variables'):
        theanets.Regressor([NIN, (N, 'rnn'), 2])


@pytest.mark.parametrize('kwargs, match', [
    (dict(form='rnn', direction='sideways'), 'direction'),
    (dict(form='rnn', h_0='nothing'), 'nothing'),
    (dict(form='rnn', h_0='in'), 'shape \\(batch, 4\\)'),
    (dict(form='rrnn', rate='matrixx'), 'rate'),
    (dict(form='scrn', rate='matrix'), 'rate'),
    (dict(form='mrnn', factors=0), 'factors'),
    (dict(form='bidirectional', size=5), 'even'),
    (dict(form='bidirectional', worker='ff'), 'worker'),
    (dict(form='bidirectional', direction='backward'), 'direction'),
])
def test_configuration_errors(kwargs, match):
    with pytest.raises(util.ConfigurationError, match=match):
        theanets.recurrent.Regressor([NIN, dict(dict(size=N), **kwargs), 2])


def test_unknown_keywords_are_rejected():
    with pytest.raises(TypeError, match='factor'):
        theanets.recurrent.Regressor([NIN, dict(form='rnn', size=N, factor=2), 2])
    with pytest.raises(TypeError, match='periodz'):
        theanets.recurrent.Regressor([NIN, dict(form='bidirectional', worker='clockwork',
                                                size=N, periodz=[1]), 2])


def test_to_spec_rebuilds_layers(net):
    for layer in net.layers[3:-1]:
        spec = layer.to_spec()
        clone = theanets.Layer.build(spec.pop('form'), **spec)
        assert type(clone) is type(layer)
        assert clone.to_spec() == layer.to_spec()


def test_layers_pickle(net):
    layer = layer_named(net, 'bidi_lstm')
    copy = pickle.loads(pickle.dumps(layer))
    assert [p.name for p in copy.params] == [p.name for p in layer.params]
    np.testing.assert_array_equal(copy.params[0].get_value(), layer.params[0].get_value())
