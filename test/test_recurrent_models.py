"""Tests for theanets.recurrent: models on (batch, time, variables) data and the helpers."""

import numpy as np
import pytest

import theanets
from theanets import util

B, T, NIN, N, K = 4, 5, 3, 4, 5


def rng(seed=0):
    return np.random.RandomState(seed)


# ----- seed example: recurrent classifier ------------------------------------------------------

@pytest.fixture(scope='module')
def classifier():
    """The seed's ``Classifier([10, (20, 'rnn'), 50])``, shrunk, trained a few epochs."""
    net = theanets.recurrent.Classifier([NIN, (N, 'rnn'), K])
    x = rng(1).randn(B, T, NIN).astype('f')
    labels = rng(2).randint(K, size=(B, T)).astype('i')
    train, valid = net.train([x, labels], algo='rmsprop', learning_rate=0.01, max_updates=3)
    return net, train


def test_classifier_defaults(classifier):
    net, train = classifier
    assert net.INPUT_NDIM == 3 and net.OUTPUT_NDIM == 2
    assert net.DEFAULT_OUTPUT_ACTIVATION == 'softmax'
    assert type(net.losses[0]).__name__ == 'CrossEntropy'
    assert [v.name for v in net.variables] == ['in', 'target']
    assert net.variables[1].ndim == 2 and net.variables[1].dtype == 'int32'
    assert list(train)[:3] == ['loss', 'err', 'acc']
    assert 0 <= train['acc'] <= 1
    assert net.num_params == N * (1 + NIN + N) + K * (N + 1)


def test_classifier_predicts_longer_sequences(classifier):
    net, _ = classifier
    test = rng(3).randn(3, 2 * T, NIN).astype('f')
    labels = net.predict(test)
    assert labels.shape == (3, 2 * T)
    assert np.issubdtype(labels.dtype, np.integer)
    assert labels.min() >= 0 and labels.max() < K
    proba = net.predict_proba(test)
    assert proba.shape == (3, 2 * T, K)
    np.testing.assert_allclose(proba.sum(axis=-1), 1, rtol=1e-5)
    np.testing.assert_array_equal(proba.argmax(axis=-1), labels)
    assert net.predict_logit(test).shape == (3, 2 * T, K)


def test_classifier_predicts_a_batch_of_one(classifier):
    net, _ = classifier
    test = rng(4).randn(3, 7, NIN).astype('f')
    np.testing.assert_allclose(net.predict_proba(test[1:2]), net.predict_proba(test)[1:2],
                               rtol=1e-5, atol=1e-6)
    assert net.predict(test[:1, :1]).shape == (1, 1)


def test_predict_sequence_samples_labels(classifier):
    net, _ = classifier
    seed = rng(5).randint(NIN, size=4).astype('i')
    drawn = list(net.predict_sequence(seed, 10, rng=7))
    assert len(drawn) == 10
    assert all(isinstance(d, int) and 0 <= d < K for d in drawn)
    assert list(net.predict_sequence(seed, 10, rng=np.random.RandomState(7))) == drawn
    streams = list(net.predict_sequence(seed, 6, streams=3, rng=1))
    assert len(streams) == 6 and all(len(s) == 3 for s in streams)
    assert all(0 <= d < K for s in streams for d in s)


def test_predict_sequence_reads_one_step_ahead(classifier):
    net, _ = classifier
    seed = [0, 2, 1]
    greedy = list(net.predict_sequence(seed, 3, greedy=True))
    # the greedy choice is the argmax at the last step of the sequence read so far.
    labels = list(seed)
    for expected in greedy:
        x = np.zeros((1, len(labels), NIN), 'f')
        for t, label in enumerate(labels):
            if label < NIN:     # classes beyond the input width are fed as zero vectors
                x[0, t, label] = 1
        assert int(net.predict_proba(x)[0, -1].argmax()) == expected
        labels.append(expected)


def test_predict_sequence_follows_the_distribution():
    """With an input-independent output, sampled labels follow the softmax of the bias."""
    net = theanets.recurrent.Classifier([3, (2, 'rnn'), 3])
    for param in net.params:
        param.set_value(np.zeros_like(param.get_value()))
    bias = np.log(np.array([0.7, 0.2, 0.1], 'f'))
    net.find('out', 'b').set_value(bias)
    drawn = np.array(list(net.predict_sequence([0], 200, streams=2, rng=3))).ravel()
    freq = np.bincount(drawn, minlength=3) / len(drawn)
    np.testing.assert_allclose(freq, [0.7, 0.2, 0.1], atol=0.07)
    assert set(net.predict_sequence([0], 5, greedy=True)) == {0}


def test_predict_sequence_checks_its_seed(classifier):
    net, _ = classifier
    with pytest.raises(ValueError, match='seed'):
        list(net.predict_sequence([], 3))
    with pytest.raises(util.ConfigurationError, match='seed labels'):
        list(net.predict_sequence([-1], 3))


def test_save_and_load(classifier, tmp_path):
    net, _ = classifier
    path = str(tmp_path / 'rnn.pkl.gz')
    net.save(path)
    loaded = theanets.recurrent.Classifier.load(path)
    test = rng(6).randn(2, 3, NIN).astype('f')
    np.testing.assert_array_equal(loaded.predict_proba(test), net.predict_proba(test))


# ----- weighted models: zero weights remove time steps -----------------------------------------

def test_weighted_autoencoder_ignores_zero_weight_steps():
    """The seed's ``recurrent.Autoencoder([3, (10, 'rnn'), 3], weighted=True)``."""
    net = theanets.recurrent.Autoencoder([3, (10, 'rnn'), 3], weighted=True)
    assert [v.name for v in net.variables] == ['in', 'weights']
    x = rng(7).randn(B, T, 3).astype('f')
    w = np.ones_like(x)
    w[:2, 3:] = 0       # two sequences of length 3, padded to T
    train, _ = net.train([x, w], algo='adam', learning_rate=0.01, max_updates=2)
    assert np.isfinite(train['loss'])
    loss = theanets.backend.function(net.variables, net.loss())
    padded = x.copy()
    padded[:2, 3:] = 100    # padding changes nothing seen by the loss
    assert abs(float(loss(padded, w)) - float(loss(x, w))) < 1e-5
    predicted = net.predict(x)
    expected = (w * (predicted - x) ** 2).sum() / w.sum()
    np.testing.assert_allclose(float(loss(x, w)), expected, rtol=1e-4)


def test_weighted_classifier_ignores_zero_weight_steps():
    net = theanets.recurrent.Classifier([NIN, (N, 'gru', 'tanh'), K], weighted=True)
    x = rng(8).randn(B, T, NIN).astype('f')
    labels = rng(9).randint(K, size=(B, T)).astype('i')
    w = np.ones((B, T), 'f')
    w[:, -2:] = 0
    monitors = net.monitors()
    assert [name for name, _ in monitors] == ['err', 'acc']
    fn = theanets.backend.function(net.variables, [expr for _, expr in monitors])
    other = labels.copy()
    other[:, -2:] = (other[:, -2:] + 1) % K
    np.testing.assert_allclose(fn(x, other, w), fn(x, labels, w), rtol=1e-6)
    predicted = net.predict(x)
    acc = ((predicted == labels) * w).sum() / w.sum()
    np.testing.assert_allclose(fn(x, labels, w)[1], acc, rtol=1e-6)
    assert abs(net.score(x, other, w) - acc) < 1e-6


# ----- learning a memory task ----------------------------------------------------------------

def memory_data(n, seed):
    """Sequences of U(-1, 1) values; the target at every step is the first value."""
    x = rng(seed).uniform(-1, 1, size=(n, T, 1)).astype('f')
    return x, np.repeat(x[:, :1], T, axis=1)


def test_lstm_remembers_what_a_feedforward_net_cannot():
    train, valid = memory_data(256, 10), memory_data(128, 11)
    losses = {}
    for form in ('lstm', 'ff'):
        net = theanets.recurrent.Regressor([1, dict(form=form, size=4, activation='tanh'), 1])
        _, monitors = net.train(train, valid, algo='adam', learning_rate=0.03, batch_size=64,
                                patience=100, max_updates=80)
        losses[form] = monitors['loss']
    # the feedforward net only knows the first value at t=0: about (T-1)/T * var = 0.27.
    assert losses['ff'] > 0.2
    assert losses['lstm'] < 0.02


# ----- initial states from another input ------------------------------------------------------

def test_initial_state_from_an_input_layer():
    net = theanets.recurrent.Regressor([
        dict(form='input', name='h0', size=N, ndim=2),
        dict(form='input', name='in', size=NIN),
        dict(form='rnn', size=N, h_0='h0', activation='tanh', name='rnn'),
        dict(form='ff', size=2, name='out')])
    assert [v.name for v in net.variables] == ['h0', 'in', 'target']
    h0 = rng(12).randn(B, N).astype('f')
    x = rng(13).randn(B, T, NIN).astype('f')
    y = rng(14).randn(B, T, 2).astype('f')
    train, _ = net.train([h0, x, y], algo='sgd', learning_rate=0.01, max_updates=2)
    assert np.isfinite(train['loss'])
    out = net.feed_forward(h0, x)
    assert net.predict(h0, x).shape == (B, T, 2)
    xh, hh, b = (net.find('rnn', p).get_value().astype(float) for p in ('xh', 'hh', 'b'))
    first = np.tanh(x[:, 0].dot(xh) + b + h0.dot(hh))
    np.testing.assert_allclose(out['rnn:out'][:, 0], first, rtol=1e-4, atol=1e-5)
    other = net.feed_forward(np.zeros_like(h0), x)['rnn:out']
    assert not np.allclose(other[:, 0], out['rnn:out'][:, 0])
    np.testing.assert_allclose(other[:, 0], np.tanh(x[:, 0].dot(xh) + b), rtol=1e-4, atol=1e-5)


# ----- regularizers, optimizers, bidirectional models ----------------------------------------

def test_training_with_recurrent_regularizers_and_dropout():
    net = theanets.recurrent.Regressor([NIN, (N, 'lstm'), 2])
    x = rng(15).randn(B, T, NIN).astype('f')
    y = rng(16).randn(B, T, 2).astype('f')
    kwargs = dict(recurrent_norm=dict(weight=0.1, pattern='hid1:out'),
                  recurrent_state=dict(weight=0.1, pattern='hid1:out'), hidden_dropout=0.1)
    history = list(net.itertrain([x, y], algo='nag', learning_rate=0.01, momentum=0.5,
                                 max_updates=3, **kwargs))
    assert len(history) == 3
    train = history[-1][0]
    assert np.isfinite(train['loss']) and train['loss'] > train['err']


def test_bidirectional_model_trains_saves_and_loads(tmp_path):
    net = theanets.recurrent.Regressor(
        [NIN, dict(form='bidirectional', worker='lstm', size=N), 2])
    x = rng(17).randn(B, T, NIN).astype('f')
    y = rng(18).randn(B, T, 2).astype('f')
    history = [m[0]['loss'] for m in net.itertrain([x, y], algo='adam', learning_rate=0.05,
                                                   max_updates=6)]
    assert history[-1] < history[0]
    path = tmp_path / 'bidi.pkl'
    net.save(str(path))
    loaded = theanets.recurrent.Regressor.load(str(path))
    assert [p.name for p in loaded.params] == [p.name for p in net.params]
    np.testing.assert_allclose(loaded.predict(x), net.predict(x), rtol=1e-6)


# ----- helpers --------------------------------------------------------------------------------

def test_text_alphabet_and_coding():
    txt = theanets.recurrent.Text('hello world, how are you!', min_count=2, unknown='_')
    assert txt.alpha == txt.alphabet == ' ehlorw'
    assert txt.text == 'hello worl__ how _re _o__'
    assert txt.encode('hello!') == [3, 2, 4, 4, 5, 0]
    assert txt.decode([3, 2, 4, 4, 5, 0]) == 'hello_'
    given = theanets.recurrent.Text('hello', alpha='helo wrd,!')
    assert given.alpha == 'helo wrd,!'
    assert given.encode('hello!') == [1, 2, 3, 3, 4, 10]
    assert theanets.recurrent.Text('aab').alpha == 'a'
    with pytest.raises(ValueError, match='unknown'):
        theanets.recurrent.Text('abc', alpha='ab_', unknown='_')


def test_text_classifier_batches():
    txt = theanets.recurrent.Text('abcabcabcabc' * 3, min_count=1)
    inputs, outputs = txt.classifier_batches(steps=4, batch_size=3, rng=0)()
    assert inputs.shape == (3, 4, 4) and inputs.dtype == np.float32
    assert outputs.shape == (3, 4) and outputs.dtype == np.int32
    np.testing.assert_array_equal(inputs.sum(axis=-1), 1)
    # each output is the class of the next character.
    np.testing.assert_array_equal(inputs.argmax(axis=-1)[:, 1:], outputs[:, :-1])
    # in 'abcabc...' (classes a=1, b=2, c=3) the next class of k is k % 3 + 1.
    np.testing.assert_array_equal(outputs, inputs.argmax(axis=-1) % 3 + 1)
    again = txt.classifier_batches(steps=4, batch_size=3, rng=0)()
    np.testing.assert_array_equal(again[1], outputs)


def test_text_batches_train_a_classifier():
    txt = theanets.recurrent.Text('the cat sat on the mat. ' * 4)
    width = 1 + len(txt.alpha)
    net = theanets.recurrent.Classifier([width, (N, 'rnn', 'tanh'), width])
    batch = txt.classifier_batches(steps=T, batch_size=B, rng=1)
    train, _ = net.train(batch, algo='rmsprop', learning_rate=0.01, max_updates=2)
    assert np.isfinite(train['loss'])
    drawn = list(net.predict_sequence(txt.encode('the'), 5, rng=2))
    assert len(txt.decode(drawn)) == 5


def test_batches():
    x = np.arange(40, dtype='f').reshape(20, 2)
    labels = np.arange(20, dtype='i')
    sample = theanets.recurrent.batches([x, labels], steps=4, batch_size=5, rng=3)
    xb, lb = sample()
    assert xb.shape == (5, 4, 2) and xb.dtype == np.float32
    assert lb.shape == (5, 4) and lb.dtype == np.int32
    np.testing.assert_array_equal(xb[:, :, 0], 2 * lb)
    np.testing.assert_array_equal(np.diff(lb, axis=1), 1)
    assert not np.array_equal(sample()[1], lb)
    same = theanets.recurrent.batches([x, labels], steps=4, batch_size=5, rng=3)()
    np.testing.assert_array_equal(same[1], lb)
    full = theanets.recurrent.batches([x], steps=20, batch_size=2)()[0]
    np.testing.assert_array_equal(full[0], x)
    with pytest.raises(ValueError, match='list'):
        theanets.recurrent.batches(x)
    with pytest.raises(ValueError, match='longer'):
        theanets.recurrent.batches([x], steps=21)


def test_models_exist_without_layers():
    for cls in (theanets.recurrent.Autoencoder, theanets.recurrent.Regressor,
                theanets.recurrent.Classifier):
        net = cls()
        assert net.layers == [] and net.INPUT_NDIM == 3
    assert theanets.recurrent.Regressor.OUTPUT_NDIM == 3
    assert theanets.recurrent.Autoencoder.OUTPUT_NDIM == 3


def test_feedforward_layers_after_recurrent_ones():
    net = theanets.recurrent.Regressor([NIN, (N, 'rnn'), (3, 'tanh'), 2])
    out = net.feed_forward(rng(19).randn(2, T, NIN).astype('f'))
    w = net.find('hid2', 'w').get_value()
    b = net.find('hid2', 'b').get_value()
    np.testing.assert_allclose(out['hid2:out'], np.tanh(out['hid1:out'].dot(w) + b),
                               rtol=1e-5, atol=1e-6)
    assert out['out:out'].shape == (2, T, 2)


def test_wrong_data_shapes_are_explained():
    net = theanets.recurrent.Regressor([NIN, (N, 'rnn'), 2])
    with pytest.raises(util.ConfigurationError, match='batch, time, variables'):
        net.predict(np.zeros((B, NIN), 'f'))
