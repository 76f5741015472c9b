"""Every recurrent form in JAX mode: builds, trains and predicts as in the C mode."""

import numpy as np
import pytest

import theanets

from jaxmode import jax_mode  # noqa: F401  (a fixture)

B, T, NIN, N = 3, 5, 3, 4

# form, extra layer keywords, model; together the cases cover every form and every model
CASES = [
    ('lstm', {}, 'classifier'),
    ('gru', dict(activation='relu', bptt_limit=2), 'regressor'),
    ('rnn', dict(activation='tanh', direction='backward'), 'autoencoder'),
    ('rrnn', dict(activation='tanh'), 'classifier'),
    ('mut1', {}, 'regressor'),
    ('mrnn', dict(activation='tanh', factors=3), 'autoencoder'),
    ('scrn', dict(activation='tanh'), 'classifier'),
    ('clockwork', dict(activation='tanh', periods=(1, 2)), 'regressor'),
    ('bidirectional', dict(worker='lstm'), 'autoencoder'),
]


def model_and_data(model, layer):
    rng = np.random.RandomState(11)
    x = rng.randn(B, T, NIN).astype('f')
    if model == 'classifier':
        return (lambda: theanets.recurrent.Classifier([NIN, layer, 3], rng=5),
                [x, rng.randint(3, size=(B, T)).astype('i')])
    if model == 'regressor':
        return (lambda: theanets.recurrent.Regressor([NIN, layer, 2], rng=5),
                [x, rng.randn(B, T, 2).astype('f')])
    return lambda: theanets.recurrent.Autoencoder([NIN, layer, NIN], rng=5), [x]


@pytest.fixture
def restore_mode():
    mode = theanets.backend.get_mode()
    yield
    theanets.backend.set_mode(mode)


def output(net, x):
    return net.feed_forward(x)[net.layers[-1].output_name]


@pytest.mark.parametrize('form, extra, model', CASES, ids=[c[0] for c in CASES])
def test_jax_mode_trains_and_predicts_as_c_mode(form, extra, model, jax_mode, restore_mode):  # noqa: F811 (fixture)
    build, data = model_and_data(model, dict(form=form, size=N, **extra))
    theanets.backend.set_mode('CVM')
    c_net = build()
    theanets.backend.set_mode(jax_mode)
    jax_net = build()
    np.testing.assert_allclose(output(jax_net, data[0]), output(c_net, data[0]), rtol=1e-4,
                               atol=1e-5)
    losses = [train['loss'] for train, _ in jax_net.itertrain(
        data, algo='sgd', learning_rate=0.1, batch_size=B, max_updates=4, patience=100)]
    assert losses[-1] < losses[0]
    for c_param, jax_param in zip(c_net.params, jax_net.params):
        c_param.set_value(jax_param.get_value())
    np.testing.assert_allclose(output(jax_net, data[0]), output(c_net, data[0]), rtol=1e-4,
                               atol=1e-5)
