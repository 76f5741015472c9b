"""Nothing is lost: model files, weights files, and training that fails part way.

Complements the save/load tests of test_graph.py (round trips, atomic save,
a few bad files) and the checkpoint tests of test_trainer.py (a failed step
keeps the previous checkpoint, KeyboardInterrupt inside a step).
"""

import gzip
import io
import os
import pickle
import zipfile

import numpy as np
import pytest

import theanets
from theanets import graph, persistence
from theanets.optimizers import NonFiniteLossError
from theanets.util import ConfigurationError

import util as U

X = U.inputs(n=32)
Y = U.targets(n=32)
QUICK = dict(algo='sgd', learning_rate=0.05, batch_size=8, validate_every=1)


def values(net):
    return [p.get_value().copy() for p in net.params]


def assert_same(a, b):
    assert len(a) == len(b)
    for x, y in zip(a, b):
        assert np.array_equal(x, y)


def all_finite(net):
    return all(np.isfinite(p.get_value()).all() for p in net.params)


MODELS = {
    'regressor': (lambda: theanets.Regressor([4, (3, 'tanh+norm:z'), (3, 'prelu'), 2]),
                  lambda: [X, Y]),
    'classifier': (lambda: theanets.Classifier([4, (3, 'maxout:2'), 3], weighted=True),
                   lambda: [X, np.arange(32) % 3, np.ones(32, 'f')]),
    'recurrent': (lambda: theanets.recurrent.Classifier([4, (3, 'lstm'), 3]),
                  lambda: [U.rng(1).randn(8, 5, 4).astype('f'),
                           (np.arange(40) % 3).reshape(8, 5)]),
    'autoencoder': (lambda: theanets.Autoencoder([4, 3, (4, 'tied')]), lambda: [X]),
}


@pytest.fixture(scope='module', params=sorted(MODELS))
def trained(request):
    build, data = MODELS[request.param]
    net = build()
    net.train(data(), **dict(QUICK, max_updates=2))
    net.kind = request.param
    return net, data()


# ----- model files ----------------------------------------------------------------------

@pytest.mark.parametrize('name', ['m.pkl', 'm.pkl.gz'])
def test_load_then_save_gives_the_same_bytes_and_predictions(trained, tmp_path, name):
    net, data = trained
    first, second = str(tmp_path / ('a-' + name)), str(tmp_path / ('b-' + name))
    net.save(first)
    loaded = type(net).load(first)
    loaded.save(second)
    with open(first, 'rb') as a, open(second, 'rb') as b:
        assert a.read() == b.read()
    x = data[0]
    assert np.array_equal(loaded.predict(x), net.predict(x))
    assert_same(values(loaded), values(net))


def test_saving_twice_gives_the_same_bytes(trained):
    net, _ = trained
    a, b = io.BytesIO(), io.BytesIO()
    net.save(a)
    net.save(b)
    assert a.getvalue() == b.getvalue()


@pytest.fixture(scope='module')
def saved(tmp_path_factory):
    net = theanets.Regressor([4, 3, 2])
    path = tmp_path_factory.mktemp('saved') / 'm.pkl'
    net.save(str(path))
    return net, path.read_bytes()


@pytest.mark.parametrize('fraction', [0.0, 0.01, 0.1, 0.5, 0.9, 0.999])
@pytest.mark.parametrize('zipped', [False, True])
def test_truncated_files_are_reported(saved, tmp_path, fraction, zipped):
    _, content = saved
    if zipped:
        content = gzip.compress(content, mtime=0)
    path = tmp_path / ('cut.pkl.gz' if zipped else 'cut.pkl')
    path.write_bytes(content[:int(len(content) * fraction)])
    with pytest.raises(ValueError, match='truncated, corrupt or not a theanets model'):
        theanets.Regressor.load(str(path))


@pytest.mark.parametrize('position', [0.3, 0.6, 0.95])
def test_corrupt_bytes_are_caught_by_the_checksum(saved, tmp_path, position):
    _, content = saved
    data = bytearray(content)
    data[int(len(data) * position)] ^= 0xFF
    path = tmp_path / 'bad.pkl'
    path.write_bytes(bytes(data))
    with pytest.raises(ValueError, match='corrupt'):
        theanets.Regressor.load(str(path))


def _pickle_with_state(net, monkeypatch, **changes):
    """A pickle of ``net`` whose packed state has ``changes`` (e.g. a newer format)."""
    state = net.__getstate__()
    state.update(changes)
    monkeypatch.setattr(type(net), '__getstate__', lambda self: state)
    return pickle.dumps(net, -1)


def test_corrupt_model_data_name_the_checksum(saved, monkeypatch):
    net, _ = saved
    blob = net.__getstate__()['state']
    content = _pickle_with_state(net, monkeypatch, state=blob[:-10] + b'0123456789')
    with pytest.raises(ValueError, match='do not match their SHA-256 checksum'):
        theanets.Regressor.load(io.BytesIO(content))
    with pytest.raises(persistence.ModelFileError, match='do not match their SHA-256'):
        pickle.loads(content)


@pytest.mark.parametrize('version', [graph.FORMAT_VERSION + 1, 'x', None])
def test_too_new_format_says_upgrade(saved, monkeypatch, version):
    net, _ = saved
    content = _pickle_with_state(net, monkeypatch, format_version=version,
                                 theanets_version='9.9')
    pattern = r'written by theanets 9.9 in model format {}, newer .*upgrade theanets'.format(
        version)
    with pytest.raises(ValueError, match=r"cannot load a theanets model from .*" + pattern):
        theanets.Network.load(io.BytesIO(content))
    with pytest.raises(ValueError, match=pattern):
        pickle.loads(content)


def test_other_library_version_warns(saved, monkeypatch):
    net, _ = saved
    content = _pickle_with_state(net, monkeypatch, theanets_version='0.7.3')
    with pytest.warns(UserWarning, match=r'saved by theanets 0.7.3; this is theanets'):
        loaded = theanets.Network.load(io.BytesIO(content))
    assert_same(values(loaded), values(net))


def test_state_that_is_not_network_attributes_is_refused(saved, monkeypatch):
    net, _ = saved
    content = _pickle_with_state(net, monkeypatch, format='theanets-model', state=None,
                                 sha256=None)
    with pytest.raises(ValueError, match='checksum'):
        theanets.Network.load(io.BytesIO(content))


# ----- a saved file is a pickle of the network, as in theanets 0.8 --------------------------

@pytest.mark.parametrize('name', ['m.pkl', 'm.pkl.gz'])
def test_pickle_and_joblib_load_give_the_network(trained, tmp_path, name):
    net, data = trained
    path = str(tmp_path / name)
    net.save(path)
    opener = gzip.open if name.endswith('.gz') else open
    with opener(path, 'rb') as handle:
        plain = pickle.load(handle)
    assert type(plain) is type(net)
    assert np.array_equal(plain.predict(data[0]), net.predict(data[0]))
    joblib = pytest.importorskip('joblib')
    loaded = joblib.load(path)
    assert type(loaded) is type(net)
    assert_same(values(loaded), values(net))


def test_pickle_dumps_of_a_network_round_trips(trained):
    net, data = trained
    clone = pickle.loads(pickle.dumps(net))
    assert type(clone) is type(net) and clone is not net
    assert np.array_equal(clone.predict(data[0]), net.predict(data[0]))


FIXTURES = os.path.join(os.path.dirname(__file__), 'data')


@pytest.mark.parametrize('name,kind,shapes', [
    ('main-format1-regressor.pkl', 'regressor', [(3, ), (4, ), (2, )]),
    ('main-format2-regressor.pkl', 'regressor', [(3, ), (4, ), (2, )]),
    ('main-format2-recurrent.pkl.gz', 'recurrent', [(None, 3), (None, 4), (None, 2)]),
    ('main-format2-convolution.pkl.gz', 'convolution', [(5, 5, 1), (3, 3, 2), (18, ), (2, )]),
])
def test_files_of_earlier_formats_still_load(tmp_path, name, kind, shapes):
    """Files written by the library before the network itself was pickled (formats 1, 2).

    Their layers kept the batch axis in their shapes; loading converts them.
    """
    expected = np.load(os.path.join(FIXTURES, 'main-predictions.npz'))
    x, y = expected[kind + '-x'], expected[kind + '-y']
    net = theanets.Network.load(os.path.join(FIXTURES, name))
    predict = net.predict_proba if kind == 'recurrent' else net.predict
    np.testing.assert_allclose(predict(x), y, rtol=1e-5, atol=1e-6)
    assert [l.output_shape for l in net.layers] == shapes
    path = str(tmp_path / 'again.pkl')
    net.save(path)
    with open(path, 'rb') as handle:
        again = pickle.load(handle)
    np.testing.assert_allclose(
        again.predict_proba(x) if kind == 'recurrent' else again.predict(x), y,
        rtol=1e-5, atol=1e-6)


def test_loading_another_kind_of_model_is_an_error(saved, tmp_path):
    net, content = saved
    path = tmp_path / 'regressor.pkl'
    path.write_bytes(content)
    with pytest.raises(ValueError, match=r"holds a theanets.feedforward.Regressor, which is "
                                         r"not a theanets.feedforward.Autoencoder; load it "
                                         r"with theanets.feedforward.Regressor.load"):
        theanets.Autoencoder.load(str(path))
    assert type(theanets.Network.load(str(path))) is theanets.Regressor


def test_a_recurrent_model_is_a_kind_of_feedforward_model(tmp_path):
    path = str(tmp_path / 'rnn.pkl')
    theanets.recurrent.Regressor([4, (3, 'rnn'), 2]).save(path)
    assert type(theanets.Regressor.load(path)) is theanets.recurrent.Regressor


# ----- weights files -----------------------------------------------------------------------

def test_weights_round_trip_into_a_fresh_network(trained, tmp_path):
    net, data = trained
    path = str(tmp_path / 'w.npz')
    net.save_weights(path)
    assert os.listdir(str(tmp_path)) == ['w.npz']
    twin = MODELS[net.kind][0]()
    for param in twin.params:
        param.set_value(param.get_value() + 1)
    assert not np.array_equal(twin.predict(data[0]), net.predict(data[0]))
    twin.load_weights(path)
    assert np.array_equal(twin.predict(data[0]), net.predict(data[0]))


def test_weights_file_holds_plain_arrays_only():
    net = theanets.Regressor([4, 3, 2])
    buffer = io.BytesIO()
    net.save_weights(buffer)
    buffer.seek(0)
    with np.load(buffer, allow_pickle=False) as archive:
        assert sorted(archive.files) == sorted(
            ['__format__', '__format_version__', 'hid1.w', 'hid1.b', 'out.w', 'out.b'])
        assert all(archive[k].dtype != object for k in archive.files)


def test_no_npz_suffix_is_added(tmp_path):
    path = tmp_path / 'weights.bin'
    theanets.Regressor([4, 2]).save_weights(str(path))
    assert os.listdir(str(tmp_path)) == ['weights.bin']
    theanets.Regressor([4, 2]).load_weights(path)


def weights_file(tmp_path, **arrays):
    path = str(tmp_path / 'w.npz')
    arrays.setdefault('__format__', np.array('theanets-weights'))
    arrays.setdefault('__format_version__', np.array(1))
    np.savez(path, **arrays)
    return path


def good_arrays(net):
    return {p.name: p.get_value() + 1 for p in net.params}


@pytest.mark.parametrize('change,pattern', [
    (lambda a: a.pop('out.b'), r"missing arrays for parameters \['out.b'\]"),
    (lambda a: a.update({'hid2.w': np.zeros((3, 3))}),
     r"arrays \['hid2.w'\] match no parameter of this network"),
    (lambda a: a.update({'out.w': np.zeros((2, 3))}),
     r"shape \(2, 3\) of 'out.w' in the file does not match \(3, 2\) in the network"),
    (lambda a: a.update({'out.b': np.array([np.nan, 0])}), r"'out.b' holds NaN"),
    (lambda a: a.update({'out.b': np.array(['a', 'b'])}), r"'out.b' has dtype <U1"),
])
def test_bad_weights_are_rejected_and_nothing_changes(tmp_path, change, pattern):
    net = theanets.Regressor([4, 3, 2])
    before = values(net)
    arrays = good_arrays(net)
    change(arrays)
    with pytest.raises(ConfigurationError, match=pattern + r'.*no parameter was changed'):
        net.load_weights(weights_file(tmp_path, **arrays))
    assert_same(values(net), before)


def test_every_problem_is_listed_at_once(tmp_path):
    net = theanets.Regressor([4, 3, 2])
    arrays = good_arrays(net)
    arrays.pop('hid1.b')
    arrays['extra'] = np.zeros(1)
    arrays['out.w'] = np.zeros(1)
    with pytest.raises(ConfigurationError) as info:
        net.load_weights(weights_file(tmp_path, **arrays))
    assert all(s in str(info.value) for s in ("'hid1.b'", "'extra'", "of 'out.w'"))


def test_weights_load_into_a_network_of_another_size_fails(tmp_path):
    path = str(tmp_path / 'w.npz')
    theanets.Regressor([4, 3, 2]).save_weights(path)
    with pytest.raises(ConfigurationError, match=r"shape \(4, 3\) of 'hid1.w' in the file does "
                                                 r"not match \(4, 5\)"):
        theanets.Regressor([4, 5, 2]).load_weights(path)


@pytest.mark.parametrize('make,pattern', [
    (lambda p: open(p, 'wb').write(b'not a zip file at all'), 'truncated, corrupt'),
    (lambda p: np.save(p + '.npy', np.zeros(3)) or os.replace(p + '.npy', p), 'single'),
    (lambda p: np.savez(p, a=np.array([{}], dtype=object)), r'truncated, corrupt.*pickle'),
    (lambda p: np.savez(p, **{'out.w': np.zeros((4, 2))}), 'not a theanets weights file'),
    (lambda p: np.savez(p, __format__=np.array('theanets-weights'),
                        __format_version__=np.array(2)), 'newer than this theanets reads'),
])
def test_bad_weights_files_are_reported(tmp_path, make, pattern):
    path = str(tmp_path / 'w.npz')
    make(path)
    with pytest.raises(ValueError, match=pattern):
        theanets.Regressor([4, 2]).load_weights(path)


@pytest.mark.parametrize('fraction', [0.1, 0.5, 0.9, 0.99])
def test_truncated_weights_files_are_reported(tmp_path, fraction):
    buffer = io.BytesIO()
    theanets.Regressor([4, 3, 2]).save_weights(buffer)
    content = buffer.getvalue()
    path = tmp_path / 'w.npz'
    path.write_bytes(content[:int(len(content) * fraction)])
    with pytest.raises(ValueError, match='truncated, corrupt'):
        theanets.Regressor([4, 3, 2]).load_weights(str(path))


def test_weights_save_is_atomic(tmp_path, monkeypatch):
    path = tmp_path / 'w.npz'
    net = theanets.Regressor([4, 2])
    net.save_weights(str(path))
    original = path.read_bytes()

    def broken(handle, **arrays):
        handle.write(b'partial')
        raise OSError('disk full')

    monkeypatch.setattr(np, 'savez', broken)
    with pytest.raises(OSError, match='disk full'):
        net.save_weights(str(path))
    assert path.read_bytes() == original
    assert os.listdir(str(tmp_path)) == ['w.npz']


def test_missing_weights_file(tmp_path):
    with pytest.raises(FileNotFoundError, match='nope.npz'):
        theanets.Regressor([4, 2]).load_weights(str(tmp_path / 'nope.npz'))


# ----- training that fails part way ---------------------------------------------------------

def test_divergence_stops_with_the_best_parameters():
    net = theanets.Regressor([4, 8, 2])
    before = values(net)
    with pytest.raises(NonFiniteLossError, match=r'diverged.*best parameters so far were '
                                                 r'restored.*lower learning_rate'):
        net.train([X, Y], algo='sgd', learning_rate=1e6, batch_size=8)
    assert all_finite(net)
    # divergence came in the first epoch, so the best are the initial values
    assert_same(values(net), before)
    assert np.isfinite(net.predict(X)).all()


def _poisoned(after):
    """A batch callable whose batches hold NaN from call number ``after`` on."""
    calls = []

    def batches():
        calls.append(1)
        x = X[:8].copy()
        if len(calls) > after:
            x[0, 0] = np.nan
        return [x, Y[:8]]

    return batches


def test_checkpoint_before_a_divergence_is_intact(tmp_path):
    path = str(tmp_path / 'net.pkl')
    net = theanets.Regressor([4, 2])
    seen = []
    with pytest.raises(NonFiniteLossError, match='diverged'):
        for _ in net.itertrain(_poisoned(after=2), [X, Y], save_every=1, save_progress=path,
                               **dict(QUICK, iteration_size=1)):
            seen.append(values(net))
    assert len(seen) == 2
    checkpoint = theanets.Regressor.load(path)
    assert_same(values(checkpoint), seen[-1])
    assert all_finite(net) and all_finite(checkpoint)
    assert os.listdir(str(tmp_path)) == ['net.pkl']


@pytest.mark.parametrize('error', [RuntimeError('in my loop'), KeyboardInterrupt()])
def test_error_in_the_users_loop_restores_the_best_parameters(error):
    net = theanets.Regressor([4, 8, 2])
    seen = []
    with pytest.raises(type(error), match=str(error) or None):
        for _ in net.itertrain([X, Y], **dict(QUICK, max_updates=10)):
            seen.append(values(net))
            if len(seen) == 3:
                for param in net.params:  # the user damages the model, then fails
                    param.set_value(np.full_like(param.get_value(), np.nan))
                raise error
    assert all_finite(net)
    # validation ran before each epoch and the loss fell, so the best are those of epoch 2
    assert_same(values(net), seen[1])


def test_break_out_of_the_users_loop_restores_the_best_parameters():
    net = theanets.Regressor([4, 8, 2])
    seen = []
    for _ in net.itertrain([X, Y], **dict(QUICK, max_updates=10)):
        seen.append(values(net))
        if len(seen) == 3:
            break
    assert_same(values(net), seen[1])


def test_model_trains_again_after_a_divergence():
    net = theanets.Regressor([4, 2])
    with pytest.raises(NonFiniteLossError, match='diverged.*learning_rate=1000000'):
        net.train([X, Y], algo='sgd', learning_rate=1e6, batch_size=8)
    train, _ = net.train([X, Y], **dict(QUICK, max_updates=2))
    assert np.isfinite(train['loss'])


def test_weights_zip_member_names(tmp_path):
    path = str(tmp_path / 'w.npz')
    theanets.Regressor([4, 3, dict(size=2, inputs=('in', 'hid1'))]).save_weights(path)
    with zipfile.ZipFile(path) as archive:
        assert 'out.w_in:out.npy' in archive.namelist()
    net = theanets.Regressor([4, 3, dict(size=2, inputs=('in', 'hid1'))], rng=5)
    net.load_weights(path)
