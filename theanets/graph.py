"""The :class:`Network`: a graph of layers, its losses, and what is computed from them.

Data flows one way: layer specs -> bound :class:`~theanets.layers.Layer`
objects -> a dict of symbolic outputs keyed ``'layer:output'`` -> losses and
regularizers -> one scalar -> an optimizer. Graphs and compiled functions are
cached on the network and reused until its layers or losses change.
"""

import collections
import copy
import fnmatch
import logging
import warnings

import numpy as np

from . import activations
from . import backend
from . import checks
from . import layers as layers_module
from . import losses as losses_module
from . import persistence
from . import regularizers
from . import trainer
from . import util

__all__ = ['Network', 'FORMAT_VERSION']

log = logging.getLogger(__name__)

#: Version of the file layout written by :meth:`Network.save`; see
#: :mod:`theanets.persistence`.
FORMAT_VERSION = persistence.FORMAT_VERSION

Layer = layers_module.Layer


# ----- layer specs -> (form, kwargs) -----------------------------------------------------

def _spec_from_int(spec):
    return None, dict(size=int(spec))


def _is_int(value):
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def _spec_from_sequence(spec):
    if all(_is_int(s) for s in spec):
        return None, dict(shape=tuple(int(s) for s in spec))
    form, kwargs = None, {}
    for item in spec:
        if _is_int(item):
            if 'size' in kwargs:
                raise util.ConfigurationError(
                    'layer spec {!r} gives two sizes ({} and {}); give one'.format(
                        spec, kwargs['size'], item))
            kwargs['size'] = int(item)
        elif isinstance(item, str) and Layer.is_registered(item):
            form = item.lower()
        elif isinstance(item, str) and activations.is_activation(item):
            kwargs['activation'] = item
        elif isinstance(item, str):
            raise _neither_form_nor_activation(spec, item)
        else:
            raise util.ConfigurationError(
                'layer spec {!r}: cannot interpret element {!r}; use an int size, '
                'a layer form or an activation name'.format(spec, item))
    return form, kwargs


def _neither_form_nor_activation(spec, item):
    forms = sorted(Layer._registry.classes)
    acts = sorted(activations.known_names() | set(activations.COMMON))
    return util.ConfigurationError(
        'layer spec {!r}: unknown activation {!r} or layer form{}; known forms: '
        '{}; known activations: {}, maxout:K'.format(
            spec, item, util.did_you_mean(item, forms + acts), ', '.join(forms),
            ', '.join(acts)))


def _spec_from_str(spec):
    if not Layer.is_registered(spec):
        raise _unknown_form(spec)
    return spec.lower(), {}


def _spec_from_dict(spec):
    kwargs = dict(spec)
    form = kwargs.pop('form', None)
    return (form.lower() if isinstance(form, str) else form), kwargs


def _unknown_form(form):
    return util.unknown_name('layer form', form, Layer._registry.classes)


def parse_spec(spec):
    """Turn one entry of ``layers=[...]`` into ``(form or None, kwargs)``.

    Raises
    ------
    ConfigurationError
        For specs that name two sizes, an unknown form, or cannot be read.
    """
    if _is_int(spec):
        return _spec_from_int(spec)
    if isinstance(spec, (tuple, list)):
        return _spec_from_sequence(spec)
    if isinstance(spec, str):
        return _spec_from_str(spec)
    if isinstance(spec, dict):
        return _spec_from_dict(spec)
    if spec is None:
        return None, {}
    raise util.ConfigurationError(
        'cannot interpret layer spec {!r}; use an int, a tuple, a dict, a form name '
        'or a Layer instance'.format(spec))


def _no_inputs(inputs):
    """True if ``inputs=`` names nothing (then the previous layer is read)."""
    return inputs is None or (isinstance(inputs, (str, tuple, list, dict)) and not inputs)


def _layer_list(layers, model):
    """Return the constructor's ``layers`` as a list, or say what it should be."""
    if layers is None:
        return []
    if isinstance(layers, (str, dict, Layer)) or not hasattr(layers, '__iter__'):
        raise util.ConfigurationError(
            '{}(layers=...) needs a list of layer specs such as [4, (8, "tanh"), 2], '
            'got {!r}'.format(model, layers))
    return list(layers)


class _ClassOnly(object):
    """A classmethod that refuses to be called on an instance, saying what to do."""

    def __init__(self, func):
        self.func = func
        self.__doc__ = func.__doc__

    def __get__(self, obj, cls):
        if obj is not None:
            def refuse(*args, **kwargs):
                raise TypeError(
                    '{0}.load is a class method that returns the loaded network; '
                    'write `net = theanets.{0}.load(path)` instead of `net.load(path)`'
                    .format(cls.__name__))
            return refuse
        return self.func.__get__(cls, type(cls))


class Network(object):
    """A neural network computation graph of layers, with losses to train.

    Parameters
    ----------
    layers : sequence of layer specs, optional
        Each entry is an int (size), a tuple such as ``(20, 'tanh')`` or
        ``(10, 'tied')`` or a shape ``(28, 28, 1)``, a dict of layer
        keywords (with ``form``), a form name string, or a Layer instance.
        The first becomes the Input layer ``'in'``, the last ``'out'``, the
        others ``'hid1'``, ``'hid2'``, ...
    loss : str, dict or Loss, optional
        The loss to train (default ``'mse'``).
    weighted : bool, optional
        If True, training data include a weights array shaped like the target.
    rng : int or RandomState, optional
        Seeds initial parameter values, batch shuffling, noise and dropout.

    Examples
    --------
    >>> import numpy as np, theanets
    >>> net = theanets.Regressor([4, (8, 'tanh'), 2])
    >>> [l.name for l in net.layers]
    ['in', 'hid1', 'out']
    >>> net.num_params
    58
    >>> net.predict(np.zeros((5, 4), 'f')).shape
    (5, 2)
    """

    DEFAULT_OUTPUT_ACTIVATION = 'linear'
    INPUT_NDIM = 2
    OUTPUT_NDIM = 2

    def __init__(self, layers=(), loss='mse', weighted=False, rng=13, **kwargs):
        util.check_kwargs(kwargs, util.accepted_kwargs(type(self)), type(self).__name__ + '()')
        self._rng = util.as_rng(rng)
        self._noise_seed = int(self._rng.randint(2 ** 30))
        self.layers = []
        self.losses = []
        self._loss_spec = (loss, weighted)
        self._weighted = bool(weighted)
        self.history = []
        self._reset_caches()
        layers = _layer_list(layers, type(self).__name__)
        for i, spec in enumerate(layers):
            last = i == len(layers) - 1 and i > 0
            self.add_layer(spec, is_output=last)
        if loss and len(self.layers) > 1:
            self.set_loss(loss, weighted=weighted)

    def _reset_caches(self):
        self._graphs = {}
        self._functions = {}

    # ----- building -------------------------------------------------------------------

    def _default_name(self, is_output):
        if not self.layers:
            return 'in'
        return 'out' if is_output else 'hid{}'.format(len(self.layers))

    def add_layer(self, layer=None, is_output=False, **kwargs):
        """Add a layer to the network.

        Parameters
        ----------
        layer : int, tuple, dict, str or Layer
            A layer spec, as for the constructor's ``layers``.
        is_output : bool, optional
            Give the layer the output defaults: name ``'out'`` and the model's
            ``DEFAULT_OUTPUT_ACTIVATION``.
        **kwargs
            Defaults for the layer's keywords (``name``, ``activation``, ...);
            values in a dict or tuple spec take precedence.

        Returns
        -------
        Layer
            The bound layer.
        """
        if isinstance(layer, Layer):
            return self._append(layer, fill_inputs=not isinstance(layer, layers_module.Input))
        form, spec_kwargs = parse_spec(layer)
        merged = dict(kwargs, **spec_kwargs)
        given_form = merged.pop('form', None)
        form = form or given_form or ('input' if not self.layers else 'feedforward')
        if not Layer.is_registered(form):
            raise _unknown_form(form)
        cls = Layer.get_class(form)
        merged.setdefault('name', self._default_name(is_output))
        if cls.fixed_activation(merged) is None:
            merged.setdefault('activation',
                              self.DEFAULT_OUTPUT_ACTIVATION if is_output else 'relu')
        if issubclass(cls, layers_module.Input):
            if is_output:
                raise util.ConfigurationError(
                    'layer spec {!r}: the output layer of {} cannot be an input layer, which '
                    'reads data and computes nothing; end layers=[...] with a layer that '
                    'computes the output, e.g. (2, "linear")'.format(layer, type(self).__name__))
            self._input_defaults(merged)
        else:
            self._hidden_defaults(form, merged)
        return self._append(Layer.build(form, **merged), fill_inputs=False)

    def _input_defaults(self, kwargs):
        if kwargs.get('shape') is None:
            kwargs.setdefault('ndim', self.INPUT_NDIM)
        if any(l.name == kwargs['name'] for l in self.layers):
            raise util.ConfigurationError(
                'an input layer named {!r} already exists; give it another name'.format(
                    kwargs['name']))

    def _hidden_defaults(self, form, kwargs):
        if not self.layers:
            raise util.ConfigurationError(
                'the first layer must be an input layer, got form {!r}'.format(form))
        if _no_inputs(kwargs.get('inputs')):
            kwargs['inputs'] = self.layers[-1].output_name
        if kwargs.get('rng') is None:
            kwargs['rng'] = int(self._rng.randint(2 ** 31 - 1))
        if form == 'tied' and kwargs.get('partner') is None:
            kwargs['partner'] = self._find_tied_partner()

    def _find_tied_partner(self):
        count = 1
        for layer in reversed(self.layers):
            if isinstance(layer, layers_module.Input):
                break
            count += 1 if isinstance(layer, layers_module.Tied) else -1
            if count == 0:
                return layer.name
        raise util.ConfigurationError(
            'cannot find a partner for a tied layer after {}; tied layers mirror earlier '
            'layers, e.g. [10, 20, (10, "tied")], or give partner="name"'.format(
                [l.name for l in self.layers]))

    def _append(self, layer, fill_inputs):
        if any(l.name == layer.name for l in self.layers):
            raise util.ConfigurationError(
                'the network already has a layer named {!r}; layer names must be unique'
                .format(layer.name))
        if fill_inputs and _no_inputs(layer.inputs) and self.layers:
            layer.inputs = self.layers[-1].output_name
            layer.kwargs['inputs'] = layer.inputs
        self.layers.append(layer)
        try:
            fresh = not layer._params
            layer.bind(self, reset=fresh, initialize=fresh)
        except Exception:
            self.layers.pop()
            raise
        self._reset_caches()
        return layer

    def _default_target(self):
        return self.OUTPUT_NDIM

    def add_loss(self, loss=None, **kwargs):
        """Add a loss to the model; training minimises the weighted sum of all losses.

        Parameters
        ----------
        loss : str, dict or Loss, optional
            A loss name (``'mse'``, ``'xe'``, a custom class name...), a dict
            with ``form`` and keywords, or a Loss instance. Default ``'mse'``.
        **kwargs
            Loss keywords: ``weight``, ``weighted``, ``target``, ``output_name``...
        """
        if isinstance(loss, losses_module.Loss):
            self._append_loss(loss)
            return loss
        if isinstance(loss, dict):
            kwargs = dict(loss, **kwargs)
            loss = None
        form = kwargs.pop('form', loss) or 'mse'
        if not losses_module.Loss.is_registered(form):
            raise util.unknown_name('loss', form, losses_module.Loss._registry.classes)
        cls = losses_module.Loss.get_class(form)
        if not self.layers:
            raise util.ConfigurationError('add layers before adding a loss')
        kwargs.setdefault('target', self._default_target())
        kwargs.setdefault('output_name', self.layers[-1].output_name)
        kwargs.setdefault('weighted', self._weighted)
        built = cls(**kwargs)
        self._append_loss(built)
        return built

    def _append_loss(self, loss):
        loss.share_variables(self.losses)
        self.losses.append(loss)
        self._reset_caches()

    def set_loss(self, *args, **kwargs):
        """Replace all losses by one; arguments as for :meth:`add_loss`."""
        self.losses = []
        return self.add_loss(*args, **kwargs)

    def ensure_ready(self):
        """Check that the network can be trained or run, and give it its default loss.

        Called by every method that needs the graph; trainers call it too.

        Raises
        ------
        ConfigurationError
            If the network has fewer than two layers.
        """
        if len(self.layers) < 2:
            raise util.ConfigurationError(
                '{} has {} layer(s); add an input and an output layer, e.g. '
                '{}([4, 2]) or net.add_layer(...)'.format(
                    type(self).__name__, len(self.layers), type(self).__name__))
        if not self.losses and self._loss_spec[0]:
            self.set_loss(self._loss_spec[0], weighted=self._loss_spec[1])

    def subnetwork(self, layers, loss=None):
        """Return a network of ``layers`` that shares their parameters with this one.

        The layerwise and pretrain trainers train such networks: a part of
        this network's layers followed by temporary ones. This network is not
        changed.

        Parameters
        ----------
        layers : list of Layer
            Some of this network's layers, in order, each reading only outputs
            of layers before it in the list (they are used as they are),
            followed by new Layer instances, bound to the new network in order
            (a layer holding parameters already keeps them).
        loss : str, dict or Loss, optional
            The new network's loss, as for :meth:`add_loss`. By default, copies
            of this network's losses; those reading this network's output read
            the new network's last layer instead.

        Returns
        -------
        Network
            Of the same class, sharing this network's random state.

        Raises
        ------
        ConfigurationError
            If one of this network's layers reads an output the list does
            not provide before it.
        """
        sub = copy.copy(self)
        sub.layers, sub.losses, sub.history = [], [], []
        sub._reset_caches()
        available = set()
        for layer in layers:
            if any(layer is own for own in self.layers):
                missing = [name for name in layer._input_shapes if name not in available]
                if missing:
                    raise util.ConfigurationError(
                        'subnetwork: layer {!r} reads {}, which no earlier layer in {} '
                        'provides'.format(layer.name, missing, [l.name for l in layers]))
                sub.layers.append(layer)
            else:
                sub.add_layer(layer)
            available.update(layer.output_shapes())
        if loss is not None:
            sub.add_loss(loss)
            return sub
        output = self.layers[-1].output_name
        for own in self.losses:
            twin = copy.copy(own)
            if twin.output_name == output:
                twin.output_name = sub.layers[-1].output_name
            sub.losses.append(twin)
        return sub

    # ----- properties --------------------------------------------------------------

    @property
    def rng(self):
        """The network's ``numpy.random.RandomState``.

        Seeds the layers added later and shuffles training batches when
        ``train`` gets no ``rng``.
        """
        return self._rng

    @property
    def noise_seed(self):
        """The int seed of noise and dropout when ``train`` or ``predict`` get no ``rng``."""
        return self._noise_seed

    @property
    def inputs(self):
        """Symbolic input variables, one per Input layer, in layer order."""
        return [l.input for l in self.layers if isinstance(l, layers_module.Input)]

    @property
    def variables(self):
        """Symbolic variables of the training data: inputs, then targets, then weights."""
        self.ensure_ready()
        result = list(self.inputs)
        for loss in self.losses:
            for var in loss.variables:
                if not any(var is v for v in result):
                    result.append(var)
        return result

    @property
    def params(self):
        """All learnable shared variables of all layers."""
        return [p for l in self.layers for p in l.params]

    @property
    def num_params(self):
        """Total number of learnable scalar values."""
        return int(sum(p.get_value().size for p in self.params))

    # ----- description -----------------------------------------------------------------

    def summary(self, file=None):
        """Print a table of the layers: name, form, activation, output shape, inputs, parameters.

        Shapes leave out the batch axis, as the original reported them:
        ``(6,)`` for a feedforward layer of 6 units, ``(None, 6)`` for a
        recurrent one. The last row is the total number of learnable values.

        Parameters
        ----------
        file : writable text file, optional
            Where to print (default: ``sys.stdout``).

        Examples
        --------
        >>> import theanets
        >>> theanets.Regressor([4, (8, 'tanh'), 2]).summary()
        Regressor: 3 layers, 58 learnable parameters
        name   form         activation  output shape  inputs         parameters
        -----  -----------  ----------  ------------  -------------  ----------
        in     Input        linear      (4,)                                  0
        hid1   Feedforward  tanh        (8,)          in:out (4,)            40
        out    Feedforward  linear      (2,)          hid1:out (8,)          18
        total                                                                58
        """
        head = ('name', 'form', 'activation', 'output shape', 'inputs', 'parameters')
        rows = [(l.name, type(l).__name__, _activation_name(l), str(l.output_shape),
                 ', '.join('{} {}'.format(n, s) for n, s in l._input_shapes.items()),
                 str(sum(p.get_value(borrow=True).size for p in l.params)))
                for l in self.layers]
        total = ('total', '', '', '', '', str(self.num_params))
        widths = [max(len(r[i]) for r in [head, total] + rows) for i in range(len(head))]

        def line(row):
            cells = [c.ljust(w) for c, w in zip(row[:-1], widths)] + [row[-1].rjust(widths[-1])]
            return '  '.join(cells).rstrip()

        text = ['{}: {} layers, {} learnable parameters'.format(
            type(self).__name__, len(self.layers), self.num_params), line(head),
            line(['-' * w for w in widths])] + [line(r) for r in rows] + [line(total)]
        print('\n'.join(text), file=file)

    def __repr__(self):
        layers = ', '.join('{} {}{}'.format(
            l.name, l.output_shape,
            '' if isinstance(l, layers_module.Input) else ' ' + _activation_name(l))
            for l in self.layers) or 'no layers'
        losses = ', '.join(type(l).__name__ for l in self.losses) or self._loss_spec[0]
        return '{}({}; loss {}; {} parameters)'.format(
            type(self).__name__, layers, losses, self.num_params)

    def find(self, which, param):
        """Return a parameter of a layer.

        Parameters
        ----------
        which : int or str
            Layer index (0 is the input layer) or layer name.
        param : int or str
            Parameter name (e.g. ``'w'``) or index among the layer's parameters.

        Raises
        ------
        KeyError
            If the layer or the parameter does not exist.
        """
        if isinstance(which, (int, np.integer)):
            if not -len(self.layers) <= which < len(self.layers):
                raise KeyError('no layer {} in a network of {} layers'.format(
                    which, len(self.layers)))
            return self.layers[which].find(param)
        for layer in self.layers:
            if layer.name == which:
                return layer.find(param)
        raise KeyError('no layer named {!r}; layers are {}'.format(
            which, [l.name for l in self.layers]))

    # ----- symbolic graph -------------------------------------------------------------

    def _graph_key(self, regs):
        # the mode decides which Ops layers use (fused C ops or portable ones)
        return (tuple((type(l).__name__, l.name, l.output_shape, id(l)) for l in self.layers),
                tuple(r.key for r in regs), backend.mode_key())

    def compiled(self, key, build, regularizers=()):
        """Return what ``build()`` makes, compiled once and cached on this network.

        Model methods and trainers keep their compiled functions (and
        optimizers) here. The cache key is ``key`` plus the layers, the
        ``regularizers`` that change the graph (noise, dropout) and the
        backend mode (:func:`theanets.backend.mode_key`), so a new mode or
        new layers compile anew. Adding layers or losses empties the cache.

        Parameters
        ----------
        key : hashable
            What is compiled, e.g. ``('predict', output names)``.
        build : callable
            Called without arguments on a cache miss.
        regularizers : sequence of Regularizer, optional
        """
        full = (key, self._graph_key(regularizers))
        if full not in self._functions:
            self._functions[full] = build()
        return self._functions[full]

    def build_graph(self, regularizers=()):
        """Connect the layers into a graph of symbolic outputs (cached).

        Parameters
        ----------
        regularizers : sequence of Regularizer
            Their ``modify_graph`` runs after each layer (noise, dropout).

        Returns
        -------
        outputs : OrderedDict
            Maps ``'layer:output'`` names to symbolic expressions.
        updates : list of (shared, expression) pairs
        """
        key = self._graph_key(regularizers)
        if key not in self._graphs:
            log.debug('building computation graph')
            outputs, updates = collections.OrderedDict(), []
            for layer in self.layers:
                out, upd = layer.connect(outputs)
                for reg in regularizers:
                    updates.extend(reg.modify_graph(out) or ())
                outputs.update(out)
                updates.extend(upd)
            self._graphs[key] = outputs, updates
        return self._graphs[key]

    def _regularizers(self, kwargs, method, accept=()):
        """Regularizers from the keywords given to ``method``, which also reads ``accept``."""
        return regularizers.from_kwargs(
            self, accept=accept, caller='{}.{}()'.format(type(self).__name__, method), **kwargs)

    def loss(self, **kwargs):
        """Return the scalar training loss: weighted losses plus regularizer terms.

        Parameters
        ----------
        **kwargs
            Regularizer keywords, as for ``train`` (``weight_l2=1e-4``,
            ``hidden_dropout=0.5``, ``rng``...). ``monitors`` is accepted
            (and checked) so that one set of keywords serves ``loss``,
            :meth:`monitors` and :meth:`updates`. Other names raise TypeError.
        """
        self.ensure_ready()
        regs = self._regularizers(kwargs, 'loss', accept=('monitors', ))
        outputs, _ = self.build_graph(regs)
        total = sum(l.weight * l(outputs) for l in self.losses)
        for reg in regs:
            term = reg.loss(self.layers, outputs)
            if not (isinstance(term, (int, float)) and term == 0):
                total = total + reg.weight * term
        return total

    def monitors(self, **kwargs):
        """Return ``[(name, expression)]`` to compute during training: ``'err'`` then user monitors.

        ``monitors=`` is a dict ``{pattern: levels}`` or a list of pairs; see
        the training guide for the format. Other keywords are those of :meth:`loss`.
        """
        self.ensure_ready()
        regs = self._regularizers(kwargs, 'monitors', accept=('monitors', ))
        outputs, _ = self.build_graph(regs)
        result = [('err', self.losses[0](outputs))]
        for pattern, levels in _monitor_pairs(kwargs.get('monitors')):
            for name, expr in self._monitor_targets(outputs, pattern):
                result.extend(_monitor_exprs(name, expr, levels))
        return result

    def _monitor_targets(self, outputs, pattern):
        for name, expr in outputs.items():
            if fnmatch.fnmatch(name, pattern):
                yield name, expr
        for param in self.params:
            if fnmatch.fnmatch(param.name, pattern):
                yield param.name, param

    def updates(self, **kwargs):
        """Return the graph's own updates (e.g. of noise streams); keywords as for :meth:`loss`."""
        regs = self._regularizers(kwargs, 'updates', accept=('monitors', ))
        return self.build_graph(regs)[1]

    # ----- computing ------------------------------------------------------------------

    def _input_arrays(self, x, more, kwargs):
        """Check the input arrays of predict-like calls; pops ``allow_nonfinite`` from kwargs."""
        self.ensure_ready()
        arrays = list(x) if isinstance(x, (list, tuple)) and len(self.inputs) > 1 and \
            not more else [x] + list(more)
        return checks.inputs(self, arrays, kwargs.pop('allow_nonfinite', False))

    def _compute(self, names, arrays, kwargs, method='feed_forward'):
        """Compile (once) and run a function from the inputs to the named outputs."""
        regs = self._regularizers(kwargs, method)
        outputs, updates = self.build_graph(regs)
        names = list(outputs) if names is None else list(names)

        def build():
            log.debug('compiling feed_forward function')
            return backend.function(self.inputs, [outputs[n] for n in names], updates=updates,
                                    name='feed_forward', staged=True)

        function = self.compiled(('compute', tuple(names)), build, regs)
        return collections.OrderedDict(zip(names, function(*arrays)))

    def feed_forward(self, x, *more, **kwargs):
        """Compute every output of every layer.

        Parameters
        ----------
        x : ndarray
            Input data (batch, ...); give one array per Input layer.
        **kwargs
            Noise or dropout keywords to apply, as for ``train``, and
            ``allow_nonfinite=True`` to accept NaN or inf inputs (with a
            warning) instead of raising.

        Returns
        -------
        dict
            Maps ``'layer:output'`` names to arrays.
        """
        return dict(self._compute(None, self._input_arrays(x, more, kwargs), kwargs))

    def predict(self, x, *more, **kwargs):
        """Compute the output of the network's last layer for input ``x`` (batch, ...)."""
        arrays = self._input_arrays(x, more, kwargs)
        name = self.layers[-1].output_name
        return self._compute([name], arrays, kwargs, 'predict')[name]

    def score(self, x, y, w=None, **kwargs):
        """Return the R^2 of predictions of ``y`` (per column, averaged; weighted by ``w``)."""
        arrays = self._input_arrays(x, (), dict(kwargs))
        y, w = checks.score_targets(self, arrays[0].shape[0], y, w)
        return r2_score(y, self.predict(x, **kwargs), w)

    # ----- training -------------------------------------------------------------------

    def itertrain(self, train, valid=None, algo='rmsprop', subalgo='rmsprop',
                  save_every=0, save_progress=None, **kwargs):
        """Train the network, yielding monitor values after each epoch.

        Parameters
        ----------
        train : list of ndarray, Dataset or callable
            Training data in :attr:`variables` order, e.g. ``[x, y]``.
        valid : same as ``train``, optional
            Validation data; defaults to the training data.
        algo : str or object with ``itertrain``
            ``'rmsprop'`` (default), ``'sgd'``, ``'nag'``, ``'adam'``,
            ``'rprop'``, ``'adagrad'``, ``'adadelta'``, ``'esgd'``,
            ``'sample'``, ``'layerwise'``, ``'pretrain'``.
        subalgo : str
            Optimizer used in each stage of ``layerwise`` and ``pretrain``.
        save_every : int or float
            Save every this many epochs (int) or minutes (float).
        save_progress : str or file, optional
            Where to save; a ``'{}'`` in the path is filled with a timestamp.
        **kwargs
            Optimizer hyperparameters, regularizers, ``monitors``,
            ``batch_size``... Unknown names raise TypeError.

        Yields
        ------
        train_monitors, valid_monitors : OrderedDict
            ``'loss'`` first, then ``'err'``, user monitors, and ``'acc'`` for classifiers.
        """
        if 'algorithm' in kwargs:
            warnings.warn('algorithm= is deprecated; use algo=', DeprecationWarning, stacklevel=2)
            algo = kwargs.pop('algorithm')
            if isinstance(algo, (list, tuple)):
                algo = algo[0]
        self.ensure_ready()
        runner = trainer.build(algo, subalgo, self)
        trainer.check_train_kwargs(self, runner, kwargs)
        saver = trainer.ProgressSaver(self, save_every, save_progress)
        for monitors in runner.itertrain(train, valid, **kwargs):
            yield monitors
            saver.tick(monitors)

    def train(self, *args, **kwargs):
        """Train until early stopping; return the last ``(train, valid)`` monitor dicts.

        Arguments are those of :meth:`itertrain`. Each epoch's monitors are
        appended to :attr:`history`, which this call resets.
        """
        if 'algorithm' in kwargs:
            warnings.warn('algorithm= is deprecated; use algo=', DeprecationWarning, stacklevel=2)
            kwargs['algo'] = kwargs.pop('algorithm')
            if isinstance(kwargs['algo'], (list, tuple)):
                kwargs['algo'] = kwargs['algo'][0]
        self.history = []
        monitors = None
        for monitors in self.itertrain(*args, **kwargs):
            self.history.append(monitors)
        return monitors

    # ----- persistence ----------------------------------------------------------------

    def __getstate__(self):
        """Attributes without caches, pickled to checked bytes (:mod:`theanets.persistence`)."""
        state = dict(self.__dict__)
        for key in ('_graphs', '_functions'):
            state.pop(key, None)
        state['_rng'] = layers_module.base.rng_to_state(self._rng)
        return persistence.pack_state(state)

    def __setstate__(self, state):
        state, legacy = persistence.unpack_state(state)
        state = dict(state)
        state['_rng'] = layers_module.base.rng_from_state(state.get('_rng'))
        self.__dict__.update(layers_module.base._interned(state))
        self.__dict__.setdefault('history', [])
        if legacy:
            for layer in self.layers:
                layer._drop_batch_axis()
        self._reset_caches()

    def save(self, filename_or_handle):
        """Save the network to a pickle file (gzip if the name ends in ``.gz``).

        The file is a pickle of the network itself, as in theanets 0.8:
        ``pickle.load`` (or ``joblib.load``) returns the network. Its state
        records the format and theanets versions and a SHA-256 digest, which
        unpickling checks. Writing to a path is atomic: a temporary file in
        the same directory is renamed into place, so a crash never leaves a
        partial file. Saving a loaded model again gives the same bytes.

        Only load pickles from sources you trust: unpickling can run code.
        :meth:`save_weights` writes a plain-array file that is safe to share.
        """
        persistence.write(self, filename_or_handle)
        log.info('saved model to %s', persistence.name_of(filename_or_handle))

    @_ClassOnly
    def load(cls, filename_or_handle):
        """Load a network saved by :meth:`save`; returns it (call on the class).

        Files written by earlier versions of this library (model formats 1
        and 2) load too.

        Raises
        ------
        ValueError
            For a truncated, corrupt or foreign file, one written by a newer
            format version, or one holding another kind of model (e.g.
            ``Autoencoder.load`` on a saved Regressor).

        Warns
        -----
        UserWarning
            When the file was written by another version of theanets.
        """
        net = persistence.read(filename_or_handle, Network)
        if not isinstance(net, cls):
            kind = type(net)
            raise ValueError(
                '{!r} holds a {}.{}, which is not a {}.{}; load it with {}.{}.load(path) '
                '(or theanets.Network.load(path))'.format(
                    persistence.name_of(filename_or_handle), kind.__module__,
                    kind.__name__, cls.__module__, cls.__name__, kind.__module__,
                    kind.__name__))
        log.info('loaded model from %s', persistence.name_of(filename_or_handle))
        return net

    def save_weights(self, filename_or_handle):
        """Save the parameter values alone to a NumPy ``.npz`` file (no pickle).

        Unlike a pickle from :meth:`save`, such a file can be loaded safely
        from an untrusted source; see :mod:`theanets.weights`. A path is
        written atomically and exactly as given.
        """
        from . import weights
        weights.save(self, filename_or_handle)

    def load_weights(self, filename_or_handle):
        """Set the parameters from a file written by :meth:`save_weights`, all or nothing.

        Every array is checked against this network (names, shapes, finite
        values) before any parameter changes.

        Raises
        ------
        ConfigurationError
            If the arrays do not fit this network; the message lists every
            missing, extra or mis-shaped array.
        ValueError
            If the file is truncated, corrupt, not a weights file, or newer
            than this version of theanets reads.
        """
        from . import weights
        weights.load(self, filename_or_handle)


def _activation_name(layer):
    return str(getattr(layer.activate, 'name', layer.activation))


def _monitor_pairs(spec):
    """Return ``monitors=`` as a list of ``(pattern, levels)``, checking its form."""
    if not spec:
        return []
    example = ' such as {"hid1:out": [0.1, 0.9]} or [("*.w", 1)]'
    if isinstance(spec, dict):
        pairs = list(spec.items())
    elif isinstance(spec, (list, tuple)) and all(
            isinstance(p, (list, tuple)) and len(p) == 2 for p in spec):
        pairs = [tuple(p) for p in spec]
    else:
        raise util.ConfigurationError(
            'monitors= must be a dict {{pattern: levels}} or a list of (pattern, levels) '
            'pairs{}, got {!r}'.format(example, spec))
    for pattern, levels in pairs:
        if not isinstance(pattern, str):
            raise util.ConfigurationError(
                'monitors= patterns must be strings (globs of output or parameter names), '
                'got {!r}'.format(pattern))
        for level in _monitor_levels(levels):
            labelled = isinstance(level, (tuple, list)) and len(level) == 2 and \
                callable(level[1])
            number = isinstance(level, (int, float, np.integer, np.floating)) and \
                not isinstance(level, bool)
            if not (labelled or number):
                raise util.ConfigurationError(
                    'monitors= levels for {!r} must be numbers, or (label, function) pairs, '
                    'got {!r}'.format(pattern, level))
    return pairs


def _monitor_levels(levels):
    if isinstance(levels, (int, float, np.integer, np.floating)) and not isinstance(levels, bool):
        return [levels]
    if isinstance(levels, dict):
        return list(levels.items())
    if isinstance(levels, (list, tuple)):
        return list(levels)
    return [levels]


def _monitor_exprs(name, expr, levels):
    import pytensor.tensor as TT
    result = []
    for level in _monitor_levels(levels):
        if isinstance(level, (tuple, list)) and len(level) == 2 and callable(level[1]):
            result.append(('{}:{}'.format(name, level[0]), level[1](expr)))
        else:
            result.append(('{}<{}'.format(name, level), TT.lt(expr, level).mean()))
    return result


def r2_score(y, yhat, w=None):
    """Coefficient of determination, per output column then averaged.

    Parameters
    ----------
    y, yhat : ndarray (..., n)
        True and predicted values; leading axes are flattened.
    w : ndarray (..., n) or (...), optional
        Weights of each value, or of each example (as scikit-learn's ``sample_weight``).

    Returns
    -------
    float
    """
    shape = np.shape(y)
    w = np.ones(shape) if w is None else np.asarray(w, dtype=float)
    if w.ndim == len(shape) - 1:
        w = w[..., None]
    w = np.broadcast_to(w, shape).reshape(-1, shape[-1])
    y = np.asarray(y, dtype=float).reshape(w.shape)
    yhat = np.asarray(yhat, dtype=float).reshape(w.shape)
    mean = (w * y).sum(axis=0) / w.sum(axis=0)
    num = (w * (y - yhat) ** 2).sum(axis=0)
    den = (w * (y - mean) ** 2).sum(axis=0)
    with np.errstate(divide='ignore', invalid='ignore'):
        scores = np.where(den > 0, 1 - num / np.where(den > 0, den, 1),
                          np.where(num > 0, 0.0, 1.0))
    return float(scores.mean())
