"""Trainers: the strategies ``Network.itertrain`` runs for each ``algo``.

- :class:`DownhillTrainer` runs one optimizer (``'sgd'``, ``'rmsprop'``, ``'adam'``...).
- :class:`SampleTrainer` (``'sample'``) sets weights to samples of the data.
- :class:`SupervisedPretrainer` (``'layerwise'``, also ``'supervised'``,
  ``'layer'``, ``'sup'``) trains a growing stack of layers, then the whole
  network.
- :class:`UnsupervisedPretrainer` (``'pretrain'``, also ``'unsupervised'``,
  ``'pre'``, ``'unsup'``) trains the hidden layers as a tied autoencoder of the
  inputs.

Every trainer has ``itertrain(train, valid=None, **kwargs)``, a generator of
``(train_monitors, valid_monitors)`` pairs; any object with such a method can
be passed as ``algo``. :class:`ProgressSaver` implements ``save_every`` and
``save_progress``.

Trainers use only the network's public methods. The pretrainers train
networks made with :meth:`Network.subnetwork <theanets.graph.Network.subnetwork>`
from the network's own layers: the parameters are shared, and the network
itself is never changed.
"""

import collections
import copy
import logging
import numbers
import time

import numpy as np

from . import checks
from . import layers as layers_module
from . import optimizers
from . import regularizers
from . import util

__all__ = ['DownhillTrainer', 'SampleTrainer', 'SupervisedPretrainer',
           'UnsupervisedPretrainer', 'build', 'check_train_kwargs', 'ProgressSaver']

log = logging.getLogger(__name__)

#: train() keywords the network itself reads (not the optimizer).
NETWORK_KWARGS = {'monitors', 'monitor_gradients', 'rng', 'allow_nonfinite'}


def _optimizer_names():
    return sorted(k for k in optimizers.Optimizer._registry.classes if k != 'optimizer')


def _unknown_name(kind, name, known):
    near = util.closest(str(name).lower(), known)
    return util.ConfigurationError('unknown {} {!r}{}; known: {}'.format(
        kind, name, ' (did you mean {}?)'.format(', '.join(map(repr, near))) if near else '',
        ', '.join(known)))


def _check_algo(algo, what='training algorithm'):
    """Return the optimizer name ``algo`` (lower case), or raise naming the closest ones."""
    name = algo.lower() if isinstance(algo, str) else algo
    if name not in _optimizer_names():
        known = _optimizer_names() + (sorted(set(TRAINERS) | {'sample'})
                                      if what == 'training algorithm' else [])
        raise _unknown_name(what, algo, known)
    return name


def build(algo, subalgo, network):
    """Return the trainer for ``algo``.

    Parameters
    ----------
    algo : str or object with an ``itertrain`` method
        A name of :data:`TRAINERS` or of an optimizer (case-insensitive),
        matched exactly. An object is used as the trainer itself.
    subalgo : str
        The optimizer the layerwise and pretrain trainers run in each stage.
    network : :class:`theanets.Network`

    Raises
    ------
    ConfigurationError
        For an unknown name (the message gives the closest and the known ones).
    """
    if not isinstance(algo, str):
        if hasattr(algo, 'itertrain'):
            return algo
        raise util.ConfigurationError(
            'algo must be an algorithm name or an object with an itertrain method, '
            'got {!r}'.format(algo))
    name = algo.lower()
    if name == 'sample':
        return SampleTrainer(network)
    if name in TRAINERS:
        return TRAINERS[name](_check_algo(subalgo, 'training sub-algorithm (subalgo)'), network)
    return DownhillTrainer(_check_algo(algo), network)


def check_train_kwargs(network, runner, kwargs):
    """Raise TypeError for ``train()`` keywords that nothing reads.

    The message names each unknown keyword and the closest accepted ones.
    Keywords given to a user-supplied trainer object are not checked.
    """
    if isinstance(runner, SampleTrainer):
        optimizer_names = optimizers.hyperparameter_names()
    elif isinstance(runner, (DownhillTrainer, SupervisedPretrainer, UnsupervisedPretrainer)):
        optimizer_names = optimizers.hyperparameter_names(runner.algo)
    else:
        return
    regularizer_names = regularizers.keyword_names()
    valid = NETWORK_KWARGS | regularizer_names | optimizer_names
    for name in kwargs:
        owners = _algorithms_taking(name)
        if name not in valid and owners:
            raise TypeError(
                'train() got {!r}, which is not a hyperparameter of algo={!r} (it belongs '
                'to {}); choose one of those algorithms or drop it'.format(
                    name, getattr(runner, 'algo', 'sample'), ', '.join(owners)))
    util.check_kwargs(kwargs, valid, 'train()')
    table = kwargs.get('regularizers')
    if isinstance(table, dict):
        util.check_kwargs(table, regularizer_names - {'regularizers'},
                          'train(regularizers={...})')
    for name, value in list(kwargs.items()) + list(table.items() if isinstance(table, dict)
                                                   else ()):
        if name in regularizer_names and isinstance(value, numbers.Real) and value < 0:
            raise util.ConfigurationError(
                'train() got {}={}; regularizer weights and noise levels must be >= 0 (0 '
                'turns the regularizer off)'.format(name, value))


def _algorithms_taking(name):
    """Return the optimizer names whose hyperparameters include ``name``."""
    return [algo for algo in _optimizer_names()
            if name in optimizers.hyperparameter_names(algo)]


def _freeze(value):
    """A hashable stand-in for a monitors spec."""
    if isinstance(value, dict):
        return tuple(sorted(((k, _freeze(v)) for k, v in value.items()), key=repr))
    if isinstance(value, (list, tuple)):
        return tuple(_freeze(v) for v in value)
    if callable(value):
        return ('callable', id(value))
    return value


def _graph_kwargs(kwargs):
    names = regularizers.keyword_names() | {'monitors', 'rng'}
    return {k: v for k, v in kwargs.items() if k in names}


def _prepare(network, data, kwargs, name='training'):
    """Check training or validation data before anything is compiled.

    Lists of arrays are checked and converted; a :class:`Dataset` built from
    arrays has its arrays checked; a batch callable has its first batch
    checked (see :func:`theanets.checks.first_batch`). A Dataset wrapping a
    callable is used unchecked.
    """
    allow = kwargs.get('allow_nonfinite', False)
    if isinstance(data, (list, tuple)):
        arrays = checks.dataset(network, data, allow)
        checks.batch_size(kwargs.get('batch_size'), arrays[0].shape[0], name)
        return arrays
    if isinstance(data, optimizers.Dataset):
        if data.shapes is not None:  # built from arrays, not from a callable
            checks.dataset(network, list(data._arrays), allow)
        return data
    if callable(data):
        return checks.first_batch(network, data, allow, name)
    raise util.ConfigurationError(
        '{} data must be a list of arrays such as [x, y], a theanets.optimizers.Dataset '
        'or a callable returning such lists, got {}{}'.format(
            name, type(data).__name__,
            '; wrap a single array in a list: [x]' if hasattr(data, 'shape') else ''))


class DownhillTrainer(object):
    """Train a network with one optimizer, reusing its compiled functions.

    The optimizer is cached on the network (keyed by the graph, losses,
    regularizers and monitors), so training again with other
    hyperparameters does not recompile.

    Parameters
    ----------
    algo : str
        An optimizer name such as ``'rmsprop'``.
    network : :class:`theanets.Network`

    Attributes
    ----------
    optimizer : :class:`theanets.optimizers.Optimizer` or None
        The optimizer of the last :meth:`itertrain` call.
    """

    def __init__(self, algo, network):
        self.algo = algo
        self.network = network
        self.optimizer = None

    def _optimizer(self, kwargs):
        net = self.network
        if not net.params:
            raise util.ConfigurationError(
                '{} has no parameters to train: none of its layers {} has weights; add one '
                'that does, e.g. (2, "tanh")'.format(type(net).__name__, ', '.join(
                    '{!r} ({})'.format(layer.name, type(layer).__name__)
                    for layer in net.layers)))
        graph_kwargs = _graph_kwargs(kwargs)
        regs = regularizers.from_kwargs(net, **graph_kwargs)
        gradients = bool(kwargs.get('monitor_gradients'))
        losses = tuple((type(l).__name__, l.weight, l.output_name, id(l)) for l in net.losses)
        key = ('optimizer', self.algo, losses, _freeze(graph_kwargs.get('monitors')), gradients)

        def build():
            for loss in net.losses:
                loss.log()
            for reg in regs:
                reg.log()
            return optimizers.build(
                self.algo, loss=net.loss(**graph_kwargs), params=net.params,
                inputs=net.variables, updates=net.updates(**graph_kwargs),
                monitors=net.monitors(**graph_kwargs), monitor_gradients=gradients)

        return net.compiled(key, build, regs)

    def itertrain(self, train, valid=None, **kwargs):
        """Return a generator of ``(train_monitors, valid_monitors)``, one pair per epoch.

        Data and keywords are checked (and the optimizer compiled) before
        this returns; training runs as the generator is consumed.
        """
        net = self.network
        train = _prepare(net, train, kwargs)
        valid = _prepare(net, valid, kwargs, 'validation') if valid is not None else None
        self.optimizer = self._optimizer(kwargs)
        hyper = {k: v for k, v in kwargs.items() if k not in _graph_kwargs(kwargs)
                 and k not in NETWORK_KWARGS}
        hyper['rng'] = kwargs.get('rng', net.rng)
        return self.optimizer.iterate(train, valid, **hyper)

    @property
    def interrupted(self):
        """True if the last run was stopped by KeyboardInterrupt (when the optimizer says so)."""
        return bool(getattr(self.optimizer, 'interrupted', False))


# ----- sample ------------------------------------------------------------------------

def _arrays(data):
    """Return the arrays of a dataset given as a list, a Dataset or a callable."""
    if callable(data) and not isinstance(data, optimizers.Dataset):
        return [np.asarray(a) for a in data()]
    if isinstance(data, optimizers.Dataset):
        return [np.concatenate(parts) for parts in zip(*list(data))]
    return [np.asarray(a) for a in data]


def _unit_rows(rows):
    norms = np.sqrt((rows * rows).sum(axis=1, keepdims=True))
    return rows / np.where(norms > 0, norms, 1)


def _sample_rows(data, count, rng):
    """Return ``count`` unit-norm rows sampled from ``data``.

    Rows are drawn without replacement; when ``data`` has fewer rows, the rest
    are random rows plus Gaussian noise with the data's per-column std.
    """
    data = np.asarray(data, dtype='float64').reshape(len(data), -1)
    rows = data[rng.permutation(len(data))[:count]]
    if len(rows) < count:
        extra = data[rng.randint(len(data), size=count - len(rows))]
        extra = extra + data.std(axis=0) * rng.randn(*extra.shape)
        rows = np.vstack([rows, extra])
    return _unit_rows(rows).astype(util.FLOAT)


class SampleTrainer(object):
    """Set weights to unit-norm samples of the training data (``algo='sample'``).

    - Weight matrices of the output layer whose column count equals the
      target width (the input width for autoencoders) get sampled target
      vectors as rows (decoding weights).
    - Every other weight matrix whose row count equals the input width gets
      sampled input vectors as columns (encoding weights).

    Yields one ``({'loss': 0}, {'loss': 0})`` pair; other weights are unchanged.
    """

    def __init__(self, network):
        self.network = network

    def itertrain(self, train, valid=None, **kwargs):
        net = self.network
        arrays = _arrays(_prepare(net, train, kwargs))
        rng = util.as_rng(kwargs['rng']) if isinstance(
            kwargs.get('rng'), (int, np.integer, np.random.RandomState)) else net.rng
        n_in = len(net.inputs)
        x = arrays[0].reshape(len(arrays[0]), -1)
        targets = arrays[n_in] if len(arrays) > n_in else arrays[0]
        done = set()
        if np.issubdtype(targets.dtype, np.floating):
            y = targets.reshape(len(targets), -1)
            for param in net.layers[-1].params:
                shape = param.get_value(borrow=True).shape
                if len(shape) == 2 and shape[1] == y.shape[1]:
                    log.info('sampling %s %s from targets', param.name, shape)
                    param.set_value(_sample_rows(y, shape[0], rng))
                    done.add(param)
        for param in net.params:
            shape = param.get_value(borrow=True).shape
            if param not in done and len(shape) == 2 and shape[0] == x.shape[1]:
                log.info('sampling %s %s from inputs', param.name, shape)
                param.set_value(_sample_rows(x, shape[1], rng).T)
        zero = collections.OrderedDict(loss=0.0)
        yield zero, collections.OrderedDict(loss=0.0)


# ----- layerwise -------------------------------------------------------------------

def _seed(network):
    """Draw a seed for a temporary layer from the network's random state."""
    return int(network.rng.randint(2 ** 31 - 1))


def _rewired(layer, source):
    """Return a copy of ``layer`` reading ``source``'s output, sharing its parameters.

    The copy keeps the layer's activation object (and so its parameters).
    """
    twin = copy.copy(layer)
    twin.inputs = source.output_name
    twin.activation = layer.activate
    return twin


class SupervisedPretrainer(object):
    """Train growing prefixes of the network, then all of it (``algo='layerwise'``).

    For a network of L layers without tied layers there are L - 2 stages
    (at least one): stage i trains ``layers[:i + 1]`` followed by a temporary
    output layer ``'lwout'`` of the real output's size and activation, and
    the last stage trains the whole network.

    A network with tied layers (a mirrored autoencoder such as
    ``[6, 5, 4, ('tied', 5), ('tied', 6)]``) grows encoder/decoder pairs
    instead: stage i trains the encoder ``layers[:i + 1]`` with the tied
    decoders of those layers, for L // 2 stages in all.

    Each stage runs ``algo`` (the ``subalgo`` of ``train``) to completion and
    yields its monitors. Stages before the last train a network made by
    :meth:`~theanets.graph.Network.subnetwork`: the network's own layers
    (sharing their parameters) plus the temporary ones; the network itself
    is not changed.
    """

    def __init__(self, algo, network):
        self.algo = algo
        self.network = network

    def _stages(self):
        layers = list(self.network.layers)
        if any(isinstance(l, layers_module.Tied) for l in layers):
            for i in range(1, len(layers) // 2):
                yield self._tied_stage(layers, i)
        else:
            for i in range(1, len(layers) - 2):
                yield self._tap_stage(layers, i)
        yield self.network

    def _tap_stage(self, layers, i):
        out = layers[-1]
        tap = layers_module.Feedforward(
            size=out.output_size, inputs=layers[i].output_name, name='lwout',
            activation=out.activation, rng=_seed(self.network))
        return self.network.subnetwork(layers[:i + 1] + [tap])

    def _tied_stage(self, layers, i):
        stage = layers[:i + 1]
        for partner in reversed(layers[1:i + 1]):
            decoders = [l for l in layers
                        if isinstance(l, layers_module.Tied) and l.partner is partner]
            if decoders:
                stage.append(_rewired(decoders[-1], stage[-1]))
            else:
                stage.append(layers_module.Tied(
                    partner=partner, inputs=stage[-1].output_name, name='lw-' + partner.name,
                    activation=partner.activation, rng=_seed(self.network)))
        return self.network.subnetwork(stage)

    def itertrain(self, train, valid=None, **kwargs):
        for stage in self._stages():
            log.info('layerwise: training %s', ' -> '.join(l.name for l in stage.layers))
            runner = DownhillTrainer(self.algo, stage)
            yield from runner.itertrain(train, valid, **kwargs)
            if runner.interrupted:
                break


# ----- unsupervised pretraining ---------------------------------------------------------

class UnsupervisedPretrainer(object):
    """Pretrain the hidden layers as a tied autoencoder of the inputs (``algo='pretrain'``).

    A "shadow" autoencoder is made of the network's encoding layers (every
    layer before the output layer, up to the first tied layer; their
    parameters are shared), followed by new tied layers mirroring them (the
    last one linear), with a squared-error loss against the input. It is
    trained with the layerwise trainer on the input arrays only; the
    network's encoding parameters are then the pretrained ones.
    """

    def __init__(self, algo, network):
        self.algo = algo
        self.network = network

    def _encoder(self):
        net = self.network
        if len(net.inputs) != 1:
            raise util.ConfigurationError(
                'pretrain needs a network with exactly one input layer, got {}'.format(
                    [l.name for l in net.layers if isinstance(l, layers_module.Input)]))
        encoder = []
        for layer in net.layers[:-1]:
            if isinstance(layer, layers_module.Tied):
                break
            encoder.append(layer)
        if len(encoder) < 2:
            raise util.ConfigurationError(
                'pretrain needs at least one hidden layer before the output layer; '
                '{} has layers {}'.format(type(net).__name__, [l.name for l in net.layers]))
        for layer in encoder[1:]:
            names = [p.name for p in layer.params]
            try:
                layer.input_name
            except util.ConfigurationError:
                names = None
            if names is None or '{}.w'.format(layer.name) not in names:
                raise util.ConfigurationError(
                    'pretrain mirrors each hidden layer with a tied layer, which needs one '
                    'input and a weight matrix "w"; layer {!r} ({}) has parameters {}; use '
                    'algo="layerwise" instead'.format(
                        layer.name, type(layer).__name__, [p.name for p in layer.params]))
        return encoder

    def _shadow(self):
        net = self.network
        encoder = self._encoder()
        layers = list(encoder)
        hidden = encoder[1:]
        for i, partner in enumerate(reversed(hidden)):
            last = i == len(hidden) - 1
            layers.append(layers_module.Tied(
                partner=partner, inputs=layers[-1].output_name, name='tied-' + partner.name,
                activation='linear' if last else partner.activation, rng=_seed(net)))
        log.info('creating shadow network')
        return net.subnetwork(layers, loss=dict(form='mse', target=net.inputs[0],
                                                weighted=False))

    def itertrain(self, train, valid=None, **kwargs):
        net = self.network
        shadow = self._shadow()
        n_in = len(net.inputs)
        inputs = _inputs_only(train, n_in)
        valid = _inputs_only(valid, n_in) if valid is not None else None
        try:
            yield from SupervisedPretrainer(self.algo, shadow).itertrain(inputs, valid, **kwargs)
        finally:
            for layer in shadow.layers:
                if any(layer is mine for mine in net.layers):
                    for param in layer.params:
                        log.info('pretrained parameter %s', param.name)


#: Trainer classes by the names ``algo`` accepts (besides 'sample' and the optimizers).
TRAINERS = {
    'layerwise': SupervisedPretrainer, 'supervised': SupervisedPretrainer,
    'layer': SupervisedPretrainer, 'sup': SupervisedPretrainer,
    'pretrain': UnsupervisedPretrainer, 'unsupervised': UnsupervisedPretrainer,
    'pre': UnsupervisedPretrainer, 'unsup': UnsupervisedPretrainer,
}


def _inputs_only(data, n_inputs):
    if callable(data) and not isinstance(data, optimizers.Dataset):
        return lambda: list(data())[:n_inputs]
    return _arrays(data)[:n_inputs]


# ----- checkpoints ---------------------------------------------------------------------

class ProgressSaver(object):
    """Save a network during training (``save_every`` and ``save_progress``).

    Parameters
    ----------
    network : :class:`theanets.Network`
    save_every : int or float
        An int n > 0 saves after every n-th epoch; a float saves when at
        least that many minutes passed since the last save; 0 saves after
        every epoch that follows a new validation.
    save_progress : str, file or None
        A path (a ``'{}'`` in it is replaced by the integer Unix time) or a
        writable binary file, rewritten from its start at each save. None
        turns saving off.
    """

    def __init__(self, network, save_every=0, save_progress=None):
        if isinstance(save_every, bool) or not isinstance(save_every, numbers.Real) \
                or save_every < 0:
            raise util.ConfigurationError(
                'save_every must be an int (epochs) or a float (minutes) >= 0, got {!r}'.format(
                    save_every))
        if save_progress is not None and not isinstance(save_progress, str) and \
                not hasattr(save_progress, 'write') and not hasattr(save_progress, '__fspath__'):
            raise util.ConfigurationError(
                'save_progress must be a path or a writable file, got {!r}'.format(
                    save_progress))
        self.network = network
        self.save_every = save_every
        self.target = save_progress
        self.count = 0
        self.last = time.time()
        self._validation = None

    def tick(self, monitors=None):
        """Count one epoch (its ``(train, valid)`` monitors) and save if one is due."""
        if self.target is None:
            return
        self.count += 1
        every = self.save_every
        if isinstance(every, float):
            due = time.time() - self.last >= 60 * every
        elif every > 0:
            due = self.count % every == 0
        else:
            valid = monitors[1] if monitors is not None else object()
            due = valid is not self._validation
            self._validation = valid
        if due:
            self.save()

    def save(self):
        """Save the network now (atomically when the target is a path)."""
        target = self.target
        if hasattr(target, 'write'):
            if hasattr(target, 'seekable') and target.seekable():
                target.seek(0)
                target.truncate()
            self.network.save(target)
            target.flush()
        else:
            target = str(target.__fspath__() if hasattr(target, '__fspath__') else target)
            self.network.save(target.replace('{}', str(int(time.time()))))
        self.last = time.time()
