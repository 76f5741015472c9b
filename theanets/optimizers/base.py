"""The :class:`Optimizer` base class: hyperparameters, compiled steps, early stopping.

An optimizer turns a scalar loss expression and a list of shared parameters
into a compiled update function, and runs it over mini-batches of a
:class:`~theanets.optimizers.dataset.Dataset` until the validation loss stops
improving. Algorithms (see :mod:`theanets.optimizers.algorithms`) only say how
one parameter's step is computed from its gradient.

Numeric hyperparameters (``learning_rate``, ``momentum``, decay half-lives,
clipping limits, ...) live in shared scalars, so calling :meth:`Optimizer.iterate`
again with other values reuses the compiled function. Only structural choices
(momentum on or off, Nesterov momentum, the kind of gradient clipping and, for
ESGD, ``hv_method``) select a different compiled function.
"""

import collections
import logging
import numbers

import numpy as np
import pytensor
import pytensor.tensor as pt
from pytensor.compile.sharedvalue import SharedVariable
from pytensor.graph.basic import Constant, Variable
from pytensor.graph.traversal import ancestors
from pytensor.tensor.shape import SpecifyShape

from .. import backend, util
from . import progress
from .dataset import Dataset

__all__ = ['Optimizer', 'NonFiniteLossError', 'Hyperparameter', 'build',
           'hyperparameter_names']

log = logging.getLogger(__name__)


class NonFiniteLossError(util.Error, FloatingPointError):
    """The training loss became NaN or infinite (the optimizer diverged)."""


# -- hyperparameter declarations ----------------------------------------------

Hyperparameter = collections.namedtuple('Hyperparameter', 'name default check shared')
Hyperparameter.__doc__ = """A named optimizer setting.

``check(name, value)`` raises ConfigurationError for a bad value and returns the
normalized value; ``shared`` says whether the value lives in a shared scalar
(numeric settings that can change without recompiling)."""


def _fail(name, value, expected):
    raise util.ConfigurationError('{} must be {}, got {!r}'.format(name, expected, value))


def _is_real(value):
    return isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_))


def _is_int(value):
    return isinstance(value, numbers.Integral) and not isinstance(value, (bool, np.bool_))


def positive(name, value):
    if not (_is_real(value) and value > 0 and np.isfinite(value)):
        _fail(name, value, 'a number > 0')
    return float(value)


def nonnegative(name, value):
    if not (_is_real(value) and value >= 0 and np.isfinite(value)):
        _fail(name, value, 'a number >= 0')
    return float(value)


def fraction(name, value):
    if not (_is_real(value) and 0 <= value < 1):
        _fail(name, value, 'a number in [0, 1)')
    return float(value)


def flag(name, value):
    if not isinstance(value, (bool, np.bool_)):
        _fail(name, value, 'True or False')
    return bool(value)


def at_least(minimum, optional=False):
    """Return a check accepting integers >= ``minimum`` (and None if ``optional``)."""
    def check(name, value):
        if optional and value is None:
            return None
        if not (_is_int(value) and value >= minimum):
            _fail(name, value, 'an integer >= {}{}'.format(
                minimum, ' or None (no limit)' if optional else ''))
        return int(value)
    return check


def one_of(*choices):
    """Return a check accepting one of the given strings (case-insensitive)."""
    def check(name, value):
        if not (isinstance(value, str) and value.lower() in choices):
            _fail(name, value, 'one of ' + ', '.join(repr(c) for c in choices))
        return value.lower()
    return check


def anything(name, value):
    return value


H = Hyperparameter

COMMON = (
    H('learning_rate', 1e-4, nonnegative, True),
    H('momentum', 0.0, fraction, True),
    H('nesterov', False, flag, False),
    H('patience', 5, at_least(0), False),
    H('validate_every', 10, at_least(1), False),
    H('min_improvement', 0.0, nonnegative, False),
    H('max_gradient_norm', 0.0, nonnegative, True),
    H('max_gradient_elem', 0.0, nonnegative, True),
    H('max_updates', None, at_least(1, optional=True), False),
    H('progress', False, flag, False),
)

# Used only when train/valid are raw data that iterate() wraps in a Dataset.
DATA = (
    H('batch_size', 32, anything, False),
    H('iteration_size', None, anything, False),
    H('train_batches', None, anything, False),
    H('valid_batches', None, anything, False),
    H('axis', 0, anything, False),
    H('rng', None, anything, False),
)

SYNONYMS = {'max_gradient_clip': 'max_gradient_elem', 'gradient_clip': 'max_gradient_elem'}


def _float(value):
    return np.asarray(value, dtype=backend.FLOAT)


def _unspecified(grad):
    """Return ``grad`` without the shape assertion ``pytensor.grad`` may end it with.

    A gradient of a parameter with a static shape comes back wrapped in
    ``SpecifyShape`` when PyTensor cannot infer that shape itself (e.g. the
    weights of a layer fed by the batch). That wrapper keeps PyTensor from
    folding ``mu * vel - lr * dot(x.T, d)`` into one in-place ``Gemm`` on the
    velocity: the update ran as a product, then a scalar loop over the
    weights (0.8 ms a step for 784 x 512 weights, against 0.08 ms for the
    addition left after a ``Gemm``). The update gets the assertion back when
    its type is matched to the parameter's.
    """
    if grad.owner is not None and isinstance(grad.owner.op, SpecifyShape):
        return grad.owner.inputs[0]
    return grad


def _cast_like(expr, var):
    """Cast a tensor update to the dtype of the variable it replaces."""
    dtype = getattr(var, 'dtype', None)
    if dtype is None or getattr(expr, 'dtype', dtype) == dtype:
        return expr
    return pt.cast(expr, dtype)


# -- the optimizer --------------------------------------------------------------

class Optimizer(util.Registrar):
    """Base class for gradient-based optimizers.

    Parameters
    ----------
    loss : scalar PyTensor expression
        The quantity to minimize.
    params : list of shared variables
        The parameters to update.
    inputs : list of symbolic variables
        The graph inputs, in the order of the arrays in each mini-batch.
    updates : list of (shared, expression) pairs, optional
        Extra updates applied at every training step and evaluation.
    monitors : list of (name, scalar expression) pairs or dict, optional
        Extra values to report next to ``'loss'``.
    monitor_gradients : bool, optional
        Also report ``'grad(<param name>)'``, the sum of squared gradient
        elements of each parameter.

    Notes
    -----
    Subclasses declare their own settings in ``HYPERPARAMETERS`` and implement
    :meth:`_updates_for`, which yields ``(param, delta)`` (the step
    subtracted from the parameter) plus ``(state, new_value)`` pairs for any
    accumulators they keep.
    """

    _registry = util.Registry('optimizer')

    HYPERPARAMETERS = ()

    def __init__(self, loss, params, inputs, updates=(), monitors=(),
                 monitor_gradients=False):
        self.loss = self._check_loss(loss)
        self.params = self._check_params(params)
        self.inputs = self._check_inputs(inputs)
        self.updates = self._check_updates(updates)
        self.monitors = self._check_monitors(monitors)
        self.monitor_gradients = bool(monitor_gradients)
        self.monitor_names = ['loss'] + [name for name, _ in self.monitors]
        if self.monitor_gradients:
            self.monitor_names += ['grad({})'.format(p.name) for p in self.params]
        self.config = {h.name: h.default for h in self._specs()}
        self._shared = {h.name: pytensor.shared(_float(h.default), name=h.name)
                        for h in self._specs() if h.shared}
        self._gradients = None
        self._eval_fn = None
        self._compiled = {}   # structure key -> (function, [(state, initializer)])
        self._staged = []     # this optimizer's functions switch to C code together
        self._new_state = None
        self._building = None   # structure dict while a step graph is being built
        #: The compiled training step of the latest :meth:`iterate` call: called
        #: with one mini-batch (arrays in ``inputs`` order), it updates the
        #: parameters and returns ``[loss, monitors...]``. None before.
        self.function = None
        self._best = None
        self._best_loss = None
        self._failures = 0

    # -- input checks ----------------------------------------------------------

    @staticmethod
    def _check_loss(loss):
        if not isinstance(loss, Variable) or loss.ndim != 0:
            raise util.ConfigurationError(
                'loss must be a scalar PyTensor expression, got {!r}'.format(loss))
        return loss

    @staticmethod
    def _check_params(params):
        params = list(params)
        if not params:
            raise util.ConfigurationError('no parameters to optimize')
        for i, param in enumerate(params):
            if not isinstance(param, SharedVariable):
                raise util.ConfigurationError(
                    'parameter {} must be a shared variable, got {!r}'.format(i, param))
        if len(set(params)) != len(params):
            raise util.ConfigurationError('a parameter appears twice in params')
        return params

    @staticmethod
    def _check_inputs(inputs):
        inputs = list(inputs)
        for i, var in enumerate(inputs):
            if not isinstance(var, Variable) or isinstance(var, (SharedVariable, Constant)):
                raise util.ConfigurationError(
                    'input {} must be a symbolic (non-shared) variable, got {!r}'.format(i, var))
        return inputs

    @staticmethod
    def _check_updates(updates):
        if isinstance(updates, dict):
            updates = updates.items()
        return [tuple(pair) for pair in updates]

    @staticmethod
    def _check_monitors(monitors):
        if isinstance(monitors, dict):
            monitors = monitors.items()
        monitors = [(name, expr) for name, expr in monitors]
        names = [name for name, _ in monitors]
        for name, expr in monitors:
            if not isinstance(name, str) or name == 'loss' or names.count(name) > 1:
                raise util.ConfigurationError(
                    'monitor names must be unique strings other than "loss", got {!r}'.format(
                        name))
            if not isinstance(expr, Variable) or expr.ndim != 0:
                raise util.ConfigurationError(
                    'monitor {!r} must be a scalar expression, got {!r}'.format(name, expr))
        return monitors

    # -- hyperparameters -------------------------------------------------------------

    @classmethod
    def _specs(cls):
        return COMMON + DATA + tuple(cls.HYPERPARAMETERS)

    @classmethod
    def hyperparameter_names(cls, algo=None):
        """Return the set of keyword arguments :meth:`iterate` accepts.

        Parameters
        ----------
        algo : str or Optimizer subclass, optional
            An algorithm name such as ``'rmsprop'``. By default, the class this
            is called on; on :class:`Optimizer` itself, the union over all
            registered algorithms.

        Returns
        -------
        set of str
        """
        klass = cls if algo is None else cls.get_class(algo)
        if klass is Optimizer:
            classes = set(Optimizer._registry.classes.values())
        else:
            classes = [klass]
        names = set(SYNONYMS) | {'monitor_gradients'}
        for c in classes:
            names |= {h.name for h in c._specs()}
        return names

    def _configure(self, kwargs):
        """Validate ``kwargs`` and return the complete settings for one iterate() call."""
        self._reject_unknown(kwargs)
        kwargs = dict(kwargs)
        for alias, name in SYNONYMS.items():
            if alias in kwargs:
                value = kwargs.pop(alias)
                if name in kwargs and kwargs[name] != value:
                    raise util.ConfigurationError(
                        '{} = {!r} conflicts with its synonym {} = {!r}'.format(
                            alias, value, name, kwargs[name]))
                kwargs[name] = value
        monitor_gradients = kwargs.pop('monitor_gradients', self.monitor_gradients)
        if bool(monitor_gradients) != self.monitor_gradients:
            raise util.ConfigurationError(
                'monitor_gradients={!r} differs from the value the optimizer was built '
                'with ({}); pass it to build()'.format(monitor_gradients,
                                                     self.monitor_gradients))
        config = {}
        for spec in self._specs():
            config[spec.name] = spec.check(spec.name, kwargs.get(spec.name, spec.default))
        return self._adjust(config)

    def _adjust(self, config):
        """Let a subclass force settings (NAG forces Nesterov momentum)."""
        return config

    def _reject_unknown(self, kwargs):
        mine = self.hyperparameter_names()
        algo = type(self).__name__.lower()
        for name in kwargs:
            if name in mine:
                continue
            users = sorted(key for key, c in self._registry.classes.items()
                           if name in c.hyperparameter_names())
            if users:
                raise TypeError('{} is not a hyperparameter of {!r} (it belongs to {})'.format(
                    name, algo, ', '.join(users)))
        util.check_kwargs(kwargs, mine, '{}.iterate()'.format(type(self).__name__))

    def _apply(self, config, key):
        """Load ``config`` into the shared scalars and reset the algorithm's state."""
        self.config = config
        for name in sorted(config):
            log.debug('setting %s = %s', name, config[name])
        for name, var in self._shared.items():
            var.set_value(_float(config[name]))
        for var, initializer in self._compiled[key][1]:
            var.set_value(initializer())

    def _hp(self, name):
        """Return the shared scalar holding a numeric hyperparameter."""
        return self._shared[name]

    def _structure(self, config):
        """Return the settings that change the compiled graph, as a hashable key."""
        if config['max_gradient_elem'] > 0:
            clip = 'elem'
        elif config['max_gradient_norm'] > 0:
            clip = 'norm'
        else:
            clip = None
        momentum = config['momentum'] > 0
        return (('momentum', momentum), ('nesterov', momentum and config['nesterov']),
                ('clip', clip))

    # -- graph construction ----------------------------------------------------------

    def _raw_gradients(self):
        if self._gradients is None:
            connected = set(ancestors([self.loss]))
            for param in self.params:
                if param not in connected:
                    log.warning('loss does not depend on parameter %s; it will not change',
                                param.name)
            self._gradients = [_unspecified(g) for g in pytensor.grad(
                self.loss, self.params, disconnected_inputs='ignore')]
        return self._gradients

    def _monitor_exprs(self):
        exprs = [self.loss] + [expr for _, expr in self.monitors]
        if self.monitor_gradients:
            exprs += [pt.sqr(g).sum() for g in self._raw_gradients()]
        return exprs

    def _clip(self, grad, mode):
        """Limit a gradient elementwise (``'elem'``) or by its L2 norm (``'norm'``)."""
        if mode == 'elem':
            limit = self._hp('max_gradient_elem')
            return pt.clip(grad, -limit, limit)
        if mode == 'norm':
            limit = self._hp('max_gradient_norm')
            norm = pt.sqrt(pt.sqr(grad).sum())
            return grad * (limit / pt.maximum(norm, limit))
        return grad

    def _shared_like(self, param, suffix, initializer=None):
        """Create an accumulator shaped like ``param``; it is reset at each iterate().

        Parameters
        ----------
        param : shared variable
        suffix : str
            Appended to the parameter name, e.g. ``'vel'``.
        initializer : callable returning an array, optional
            Defaults to zeros like the parameter.
        """
        if initializer is None:
            def initializer():
                return np.zeros_like(param.get_value(borrow=True))
        var = pytensor.shared(initializer(), name='{}_{}'.format(param.name, suffix))
        self._new_state.append((var, initializer))
        return var

    def _shared_scalar(self, name, value=0.0):
        """Create a scalar accumulator (e.g. a step counter) reset at each iterate()."""
        def initializer():
            return _float(value)
        var = pytensor.shared(initializer(), name=name)
        self._new_state.append((var, initializer))
        return var

    def _updates_for(self, param, grad):
        """Yield ``(param, delta)`` and ``(state, new_value)`` pairs for one parameter."""
        raise NotImplementedError

    def _step_updates(self):
        """Return updates applied once per step, not per parameter (e.g. a counter)."""
        return []

    def _momentum(self, param, delta, structure):
        """Return the updates that apply ``delta`` to ``param``, with momentum if enabled."""
        if not structure['momentum']:
            return [(param, param - delta)]
        mu = self._hp('momentum')
        vel = self._shared_like(param, 'vel')
        if structure['nesterov']:
            vel_t = mu * mu * vel - (1 + mu) * delta
        else:
            vel_t = mu * vel - delta
        return [(vel, vel_t), (param, param + vel_t)]

    def _build_updates(self, key):
        structure = self._building = dict(key)
        updates = list(self.updates)
        for param, grad in zip(self.params, self._raw_gradients()):
            grad = self._clip(grad, structure['clip'])
            for var, expr in self._updates_for(param, grad):
                if var is param:
                    updates.extend(self._momentum(param, expr, structure))
                else:
                    updates.append((var, expr))
        updates.extend(self._step_updates())
        return [(var, _cast_like(expr, var)) for var, expr in updates]

    def _compile(self, key):
        """Return the compiled training step for a structure key, compiling it once."""
        if key not in self._compiled:
            log.info('compiling %s optimizer', type(self).__name__)
            self._new_state = []
            updates = self._build_updates(key)
            function = backend.function(
                self.inputs, self._monitor_exprs(), updates=updates,
                name=type(self).__name__, allow_input_downcast=True, staged=self._staged)
            self._compiled[key] = (function, self._new_state)
            self._new_state = None
        return self._compiled[key][0]

    def _evaluation_function(self):
        if self._eval_fn is None:
            log.info('compiling evaluation function')
            self._eval_fn = backend.function(
                self.inputs, self._monitor_exprs(), updates=self.updates,
                name='evaluation', allow_input_downcast=True, staged=self._staged)
        return self._eval_fn

    # -- data --------------------------------------------------------------------

    @staticmethod
    def _dataset(data, name, config):
        """Return ``data`` as a Dataset, wrapping raw arrays with the data settings."""
        if isinstance(data, Dataset):
            return data
        size = config[name + '_batches']
        if size is None:
            size = config['iteration_size']
        return Dataset(data, name=name, batch_size=config['batch_size'],
                       iteration_size=size, axis=config['axis'], rng=config['rng'])

    # -- public interface ------------------------------------------------------------

    def evaluate(self, dataset):
        """Return the mean of each monitored value over a dataset's mini-batches.

        Parameters
        ----------
        dataset : Dataset, or data accepted by Dataset

        Returns
        -------
        OrderedDict
            ``'loss'`` first, then the monitors in order, then gradient norms.
        """
        if not isinstance(dataset, Dataset):
            dataset = Dataset(dataset, name='evaluate')
        function = self._evaluation_function()
        values = [function(*batch) for batch in dataset]
        return self._averages(values)

    def _averages(self, values):
        means = np.mean(np.asarray(values, dtype='float64'), axis=0)
        return collections.OrderedDict(zip(self.monitor_names, (float(m) for m in means)))

    def set_params(self, values='best'):
        """Set the parameters to ``values`` (a list of arrays) or to the best ones seen.

        Parameters
        ----------
        values : list of arrays or 'best', optional
        """
        if isinstance(values, str):
            if values != 'best':
                raise util.ConfigurationError(
                    "set_params expects a list of arrays or 'best', got {!r}".format(values))
            if self._best is None:
                raise util.ConfigurationError('no best parameters recorded yet')
            values = self._best
        values = list(values)
        if len(values) != len(self.params):
            raise util.ConfigurationError('expected {} parameter values, got {}'.format(
                len(self.params), len(values)))
        for param, value in zip(self.params, values):
            param.set_value(np.array(value, dtype=param.dtype))

    def iterate(self, train=None, valid=None, **kwargs):
        """Optimize, yielding monitor values after each training epoch.

        Settings are validated (and the step function compiled) when this is
        called; training runs as the returned generator is consumed.

        Parameters
        ----------
        train : Dataset, or data accepted by Dataset
            Training data. Raw data is wrapped with ``batch_size``,
            ``iteration_size`` (or ``train_batches``), ``axis`` and ``rng``.
        valid : Dataset, or data accepted by Dataset, optional
            Validation data (``valid_batches`` sets its iteration size).
            Defaults to the training data.
        **kwargs
            Hyperparameters; see :meth:`hyperparameter_names`.

        Returns
        -------
        generator of (OrderedDict, OrderedDict)
            Training monitors of each epoch (means over its batches, computed
            before each update) and the most recent validation monitors.

        Raises
        ------
        NonFiniteLossError
            When the training loss becomes NaN or infinite (after restoring
            the best parameters).

        Notes
        -----
        Validation runs before epoch ``k`` whenever ``k % validate_every == 0``
        (so before the first epoch), and once more after the last epoch when
        ``max_updates`` ends training. A validation loss improves on the best one
        when ``best - loss > |best| * min_improvement``; NaN never improves.
        Iteration stops, without yielding, once more than ``patience``
        validations in a row failed to improve, after ``max_updates`` epochs,
        when the consumer stops iterating, or on KeyboardInterrupt; in every
        case (and when an exception escapes) the parameters are set back to
        the values of the best validation. Algorithm state (velocities,
        moving averages) starts afresh at each call.
        """
        config = self._configure(kwargs)
        if train is None:
            raise util.ConfigurationError('iterate() needs training data')
        if valid is None and isinstance(train, Dataset):
            valid = train
        valid = self._dataset(train if valid is None else valid, 'valid', config)
        train = self._dataset(train, 'train', config)
        key = self._structure(config)
        self.function = self._compile(key)
        self._evaluation_function()
        return self._run(train, valid, config, key)

    def minimize(self, train=None, valid=None, **kwargs):
        """Run :meth:`iterate` to the end and return the last monitor pair."""
        result = (None, None)
        for result in self.iterate(train, valid, **kwargs):
            pass
        return result

    # -- the training loop -----------------------------------------------------------

    def _run(self, train, valid, config, key):
        self._apply(config, key)
        self._function = self._compiled[key][0]
        self._best = [p.get_value() for p in self.params]
        self._best_loss = None
        self._failures = 0
        self.interrupted = False
        epoch = 0
        validation = None
        display = progress.create(config['progress'], type(self).__name__, train.iteration_size)
        try:
            with display:
                while config['max_updates'] is None or epoch < config['max_updates']:
                    if epoch % config['validate_every'] == 0:
                        validation = self.evaluate(valid)
                        if self._patience_elapsed(validation, epoch, config, display):
                            log.info('patience elapsed!')
                            return
                    training = self._train_epoch(train, epoch + 1, config, display)
                    epoch += 1
                    log.info('%s %d %s', type(self).__name__, epoch, self._format(training))
                    display.epoch(epoch, training)
                    yield training, validation
                if epoch:
                    # max_updates ended training: validation runs before an epoch, so
                    # the final parameters are judged here (and kept when the best)
                    self._patience_elapsed(self.evaluate(valid), epoch, config, display)
        except KeyboardInterrupt:
            self.interrupted = True
            log.info('interrupted!')
        finally:
            self.set_params('best')

    def _patience_elapsed(self, validation, epoch, config, display):
        """Record a validation result; return True once patience has run out."""
        loss = validation['loss']
        best = self._best_loss
        if best is None:
            improved = bool(np.isfinite(loss))
        else:
            improved = best - loss > abs(best) * config['min_improvement']
        if improved:
            self._best_loss = loss
            self._best = [p.get_value() for p in self.params]
            self._failures = 0
        else:
            self._failures += 1
        log.info('validation %d %s%s', epoch, self._format(validation), ' *' if improved else '')
        display.validation(epoch, validation, improved)
        return self._failures > config['patience']

    def _train_epoch(self, train, epoch, config, display):
        values = []
        for number, batch in enumerate(train.iterate(True)):
            outputs = self._step(batch)
            if not np.isfinite(outputs[0]):
                self._diverged(outputs[0], epoch, number, config)
            values.append(outputs)
            display.batch()
        return self._averages(values)

    def _step(self, batch):
        """Run one compiled update on a mini-batch; return the monitor values."""
        return self._function(*batch)

    def _diverged(self, loss, epoch, batch, config):
        self.set_params('best')
        raise NonFiniteLossError(
            'the training loss diverged to {} in epoch {} (batch {}) of {} with '
            'learning_rate={}; the best parameters so far were restored. Try a lower '
            'learning_rate, or limit steps with max_gradient_norm.'.format(
                float(loss), epoch, batch + 1, type(self).__name__, config['learning_rate']))

    @staticmethod
    def _format(values):
        return ' '.join('{}={:.6f}'.format(k, v) for k, v in values.items())


def build(algo, loss, params, inputs, updates=(), monitors=(), monitor_gradients=False):
    """Create the optimizer registered under ``algo`` (e.g. ``'sgd'``, ``'rmsprop'``).

    Raises
    ------
    KeyError
        For an unknown name; the message lists the known algorithms.
    """
    return Optimizer.build(algo, loss, params, inputs, updates=updates, monitors=monitors,
                           monitor_gradients=monitor_gradients)


def hyperparameter_names(algo=None):
    """Return the set of keyword arguments ``iterate`` accepts for ``algo`` (or any)."""
    return Optimizer.hyperparameter_names(algo)
