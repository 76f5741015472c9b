"""Tests for theanets.graph.Network: layer specs, graph outputs, monitors, losses, save/load."""

import gzip
import io
import os
import pickle

import numpy as np
import pytest

import theanets
from theanets import backend, graph, layers
from theanets.util import ConfigurationError

import util as U


@pytest.fixture(scope='module')
def chain():
    """A 4-layer regressor in-hid1-hid2-out, not trained by any test."""
    return theanets.Regressor([U.NUM_INPUTS, U.NUM_HID1, U.NUM_HID2, U.NUM_OUTPUTS])


def names(net):
    return [l.name for l in net.layers]


# ----- building ----------------------------------------------------------------------------

@pytest.mark.parametrize('cls', [theanets.Network, theanets.Autoencoder, theanets.Regressor,
                                 theanets.Classifier])
def test_no_argument_constructor_then_add_layer(cls):
    net = cls()
    assert net.layers == [] and net.num_params == 0
    net.add_layer(layer=4)
    net.add_layer(layer=3)
    net.add_layer(layer=4, is_output=True)
    assert names(net) == ['in', 'hid1', 'out']
    assert [l.activation for l in net.layers] == [
        'linear', 'relu', cls.DEFAULT_OUTPUT_ACTIVATION]
    assert net.num_params == 4 * 3 + 3 + 3 * 4 + 4


def test_positional_add_layer_of_the_seed():
    net = theanets.Autoencoder()
    net.add_layer(4, False)
    net.add_layer((3, 'tanh'), False)
    out = net.add_layer(4, True)
    assert out is net.layers[-1] and out.name == 'out' and out.activation == 'linear'
    assert net.layers[1].activation == 'tanh'
    assert net.predict(U.inputs()).shape == (U.NUM_EXAMPLES, 4)


def test_too_few_layers_is_a_clear_error():
    net = theanets.Regressor()
    with pytest.raises(ConfigurationError, match='has 0 layer'):
        net.predict(U.inputs())
    net.add_layer(4)
    with pytest.raises(ConfigurationError, match='has 1 layer'):
        net.train([U.inputs(), U.targets()])


def test_default_names_and_activations():
    net = theanets.Classifier([4, 3, (5, 'tanh'), 2])
    assert names(net) == ['in', 'hid1', 'hid2', 'out']
    assert [l.activation for l in net.layers] == ['linear', 'relu', 'tanh', 'softmax']
    assert isinstance(net.layers[0], layers.Input)
    assert all(type(l) is layers.Feedforward for l in net.layers[1:])


def test_num_params_counts_every_value():
    net = theanets.Regressor([4, (8, 'tanh'), (3, 'prelu'), 2])
    assert net.num_params == (4 * 8 + 8) + (8 * 3 + 3 + 3) + (3 * 2 + 2)
    assert net.num_params == sum(p.get_value().size for p in net.params)


def test_class_constants():
    for cls, act, ndim in [(theanets.Regressor, 'linear', 2), (theanets.Autoencoder, 'linear', 2),
                           (theanets.Classifier, 'softmax', 1)]:
        assert (cls.DEFAULT_OUTPUT_ACTIVATION, cls.INPUT_NDIM, cls.OUTPUT_NDIM) == (act, 2, ndim)


def test_autoencoder_api_of_the_seed():
    for name in ['add_layer', 'add_loss', 'build_graph', 'decode', 'encode', 'feed_forward',
                 'find', 'itertrain', 'load', 'loss', 'monitors', 'predict', 'save', 'score',
                 'set_loss', 'train', 'updates']:
        assert callable(getattr(theanets.Autoencoder, name)), name
    net = theanets.Autoencoder([10, 20, 10])
    for name in ['DEFAULT_OUTPUT_ACTIVATION', 'INPUT_NDIM', 'OUTPUT_NDIM', 'inputs',
                 'num_params', 'params', 'variables']:
        getattr(net, name)


def test_model_signatures():
    import inspect
    for cls, loss in [(theanets.Autoencoder, 'mse'), (theanets.Regressor, 'mse'),
                      (theanets.Classifier, 'xe'), (theanets.Network, 'mse')]:
        params = inspect.signature(cls).parameters
        assert [(n, p.default) for n, p in params.items() if n != 'kwargs'] == [
            ('layers', ()), ('loss', loss), ('weighted', False), ('rng', 13)]


def test_loss_spec_forms():
    net = theanets.Regressor([4, 2], loss=dict(form='mae', weight=2))
    assert [(type(l).__name__, l.weight) for l in net.losses] == [('MeanAbsoluteError', 2)]
    net.set_loss(form='mse', weight=3)
    assert [(type(l).__name__, l.weight) for l in net.losses] == [('MeanSquaredError', 3)]
    net = theanets.Autoencoder([4, 3, 4], loss='mae', weighted=True)
    assert [v.name for v in net.variables] == ['in', 'weights']
    assert net.losses[0]._target is net.inputs[0]


def test_plain_network_is_a_graph_with_mse():
    net = theanets.Network([4, 3, 2])
    assert isinstance(net.losses[0], theanets.losses.MeanSquaredError)
    assert net.predict(U.inputs()).shape == (U.NUM_EXAMPLES, 2)


def test_custom_model_of_the_seed():
    class MyModel(theanets.Network):
        def __init__(self, layers=(), loss='mse', weighted=False):
            super(MyModel, self).__init__(layers=layers, loss=loss, weighted=weighted)

    net = MyModel([3, 4, 2])
    assert names(net) == ['in', 'hid1', 'out']
    assert isinstance(net.losses[0], theanets.losses.MeanSquaredError)
    assert [v.name for v in net.variables] == ['in', 'target']


# ----- layer specs ---------------------------------------------------------------------------

def hidden(spec):
    """The hidden layer of a network [4, spec, 2]."""
    return theanets.Regressor([4, spec, 2]).layers[1]


@pytest.mark.parametrize('spec,cls,shape,activation', [
    (6, layers.Feedforward, (6, ), 'relu'),
    ((6, ), layers.Feedforward, (6, ), 'relu'),
    ((6, 'tanh'), layers.Feedforward, (6, ), 'tanh'),
    (('tanh', 6), layers.Feedforward, (6, ), 'tanh'),
    ((6, 'softmax', 'classifier'), layers.Classifier, (6, ), 'softmax'),
    (('softmax', 10), layers.Classifier, (10, ), 'softmax'),
    ((6, 'ff', 'maxout:2'), layers.Feedforward, (6, ), 'maxout:2'),
    (dict(form='ff', size=6, activation='tanh'), layers.Feedforward, (6, ), 'tanh'),
    (dict(form='Softmax', size=6), layers.Classifier, (6, ), 'softmax'),
    (dict(size=6), layers.Feedforward, (6, ), 'relu'),
])
def test_layer_spec_forms(spec, cls, shape, activation):
    layer = hidden(spec)
    assert type(layer) is cls
    assert layer.name == 'hid1'
    assert layer.output_shape == shape
    assert layer.activation == activation


def test_input_spec_forms():
    assert theanets.Regressor([(28, 28, 1), 'flatten', 2]).layers[0].output_shape == \
        (28, 28, 1)
    net = theanets.Regressor([(2, 3), 'flat', 4])
    assert net.layers[1].output_shape == (6, )
    inp = theanets.Regressor([dict(size=4, name='x'), 2]).layers[0]
    assert inp.name == 'x' and inp.input.name == 'x' and inp.ndim == 2


def test_dict_spec_kwargs_reach_layer():
    layer = hidden(dict(form='ff', size=6, name='foo', std=0.5, inputs='in'))
    assert layer.name == 'foo' and layer.kwargs['std'] == 0.5
    assert list(layer._input_shapes) == ['in:out']


def test_layer_instance_spec_is_used_as_is():
    layer = layers.Feedforward(size=6, inputs='in', name='mine', activation='tanh')
    net = theanets.Regressor([4, layer, 2])
    assert net.layers[1] is layer
    assert names(net) == ['in', 'mine', 'out']
    assert layer.activation == 'tanh' and layer.find('w').get_value().shape == (4, 6)
    fresh = layers.Feedforward(size=5, name='auto')
    net.add_layer(fresh)
    assert list(fresh._input_shapes) == ['out:out']


@pytest.mark.parametrize('spec,match', [
    ((3, 'tanh', 5), 'two sizes'),
    ('ff', 'does not specify a size'),
    (None, 'does not specify a size'),
    (dict(form='ff'), 'does not specify a size'),
    ('fedforward', r"unknown layer form 'fedforward' \(did you mean 'feedforward'"),
    (dict(form='tide', size=3), r"unknown layer form 'tide' \(did you mean 'tied'"),
    ((3, 1.5), 'cannot interpret element 1.5'),
    (3.5, 'cannot interpret layer spec'),
    ((3, 'tahn'), r"unknown activation 'tahn'.*'tanh'"),
])
def test_layer_spec_errors(spec, match):
    with pytest.raises(ConfigurationError, match=match):
        theanets.Regressor([4, spec, 2])


def test_duplicate_names_are_errors():
    with pytest.raises(ConfigurationError, match="named 'in' already exists"):
        theanets.Regressor([4, dict(form='input', size=2, name='in'), 2])
    with pytest.raises(ConfigurationError, match="layer named 'x'"):
        theanets.Regressor([4, dict(size=3, name='x'), dict(size=2, name='x')])


def test_failed_add_layer_leaves_network_unchanged():
    net = theanets.Regressor([4, 3])
    with pytest.raises(ConfigurationError, match="input 'nope:out' is not an output"):
        net.add_layer(dict(size=2, inputs='nope'))
    assert names(net) == ['in', 'out']


# ----- graph -------------------------------------------------------------------------------

def test_feed_forward_keys(chain):
    ff = chain.feed_forward(U.inputs())
    assert sorted(ff) == ['hid1:out', 'hid1:pre', 'hid2:out', 'hid2:pre', 'in:out', 'out:out',
                          'out:pre']
    assert len(ff) == 7
    assert ff['hid2:out'].shape == (U.NUM_EXAMPLES, U.NUM_HID2)


def test_feed_forward_matches_numpy(chain):
    x = U.inputs()
    h = x
    for name, act in [('hid1', U.relu), ('hid2', U.relu), ('out', lambda z: z)]:
        h = act(U.dense(h, U.value(chain, name, 'w'), U.value(chain, name, 'b')))
    assert np.allclose(chain.predict(x), h, atol=1e-5)
    assert np.array_equal(chain.feed_forward(x)['out:out'], chain.predict(x))


def test_compiled_functions_are_cached(chain):
    x = U.inputs()
    chain.predict(x)
    chain.feed_forward(x)
    count = backend.compile_count()
    chain.predict(x)
    chain.feed_forward(x)
    assert backend.compile_count() == count


def test_find(chain):
    assert chain.find('hid1', 'w') is chain.layers[1].params[0]
    assert chain.find(1, 'w') is chain.find('hid1', 'w')
    assert chain.find(2, 1) is chain.find('hid2', 'b')
    assert chain.find(-1, 'b').name == 'out.b'
    assert chain.find('hid1', 'w').name == 'hid1.w'
    for which, param, message in [
            ('hid3', 'w', "no layer named 'hid3'; layers are"), (4, 'w', 'no layer 4 in'),
            ('hid1', 'q', "layer 'hid1' has no parameter 'q'"),
            ('hid1', 2, "layer 'hid1' has no parameter 2"),
            ('in', 'w', "layer 'in' has no parameter 'w'")]:
        with pytest.raises(KeyError, match=message):
            chain.find(which, param)


def test_params(chain):
    assert [p.name for p in chain.params] == ['hid1.w', 'hid1.b', 'hid2.w', 'hid2.b',
                                              'out.w', 'out.b']
    assert chain.find('hid2', 'w').get_value().shape == (U.NUM_HID1, U.NUM_HID2)


@pytest.mark.parametrize('cls,weighted,expected', [
    (theanets.Regressor, False, [('in', 2, 'float32'), ('target', 2, 'float32')]),
    (theanets.Regressor, True, [('in', 2, 'float32'), ('target', 2, 'float32'),
                                ('weights', 2, 'float32')]),
    (theanets.Classifier, False, [('in', 2, 'float32'), ('target', 1, 'int32')]),
    (theanets.Classifier, True, [('in', 2, 'float32'), ('target', 1, 'int32'),
                                 ('weights', 1, 'float32')]),
    (theanets.Autoencoder, False, [('in', 2, 'float32')]),
    (theanets.Autoencoder, True, [('in', 2, 'float32'), ('weights', 2, 'float32')]),
])
def test_variables_order(cls, weighted, expected):
    net = cls([4, 3, 4], weighted=weighted)
    assert [(v.name, v.ndim, v.dtype) for v in net.variables] == expected
    assert net.inputs == [net.layers[0].input]


def test_variables_of_several_inputs():
    net = theanets.Regressor([4, dict(form='input', size=2, name='in2'),
                              dict(size=3, inputs=('in', 'in2'))])
    assert [v.name for v in net.variables] == ['in', 'in2', 'target']
    x2 = U.inputs(m=2, seed=5)
    out = net.predict(U.inputs(), x2)
    expected = (U.inputs().dot(U.value(net, 'out', 'w_in:out'))
                + x2.dot(U.value(net, 'out', 'w_in2:out')) + U.value(net, 'out', 'b'))
    assert np.allclose(out, expected, atol=1e-5)


def test_build_graph_is_cached():
    net = theanets.Regressor([4, 3, 2])
    outputs, updates = net.build_graph()
    again, _ = net.build_graph()
    assert again is outputs
    assert all(again[k] is outputs[k] for k in outputs)
    assert updates == [] and net.updates() == []
    net.add_layer(dict(size=2, name='extra'))
    rebuilt, _ = net.build_graph()
    assert rebuilt is not outputs and 'extra:out' in rebuilt


# ----- monitors ------------------------------------------------------------------------------

@pytest.mark.parametrize('monitors,expected', [
    ({'hid1:out': 1}, ['err', 'hid1:out<1']),
    ({'hid1:out': [2, 1]}, ['err', 'hid1:out<2', 'hid1:out<1']),
    ([('hid1:out', (2, 1))], ['err', 'hid1:out<2', 'hid1:out<1']),
    ({'*.w': 1}, ['err', 'hid1.w<1', 'hid2.w<1', 'out.w<1']),
    ({'hid?.b': 0.5}, ['err', 'hid1.b<0.5', 'hid2.b<0.5']),
    ({'*:pre': 0}, ['err', 'hid1:pre<0', 'hid2:pre<0', 'out:pre<0']),
    ({'nothing': 1}, ['err']),
    ({'hid1:out': {'mean': lambda e: e.mean()}}, ['err', 'hid1:out:mean']),
    ({'hid1:out': [('mean', lambda e: e.mean()), ('max', lambda e: e.max())]},
     ['err', 'hid1:out:mean', 'hid1:out:max']),
])
def test_monitor_names(chain, monitors, expected):
    assert [n for n, _ in chain.monitors(monitors=monitors)] == expected


def test_monitor_values(chain):
    x = U.inputs()
    pairs = chain.monitors(monitors={'hid1:pre': 0, 'hid2:out': {'mean': lambda e: e.mean()}})
    fn = backend.function(chain.variables, [e for _, e in pairs])
    err, below, mean = fn(x, U.targets())
    ff = chain.feed_forward(x)
    assert np.isclose(err, ((ff['out:out'] - U.targets()) ** 2).mean(), rtol=1e-5)
    assert np.isclose(below, (ff['hid1:pre'] < 0).mean())
    assert np.isclose(mean, ff['hid2:out'].mean(), rtol=1e-5)


def test_classifier_monitors_end_with_accuracy():
    net = theanets.Classifier([4, 3, 2])
    assert [n for n, _ in net.monitors(monitors={'hid1:out': 1})] == ['err', 'hid1:out<1', 'acc']


def test_train_yields_loss_first_and_monitors():
    net = theanets.Classifier([4, 3, U.NUM_CLASSES])
    data = [U.inputs(), U.labels()]
    pairs = list(net.itertrain(data, algo='sgd', max_updates=2, monitors={'hid1:out': 0.5}))
    assert len(pairs) == 2
    for train, valid in pairs:
        assert list(train) == ['loss', 'err', 'hid1:out<0.5', 'acc']
        assert list(valid) == ['loss', 'err', 'hid1:out<0.5', 'acc']
        assert 0 <= train['acc'] <= 1
    train, _ = net.train(data, algo='sgd', max_updates=1)
    assert list(train) == ['loss', 'err', 'acc']


# ----- losses --------------------------------------------------------------------------------

class TestMultipleLosses:
    """The losses guide: add_loss, weights of losses and set_loss between train() calls."""

    @pytest.fixture(scope='class')
    @staticmethod
    def net():
        return theanets.Regressor([10, 20, 3], loss='mae')

    @staticmethod
    def reported(net, x, y):
        """The training loss reported for the current parameters (no real update)."""
        train, valid = net.train([x, y], algo='sgd', learning_rate=1e-12, batch_size=len(x),
                                 max_updates=1)
        assert np.isclose(train['loss'], valid['loss'], rtol=1e-5)
        return valid

    def test_sequence(self, net):
        x, y = U.inputs(m=10), U.targets(m=3)
        net.add_loss('mse')
        assert [type(l).__name__ for l in net.losses] == ['MeanAbsoluteError',
                                                          'MeanSquaredError']
        assert [v.name for v in net.variables] == ['in', 'target']

        err = net.predict(x) - y
        valid = self.reported(net, x, y)
        assert np.isclose(valid['loss'], np.abs(err).mean() + (err ** 2).mean(), rtol=1e-5)
        assert np.isclose(valid['err'], np.abs(err).mean(), rtol=1e-5)

        net.losses[1].weight = 2
        err = net.predict(x) - y
        valid = self.reported(net, x, y)
        assert np.isclose(valid['loss'], np.abs(err).mean() + 2 * (err ** 2).mean(), rtol=1e-5)

        net.set_loss('mse', weight=1)
        assert len(net.losses) == 1 and net.losses[0].weight == 1
        err = net.predict(x) - y
        valid = self.reported(net, x, y)
        assert np.isclose(valid['loss'], (err ** 2).mean(), rtol=1e-5)

    def test_training_reduces_the_sum(self):
        net = theanets.Regressor([10, 20, 3], loss='mae')
        net.add_loss('mse', weight=2)
        x, y = U.inputs(n=32, m=10), U.targets(n=32, m=3)

        def total():
            err = net.predict(x) - y
            return np.abs(err).mean() + 2 * (err ** 2).mean()

        before = total()
        net.train([x, y], algo='adam', learning_rate=0.01, max_updates=20, batch_size=32)
        assert total() < 0.9 * before


# ----- keyword checking --------------------------------------------------------------------

@pytest.mark.parametrize('cls', [theanets.Network, theanets.Regressor, theanets.Autoencoder,
                                 theanets.Classifier])
def test_unknown_constructor_kwargs(cls):
    with pytest.raises(TypeError, match=r"'wieghted'.*did you mean 'weighted'"):
        cls([4, 2], wieghted=True)


def test_unknown_train_kwargs():
    net = theanets.Regressor([4, 2])
    data = [U.inputs(), U.targets()]
    with pytest.raises(TypeError, match=r"'min_improvment'.*'min_improvement'"):
        net.train(data, min_improvment=0.1)
    with pytest.raises(TypeError, match=r"'learnig_rate'.*'learning_rate'"):
        next(net.itertrain(data, learnig_rate=0.1))
    with pytest.raises(TypeError, match=r"'bogus'"):
        net.predict(U.inputs(), bogus=1)


def test_unknown_algorithm():
    net = theanets.Regressor([4, 2])
    with pytest.raises(ConfigurationError, match=r"unknown training algorithm 'adma'.*'adam'"):
        net.train([U.inputs(), U.targets()], algo='adma')


# ----- save and load -------------------------------------------------------------------------

@pytest.fixture(scope='module')
def trained():
    net = theanets.Regressor([U.NUM_INPUTS, (3, 'tanh+norm:z'), (3, 'prelu'), U.NUM_OUTPUTS])
    net.train([U.inputs(), U.targets()], algo='sgd', max_updates=2)
    return net


@pytest.mark.parametrize('filename', ['model.pkl', 'model.pkl.gz', 'model.PKL.GZ'])
def test_save_load_round_trip(trained, tmp_path, filename):
    path = str(tmp_path / filename)
    trained.save(path)
    if filename.lower().endswith('.gz'):
        with gzip.open(path) as handle:
            handle.read(10)
    loaded = theanets.Regressor.load(path)
    assert type(loaded) is theanets.Regressor and loaded is not trained
    x = U.inputs()
    assert np.array_equal(loaded.predict(x), trained.predict(x))
    assert names(loaded) == names(trained)
    assert loaded.layers[1].activate.name == 'norm:z(tanh)'


def test_save_load_file_handles(trained):
    buffer = io.BytesIO()
    trained.save(buffer)
    assert not buffer.closed
    buffer.seek(0)
    loaded = theanets.Network.load(buffer)
    assert np.array_equal(loaded.predict(U.inputs()), trained.predict(U.inputs()))


def test_loaded_network_trains_again(trained, tmp_path):
    path = str(tmp_path / 'm.pkl')
    trained.save(path)
    loaded = theanets.Regressor.load(path)
    before = loaded.find('out', 'w').get_value().copy()
    train, _ = loaded.train([U.inputs(), U.targets()], algo='sgd', learning_rate=0.1,
                            max_updates=2, validate_every=1)
    assert np.isfinite(train['loss'])
    assert not np.array_equal(loaded.find('out', 'w').get_value(), before)


def test_save_is_atomic(trained, tmp_path, monkeypatch):
    path = tmp_path / 'm.pkl'
    trained.save(str(path))
    original = path.read_bytes()

    def broken_dump(obj, handle, *args, **kwargs):
        handle.write(b'partial data')
        raise RuntimeError('disk full')

    monkeypatch.setattr(pickle, 'dump', broken_dump)
    with pytest.raises(RuntimeError, match='disk full'):
        trained.save(str(path))
    assert path.read_bytes() == original
    assert os.listdir(str(tmp_path)) == ['m.pkl']


def test_weighted_multi_loss_round_trip():
    net = theanets.Regressor([4, 3, 2], weighted=True)
    net.add_loss('mae', weight=0.5)
    buffer = io.BytesIO()
    net.save(buffer)
    buffer.seek(0)
    loaded = theanets.Regressor.load(buffer)
    assert [(type(l).__name__, l.weight) for l in loaded.losses] == [
        ('MeanSquaredError', 1.0), ('MeanAbsoluteError', 0.5)]
    assert [v.name for v in loaded.variables] == ['in', 'target', 'weights']
    x, y, w = U.inputs(), U.targets(), U.weights((U.NUM_EXAMPLES, 2))
    err = loaded.predict(x) - y
    expected = (w * err ** 2).sum() / w.sum() + 0.5 * (w * np.abs(err)).sum() / w.sum()
    fn = backend.function(loaded.variables, loaded.loss())
    assert np.isclose(fn(x, y, w), expected, rtol=1e-5)


def test_load_on_instance_is_an_error(trained, tmp_path):
    path = str(tmp_path / 'm.pkl')
    trained.save(path)
    with pytest.raises(TypeError, match=r'class method.*Regressor\.load\(path\)'):
        trained.load(path)


@pytest.mark.parametrize('content,match', [
    (None, 'truncated, corrupt'),
    (b'not a pickle at all', 'truncated, corrupt'),
    (pickle.dumps({'weights': [1, 2]}), 'not a theanets model'),
    (pickle.dumps([1, 2, 3]), 'not a theanets model'),
    (pickle.dumps(dict(format="theanets-model", format_version=graph.FORMAT_VERSION + 1,
                       theanets_version='9.0', network=None)), 'newer'),
])
def test_load_bad_files(trained, tmp_path, content, match):
    path = tmp_path / 'bad.pkl'
    if content is None:
        trained.save(str(path))
        content = path.read_bytes()[:200]
    path.write_bytes(content)
    with pytest.raises(ValueError, match=match):
        theanets.Regressor.load(str(path))


def test_load_bad_gzip_and_missing_file(tmp_path):
    path = tmp_path / 'bad.pkl.gz'
    path.write_bytes(b'plain bytes')
    with pytest.raises(ValueError, match='truncated, corrupt'):
        theanets.Regressor.load(str(path))
    with pytest.raises(FileNotFoundError, match='missing.pkl'):
        theanets.Regressor.load(str(tmp_path / 'missing.pkl'))
