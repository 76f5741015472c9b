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

Shape inference (``resolve_inputs``, ``resolve_outputs``) is pure Python:
shapes are tuples per example *including* the batch axis, with ``None`` for
unknown sizes, e.g. ``(None, 10)`` for a feedforward layer of 10 units.
"""

import collections
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


class Layer(util.Registrar):
    """Base class for network layers.

    Parameters
    ----------
    size : int, optional
        Number of units: the size of the last axis of the ``'out'`` output.
    inputs : str, Layer, dict or sequence of these, optional
        The graph outputs this layer reads: ``'hid1'`` (meaning ``'hid1:out'``),
        ``'hid1:pre'``, a Layer, or ``{name: size}`` (sizes are checked).
        A network fills in the previous layer's output when omitted.
    name : str, optional
        Layer name; defaults to ``'layerN'`` with N a global count.
    activation : str or Activation, optional
        Activation of the layer; defaults to ``'relu'``.
    shape : tuple of int, optional
        Shape of one example's output (no batch axis). Layers that map the
        last axis of their input (Feedforward, recurrent layers...) accept
        only the input's own leading axes here, so ``shape=(n,)`` means
        ``size=n``; Input and Reshape layers take any shape.
    rng : int or RandomState, optional
        Random source for initial parameter values.
    mean, std, sparsity, diagonal, radius : float, optional
        Initial-value options for every parameter; each also has a
        ``<option>_<param>`` form (e.g. ``std_w=0.1``) for one parameter.
        ``std_w`` also covers every ``w_<input>`` weight of a multi-input
        layer; ``std_w_in:out`` addresses one of them.

    Attributes
    ----------
    name : str
    kwargs : dict
        Every constructor argument, for :meth:`to_spec`.
    params : list of shared variables
        Learnable parameters, including those of the activation.
    """

    _registry = util.Registry('layer')
    _count = 0

    #: Names of this layer's outputs; all share the ``'out'`` shape unless
    #: :meth:`output_shapes` says otherwise.
    OUTPUTS = ('out', )

    def __init__(self, size=None, inputs=(), name=None, activation='relu', shape=None,
                 rng=None, nrng=None, **kwargs):
        Layer._count += 1
        bad = [k for k in kwargs if not _INIT_KWARG.match(k)]
        if bad:
            util.check_kwargs(bad, self._valid_kwargs(), 'layer {!r} ({})'.format(
                name or '?', type(self).__name__))
        if size is not None and (not isinstance(size, (int, np.integer)) or size <= 0):
            raise util.ConfigurationError(
                'layer {!r}: size must be a positive integer, got {!r}'.format(name, size))
        self.name = name or 'layer{}'.format(Layer._count)
        self.size = size
        self.shape = tuple(shape) if shape is not None else None
        if self.shape is not None and any(
                s is not None and (not isinstance(s, (int, np.integer)) or s <= 0)
                for s in self.shape):
            raise util.ConfigurationError(
                'layer {!r}: shape must hold positive integers, got {!r}'.format(
                    self.name, shape))
        self.activation = activation
        self.rng = util.as_rng(rng if rng is not None else nrng)
        self.inputs = inputs
        self.kwargs = dict(kwargs, size=size, inputs=inputs, name=self.name,
                           activation=activation, shape=shape)
        self._params = []
        self._input_shapes = collections.OrderedDict()
        self._output_shape = None
        self.activate = None

    def _valid_kwargs(self):
        return util.accepted_kwargs(type(self)) | {'mean', 'std', 'sparsity', 'diagonal', 'radius'}

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
        return self._output_shape

    @property
    def output_size(self):
        return self._output_shape[-1] if self._output_shape else None

    def output_shapes(self):
        """Return ``{output name: shape}`` for every output of this layer."""
        return {self.full_name(o): self._output_shape for o in self.OUTPUTS}

    def full_name(self, output):
        """Return the graph name ``'<layer name>:<output>'``."""
        return '{}:{}'.format(self.name, output)

    def _input_specs(self):
        spec = self.inputs
        if isinstance(spec, dict):
            return list(spec.items())
        if isinstance(spec, (str, Layer)):
            spec = [spec]
        if not isinstance(spec, (list, tuple)) or \
                not all(isinstance(s, (str, Layer)) for s in spec):
            raise util.ConfigurationError(
                'layer {!r}: inputs= must be an output name such as "hid1" or "hid1:pre", a '
                'Layer, a list of these or a dict {{name: size}}, got {!r}'.format(
                    self.name, spec))
        return [(s, None) for s in spec]

    def resolve_inputs(self, layers):
        """Find the shapes of this layer's inputs among earlier ``layers``.

        Raises
        ------
        ConfigurationError
            If an input names no output of an earlier layer, or a declared
            size does not match.
        """
        available = {}
        for layer in layers:
            if layer is self:
                break
            available.update(layer.output_shapes())
        self._input_shapes = collections.OrderedDict()
        for ref, size in self._input_specs():
            name = ref.output_name if isinstance(ref, Layer) else str(ref)
            if ':' not in name:
                name += ':out'
            if name not in available:
                near = util.closest(name, available)
                raise util.ConfigurationError(
                    'layer {!r}: input {!r} is not an output of an earlier layer{}; '
                    'available outputs: {}'.format(
                        self.name, name,
                        ' (did you mean {}?)'.format(', '.join(map(repr, near))) if near else '',
                        ', '.join(sorted(available)) or 'none'))
            shape = available[name]
            if size is not None and shape[-1] != size:
                raise util.ConfigurationError(
                    'layer {!r}: input {!r} has size {}, but inputs= declared {}; correct '
                    'the size in inputs={{...}} or read another output'.format(
                        self.name, name, shape[-1], size))
            self._input_shapes[name] = shape

    def resolve_outputs(self):
        """Set the output shape: the inputs' leading axes, then ``size`` units.

        ``shape`` may stand for ``size``: it must then be the inputs' shape
        per example with the last axis replaced, e.g. ``(3, )`` after a
        ``(None, 4)`` input, since this layer only maps the last axis.
        """
        ndims = {len(s) for s in self._input_shapes.values()}
        if len(ndims) > 1:
            raise util.ConfigurationError(
                'layer {!r}: inputs have different numbers of dimensions: {}'.format(
                    self.name, dict(self._input_shapes)))
        first = list(self._input_shapes.values())[0] if self._input_shapes else (None, None)
        if self.shape is not None:
            self._check_shape_fits(first)
            self._output_shape = tuple(first[:-1]) + self.shape[-1:]
            return
        if self.size is None:
            raise util.ConfigurationError(
                'layer {!r} ({}) does not specify a size; give an int, e.g. (10, {!r})'.format(
                    self.name, type(self).__name__, type(self).__name__.lower()))
        self._output_shape = tuple(first[:-1]) + (self.size, )

    def _check_shape_fits(self, input_shape):
        leading = tuple(input_shape[1:-1])
        want = tuple(self.shape[:-1])
        fits = len(want) in (0, len(leading)) and all(
            a is None or b is None or a == b for a, b in zip(want, leading))
        if not fits:
            raise util.ConfigurationError(
                'layer {!r} ({}): shape={} does not fit its input shape {}: this layer maps '
                'only the last axis of its input, so its output has shape {}; give size=N '
                '(or shape=(N,)) and add a "reshape" layer after it for other shapes'.format(
                    self.name, type(self).__name__, self.shape, input_shape,
                    '(' + ', '.join(str(s) for s in input_shape[:-1]) + ', N)'))
        if self.size is not None and self.size != self.shape[-1]:
            raise util.ConfigurationError(
                'layer {!r} ({}): size={} and shape={} disagree; give only one'.format(
                    self.name, type(self).__name__, self.size, self.shape))

    # ----- binding and parameters ------------------------------------------------

    def bind(self, graph, reset=True, initialize=True):
        """Resolve inputs and outputs in ``graph``, build the activation, create params."""
        if reset:
            self._params = []
        self.resolve_inputs(graph.layers)
        self.resolve_outputs()
        self.activate = activations.build(self.activation, self)
        if initialize and reset:
            self.setup()
            self._check_param_kwargs()
        self.log()

    def _check_param_kwargs(self):
        own = {p.name.split('.', 1)[1] for p in self.params}
        own |= {family for name in own for family in _param_families(name)}
        for key in self.kwargs:
            match = _INIT_KWARG.match(key)
            if match and match.group(2) and match.group(2)[1:] not in own:
                raise util.ConfigurationError(
                    'layer {!r}: {!r} names no parameter of this layer; its parameters '
                    'are {}'.format(self.name, key, ', '.join(sorted(own)) or 'none'))

    def setup(self):
        """Create this layer's parameters (none by default)."""

    def _init_value(self, kind, name, default):
        """Return the ``kind`` option (``'std'``...) for parameter ``name``.

        The most specific keyword wins: ``std_w_in:out``, then ``std_w`` (which
        covers every ``w_*`` parameter, e.g. the weights of a multi-input
        Feedforward layer), then ``std``, then ``default``.
        """
        for key in [name] + _param_families(name):
            full = '{}_{}'.format(kind, key)
            if full in self.kwargs:
                return self.kwargs[full]
        return self.kwargs.get(kind, default)

    def add_weights(self, name, nin, nout, mean=0, std=0, sparsity=0, diagonal=0):
        """Create a weight matrix parameter of shape (nin, nout) named ``'<layer>.<name>'``.

        The keyword values are defaults: ``<option>_<name>`` and ``<option>``
        given to the layer take precedence. With no ``std`` anywhere the
        values have standard deviation 1 / sqrt(nin + nout).
        """
        value = util.random_matrix(
            nin, nout,
            mean=self._init_value('mean', name, mean),
            std=self._init_value('std', name, std) or 1 / np.sqrt(nin + nout),
            sparsity=self._init_value('sparsity', name, sparsity),
            diagonal=self._init_value('diagonal', name, diagonal),
            rng=self.rng)
        return self._add_param(name, value)

    def add_bias(self, name, size, mean=0, std=1):
        """Create a bias vector parameter of shape (size,) named ``'<layer>.<name>'``."""
        value = util.random_vector(
            size, mean=self._init_value('mean', name, mean),
            std=self._init_value('std', name, std), rng=self.rng)
        return self._add_param(name, value)

    def _add_param(self, name, value):
        full = self._fmt(name)
        if any(p.name == full for p in self._params):
            raise util.ConfigurationError(
                'layer {!r} already has a parameter named {!r}'.format(self.name, name))
        value = np.asarray(value, dtype=util.FLOAT)
        # static shapes: products and output sizes are known when graphs are built
        param = pytensor.shared(value, name=full, shape=value.shape)
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
        inputs = ', '.join('"{}" {}'.format(n, s[1:]) for n, s in self._input_shapes.items())
        log.info('layer %s "%s" %s %s%s', type(self).__name__, self.name,
                 self.output_shape[1:] if self.output_shape else None,
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
        """Return a dict that rebuilds this layer with ``Layer.build(spec.pop('form'), **spec)``."""
        spec = dict(self.kwargs)
        spec['form'] = type(self).__name__.lower()
        return spec

    def __repr__(self):
        return '{}(name={!r}, shape={})'.format(type(self).__name__, self.name,
                                                self.output_shape)

    def __getstate__(self):
        state = dict(self.__dict__)
        state['rng'] = rng_to_state(self.rng)
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

    def __init__(self, size=None, ndim=2, sparse=False, **kwargs):
        kwargs['activation'] = 'linear'
        kwargs.pop('inputs', None)
        super().__init__(size=size, inputs=(), **kwargs)
        if self.shape is not None:
            ndim = 1 + len(self.shape)
        self.ndim = ndim
        self.sparse = sparse
        if sparse and ndim != 2:
            raise util.ConfigurationError(
                'input layer {!r}: sparse input needs 2-D data, got ndim={}'.format(
                    self.name, ndim))
        self.kwargs.update(ndim=ndim, sparse=sparse)
        self.input = self._make_variable()

    def _make_variable(self):
        if self.sparse:
            fmt = 'csc' if self.sparse == 'csc' else 'csr'
            return pytensor.sparse.matrix(fmt, name=self.name, dtype=util.FLOAT)
        return TT.tensor(dtype=util.FLOAT, shape=(None, ) * self.ndim, name=self.name)

    def resolve_outputs(self):
        if self.shape is not None:
            self._output_shape = (None, ) + self.shape
        elif self.size is not None:
            self._output_shape = (None, ) * (self.ndim - 1) + (self.size, )
        else:
            raise util.ConfigurationError(
                'input layer {!r} does not specify a size; give an int or a shape tuple'.format(
                    self.name))

    def transform(self, inputs):
        return self.input


class Concatenate(Layer):
    """Concatenate several inputs along the last axis: (..., sum of input sizes)."""

    __extra_registration_keys__ = ['concat']

    def resolve_outputs(self):
        shapes = list(self._input_shapes.values())
        if len({len(s) for s in shapes}) > 1 or len({s[:-1] for s in shapes}) > 1:
            raise util.ConfigurationError(
                'layer {!r}: inputs must share leading dimensions to concatenate: {}'.format(
                    self.name, dict(self._input_shapes)))
        sizes = [s[-1] for s in shapes]
        total = None if None in sizes else sum(sizes)
        if self.size is not None and total is not None and self.size != total:
            raise util.ConfigurationError(
                'layer {!r}: size={} but inputs sum to {}'.format(self.name, self.size, total))
        self._output_shape = shapes[0][:-1] + (total, )

    def transform(self, inputs):
        if not isinstance(inputs, dict):
            return inputs
        return TT.concatenate(list(inputs.values()), axis=-1)


class Flatten(Layer):
    """Flatten all but the batch axis: (B, d1, d2, ...) -> (B, d1 * d2 * ...)."""

    __extra_registration_keys__ = ['flat']

    def resolve_outputs(self):
        shape = self.input_shape[1:]
        if None in shape:
            raise util.ConfigurationError(
                'layer {!r}: cannot flatten input {!r} of partly unknown shape {}'.format(
                    self.name, self.input_name, self.input_shape))
        size = int(np.prod(shape))
        if self.size is not None and self.size != size:
            raise util.ConfigurationError(
                'layer {!r}: size={} but the flattened input has {} values'.format(
                    self.name, self.size, size))
        self._output_shape = (None, size)

    def transform(self, inputs):
        return inputs.reshape((inputs.shape[0], self.output_size))


class Product(Layer):
    """Multiply several inputs of identical shape elementwise."""

    __extra_registration_keys__ = ['prod']

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

    def resolve_outputs(self):
        if self.shape is None:
            raise util.ConfigurationError(
                'reshape layer {!r} needs shape=(...) for one example'.format(self.name))
        have = self.input_shape[1:]
        want = self.shape
        if None not in have and None not in want and np.prod(have) != np.prod(want):
            raise util.ConfigurationError(
                'layer {!r}: cannot reshape input {} ({} values) to {} ({} values)'.format(
                    self.name, have, int(np.prod(have)), want, int(np.prod(want))))
        self._output_shape = (None, ) + tuple(want)

    def transform(self, inputs):
        shape = [inputs.shape[0]] + [-1 if s is None else s for s in self.shape]
        return inputs.reshape(shape, ndim=len(shape))
