"""Base layer class and the layers that hold no parameters.

A layer takes one or more named graph outputs (``'hid1:out'``) as inputs and
produces named outputs of its own (``'<layer name>:out'``, ``'<layer name>:pre'``...).

Subclasses implement two small methods:

- ``setup()`` creates parameters with :meth:`Layer.add_weights` and
  :meth:`Layer.add_bias`;
- ``transform(inputs)`` computes the outputs. ``inputs`` is the input tensor
  itself when the layer has one input, else a dict ``{input name: tensor}``.
  It returns a tensor (the ``'out'`` output), a dict of named outputs, or a
  pair ``(outputs, updates)``.

Shape inference (``resolve_inputs``, ``resolve_outputs``) is pure Python.
Shapes are those of **one example**, without the batch axis, as theanets 0.8
reported them, with ``None`` for unknown sizes: ``(10,)`` for a feedforward
layer of 10 units, ``(None, 10)`` (time, units) for a recurrent one,
``(28, 28, 1)`` for an image input.
"""

import collections
import contextlib
import inspect
import itertools
import logging
import re
import sys

import numpy as np
import pytensor
import pytensor.sparse
import pytensor.tensor as TT

from .. import activations
from .. import util

__all__ = ['Layer', 'Input', 'Concatenate', 'Flatten', 'Product', 'Reshape']

log = logging.getLogger(__name__)

# keyword arguments every layer accepts for initialising its parameters.
_INIT_KWARG = re.compile(r'^(mean|std|sparsity|diagonal|radius)(_.+)?$')
_INIT_OPTIONS = ('mean', 'std', 'sparsity', 'diagonal', 'radius')


def rng_to_state(rng):
    """Return a RandomState's state as plain values, for deterministic pickles.

    Pickling a RandomState object also stores an unused seed sequence drawn
    from OS entropy, so identical models would give different files.
    """
    name, keys, pos, has_gauss, cached = rng.get_state(legacy=True)
    return ('RandomState', name, np.asarray(keys, dtype=np.uint32).tolist(), int(pos),
            int(has_gauss), float(cached))


def rng_from_state(state):
    """Inverse of :func:`rng_to_state`; any other value is returned unchanged."""
    if not (isinstance(state, tuple) and state and state[0] == 'RandomState'):
        return state
    rng = np.random.RandomState(0)
    _, name, keys, pos, has_gauss, cached = state
    rng.set_state((name, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))
    return rng


def _interned(mapping):
    """Return ``mapping`` with interned str keys.

    Pickle's default restore interns attribute names; doing the same here
    keeps shared key strings shared, so a re-saved model is byte-identical.
    """
    return {sys.intern(k) if isinstance(k, str) else k: v for k, v in mapping.items()}


def _param_families(name):
    """Return the shorter names that also address a parameter: ``'w_in:out'`` -> ``['w']``."""
    return [name.split('_', 1)[0]] if '_' in name else []


def _given_arguments(cls, args, kwargs):
    """Return the arguments of a constructor call as ``{name: value}``, positional ones named."""
    signature = inspect.signature(cls.__init__)
    try:
        bound = signature.bind_partial(None, *args, **kwargs)
    except TypeError:  # the constructor itself reports the mistake
        return dict(kwargs)
    given = collections.OrderedDict(list(bound.arguments.items())[1:])
    for name, param in signature.parameters.items():
        if param.kind == param.VAR_KEYWORD and name in given:
            given.update(given.pop(name))
    return dict(given)


def _reference(value):
    """A layer given as an argument, by name (for :meth:`Layer.to_spec`)."""
    if isinstance(value, Layer):
        return value.name
    if isinstance(value, (list, tuple)):
        return type(value)(_reference(v) for v in value)
    return value


def _fmt_shape(shape):
    return '(' + ', '.join(str(s) for s in shape) + (',)' if len(shape) == 1 else ')')


def positive_int(value, what, layer):
    """Return ``value`` as an int, or raise naming the layer and argument if it is not > 0."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value <= 0:
        raise util.ConfigurationError(
            'layer {!r}: {} must be a positive integer, got {!r}'.format(layer, what, value))
    return int(value)


def _checked_shape(shape, layer):
    """Return ``shape`` as a tuple, or raise naming the layer if it holds anything but ints > 0.

    None stands for an axis whose length varies (e.g. time).
    """
    if not isinstance(shape, (tuple, list)):
        raise util.ConfigurationError(
            'layer {!r}: shape must be a tuple of positive integers such as (4, ) or '
            '(28, 28, 1), got {!r}{}'.format(
                layer, shape, '; for a number of units give size={}'.format(shape)
                if isinstance(shape, (int, np.integer)) and not isinstance(shape, bool) else ''))
    if any(s is not None and (isinstance(s, bool) or not isinstance(s, (int, np.integer))
                              or s <= 0) for s in shape):
        raise util.ConfigurationError(
            'layer {!r}: shape must hold positive integers, got {!r}'.format(layer, shape))
    return tuple(None if s is None else int(s) for s in shape)


class Layer(util.Registrar):
    """Base class for network layers.

    Parameters
    ----------
    size : int, optional
        Number of units: the size of the last axis of the ``'out'`` output.
    inputs : str, Layer, int, dict or sequence of these, optional
        The graph outputs this layer reads: ``'hid1'`` (meaning ``'hid1:out'``),
        ``'hid1:pre'``, a Layer, ``{name: size}`` (sizes are checked), or an
        int: the size of the preceding layer's output (checked). A network
        fills in the previous layer's output when omitted.
    name : str, optional
        Layer name; defaults to ``'layerN'`` with N a global count.
    activation : str or Activation, optional
        Activation of the layer; defaults to ``'relu'``. Layers that always
        use one activation (input, classifier, pooling, LSTM...) refuse another.
    shape : tuple of int, optional
        Shape of one example's output (no batch axis). Layers that map the
        last axis of their input (Feedforward, recurrent layers...) accept
        only the input's own leading axes here, so ``shape=(n,)`` means
        ``size=n``; Input and Reshape layers take any shape.
    rng : int or RandomState, optional
        Random source for initial parameter values (``nrng`` is an alias).
    mean, std, sparsity, diagonal, radius : float, optional
        Initial-value options for every parameter; each also has a
        ``<option>_<param>`` form (e.g. ``std_w=0.1``) for one parameter.
        ``std_w`` also covers every ``w_<input>`` weight of a multi-input
        layer; ``std_w_in:out`` addresses one of them. Zero is a value:
        ``std=0`` gives constant parameters.

    Attributes
    ----------
    name : str
    kwargs : dict
        The keyword arguments the layer was built with (for :meth:`to_spec`).
    params : list of shared variables
        Learnable parameters, including those of the activation.
    """

    _registry = util.Registry('layer')
    _count = 0

    #: Names of this layer's outputs; all share the ``'out'`` shape unless
    #: :meth:`output_shapes` says otherwise.
    OUTPUTS = ('out', )

    #: ``(activation, reason)`` for layer types that always use one activation.
    FIXED_ACTIVATION = None

    #: Attributes :meth:`to_spec` adds to the keyword arguments given.
    SPEC_KEYS = ()

    #: True for layers whose recurrent matrices the generic ``radius`` rescales.
    TAKES_RADIUS = False

    _abstract = True  # see is_abstract; Layer itself is a base class

    def __new__(cls, *args, **kwargs):
        self = super().__new__(cls, *args, **kwargs)
        if cls.is_abstract():
            raise util.ConfigurationError(
                '{}: {} is a base class that computes nothing; use one of its forms: {}'.format(
                    cls.kwargs_owner(kwargs), cls.__name__, ', '.join(cls.concrete_forms())))
        given = _given_arguments(cls, args, kwargs)
        given.pop('name', None)
        self.kwargs = given
        return self

    def __init__(self, size=None, inputs=(), name=None, activation=None, shape=None,
                 rng=None, nrng=None, **kwargs):
        Layer._count += 1
        self.name = name or 'layer{}'.format(Layer._count)
        bad = [k for k in kwargs if not _INIT_KWARG.match(k)]
        if bad:  # passed on by a subclass; what callers give is checked by __new__
            util.check_kwargs(bad, self.valid_kwargs({}), self._where())
        for key, value in kwargs.items():  # options a subclass passes on count as given
            self.kwargs.setdefault(key, value)
        self.size = None if size is None else positive_int(size, 'size', self.name)
        self.shape = None if shape is None else _checked_shape(shape, self.name)
        self.activation = self._checked_activation(activation)
        self.rng = util.as_rng(rng if rng is not None else nrng)
        self.inputs = inputs
        self._params = []
        self._used_options = {}
        self._input_shapes = collections.OrderedDict()
        self._output_shape = None
        self.activate = None

    def __init_subclass__(cls, abstract=False, **kwargs):
        super().__init_subclass__(**kwargs)
        cls._abstract = abstract

    @classmethod
    def is_abstract(cls):
        """True for a base class, which computes nothing and exists to be subclassed.

        A class says so with ``class Recurrent(Layer, abstract=True)``; its
        subclasses are concrete unless they say so too. Building an abstract
        layer raises a ConfigurationError listing its concrete forms.
        """
        return cls._abstract

    @classmethod
    def concrete_forms(cls):
        """Return the registered names of the concrete subclasses of this class."""
        return sorted(key for key, c in cls._registry.classes.items()
                      if issubclass(c, cls) and not c.is_abstract())

    @classmethod
    def valid_kwargs(cls, kwargs):
        valid = util.accepted_kwargs(cls)
        if valid is None:
            return None
        return valid | set(_INIT_OPTIONS) | {k for k in kwargs if _INIT_KWARG.match(k)}

    @classmethod
    def kwargs_owner(cls, kwargs):
        if kwargs.get('name') is None:
            return '{}()'.format(cls.__name__)
        return 'layer {!r} ({})'.format(kwargs['name'], cls.__name__)

    @classmethod
    def fixed_activation(cls, kwargs):
        """Return ``(activation, reason)`` if layers built with ``kwargs`` always use one."""
        return cls.FIXED_ACTIVATION

    def _checked_activation(self, activation):
        fixed = type(self).fixed_activation(self.kwargs)
        if fixed is None:
            return 'relu' if activation is None else activation
        name, reason = fixed
        if activation is not None and activation != name:
            raise util.ConfigurationError(
                '{}: {}, so activation={!r} cannot apply; remove activation= (or give '
                '{!r})'.format(self._where(), reason, activation, name))
        return name

    def _where(self):
        return 'layer {!r} ({})'.format(self.name, type(self).__name__)

    # ----- shapes -------------------------------------------------------------

    @property
    def input_name(self):
        """Name of this layer's only input; an error if it has several."""
        if len(self._input_shapes) != 1:
            raise util.ConfigurationError(
                'layer {!r} expects exactly one input, has {}: {}'.format(
                    self.name, len(self._input_shapes), list(self._input_shapes)))
        return list(self._input_shapes)[0]

    @property
    def input_shape(self):
        """Shape of one example of this layer's only input (no batch axis)."""
        return self._input_shapes[self.input_name]

    @property
    def input_size(self):
        """Size of the last axis of this layer's only input."""
        size = self.input_shape[-1]
        if size is None:
            raise util.ConfigurationError(
                'layer {!r}: the size of input {!r} is unknown'.format(
                    self.name, self.input_name))
        return size

    @property
    def output_name(self):
        return self.full_name('out')

    @property
    def output_shape(self):
        """Shape of one example of the ``'out'`` output (no batch axis), e.g. ``(10,)``."""
        return self._output_shape

    @property
    def output_size(self):
        return self._output_shape[-1] if self._output_shape else None

    def output_shapes(self):
        """Return ``{output name: shape of one example}`` for every output of this layer."""
        return {self.full_name(o): self._output_shape for o in self.OUTPUTS}

    def full_name(self, output):
        """Return the graph name ``'<layer name>:<output>'``."""
        return '{}:{}'.format(self.name, output)

    def _input_specs(self):
        """Return ``[(reference, declared size or None)]``; reference None: the previous layer."""
        spec = self.inputs
        if isinstance(spec, (int, np.integer)) and not isinstance(spec, bool):
            return [(None, positive_int(spec, 'inputs', self.name))]
        if isinstance(spec, dict):
            return [(ref, None if size is None else positive_int(size, 'inputs size', self.name))
                    for ref, size in spec.items()]
        if isinstance(spec, (str, Layer)):
            spec = [spec]
        if not isinstance(spec, (list, tuple)) or \
                not all(isinstance(s, (str, Layer)) for s in spec):
            raise util.ConfigurationError(
                'layer {!r}: inputs= must be an output name such as "hid1" or "hid1:pre", a '
                'Layer, a list of these, a dict {{name: size}} or the int size of the previous '
                'layer, got {!r}'.format(self.name, spec))
        return [(s, None) for s in spec]

    def resolve_inputs(self, layers):
        """Find the shapes of this layer's inputs among earlier ``layers``.

        Raises
        ------
        ConfigurationError
            If an input names no output of an earlier layer, or a declared
            size does not match.
        """
        earlier = self._earlier(layers)
        available = self._earlier_outputs(layers)
        self._input_shapes = collections.OrderedDict()
        for ref, size in self._input_specs():
            if ref is None and not earlier:
                raise util.ConfigurationError(
                    'layer {!r}: inputs={} means the output of the previous layer, but there '
                    'is none'.format(self.name, size))
            name, shape = self._find_output(earlier[-1] if ref is None else ref, available,
                                            'input')
            if size is not None and shape[-1] != size:
                raise util.ConfigurationError(
                    'layer {!r}: input {!r} has size {}, but inputs= declared {}; correct '
                    'the size in inputs= or read another output'.format(
                        self.name, name, shape[-1], size))
            self._input_shapes[name] = shape

    def _earlier(self, layers):
        """Return the layers before this one in ``layers``."""
        return list(itertools.takewhile(lambda layer: layer is not self, layers))

    def _earlier_outputs(self, layers):
        """Return ``{output name: shape}`` of the layers before this one in ``layers``."""
        available = {}
        for layer in self._earlier(layers):
            available.update(layer.output_shapes())
        return available

    def _find_output(self, ref, available, what):
        """Return ``(name, shape)`` of the earlier output ``ref`` (a name or Layer) names."""
        name = ref.output_name if isinstance(ref, Layer) else str(ref)
        if ':' not in name:
            name += ':out'
        if name not in available:
            raise util.ConfigurationError(
                'layer {!r}: {} {!r} is not an output of an earlier layer{}; available '
                'outputs: {}'.format(self.name, what, name, util.did_you_mean(name, available),
                                     ', '.join(sorted(available)) or 'none'))
        return name, available[name]

    def resolve_outputs(self):
        """Set the output shape: the inputs' leading axes, then ``size`` units.

        ``shape`` may stand for ``size``: it must then be the inputs' shape
        per example with the last axis replaced, e.g. ``(None, 3)`` after a
        ``(None, 4)`` input, since this layer only maps the last axis.
        """
        shapes = list(self._input_shapes.values())
        if len({len(s) for s in shapes}) > 1:
            raise util.ConfigurationError(
                'layer {!r}: inputs have different numbers of dimensions: {}'.format(
                    self.name, dict(self._input_shapes)))
        first = tuple(shapes[0]) if shapes else (None, )
        leading = first[:-1]
        if self.shape is not None:
            self._check_shape_fits(first)
            self._output_shape = leading + self.shape[-1:]
        elif self.size is None:
            raise util.ConfigurationError(
                'layer {!r} ({}) does not specify a size; give an int, e.g. (10, {!r})'.format(
                    self.name, type(self).__name__, type(self).__name__.lower()))
        else:
            self._output_shape = leading + (self.size, )

    def _check_shape_fits(self, input_shape):
        leading = input_shape[:-1]
        want = tuple(self.shape[:-1])
        fits = len(want) in (0, len(leading)) and all(
            a is None or b is None or a == b for a, b in zip(want, leading))
        if not fits:
            raise util.ConfigurationError(
                'layer {!r} ({}): shape={} does not fit its input shape {}: this layer maps '
                'only the last axis of its input, so its output has shape {}; give size=N '
                '(or shape=(N,)) and add a "reshape" layer after it for other shapes'.format(
                    self.name, type(self).__name__, _fmt_shape(self.shape),
                    _fmt_shape(input_shape), _fmt_shape(leading + ('N', ))))

    def _check_declared_shape(self):
        """Check ``size`` and ``shape``, when given, against the output shape found."""
        have = self._output_shape
        if self.size is not None and have[-1] is not None and have[-1] != self.size:
            raise util.ConfigurationError(
                '{}: size={} but its output has {} values on the last axis (shape {}); '
                'leave size out or correct it'.format(
                    self._where(), self.size, have[-1], _fmt_shape(have)))
        want = self.shape  # its trailing axes: shape=(n,) may stand for size=n
        if want is not None and not (len(want) <= len(have) and all(
                a is None or b is None or a == b for a, b in zip(want, have[-len(want):]))):
            raise util.ConfigurationError(
                '{}: shape={} but its output has shape {}; leave shape out or correct '
                'it'.format(self._where(), _fmt_shape(want), _fmt_shape(have)))

    def _drop_batch_axis(self):
        """Convert shapes of a layer pickled by theanets 0.8.x, which kept the batch axis."""
        self._input_shapes = collections.OrderedDict(
            (k, tuple(v[1:])) for k, v in self._input_shapes.items())
        if self._output_shape is not None:
            self._output_shape = tuple(self._output_shape[1:])

    # ----- binding and parameters ------------------------------------------------

    def bind(self, graph, reset=True, initialize=True):
        """Resolve inputs and outputs in ``graph``, build the activation, create params."""
        if reset:
            self._params = []
            self._used_options = {}
        self.resolve_inputs(graph.layers)
        self.resolve_outputs()
        self._check_declared_shape()
        self.activate = activations.build(self.activation, self)
        if initialize and reset:
            self.setup()
            self._check_param_kwargs()
        self.log()

    def _check_param_kwargs(self):
        """Every initial-value option given must have been used by some parameter."""
        unused = [k for k in self.kwargs if _INIT_KWARG.match(k) and k not in self._used_options]
        if unused:
            own = sorted({p.name.split('.', 1)[1] for p in self.params})
            raise util.ConfigurationError(
                'layer {!r}: {} applies to no parameter of this layer; its parameters are {} '
                '(weight matrices take mean, std, sparsity and diagonal{}; biases take mean '
                'and std)'.format(
                    self.name, ', '.join(map(repr, sorted(unused))), ', '.join(own) or 'none',
                    ', and radius if recurrent' if self.TAKES_RADIUS else
                    '; radius_NAME rescales one'))

    def setup(self):
        """Create this layer's parameters (none by default)."""

    def _init_value(self, kind, name, default, generic=True):
        """Return the ``kind`` option (``'std'``...) for parameter ``name``.

        The most specific keyword wins: ``std_w_in:out``, then ``std_w`` (which
        covers every ``w_*`` parameter, e.g. the weights of a multi-input
        Feedforward layer), then ``std`` (if ``generic``), then ``default``.
        """
        keys = ['{}_{}'.format(kind, key) for key in [name] + _param_families(name)]
        for key in keys + ([kind] if generic else []):
            if key in self.kwargs:
                self._used_options[key] = True
                return self.kwargs[key]
        return default

    def add_weights(self, name, nin, nout, mean=0, std=None, sparsity=0, diagonal=None,
                    radius=None, blocks=1, recurrent=False, shape=None):
        """Create a weight parameter named ``'<layer>.<name>'``, a (nin, nout) matrix.

        The keyword values are defaults: ``<option>_<name>`` and ``<option>``
        given to the layer take precedence. With no ``std`` anywhere the
        values have standard deviation 1 / sqrt(nin + nout / blocks).

        Parameters
        ----------
        blocks : int, optional
            Draw ``blocks`` matrices (nin, nout / blocks) side by side, each
            with the options on its own (e.g. the gates of an LSTM).
        recurrent : bool, optional
            A recurrent matrix: the layer's generic ``radius`` applies too
            (``radius_<name>`` applies to any matrix).
        shape : tuple of int, optional
            Reshape the (nin, nout) matrix to this shape (e.g. convolution filters).
        """
        width = nout // blocks
        std = self._init_value('std', name, std)
        with self._naming(name):
            value = np.concatenate([
                util.random_matrix(
                    nin, width,
                    mean=self._init_value('mean', name, mean),
                    std=1 / np.sqrt(nin + width) if std is None else std,
                    sparsity=self._init_value('sparsity', name, sparsity),
                    diagonal=self._init_value('diagonal', name, diagonal),
                    radius=self._init_value('radius', name, radius, generic=recurrent),
                    rng=self.rng)
                for _ in range(blocks)], axis=1)
        return self._add_param(name, value if shape is None else value.reshape(shape))

    def add_bias(self, name, size, mean=0, std=1):
        """Create a bias vector parameter of shape (size,) named ``'<layer>.<name>'``."""
        with self._naming(name):
            value = util.random_vector(
                size, mean=self._init_value('mean', name, mean),
                std=self._init_value('std', name, std), rng=self.rng)
        return self._add_param(name, value)

    @contextlib.contextmanager
    def _naming(self, param):
        """Prefix configuration errors raised inside with this layer and parameter."""
        try:
            yield
        except util.ConfigurationError as err:
            raise util.ConfigurationError('layer {!r}, parameter {!r}: {}'.format(
                self.name, param, err)) from None

    def _add_param(self, name, value, regularizable=None):
        """Create (:func:`theanets.util.make_param`) and keep a parameter ``'<layer>.<name>'``."""
        if any(p.name == self._fmt(name) for p in self._params):
            raise util.ConfigurationError(
                'layer {!r} already has a parameter named {!r}'.format(self.name, name))
        param = util.make_param(self._fmt(name), value, regularizable)
        self._params.append(param)
        return param

    def _fmt(self, name):
        return '{}.{}'.format(self.name, name)

    @property
    def params(self):
        """Learnable parameters: the layer's own, then its activation's."""
        extra = self.activate.params if self.activate is not None else []
        return list(self._params) + list(extra)

    def find(self, key):
        """Return this layer's parameter named ``key`` (or at int index ``key``).

        Raises
        ------
        KeyError
            If there is no such parameter.
        """
        if isinstance(key, (int, np.integer)):
            if not -len(self._params) <= key < len(self._params):
                raise KeyError('layer {!r} has no parameter {} (it has {})'.format(
                    self.name, key, len(self._params)))
            return self._params[key]
        name = self._fmt(key)
        for param in self.params:
            if param.name == name or param.name == key:
                return param
        raise KeyError('layer {!r} has no parameter {!r}; it has {}'.format(
            self.name, key, [p.name for p in self.params]))

    # ----- computation -------------------------------------------------------------

    def connect(self, inputs):
        """Compute this layer's outputs from the graph outputs computed so far.

        Parameters
        ----------
        inputs : dict
            Maps names like ``'hid1:out'`` to symbolic tensors.

        Returns
        -------
        outputs : OrderedDict
            Maps ``'<name>:<output>'`` to symbolic tensors.
        updates : list of (shared, expression) pairs
        """
        names = list(self._input_shapes)
        if len(names) == 1:
            arg = inputs[names[0]]
        else:
            arg = collections.OrderedDict((n, inputs[n]) for n in names)
        result = self.transform(arg)
        outputs, updates = result if isinstance(result, tuple) else (result, [])
        if not isinstance(outputs, (dict, list)):
            outputs = {'out': outputs}
        outputs = collections.OrderedDict(sorted(dict(outputs).items()))
        return (collections.OrderedDict(
            (self.full_name(k), v) for k, v in outputs.items()), list(updates or []))

    def transform(self, inputs):
        """Compute outputs from inputs; subclasses override this."""
        raise NotImplementedError('layer class {} defines no transform()'.format(
            type(self).__name__))

    # ----- description -------------------------------------------------------------

    def log(self):
        inputs = ', '.join('"{}" {}'.format(n, s) for n, s in self._input_shapes.items())
        log.info('layer %s "%s" %s %s%s', type(self).__name__, self.name, self.output_shape,
                 getattr(self.activate, 'name', self.activation),
                 ' from ' + inputs if inputs else '')
        log.info('learnable parameters: %d', self.log_params())

    def log_params(self):
        """Log each parameter's shape; return the number of learnable values."""
        total = 0
        for param in self.params:
            value = param.get_value()
            log.debug('parameter %s %s', param.name, value.shape)
            total += value.size
        return total

    def to_spec(self):
        """Return a dict that rebuilds this layer, as a network builds layers from dicts.

        It holds the keyword arguments the layer was built with, plus
        ``form``, ``name`` and ``activation`` (and the layer's
        ``SPEC_KEYS``, e.g. a tied layer's ``partner``); layers given as
        arguments appear by name. ``Layer.build(spec.pop('form'), **spec)``
        rebuilds the layer.
        """
        spec = {k: _reference(v) for k, v in self.kwargs.items()}
        for key in self.SPEC_KEYS:
            spec[key] = _reference(getattr(self, key))
        spec.update(form=type(self).__name__.lower(), name=self.name,
                    activation=self.activation)
        return spec

    def __repr__(self):
        return '{}(name={!r}, shape={})'.format(type(self).__name__, self.name,
                                                self.output_shape)

    def __getstate__(self):
        state = dict(self.__dict__)
        state['rng'] = rng_to_state(self.rng)
        state.pop('_used_options', None)
        return state

    def __setstate__(self, state):
        state = dict(state)
        state['rng'] = rng_from_state(state.get('rng'))
        if isinstance(state.get('kwargs'), dict):
            state['kwargs'] = _interned(state['kwargs'])
        self.__dict__.update(_interned(state))


Layer._registry.add(Layer)


class Input(Layer):
    """A layer that receives external data.

    Parameters
    ----------
    size : int, optional
        Number of input variables.
    shape : tuple of int, optional
        Shape of one example (no batch axis), e.g. ``(28, 28, 1)``.
    ndim : int, optional
        Number of dimensions of the data including the batch axis (default 2).
    sparse : bool or {'csr', 'csc'}, optional
        Receive a scipy sparse matrix (2-D data only).
    """

    FIXED_ACTIVATION = ('linear', 'an input layer passes its data on unchanged')

    def __init__(self, size=None, ndim=2, sparse=False, **kwargs):
        inputs = kwargs.pop('inputs', ())
        super().__init__(size=size, **kwargs)
        if inputs not in ((), None, [], {}):
            raise util.ConfigurationError(
                '{}: an input layer reads data, not other layers, so inputs={!r} cannot '
                'apply; remove it'.format(self._where(), inputs))
        if self.shape is not None:
            if 'ndim' in self.kwargs and ndim != 1 + len(self.shape):
                raise util.ConfigurationError(
                    '{}: ndim={} does not match shape={} ({} dimensions with the batch axis); '
                    'give only one'.format(self._where(), ndim, _fmt_shape(self.shape),
                                          1 + len(self.shape)))
            ndim = 1 + len(self.shape)
        elif isinstance(ndim, bool) or not isinstance(ndim, (int, np.integer)) or ndim < 2:
            raise util.ConfigurationError(
                '{}: ndim counts the batch axis too, so it must be an int >= 2, got {!r}'
                .format(self._where(), ndim))
        self.ndim = int(ndim)
        self.sparse = sparse
        if sparse and self.ndim != 2:
            raise util.ConfigurationError(
                'input layer {!r}: sparse input needs 2-D data, got ndim={}'.format(
                    self.name, self.ndim))
        self.input = self._make_variable()

    def _make_variable(self):
        if self.sparse:
            fmt = 'csc' if self.sparse == 'csc' else 'csr'
            return pytensor.sparse.matrix(fmt, name=self.name, dtype=util.FLOAT)
        return TT.tensor(dtype=util.FLOAT, shape=(None, ) * self.ndim, name=self.name)

    def resolve_outputs(self):
        if self.shape is not None:
            self._output_shape = self.shape
        elif self.size is not None:
            self._output_shape = (None, ) * (self.ndim - 2) + (self.size, )
        else:
            raise util.ConfigurationError(
                'input layer {!r} does not specify a size; give an int or a shape tuple'.format(
                    self.name))

    def transform(self, inputs):
        return self.input


def _no_activation(form, does):
    return ('linear', 'a {} layer {} and applies no activation'.format(form, does))


class Concatenate(Layer):
    """Concatenate several inputs along the last axis: (..., sum of input sizes)."""

    __extra_registration_keys__ = ['concat']
    FIXED_ACTIVATION = _no_activation('concatenate', 'joins its inputs')

    def resolve_outputs(self):
        shapes = list(self._input_shapes.values())
        if len({len(s) for s in shapes}) > 1 or len({s[:-1] for s in shapes}) > 1:
            raise util.ConfigurationError(
                'layer {!r}: inputs must share leading dimensions to concatenate: {}'.format(
                    self.name, dict(self._input_shapes)))
        sizes = [s[-1] for s in shapes]
        self._output_shape = shapes[0][:-1] + (None if None in sizes else sum(sizes), )

    def transform(self, inputs):
        if not isinstance(inputs, dict):
            return inputs
        return TT.concatenate(list(inputs.values()), axis=-1)


class Flatten(Layer):
    """Flatten all but the batch axis: (B, d1, d2, ...) -> (B, d1 * d2 * ...)."""

    __extra_registration_keys__ = ['flat']
    FIXED_ACTIVATION = _no_activation('flatten', 'reshapes its input')

    def resolve_outputs(self):
        shape = self.input_shape
        if None in shape:
            raise util.ConfigurationError(
                'layer {!r}: cannot flatten input {!r} of partly unknown shape {}'.format(
                    self.name, self.input_name, _fmt_shape(shape)))
        self._output_shape = (int(np.prod(shape)), )

    def transform(self, inputs):
        return inputs.reshape((inputs.shape[0], self.output_size))


class Product(Layer):
    """Multiply several inputs of identical shape elementwise."""

    __extra_registration_keys__ = ['prod']
    FIXED_ACTIVATION = _no_activation('product', 'multiplies its inputs')

    def resolve_outputs(self):
        shapes = set(self._input_shapes.values())
        if len(shapes) > 1:
            raise util.ConfigurationError(
                'layer {!r}: inputs must have identical shapes to multiply: {}'.format(
                    self.name, dict(self._input_shapes)))
        self._output_shape = shapes.pop()

    def transform(self, inputs):
        if not isinstance(inputs, dict):
            return inputs
        values = list(inputs.values())
        out = values[0]
        for value in values[1:]:
            out = out * value
        return out


class Reshape(Layer):
    """Reshape each example of the input to ``shape`` (no batch axis)."""

    FIXED_ACTIVATION = _no_activation('reshape', 'reshapes its input')

    def resolve_outputs(self):
        if self.shape is None:
            raise util.ConfigurationError(
                'reshape layer {!r} needs shape=(...) for one example'.format(self.name))
        problem = self._reshape_problem(self.input_shape, self.shape)
        if problem:
            raise util.ConfigurationError('layer {!r}: cannot reshape input {} to {}: {}'.format(
                self.name, _fmt_shape(self.input_shape), _fmt_shape(self.shape), problem))
        self._output_shape = tuple(self.shape)

    @staticmethod
    def _reshape_problem(have, want):
        """Why examples of shape ``have`` cannot always become ``want`` (None: they can)."""
        known_have = int(np.prod([s for s in have if s is not None]))
        known_want = int(np.prod([s for s in want if s is not None]))
        if want.count(None) > 1:
            return 'shape= may leave one axis as None (its length is inferred), not {}'.format(
                want.count(None))
        if None in want:
            if known_have % known_want:
                return ('the input\'s known axes hold {} values, not a multiple of the {} of '
                        'the known axes of shape='.format(known_have, known_want))
        elif None in have:
            return ('the input has an axis of varying length, so its number of values varies; '
                    'write None in shape= for the axis that varies')
        elif known_have != known_want:
            return '{} values do not fit in {}'.format(known_have, known_want)
        return None

    def transform(self, inputs):
        shape = [inputs.shape[0]] + [-1 if s is None else s for s in self.shape]
        return inputs.reshape(shape, ndim=len(shape))
