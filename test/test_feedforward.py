"""Tests for theanets.feedforward models: Autoencoder, Regressor, Classifier, and data checks."""

import time

import numpy as np
import pytest
from sklearn.metrics import r2_score

import theanets
from theanets import backend
from theanets.util import ConfigurationError

import util as U


def loss_function(net):
    """Compile the model's total training loss as a function of its data arrays."""
    return backend.function(net.variables, net.loss())


# ----- Autoencoder --------------------------------------------------------------------------

class TestAutoencoderSeed:
    """The examples of the Autoencoder API guide, at their sizes."""

    @pytest.mark.parametrize('spec', [[10, 20, 10], [10, 20, (10, 'tied')]])
    def test_train_predict_encode_decode(self, spec):
        model = theanets.Autoencoder(spec)
        inputs = np.random.randn(1000, 10).astype('f')
        train, _ = model.train([inputs], max_updates=2)
        assert np.isfinite(train['loss'])
        test = np.random.randn(3, 10).astype('f')
        assert model.predict(test).shape == (3, 10)
        enc = model.encode(test)
        assert enc.shape == (3, 20)
        assert np.allclose(model.decode(enc), model.predict(test), atol=1e-5)

    def test_pca_and_ica(self):
        pca = theanets.Autoencoder([10, (5, 'linear'), (10, 'tied')])
        assert pca.layers[2].partner is pca.layers[1]
        x = U.inputs(n=32, m=10)
        train, _ = pca.train([x], hidden_l1=0.1, max_updates=1, batch_size=32)
        err = ((pca.predict(x) - x) ** 2).mean()
        assert train['loss'] > train['err']
        assert train['err'] > 0 and err > 0


@pytest.fixture(scope='module')
def deep():
    """A 4-3-2-3-4 autoencoder with a logistic middle layer."""
    return theanets.Autoencoder([4, 3, (2, 'sigmoid'), 3, 4])


def test_encode_default_is_middle_layer(deep):
    x = U.inputs()
    assert deep.encode(x).shape == (U.NUM_EXAMPLES, 2)
    assert np.array_equal(deep.encode(x), deep.feed_forward(x)['hid2:out'])
    small = theanets.Autoencoder([4, 2, 4])
    assert small.encode(x).shape == (U.NUM_EXAMPLES, 2)


def test_encode_named_layer_and_sample(deep):
    x = U.inputs()
    assert np.array_equal(deep.encode(x, layer='hid1'), deep.feed_forward(x)['hid1:out'])
    assert np.array_equal(deep.encode(x, layer='hid1:pre'), deep.feed_forward(x)['hid1:pre'])
    big = np.tile(x, (100, 1))
    sample = deep.encode(big, sample=True)
    assert sample.shape == (100 * U.NUM_EXAMPLES, 2)
    assert set(np.unique(sample)) <= {0, 1}
    probs = deep.encode(big)
    assert abs(sample.mean() - probs.mean()) < 0.05
    with pytest.raises(ConfigurationError, match="no layer named 'hid9'"):
        deep.encode(x, layer='hid9')


def test_decode_from_int_name_or_layer(deep):
    x = U.inputs()
    out = deep.predict(x)
    for layer in (None, 2, 'hid2', deep.layers[2]):
        z = deep.encode(x, layer=layer)
        assert np.allclose(deep.decode(z, layer=layer), out, atol=1e-5)
    z = deep.encode(x, layer='hid3')
    assert np.allclose(deep.decode(z, layer=3), out, atol=1e-5)
    assert deep.decode(np.zeros((5, 3), 'f'), layer='hid1').shape == (5, 4)


def test_autoencoder_score(deep):
    x = U.inputs(n=20)
    assert np.isclose(deep.score(x), r2_score(x, deep.predict(x)), rtol=1e-4)
    w = U.weights(x.shape, zeros=0)
    row = np.repeat(w[:, :1], x.shape[1], axis=1)
    expected = r2_score(x, deep.predict(x), sample_weight=w[:, 0])
    assert np.isclose(deep.score(x, row), expected, rtol=1e-4)
    assert np.isclose(deep.score(x, w[:, 0]), expected, rtol=1e-4)
    assert np.isclose(deep.score(x, w), U.r2(x, deep.predict(x), w), rtol=1e-4)


def test_autoencoder_trains_on_inputs_only():
    net = theanets.Autoencoder([4, (3, 'tanh'), 4])
    assert [v.name for v in net.variables] == ['in']
    x = U.inputs(n=32)
    fn = loss_function(net)
    assert np.isclose(fn(x), ((net.predict(x) - x) ** 2).mean(), rtol=1e-5)
    before = fn(x)
    net.train([x], algo='adam', learning_rate=0.05, max_updates=20, batch_size=32)
    assert fn(x) < before


def test_autoencoder_round_trip_keeps_input_target(tmp_path):
    net = theanets.Autoencoder([4, 3, 'tied'], weighted=True)
    path = str(tmp_path / 'ae.pkl.gz')
    net.save(path)
    loaded = theanets.Autoencoder.load(path)
    assert loaded.losses[0]._target is loaded.inputs[0]
    assert loaded.layers[2].partner is loaded.layers[1]
    x = U.inputs()
    assert np.array_equal(loaded.predict(x), net.predict(x))
    train, _ = loaded.train([x, np.ones_like(x)], max_updates=1)
    assert np.isfinite(train['loss'])


# ----- Regressor ------------------------------------------------------------------------------

def test_regressor_trains_with_mse():
    net = theanets.Regressor([4, (5, 'tanh'), 2])
    x, y = U.inputs(n=32), U.targets(n=32)
    fn = loss_function(net)
    assert np.isclose(fn(x, y), ((net.predict(x) - y) ** 2).mean(), rtol=1e-5)
    before = fn(x, y)
    net.train([x, y], algo='adam', learning_rate=0.05, max_updates=20, batch_size=32)
    assert fn(x, y) < before


def test_regressor_score():
    net = theanets.Regressor([4, 3, 2])
    x, y = U.inputs(n=20), U.targets(n=20)
    assert np.isclose(net.score(x, y), r2_score(y, net.predict(x)), rtol=1e-4)
    w = U.weights(y.shape)
    assert np.isclose(net.score(x, y, w), U.r2(y, net.predict(x), w), rtol=1e-4)


# ----- Classifier -----------------------------------------------------------------------------

@pytest.fixture(scope='module')
def classifier():
    return theanets.Classifier([U.NUM_INPUTS, (5, 'tanh'), U.NUM_CLASSES])


def test_classifier_outputs(classifier):
    x = U.inputs()
    proba = classifier.predict_proba(x)
    assert proba.shape == (U.NUM_EXAMPLES, U.NUM_CLASSES)
    assert np.allclose(proba.sum(axis=1), 1, atol=1e-6)
    logit = classifier.predict_logit(x)
    assert np.allclose(proba, U.softmax(logit.astype('float64')), atol=1e-6)
    labels = classifier.predict(x)
    assert labels.shape == (U.NUM_EXAMPLES, ) and np.issubdtype(labels.dtype, np.integer)
    assert np.array_equal(labels, proba.argmax(axis=1))


def test_classifier_labels_follow_a_non_softmax_output():
    # relu ties every negative output at 0: labels come from the outputs, not the logits
    net = theanets.Classifier([U.NUM_INPUTS, (U.NUM_CLASSES, 'relu')])
    bias = net.find('out', 'b')
    bias.set_value(bias.get_value() - 100)
    x = np.random.RandomState(3).randn(200, U.NUM_INPUTS).astype('f')
    assert not np.all(net.predict_logit(x).argmax(axis=-1) == 0)
    assert np.array_equal(net.predict(x), np.zeros(len(x)))


def test_classifier_score(classifier):
    x, y = U.inputs(), U.labels()
    right = classifier.predict(x) == y
    assert np.isclose(classifier.score(x, y), right.mean())
    w = U.weights(y.shape)
    assert np.isclose(classifier.score(x, y, w), (w * right).sum() / w.sum())


def test_classify_is_deprecated(classifier):
    x = U.inputs()
    with pytest.warns(DeprecationWarning, match='predict'):
        labels = classifier.classify(x)
    assert np.array_equal(labels, classifier.predict(x))


def test_classifier_trains_with_cross_entropy():
    net = theanets.Classifier([U.NUM_INPUTS, (5, 'tanh'), U.NUM_CLASSES])
    x, y = U.inputs(n=30), U.labels(n=30)
    fn = loss_function(net)
    proba = net.predict_proba(x).astype('float64')
    assert np.isclose(fn(x, y), -np.log(proba[np.arange(30), y]).mean(), rtol=1e-5)
    before = fn(x, y)
    train, _ = net.train([x, y], algo='adam', learning_rate=0.05, max_updates=20, batch_size=30)
    assert fn(x, y) < before
    assert 0 <= train['acc'] <= 1


# ----- weighted models ----------------------------------------------------------------------

def test_weighted_regressor():
    net = theanets.Regressor([4, 3, 2], weighted=True)
    x, y = U.inputs(), U.targets()
    w = U.weights(y.shape, zeros=2)
    w[1] = 0
    fn = loss_function(net)
    expected = (w * (net.predict(x) - y) ** 2).sum() / w.sum()
    assert np.isclose(fn(x, y, w), expected, rtol=1e-5)
    y2 = y.copy()
    y2[1] += 10
    y2[0, :2] -= 10
    assert np.isclose(fn(x, y2, w), expected, rtol=1e-5)
    train, _ = net.train([x, y, w], max_updates=1)
    assert np.isfinite(train['loss'])


def test_weighted_classifier():
    net = theanets.Classifier([4, 3, U.NUM_CLASSES], weighted=True)
    x, y = U.inputs(), U.labels()
    w = U.weights(y.shape, zeros=2)
    fn = loss_function(net)
    nlp = -np.log(net.predict_proba(x).astype('float64')[np.arange(len(y)), y])
    assert np.isclose(fn(x, y, w), (w * nlp).sum() / w.sum(), rtol=1e-5)
    y2 = y.copy()
    y2[:2] = (y2[:2] + 1) % U.NUM_CLASSES
    assert np.isclose(fn(x, y2, w), (w * nlp).sum() / w.sum(), rtol=1e-5)
    train, _ = net.train([x, y, w], max_updates=1)
    assert np.isfinite(train['loss']) and 0 <= train['acc'] <= 1


def test_weighted_autoencoder():
    net = theanets.Autoencoder([4, 3, 4], weighted=True)
    x = U.inputs()
    w = U.weights(x.shape, zeros=0)
    w[2] = 0
    fn = loss_function(net)
    expected = (w * (net.predict(x) - x) ** 2).sum() / w.sum()
    assert np.isclose(fn(x, w), expected, rtol=1e-5)
    x2 = x.copy()
    x2[2] = 100
    assert np.isclose(fn(x2, w), expected, rtol=1e-5)
    train, _ = net.train([x, w], max_updates=1)
    assert np.isfinite(train['loss'])


# ----- data checks --------------------------------------------------------------------------

class TestDataChecks:
    @pytest.fixture(scope='class')
    @staticmethod
    def net():
        return theanets.Classifier([4, 3, U.NUM_CLASSES])

    @pytest.mark.parametrize('arrays,match', [
        (lambda x, y: [x], r"trains on 2 array\(s\) \['in', 'target'\] but got 1"),
        (lambda x, y: [x[:, :3], y], 'expected 4 values on axis 1'),
        (lambda x, y: [x[0], y], 'expects 2-D data'),
        (lambda x, y: [x, y.astype('f')], 'convert with labels.astype'),
        (lambda x, y: [x, y + 5], 'labels must be in'),
        (lambda x, y: [x, y[:4]], 'different numbers of examples'),
        (lambda x, y: [x * np.nan, y], 'NaN'),
        (lambda x, y: [x[:0], y[:0]], 'empty'),
        (lambda x, y: x, 'list of arrays'),
    ])
    def test_bad_training_data(self, net, arrays, match):
        with pytest.raises(ConfigurationError, match=match):
            net.train(arrays(U.inputs(), U.labels()), max_updates=1)

    def test_bad_prediction_input(self, net):
        with pytest.raises(ConfigurationError, match='expected 4 values on axis 1'):
            net.predict(U.inputs(m=5))
        with pytest.raises(ConfigurationError, match='1 input layer'):
            net.predict(U.inputs(), U.inputs())

    def test_bad_weights_and_targets(self):
        net = theanets.Regressor([4, 2], weighted=True)
        x, y = U.inputs(), U.targets()
        with pytest.raises(ConfigurationError, match='weights array has shape'):
            net.train([x, y, np.ones(len(x), 'f')], max_updates=1)
        with pytest.raises(ConfigurationError, match='expected 2 columns'):
            net.train([x, U.targets(m=3), np.ones((len(x), 3), 'f')], max_updates=1)


# ----- digits ---------------------------------------------------------------------------------

def test_digits_classifier_accuracy():
    from sklearn.datasets import load_digits
    digits = load_digits()
    x = (digits.data / 16).astype('f')
    y = digits.target.astype('i')
    order = np.random.RandomState(0).permutation(len(x))
    cut = int(0.8 * len(x))
    train, test = order[:cut], order[cut:]
    valid, train = train[:200], train[200:]
    net = theanets.Classifier([64, 100, 10])
    start = time.time()
    net.train([x[train], y[train]], [x[valid], y[valid]], algo='adam', learning_rate=3e-3,
              batch_size=32, max_updates=100, validate_every=2, patience=10)
    elapsed = time.time() - start
    accuracy = (net.predict(x[test]) == y[test]).mean()
    print('digits: held-out accuracy {:.4f} after {:.1f}s of training'.format(accuracy, elapsed))
    assert accuracy >= 0.95
    assert np.isclose(net.score(x[test], y[test]), accuracy)
