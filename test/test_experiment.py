"""Tests of theanets.Experiment: creating, training, saving and loading a network."""

import numpy as np
import pytest

import theanets

from util import inputs, labels, targets, NUM_INPUTS, NUM_OUTPUTS, NUM_CLASSES

FAST = dict(algo='sgd', learning_rate=1e-2, max_updates=2, batch_size=4)


def regressor():
    return theanets.Regressor([NUM_INPUTS, 3, NUM_OUTPUTS])


def test_from_class_and_args():
    exp = theanets.Experiment(theanets.Regressor, [NUM_INPUTS, 3, NUM_OUTPUTS])
    assert isinstance(exp.network, theanets.Regressor)
    assert [layer.name for layer in exp.network.layers] == ['in', 'hid1', 'out']


def test_from_class_and_kwargs():
    exp = theanets.Experiment(theanets.Classifier, layers=[NUM_INPUTS, 3, NUM_CLASSES],
                              weighted=True, rng=5)
    assert isinstance(exp.network, theanets.Classifier)
    assert [v.name for v in exp.network.variables] == ['in', 'target', 'weights']


def test_from_instance_is_used_as_is():
    net = regressor()
    exp = theanets.Experiment(net)
    assert exp.network is net


def test_from_path_loads(tmp_path):
    net = regressor()
    path = str(tmp_path / 'model.pkl')
    net.save(path)
    exp = theanets.Experiment(path)
    assert isinstance(exp.network, theanets.Regressor)
    x = inputs()
    np.testing.assert_allclose(exp.network.predict(x), net.predict(x))


def test_from_pathlib_path_loads(tmp_path):
    path = tmp_path / 'model.pkl.gz'
    regressor().save(str(path))
    assert isinstance(theanets.Experiment(path).network, theanets.Regressor)


def test_bare_network_class_rejected():
    with pytest.raises(theanets.util.ConfigurationError, match='bare Network'):
        theanets.Experiment(theanets.Network, [NUM_INPUTS, NUM_OUTPUTS])


@pytest.mark.parametrize('bad', [42, 'no-such-file.pkl', object()])
def test_other_arguments_rejected(bad):
    with pytest.raises(theanets.util.ConfigurationError, match='Experiment takes'):
        theanets.Experiment(bad)


def test_recurrent_model_class():
    exp = theanets.Experiment(theanets.recurrent.Regressor, [2, (3, 'rnn'), 1])
    assert exp.network.predict(np.zeros((2, 4, 2), 'f')).shape == (2, 4, 1)


def test_train_delegates_and_returns_monitors():
    exp = theanets.Experiment(theanets.Regressor, [NUM_INPUTS, 3, NUM_OUTPUTS])
    before = exp.network.find('hid1', 'w').get_value().copy()
    train, valid = exp.train([inputs(), targets()], **FAST)
    assert list(train)[:2] == ['loss', 'err']
    assert 'loss' in valid
    assert len(exp.network.history) == 2
    assert not np.allclose(before, exp.network.find('hid1', 'w').get_value())


def test_train_classifier_reports_accuracy():
    exp = theanets.Experiment(theanets.Classifier, [NUM_INPUTS, 3, NUM_CLASSES])
    train, _ = exp.train([inputs(), labels()], **FAST)
    assert 0 <= train['acc'] <= 1


def test_itertrain_yields_pairs():
    exp = theanets.Experiment(regressor())
    pairs = list(exp.itertrain([inputs(), targets()], **FAST))
    assert len(pairs) == 2
    assert all(isinstance(t, dict) and isinstance(v, dict) for t, v in pairs)


def test_train_rejects_unknown_keyword():
    exp = theanets.Experiment(regressor())
    with pytest.raises(TypeError, match='min_improvment'):
        exp.train([inputs(), targets()], min_improvment=0.1, **FAST)


def test_save_then_load_round_trip(tmp_path):
    exp = theanets.Experiment(regressor())
    exp.train([inputs(), targets()], **FAST)
    path = str(tmp_path / 'trained.pkl.gz')
    exp.save(path)
    x = inputs()
    expected = exp.network.predict(x)
    other = theanets.Experiment(regressor())
    loaded = other.load(path)
    assert loaded is other.network
    np.testing.assert_allclose(loaded.predict(x), expected)


def test_loaded_network_trains_again(tmp_path):
    path = str(tmp_path / 'model.pkl')
    theanets.Experiment(regressor()).save(path)
    exp = theanets.Experiment(path)
    train, _ = exp.train([inputs(), targets()], **FAST)
    assert np.isfinite(train['loss'])
