"""Tests for training: trainers, monitors, checkpoints, interrupts, logging and history."""

import glob
import io
import logging
import os
import re
import subprocess
import sys

import numpy as np
import pytensor.tensor as TT
import pytest

import theanets
from theanets import optimizers, trainer, util

RNG = np.random.RandomState(11)
X = RNG.randn(24, 6).astype('f')
Y = RNG.randn(24, 2).astype('f')
LABELS = RNG.randint(3, size=24).astype('i')

#: Validating every epoch makes the best parameters, restored at the end, the trained ones.
QUICK = dict(algo='sgd', learning_rate=1e-2, max_updates=2, batch_size=8, validate_every=1)


def values(net):
    return {p.name: p.get_value().copy() for p in net.params}


def assert_same(first, second):
    assert sorted(first) == sorted(second)
    for name in first:
        np.testing.assert_array_equal(first[name], second[name], err_msg=name)


def stages(caplog):
    return [r.getMessage() for r in caplog.records if r.getMessage().startswith('layerwise')]


# ----- keywords and routing ---------------------------------------------------------------

@pytest.mark.parametrize('algo', ['rmsprop', 'layerwise', 'sample'])
def test_unknown_train_keyword_names_the_closest(algo):
    net = theanets.Regressor([6, 2])
    with pytest.raises(TypeError, match="min_improvment.*'min_improvement'"):
        net.train([X, Y], algo=algo, min_improvment=0.1)


def test_regularizer_keywords_are_part_of_the_training_loss():
    net = theanets.Regressor([6, (4, 'tanh'), 2])
    ff, p = net.feed_forward(X), values(net)
    mse = ((ff['out:out'] - Y) ** 2).mean()
    hidden_l2 = (ff['hid1:out'] ** 2).mean()
    decay = ((p['hid1.w'] ** 2).mean() + (p['out.w'] ** 2).mean()) / 2
    _, valid = net.train([X, Y], hidden_l2=0.5, weight_decay=2.0, max_gradient_clip=1.0,
                         **dict(QUICK, batch_size=24, max_updates=1))
    # the validation before the first update sees the initial parameters
    assert valid['err'] == pytest.approx(mse, rel=1e-5)
    assert 0.5 * hidden_l2 > 0.01 * mse and 2.0 * decay > 0.01 * mse
    assert valid['loss'] == pytest.approx(mse + 0.5 * hidden_l2 + 2.0 * decay, rel=1e-5)


def test_hidden_l2_changes_the_trained_parameters():
    def train(**kwargs):
        net = theanets.Regressor([6, (4, 'tanh'), 2], rng=3)
        net.train([X, Y], **dict(QUICK, learning_rate=0.1, **kwargs))
        return values(net), net.feed_forward(X)['hid1:out']

    plain, plain_hidden = train()
    shrunk, shrunk_hidden = train(hidden_l2=1.0)
    assert not np.allclose(shrunk['hid1.w'], plain['hid1.w'])
    assert (shrunk_hidden ** 2).mean() < (plain_hidden ** 2).mean()


def test_algorithm_keyword_is_deprecated():
    net = theanets.Regressor([6, 2])
    with pytest.warns(DeprecationWarning, match='algo=') as record:
        net.train([X, Y], algorithm='sgd', max_updates=1)
    assert record[0].filename == __file__
    assert len(net.history) == 1


@pytest.mark.parametrize('algo, subalgo, message', [
    ('rmsprob', 'rmsprop', "did you mean 'rmsprop'"),
    ('layerwise', 'adamm', "did you mean 'adam'"),
    (42, 'sgd', 'itertrain'),
])
def test_unknown_algorithms(algo, subalgo, message):
    net = theanets.Regressor([6, 2])
    with pytest.raises(util.ConfigurationError, match=message):
        net.train([X, Y], algo=algo, subalgo=subalgo)


@pytest.mark.parametrize('algo', ['sgd', 'adam', 'layerwise'])
def test_zero_learning_rate_trains_nothing(algo):
    net = theanets.Regressor([6, 5, 4, 2])
    before = values(net)
    net.train([X, Y], **dict(QUICK, algo=algo, learning_rate=0.0, momentum=0.9))
    assert len(net.history) == 2 * (2 if algo == 'layerwise' else 1)
    assert_same(values(net), before)


def test_object_with_itertrain_is_used_directly():
    class Trainer(object):
        def itertrain(self, train, valid=None, **kwargs):
            self.seen = train, kwargs
            for i in range(3):
                yield {'loss': i}, {'loss': -i}

    custom = Trainer()
    net = theanets.Regressor([6, 2])
    result = net.train([X, Y], algo=custom, anything=1)
    assert custom.seen[1] == {'anything': 1}
    assert net.history == [({'loss': i}, {'loss': -i}) for i in range(3)]
    assert result == net.history[-1]


# ----- sample ---------------------------------------------------------------------------------

def is_sample(vector, data):
    """True if ``vector`` is a unit-norm copy of some row of ``data``."""
    rows = data / np.sqrt((data * data).sum(axis=1, keepdims=True))
    return np.isclose(np.sqrt((vector * vector).sum()), 1, atol=1e-5) and \
        np.abs(rows - vector).max(axis=1).min() < 1e-5


def test_sample_trainer_regressor():
    net = theanets.Regressor([6, 4, 2])
    before = values(net)
    result = net.train([X, Y], algo='sample')
    assert result == ({'loss': 0}, {'loss': 0}) and len(net.history) == 1
    w, out = net.find('hid1', 'w').get_value(), net.find('out', 'w').get_value()
    assert all(is_sample(w[:, j], X) for j in range(w.shape[1]))
    assert all(is_sample(out[i], Y) for i in range(out.shape[0]))
    assert_same({n: v for n, v in values(net).items() if n.endswith('.b')},
                {n: v for n, v in before.items() if n.endswith('.b')})


def test_sample_trainer_autoencoder_pads_small_data():
    net = theanets.Autoencoder([6, 10, 6])
    net.train([X[:4]], algo='sample')
    w, out = net.find('hid1', 'w').get_value(), net.find('out', 'w').get_value()
    norms = np.sqrt((w * w).sum(axis=0))
    np.testing.assert_allclose(norms, 1, rtol=1e-5)
    assert sum(is_sample(w[:, j], X[:4]) for j in range(10)) == 4
    assert sum(is_sample(out[i], X[:4]) for i in range(10)) == 4


# ----- layerwise ------------------------------------------------------------------------------

def test_layerwise_untied_stages(caplog):
    net = theanets.Regressor([6, 5, 4, 3, 2])
    layers = list(net.layers)
    before = values(net)
    caplog.set_level(logging.INFO, logger='theanets')
    net.train([X, Y], **dict(QUICK, algo='layerwise', subalgo='sgd'))
    assert stages(caplog) == [
        'layerwise: training in -> hid1 -> lwout',
        'layerwise: training in -> hid1 -> hid2 -> lwout',
        'layerwise: training in -> hid1 -> hid2 -> hid3 -> out',
    ]
    assert len(net.history) == 6
    assert net.layers == layers
    assert [l.output_name for l in net.losses] == ['out:out']
    assert 'lwout:out' not in net.feed_forward(X)
    assert all(not np.array_equal(v, before[n]) for n, v in values(net).items())


def test_layerwise_tied_autoencoder(caplog):
    net = theanets.Autoencoder([6, 5, 4, ('tied', 5), ('tied', 6)])
    layers = list(net.layers)
    out_inputs = list(net.layers[-1]._input_shapes)
    caplog.set_level(logging.INFO, logger='theanets')
    seen = []
    for _ in net.itertrain([X], **dict(QUICK, algo='supervised', subalgo='sgd')):
        assert net.layers == layers
        seen.append(values(net))
    assert stages(caplog) == ['layerwise: training in -> hid1 -> out',
                              'layerwise: training in -> hid1 -> hid2 -> hid3 -> out']
    # the first stage trains the real decoder's bias, reading hid1 instead of hid3
    assert not np.array_equal(seen[1]['out.b'], seen[0]['out.b'])
    assert list(net.layers[-1]._input_shapes) == out_inputs == ['hid3:out']
    assert net.predict(X).shape == X.shape


def test_layerwise_never_changes_the_network():
    net = theanets.Regressor([6, 5, 4, 2])
    layers = list(net.layers)
    losses = list(net.losses)
    params = net.params
    iterator = net.itertrain([X, Y], algo='layerwise', subalgo='sgd', max_updates=3)
    before = values(net)
    next(iterator)
    # the first stage trained hid1 (shared with its sub-network) and a temporary output
    assert net.layers == layers and net.losses == losses and net.params == params
    assert [l.output_name for l in net.losses] == ['out:out']
    after = values(net)
    assert not np.array_equal(after['hid1.w'], before['hid1.w'])
    assert_same({n: after[n] for n in ['hid2.w', 'out.w']},
                {n: before[n] for n in ['hid2.w', 'out.w']})
    iterator.close()
    assert net.layers == layers and 'lwout:out' not in net.feed_forward(X)


@pytest.mark.parametrize('algo, trainer_class', [
    ('layerwise', trainer.SupervisedPretrainer), ('supervised', trainer.SupervisedPretrainer),
    ('Layer', trainer.SupervisedPretrainer), ('sup', trainer.SupervisedPretrainer),
    ('pretrain', trainer.UnsupervisedPretrainer), ('unsupervised', trainer.UnsupervisedPretrainer),
    ('pre', trainer.UnsupervisedPretrainer), ('unsup', trainer.UnsupervisedPretrainer),
    ('sample', trainer.SampleTrainer), ('ADAM', trainer.DownhillTrainer),
])
def test_algorithm_names(algo, trainer_class):
    assert type(trainer.build(algo, 'sgd', theanets.Regressor([6, 2]))) is trainer_class


@pytest.mark.parametrize('algo, near', [
    ('layerwis', "'layerwise'"), ('pretraining', "'pretrain'"), ('supervise', "'supervised'"),
    ('sampl', "'sample'"), ('adamw', "'adam'"),
])
def test_algorithm_names_are_matched_exactly(algo, near):
    # the original took any name starting with "pre", "sup", "layer" or "unsup"
    with pytest.raises(util.ConfigurationError, match='did you mean.*{}'.format(near)):
        theanets.Regressor([6, 2]).train([X, Y], algo=algo)


# ----- pretrain -------------------------------------------------------------------------------

@pytest.fixture
def shadows(monkeypatch):
    """Collect the shadow networks UnsupervisedPretrainer creates."""
    made = []
    original = trainer.UnsupervisedPretrainer._shadow

    def spy(self):
        made.append(original(self))
        return made[-1]

    monkeypatch.setattr(trainer.UnsupervisedPretrainer, '_shadow', spy)
    return made


def test_pretrain_classifier_copies_parameters_back(shadows, caplog):
    net = theanets.Classifier([6, 5, 4, 3])
    before = values(net)
    caplog.set_level(logging.INFO, logger='theanets')
    net.train([X, LABELS], **dict(QUICK, algo='pretrain', subalgo='sgd'))
    shadow, = shadows
    assert [(l.name, type(l).__name__) for l in shadow.layers] == [
        ('in', 'Input'), ('hid1', 'Feedforward'), ('hid2', 'Feedforward'),
        ('tied-hid2', 'Tied'), ('tied-hid1', 'Tied')]
    assert shadow.layers[-1].activation == 'linear'
    assert stages(caplog) == ['layerwise: training in -> hid1 -> tied-hid1',
                              'layerwise: training in -> hid1 -> hid2 -> tied-hid2 -> tied-hid1']
    after = values(net)
    for name in ['hid1.w', 'hid1.b', 'hid2.w', 'hid2.b']:
        assert not np.array_equal(after[name], before[name])
        np.testing.assert_array_equal(after[name], shadow.find(*name.split('.')).get_value())
    assert_same({n: after[n] for n in ['out.w', 'out.b']},
                {n: before[n] for n in ['out.w', 'out.b']})
    assert len(net.history) == 4


def test_pretrain_tied_autoencoder(shadows):
    net = theanets.Autoencoder([6, 5, 4, ('tied', 5), ('tied', 6)])
    before = values(net)
    net.train([X], **dict(QUICK, algo='unsupervised', subalgo='sgd'))
    assert [l.name for l in shadows[0].layers] == ['in', 'hid1', 'hid2', 'tied-hid2', 'tied-hid1']
    after = values(net)
    assert not np.array_equal(after['hid2.w'], before['hid2.w'])
    np.testing.assert_array_equal(after['out.b'], before['out.b'])


def test_pretrain_needs_a_hidden_layer():
    with pytest.raises(util.ConfigurationError, match='hidden layer'):
        theanets.Classifier([6, 3]).train([X, LABELS], algo='pretrain')


# ----- monitors -------------------------------------------------------------------------------

def test_monitor_keys_order_and_values():
    net = theanets.Classifier([6, 5, 3])
    start = net.feed_forward(X)['hid1:out']
    accuracy = net.score(X, LABELS)
    train, valid = net.train(
        [X, LABELS], algo='sgd', max_updates=1, batch_size=8, monitor_gradients=True,
        monitors={'hid1:out': [0.5, 1], '*.w': {'mean': lambda e: e.mean()}, 'no*': 1})
    keys = ['loss', 'err', 'hid1:out<0.5', 'hid1:out<1', 'hid1.w:mean', 'out.w:mean', 'acc',
            'grad(hid1.w)', 'grad(hid1.b)', 'grad(out.w)', 'grad(out.b)']
    assert list(train) == keys and list(valid) == keys
    # the validation before the first epoch sees the initial parameters
    np.testing.assert_allclose(valid['hid1:out<0.5'], (start < 0.5).mean(), rtol=1e-5)
    np.testing.assert_allclose(valid['acc'], accuracy, rtol=1e-5)
    assert all(train[k] >= 0 for k in keys if k.startswith('grad('))


def test_monitors_as_list_of_pairs():
    net = theanets.Regressor([6, 4, 2])
    train, _ = net.train([X, Y], monitors=[('*:pre', 0), ('hid1.b', [('max', TT.max)])],
                         **QUICK)
    assert list(train) == ['loss', 'err', 'hid1:pre<0', 'out:pre<0', 'hid1.b:max']
    np.testing.assert_allclose(train['hid1.b:max'], net.find('hid1', 'b').get_value().max(),
                               atol=0.1)


# ----- checkpoints ------------------------------------------------------------------------------

def test_save_every_epochs(tmp_path):
    path = str(tmp_path / 'net.pkl')
    net = theanets.Regressor([6, 2])
    exists, params = [], []
    for epoch, _ in enumerate(net.itertrain([X, Y], save_every=2, save_progress=path,
                                            **dict(QUICK, max_updates=5, batch_size=24)), 1):
        exists.append(os.path.exists(path))
        if exists[-1]:
            # saved after epochs 2 and 4, i.e. before the 3rd and 5th epochs ran
            saved = 2 * ((epoch - 1) // 2)
            assert_same(values(theanets.Regressor.load(path)), params[saved - 1])
        params.append(values(net))
    assert exists == [False, False, True, True, True]


def test_save_every_minutes_with_timestamp(tmp_path):
    net = theanets.Regressor([6, 2])
    pattern = str(tmp_path / 'net-{}.pkl')
    net.train([X, Y], save_every=1e-9, save_progress=pattern, **QUICK)
    saved = glob.glob(str(tmp_path / 'net-*.pkl'))
    assert saved and all(re.search(r'net-\d+\.pkl$', p) for p in saved)
    theanets.Regressor.load(saved[0])
    net.train([X, Y], save_every=60.0, save_progress=str(tmp_path / 'late.pkl'), **QUICK)
    assert not os.path.exists(str(tmp_path / 'late.pkl'))


def test_save_progress_alone_saves_after_each_validation(monkeypatch):
    saves = []
    monkeypatch.setattr(trainer.ProgressSaver, 'save', lambda self: saves.append(self.count))
    net = theanets.Regressor([6, 2])
    net.train([X, Y], save_progress='unused', **dict(QUICK, max_updates=5, validate_every=2))
    assert saves == [1, 3, 5]


def test_save_progress_to_a_file_handle():
    handle = io.BytesIO()
    net = theanets.Regressor([6, 2])
    for _ in net.itertrain([X, Y], save_every=1, save_progress=handle, **QUICK):
        last = values(net)
    handle.seek(0)
    assert_same(values(theanets.Regressor.load(handle)), last)


@pytest.mark.parametrize('save_every', [-1, 'often', True])
def test_bad_save_every(save_every):
    net = theanets.Regressor([6, 2])
    with pytest.raises(util.ConfigurationError, match='save_every'):
        net.train([X, Y], save_every=save_every, save_progress='x.pkl')


def fail_at_step(monkeypatch, step, error):
    """Make the optimizer's compiled step raise ``error`` at its ``step``-th call."""
    calls = []
    original = optimizers.Optimizer._step

    def step_or_fail(self, batch):
        calls.append(1)
        if len(calls) == step:
            raise error
        return original(self, batch)

    monkeypatch.setattr(optimizers.Optimizer, '_step', step_or_fail)


def test_exception_keeps_previous_checkpoint(tmp_path, monkeypatch):
    path = str(tmp_path / 'net.pkl')
    net = theanets.Regressor([6, 2])
    fail_at_step(monkeypatch, 3, RuntimeError('boom'))
    params = []
    with pytest.raises(RuntimeError, match='boom'):
        for _ in net.itertrain([X, Y], save_every=1, save_progress=path,
                               **dict(QUICK, max_updates=5, batch_size=24)):
            params.append(values(net))
    assert len(params) == 2
    assert_same(values(theanets.Regressor.load(path)), params[1])
    assert os.listdir(str(tmp_path)) == ['net.pkl']


def test_failed_save_leaves_previous_file(tmp_path, monkeypatch):
    path = str(tmp_path / 'net.pkl')
    net = theanets.Regressor([6, 2])
    net.save(path)
    saved = values(net)
    net.find('out', 'w').set_value(np.zeros((6, 2), 'f'))

    def broken_dump(obj, handle, protocol=None):
        handle.write(b'partial')
        raise OSError('disk full')

    monkeypatch.setattr(theanets.persistence.pickle, 'dump', broken_dump)
    with pytest.raises(OSError, match='disk full'):
        net.save(path)
    monkeypatch.undo()
    assert_same(values(theanets.Regressor.load(path)), saved)
    assert os.listdir(str(tmp_path)) == ['net.pkl']


def test_keyboard_interrupt_stops_cleanly_with_best_parameters(monkeypatch):
    net = theanets.Regressor([6, 2])
    fail_at_step(monkeypatch, 3, KeyboardInterrupt())
    params = []
    for _ in net.itertrain([X, Y], **dict(QUICK, max_updates=5, batch_size=24)):
        params.append(values(net))
    assert len(params) == 2
    # the loss fell at every validation, so the best are those after epoch 2
    assert_same(values(net), params[1])


# ----- logging, progress and history ----------------------------------------------------------

def test_library_adds_no_log_handlers_at_import():
    code = ('import logging, theanets; '
            'print(len(logging.getLogger("theanets").handlers)); '
            'theanets.util.enable_default_logging(); theanets.util.enable_default_logging(); '
            'print(len(logging.getLogger("theanets").handlers))')
    out = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True,
                         check=True).stdout.split()
    assert out == ['0', '1']


def test_one_log_line_per_epoch(caplog):
    caplog.set_level(logging.INFO, logger='theanets')
    net = theanets.Regressor([6, 2])
    net.train([X, Y], **dict(QUICK, max_updates=3))
    lines = [r.getMessage() for r in caplog.records if re.match(r'SGD \d+ loss=', r.getMessage())]
    assert [l.split()[1] for l in lines] == ['1', '2', '3']
    assert all('err=' in l for l in lines)


def test_progress_off_prints_nothing(capsys):
    net = theanets.Regressor([6, 2])
    net.train([X, Y], **QUICK)
    assert capsys.readouterr() == ('', '')


def test_progress_without_terminal_prints_one_line_per_validation(capsys):
    net = theanets.Classifier([6, 3])
    net.train([X, LABELS], progress=True, **dict(QUICK, max_updates=4, validate_every=2))
    out, err = capsys.readouterr()
    assert '%|' not in out + err and '\r' not in out + err
    lines = out.splitlines()
    assert [l.split(' - ')[0] for l in lines] == ['SGD 0', 'SGD 2', 'SGD 4']
    assert re.match(r'SGD 2 - \d+\.\d s - loss \d\.\d{4} err \d\.\d{4} acc \d\.\d{4} - '
                    r'valid loss \d\.\d{4} err \d\.\d{4} acc \d\.\d{4}( \*)?$', lines[1]), lines
    assert lines[0].startswith('SGD 0 - valid loss') and lines[0].endswith(' *')


class FakeTerminal(io.StringIO):
    def isatty(self):
        return True


def test_progress_bar_in_a_terminal_keeps_log_lines_whole(monkeypatch):
    terminal = FakeTerminal()
    monkeypatch.setattr(sys, 'stderr', terminal)
    logger = logging.getLogger('theanets')
    handler = logging.StreamHandler(terminal)
    handler.setFormatter(logging.Formatter('LOG %(message)s'))
    monkeypatch.setattr(logger, 'handlers', [handler])
    level = logger.level
    logger.setLevel(logging.INFO)
    try:
        net = theanets.Regressor([6, 2])
        net.train([X, Y], progress=True, **dict(QUICK, max_updates=3))
    finally:
        logger.setLevel(level)
    text = terminal.getvalue()
    # the bar redraws itself with carriage returns; log records are whole lines
    # written above it, never inside it
    logs = [l for l in text.replace('\r', '\n').split('\n') if 'LOG ' in l]
    assert all(l.startswith('LOG ') for l in logs), logs
    assert sum(1 for l in logs if re.match(r'LOG SGD \d loss=', l)) == 3
    final = text.split('\r')[-1]
    assert final.startswith('SGD 3: 100%') and 'loss=' in final and 'val_loss=' in final
    assert logger.handlers == [handler]   # the routing ends with the run


def test_history_holds_one_pair_per_epoch():
    net = theanets.Regressor([6, 2])
    result = net.train([X, Y], **dict(QUICK, max_updates=4))
    assert len(net.history) == 4
    assert all(list(t)[:2] == ['loss', 'err'] and list(v)[:2] == ['loss', 'err']
               for t, v in net.history)
    assert result == net.history[-1]
    net.train([X, Y], **dict(QUICK, max_updates=1))
    assert len(net.history) == 1
