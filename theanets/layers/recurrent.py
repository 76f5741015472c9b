r"""Recurrent layers: each runs a loop over the time axis of its input.

Every recurrent layer reads a (batch, time, nin) input and produces outputs
of shape (batch, time, ...), always in forward time order (also when the
layer runs backwards in time). The input projection of all time steps is one
matrix product before the loop; the loop itself is one op of
:mod:`theanets.ops.recurrent` (C, NumPy or JAX, depending on the mode), which
reads the projection time-major through strides.

Options every recurrent layer takes (besides those of
:class:`~theanets.layers.base.Layer`):

- ``h_0``: name of a graph output giving the initial hidden state, shape
  (batch, size), e.g. an extra :class:`~theanets.layers.base.Input` layer of
  ``ndim=2``. Default: zeros. (:class:`LSTM` also takes ``c_0`` for its cell
  and :class:`SCRN` ``s_0`` for its context state.)
- ``direction``: ``'forward'`` (default) or ``'backward'``.
- ``bptt_limit``: number of time steps gradients flow back through
  (truncated backpropagation through time); default -1, no limit.
- ``radius``: rescale square recurrent weight matrices to this spectral
  radius (largest singular value); ``radius_hh=...`` for one matrix.
- ``diagonal``, ``std``, ``mean``, ``sparsity`` (and their ``_<param>``
  forms) as for every layer; on recurrent matrices made of several square
  blocks (e.g. the LSTM's ``hh`` of shape (n, 4n)) they apply to each block.

Examples
--------
>>> import numpy as np, theanets
>>> net = theanets.recurrent.Regressor([3, (4, 'lstm'), 2])
>>> net.predict(np.zeros((2, 5, 3), 'f')).shape
(2, 5, 2)
>>> net.layers[1].find('hh').get_value().shape
(4, 16)
"""

import collections
import math

import numpy as np
import pytensor.tensor as TT

from .. import util
from ..ops import recurrent as ops
from ..ops.product import dot_last
from .base import Layer, _INIT_KWARG

__all__ = ['Recurrent', 'RNN', 'RRNN', 'MUT1', 'GRU', 'LSTM', 'MRNN', 'SCRN', 'Clockwork',
           'Bidirectional']


def _direction_is_backward(direction, name):
    text = str(direction or 'forward').lower()
    if 'back' in text or text == 'bw':
        return True
    if 'forw' in text or text == 'fw':
        return False
    raise util.ConfigurationError(
        'layer {!r}: direction must be "forward" or "backward", got {!r}'.format(
            name, direction))


class Recurrent(Layer, abstract=True):
    """Base class of recurrent layers.

    Subclasses create parameters in :meth:`setup` and compute their outputs
    in :meth:`transform` with the helpers :meth:`_project`, :meth:`_initial`,
    :meth:`_loop_activation` and :meth:`_batch_major` around a function of
    :mod:`theanets.ops.recurrent`.

    Parameters
    ----------
    h_0 : str, optional
        Name of a graph output (batch, size) holding the initial hidden state.
    direction : {'forward', 'backward'}, optional
        Direction the loop runs in time; outputs are in forward order either way.
    bptt_limit : int, optional
        Truncate backpropagation through time after this many steps (-1: none).
    """

    OUTPUTS = ('out', 'pre')

    #: Keyword arguments that name graph outputs holding initial states.
    STATES = ('h_0', )

    #: False for layers with fixed nonlinearities (LSTM, MUT1): their
    #: activation, and any parameters it has, are not used.
    USES_ACTIVATION = True

    SPEC_KEYS = ('h_0', )
    TAKES_RADIUS = True

    def __init__(self, h_0=None, direction='forward', bptt_limit=-1, **kwargs):
        super().__init__(**kwargs)
        self.h_0 = h_0
        self.direction = direction
        if isinstance(bptt_limit, bool) or not isinstance(bptt_limit, (int, np.integer)):
            raise util.ConfigurationError(
                '{}: bptt_limit must be an int (a number of time steps, or -1 for no '
                'limit), got {!r}'.format(self._where(), bptt_limit))
        self.bptt_limit = int(bptt_limit)
        self._backward = _direction_is_backward(direction, self.name)
        self._state_inputs = collections.OrderedDict()
        self._state_values = {}

    # ----- shapes ------------------------------------------------------------------

    def resolve_inputs(self, layers):
        super().resolve_inputs(layers)
        if len(self._input_shapes) != 1:
            raise util.ConfigurationError(
                'recurrent layer {!r} takes one input, got {}; join several with a '
                '"concatenate" layer first'.format(self.name, list(self._input_shapes)))
        if len(self.input_shape) != 2:
            raise util.ConfigurationError(
                'recurrent layer {!r} needs (batch, time, variables) input, but {!r} has '
                'shape {} per example; use a model from theanets.recurrent'.format(
                    self.name, self.input_name, self.input_shape))
        available = self._earlier_outputs(layers)
        self._state_inputs = collections.OrderedDict()
        for kind in self.STATES:
            ref = getattr(self, kind, None)
            if ref is not None:
                self._state_inputs[kind] = self._find_output(
                    ref, available, 'initial state {}='.format(kind))

    def resolve_outputs(self):
        super().resolve_outputs()
        for kind, (name, shape) in self._state_inputs.items():
            size = self._state_size(kind)
            if len(shape) != 1 or shape[-1] not in (None, size):
                raise util.ConfigurationError(
                    'layer {!r}: initial state {}={!r} must have shape (batch, {}), got {}; '
                    'e.g. an Input layer with ndim=2 and size={}'.format(
                        self.name, kind, name, size, shape, size))

    @property
    def params(self):
        """Learnable parameters (with the activation's, when the layer uses it)."""
        return super().params if self.USES_ACTIVATION else list(self._params)

    def _state_size(self, kind):
        """Size of the state initialised by keyword ``kind`` (e.g. ``'h_0'``)."""
        return self.output_size

    def output_shapes(self):
        shapes = super().output_shapes()
        for output, size in self._output_sizes().items():
            shapes[self.full_name(output)] = self._output_shape[:-1] + (size, )
        return shapes

    def _output_sizes(self):
        """Return ``{output: size}`` for outputs whose last axis is not the layer size."""
        return {}

    # ----- parameters ----------------------------------------------------------------

    def add_recurrent_weights(self, name, blocks=1, mean=0, std=None, sparsity=0):
        """Create a recurrent matrix (size, blocks * size) of square blocks side by side.

        Each block honours the layer's ``mean``, ``std``, ``sparsity``,
        ``diagonal`` and ``radius`` options (or their ``_<name>`` forms);
        ``radius`` rescales each block to that spectral radius.
        """
        n = self.output_size
        return self.add_weights(name, n, blocks * n, mean=mean, std=std, sparsity=sparsity,
                                blocks=blocks, recurrent=True)

    def _fixed_rates(self, kind, size):
        """Draw fixed (not learned) rates in (0, 1] from the layer's random stream.

        ``'uniform'`` draws U(0.001, 1); ``'log'`` draws 10**U(-3, 0), so rates
        spread evenly over time scales from 1 to 1000 steps; a number gives
        that rate to every unit.
        """
        if isinstance(kind, (int, float)) and not isinstance(kind, bool):
            if not 0 < kind <= 1:
                raise util.ConfigurationError(
                    'layer {!r}: a fixed rate must be in (0, 1], got {}'.format(self.name, kind))
            return np.full(size, kind, dtype=util.FLOAT)
        if kind == 'uniform':
            return self.rng.uniform(1e-3, 1, size=size).astype(util.FLOAT)
        return (10 ** self.rng.uniform(-3, 0, size=size)).astype(util.FLOAT)

    # ----- computation ---------------------------------------------------------------

    def connect(self, inputs):
        self._state_values = {kind: inputs[name] for kind, (name, _) in
                              self._state_inputs.items()}
        try:
            return super().connect(inputs)
        finally:
            self._state_values = {}

    def _initial(self, kind, x):
        """Initial state (batch, size) from the graph output named by ``kind``, else
        zeros (1, size) for the whole batch."""
        if kind in self._state_values:
            return TT.cast(self._state_values[kind], x.dtype)
        return TT.constant(np.zeros((1, self._state_size(kind)), x.dtype))

    def _time_major(self, x):
        """(batch, time, k) -> (time, batch, k), in processing order (a view)."""
        x = x.dimshuffle(1, 0, 2)
        return x[::-1] if self._backward else x

    def _batch_major(self, x):
        """(time, batch, k) in processing order -> (batch, time, k) in forward order."""
        if self._backward:
            x = x[::-1]
        return x.dimshuffle(1, 0, 2)

    def _project(self, x, w, b=None):
        """Input projection of all time steps at once: (batch, time, nin) -> (time, batch, k).

        One matrix product (batch-major, so no copy of the input), read by the
        loop time-major through strides.
        """
        flat = dot_last(x, w)
        return self._time_major(flat if b is None else flat + b)

    def _projection(self, x, w, b):
        """The same projection as ``(x, w, b)`` for the ops to compute step by step, in
        their loop (``x`` read time-major through strides)."""
        return self._time_major(x), w, b

    def _loop_activation(self):
        """The activation for the ops: its name when they compute it, else the layer's
        function (the loop then runs in ``scan``)."""
        name = self.activation
        return name if ops.supports_activation(name) else self.activate


class RNN(Recurrent):
    r"""Standard (Elman) recurrent layer.

    .. math::
        h_t = g(x_t W_{xh} + h_{t-1} W_{hh} + b)

    Parameters: ``xh`` (nin, n), ``hh`` (n, n), ``b`` (n,).
    Outputs: ``'out'`` = :math:`h_t` and ``'pre'`` (before the activation),
    both (batch, time, n).

    Examples
    --------
    >>> import theanets
    >>> net = theanets.recurrent.Regressor([3, (4, 'rnn', 'tanh'), 2])
    >>> [p.name for p in net.layers[1].params]
    ['hid1.xh', 'hid1.hh', 'hid1.b']
    """

    def __init__(self, h_0=None, **kwargs):
        super().__init__(h_0=h_0, **kwargs)

    def setup(self):
        self.add_weights('xh', self.input_size, self.output_size)
        self.add_recurrent_weights('hh')
        self.add_bias('b', self.output_size)

    def transform(self, inputs):
        xp = self._projection(inputs, self.find('xh'), self.find('b'))
        out, pre = ops.rnn(xp, self.find('hh'), self._initial('h_0', inputs),
                           self._loop_activation(), self.bptt_limit)
        return dict(pre=self._batch_major(pre), out=self._batch_major(out))


class RRNN(RNN):
    r"""An RNN whose units each mix their old state with a new one at a rate.

    .. math::
        \begin{eqnarray}
        p_t &=& x_t W_{xh} + h_{t-1} W_{hh} + b \\
        h_t &=& (1 - r_t) \odot h_{t-1} + r_t \odot g(p_t)
        \end{eqnarray}

    Outputs: ``'out'`` (:math:`h_t`), ``'pre'`` (:math:`p_t`), ``'hid'``
    (:math:`g(p_t)`) and ``'rate'`` (:math:`r_t`), all (batch, time, n).

    Parameters
    ----------
    rate : {'matrix', 'vector', 'uniform', 'log'} or float, optional
        How the rates :math:`r` are found:

        - ``'matrix'`` (default): :math:`r_t = \sigma(x_t W_{xr} + b_r)`, input
          dependent, with learned ``xr`` (nin, n) and ``r`` (n,);
        - ``'vector'``: :math:`r = \sigma(b_r)`, a learned ``r`` (n,);
        - ``'uniform'``: fixed rates drawn from U(0.001, 1) (from the layer's random stream);
        - ``'log'``: fixed rates 10**U(-3, 0), spread over time scales;
        - a number in (0, 1]: that fixed rate for every unit.
    """

    OUTPUTS = ('out', 'pre', 'hid', 'rate')

    def __init__(self, rate='matrix', **kwargs):
        if not (rate in ('matrix', 'vector', 'uniform', 'log') or (
                isinstance(rate, (int, float)) and not isinstance(rate, bool))):
            raise util.ConfigurationError(
                'layer {!r}: rate must be "matrix", "vector", "uniform", "log" or a number, '
                'got {!r}'.format(kwargs.get('name'), rate))
        super().__init__(**kwargs)
        self.rate = rate
        self._rates = None

    def setup(self):
        super().setup()
        if self.rate == 'matrix':
            self.add_weights('xr', self.input_size, self.output_size)
        if self.rate in ('matrix', 'vector'):
            self.add_bias('r', self.output_size)
        if self.rate not in ('matrix', 'vector'):
            self._rates = self._fixed_rates(self.rate, self.output_size)

    def _rate_sequence(self, x, xp):
        """Time-major rates (time, batch, n) for projected inputs ``xp``."""
        if self.rate == 'matrix':
            return TT.sigmoid(self._project(x, self.find('xr'), self.find('r')))
        rate = TT.sigmoid(self.find('r')) if self.rate == 'vector' else TT.constant(self._rates)
        return TT.ones_like(xp) * rate

    def transform(self, inputs):
        xp = self._project(inputs, self.find('xh'), self.find('b'))
        rate = self._rate_sequence(inputs, xp)
        out, pre, hid = ops.rrnn(xp, rate, self.find('hh'), self._initial('h_0', inputs),
                                 self._loop_activation(), self.bptt_limit)
        return dict(pre=self._batch_major(pre), hid=self._batch_major(hid),
                    out=self._batch_major(out), rate=self._batch_major(rate))


class MUT1(Recurrent):
    r"""The "MUT1" recurrent unit found by architecture search (Jozefowicz et al., 2015).

    .. math::
        \begin{eqnarray}
        z_t &=& \sigma(x_t W_{xz} + b_z) \\
        r_t &=& \sigma(x_t W_{xr} + h_{t-1} W_{hr} + b_r) \\
        p_t &=& \tanh(x_t W_{xh} + b_h) + (r_t \odot h_{t-1}) W_{hh} \\
        h_t &=& (1 - z_t) \odot h_{t-1} + z_t \odot \tanh(p_t)
        \end{eqnarray}

    The nonlinearities are fixed (the layer's activation is not used).
    Parameters: ``xh``, ``xr``, ``xz`` (nin, n); ``hh``, ``hr`` (n, n);
    ``bh``, ``br``, ``bz`` (n,). Outputs: ``'out'`` (:math:`h_t`), ``'pre'``
    (:math:`p_t`), ``'hid'`` (:math:`\tanh(p_t)`), ``'rate'`` (:math:`z_t`).
    """

    OUTPUTS = ('out', 'pre', 'hid', 'rate')
    USES_ACTIVATION = False
    FIXED_ACTIVATION = ('tanh', 'a MUT1 layer always uses logistic gates and tanh')

    def __init__(self, h_0=None, **kwargs):
        super().__init__(h_0=h_0, **kwargs)

    def setup(self):
        for gate in 'hrz':
            self.add_weights('x' + gate, self.input_size, self.output_size)
        self.add_recurrent_weights('hh')
        self.add_recurrent_weights('hr')
        for gate in 'hrz':
            self.add_bias('b' + gate, self.output_size)

    def transform(self, inputs):
        xh = TT.tanh(self._project(inputs, self.find('xh'), self.find('bh')))
        xr = self._project(inputs, self.find('xr'), self.find('br'))
        z = TT.sigmoid(self._project(inputs, self.find('xz'), self.find('bz')))
        out, pre, hid = ops.mut1(TT.concatenate([xh, xr], axis=2), z, self.find('hh'),
                                 self.find('hr'), self._initial('h_0', inputs), self.bptt_limit)
        return dict(pre=self._batch_major(pre), hid=self._batch_major(hid),
                    out=self._batch_major(out), rate=self._batch_major(z))


class GRU(Recurrent):
    r"""Gated recurrent unit (Cho et al., 2014).

    .. math::
        \begin{eqnarray}
        r_t &=& \sigma(x_t W_{xr} + h_{t-1} W_{hr} + b_r) \\
        z_t &=& \sigma(x_t W_{xz} + h_{t-1} W_{hz} + b_z) \\
        p_t &=& x_t W_{xh} + (r_t \odot h_{t-1}) W_{hh} + b_h \\
        h_t &=& (1 - z_t) \odot h_{t-1} + z_t \odot g(p_t)
        \end{eqnarray}

    Parameters: ``w`` (nin, 3n) and ``b`` (3n,) hold the input weights and
    biases of the blocks [candidate, reset, rate]; ``hh``, ``hr``, ``hz`` (n, n).
    Outputs: ``'out'`` (:math:`h_t`), ``'pre'`` (:math:`p_t`), ``'hid'``
    (:math:`g(p_t)`), ``'rate'`` (:math:`z_t`), all (batch, time, n).
    """

    OUTPUTS = ('out', 'pre', 'hid', 'rate')

    def __init__(self, h_0=None, **kwargs):
        super().__init__(h_0=h_0, **kwargs)

    def setup(self):
        self.add_weights('w', self.input_size, 3 * self.output_size)
        self.add_bias('b', 3 * self.output_size)
        for name in ('hh', 'hr', 'hz'):
            self.add_recurrent_weights(name)

    def transform(self, inputs):
        xp = self._projection(inputs, self.find('w'), self.find('b'))
        out, pre, hid, rate = ops.gru(
            xp, self.find('hh'), self.find('hr'), self.find('hz'), self._initial('h_0', inputs),
            self._loop_activation(), self.bptt_limit)
        return dict(pre=self._batch_major(pre), hid=self._batch_major(hid),
                    rate=self._batch_major(rate), out=self._batch_major(out))


class LSTM(Recurrent):
    r"""Long short-term memory layer with peephole connections (Graves, 2013).

    .. math::
        \begin{eqnarray}
        i_t &=& \sigma(x_t W_{xi} + h_{t-1} W_{hi} + c_{t-1} \odot w_{ci} + b_i) \\
        f_t &=& \sigma(x_t W_{xf} + h_{t-1} W_{hf} + c_{t-1} \odot w_{cf} + b_f) \\
        c_t &=& f_t \odot c_{t-1} + i_t \odot \tanh(x_t W_{xc} + h_{t-1} W_{hc} + b_c) \\
        o_t &=& \sigma(x_t W_{xo} + h_{t-1} W_{ho} + c_t \odot w_{co} + b_o) \\
        h_t &=& o_t \odot \tanh(c_t)
        \end{eqnarray}

    The nonlinearities are fixed (the layer's activation is not used).
    Parameters: ``xh`` (nin, 4n), ``hh`` (n, 4n) and ``b`` (4n,) hold the
    blocks [input, forget, cell, output]; ``b`` starts with mean 2 (gates
    initially open); the diagonal peepholes ``ci``, ``cf``, ``co`` are (n,).
    Outputs: ``'out'`` (:math:`h_t`) and ``'cell'`` (:math:`c_t`), both
    (batch, time, n).

    Parameters
    ----------
    c_0 : str, optional
        Name of a graph output (batch, n) holding the initial cell state.
    """

    OUTPUTS = ('out', 'cell')
    USES_ACTIVATION = False
    FIXED_ACTIVATION = ('tanh', 'an LSTM layer always uses logistic gates and tanh')
    STATES = ('h_0', 'c_0')
    SPEC_KEYS = STATES

    def __init__(self, c_0=None, h_0=None, **kwargs):
        self.c_0 = c_0
        super().__init__(h_0=h_0, **kwargs)

    def setup(self):
        self.add_weights('xh', self.input_size, 4 * self.output_size)
        self.add_recurrent_weights('hh', blocks=4)
        self.add_bias('b', 4 * self.output_size, mean=2)
        for name in ('ci', 'cf', 'co'):
            self.add_bias(name, self.output_size)

    def transform(self, inputs):
        xp = self._projection(inputs, self.find('xh'), self.find('b'))
        out, cell = ops.lstm(xp, *(self.find(k) for k in ('hh', 'ci', 'cf', 'co')),
                             h0=self._initial('h_0', inputs), c0=self._initial('c_0', inputs),
                             bptt_limit=self.bptt_limit)
        return dict(out=self._batch_major(out), cell=self._batch_major(cell))


class MRNN(Recurrent):
    r"""Multiplicative RNN: the recurrent weights depend on the input (Sutskever et al., 2011).

    .. math::
        \begin{eqnarray}
        f_t &=& (x_t W_{xf}) \odot (h_{t-1} W_{hf}) \\
        p_t &=& x_t W_{xh} + f_t W_{fh} + b \\
        h_t &=& g(p_t)
        \end{eqnarray}

    Parameters: ``xh`` (nin, n), ``xf`` (nin, factors), ``hf`` (n, factors),
    ``fh`` (factors, n), ``b`` (n,). Outputs: ``'out'``, ``'pre'`` (batch,
    time, n) and ``'factors'`` (:math:`f_t`, (batch, time, factors)).

    Parameters
    ----------
    factors : int, optional
        Number of multiplicative factors; default ``ceil(sqrt(size))``.
    """

    OUTPUTS = ('out', 'pre', 'factors')
    SPEC_KEYS = ('h_0', 'factors')

    def __init__(self, factors=None, h_0=None, **kwargs):
        if factors is not None and (not isinstance(factors, (int, np.integer)) or factors <= 0):
            raise util.ConfigurationError(
                'layer {!r}: factors must be a positive integer, got {!r}'.format(
                    kwargs.get('name'), factors))
        self.factors = factors
        super().__init__(h_0=h_0, **kwargs)

    @property
    def num_factors(self):
        """The number of factors: ``factors``, or ceil(sqrt(size)) when not given."""
        if self.factors is not None:
            return self.factors
        return int(math.ceil(math.sqrt(self.output_size)))

    def _output_sizes(self):
        return {'factors': self.num_factors}

    def setup(self):
        f = self.num_factors
        self.add_weights('xh', self.input_size, self.output_size)
        self.add_weights('xf', self.input_size, f)
        self.add_weights('hf', self.output_size, f)
        self.add_weights('fh', f, self.output_size)
        self.add_bias('b', self.output_size)

    def transform(self, inputs):
        xh = self._projection(inputs, self.find('xh'), self.find('b'))
        xf = self._project(inputs, self.find('xf'))
        out, pre, fac = ops.mrnn(xh, xf, self.find('hf'), self.find('fh'),
                                 self._initial('h_0', inputs), self._loop_activation(),
                                 self.bptt_limit)
        return dict(pre=self._batch_major(pre), factors=self._batch_major(fac),
                    out=self._batch_major(out))


class SCRN(Recurrent):
    r"""Structurally constrained recurrent network (Mikolov et al., 2015).

    A slowly changing context state :math:`s` is kept next to a fast hidden
    state :math:`h`:

    .. math::
        \begin{eqnarray}
        s_t &=& (1 - r) \odot s_{t-1} + r \odot (x_t W_{xs}) \\
        h_t &=& g(x_t W_{xh} + h_{t-1} W_{hh} + s_t W_{sh}) \\
        p_t &=& h_t W_{ho} + s_t W_{so} + b \\
        o_t &=& g(p_t)
        \end{eqnarray}

    The upstream layer returned :math:`p_t` itself as ``'out'`` (no
    activation); here ``'out'`` is :math:`g(p_t)` like every other layer,
    and :math:`p_t` is the ``'pre'`` output (use ``'linear'`` for the old
    behaviour).

    Parameters: ``w`` (nin, n + c) with blocks [hidden, context], ``hh``,
    ``ho`` (n, n), ``sh``, ``so`` (c, n), ``b`` (n,) and ``r`` (c,) for
    ``rate='vector'``. Outputs: ``'out'``, ``'pre'``, ``'hid'``
    (:math:`h_t`) (batch, time, n); ``'state'`` (:math:`s_t`) and
    ``'rate'`` (batch, time, c).

    Parameters
    ----------
    rate : {'vector', 'uniform', 'log'} or float, optional
        ``'vector'`` (default): learned rates :math:`r = \sigma(b_r)` with a
        parameter ``r``; ``'uniform'``/``'log'``/a number: fixed rates, as
        for :class:`RRNN`.
    s_0 : str, optional
        Name of a graph output (batch, context size) with the initial context state.
    context_size : int or float, optional
        Size of the context state: an int, or a float in (0, 1] as a fraction
        of the layer size. Default: the layer size.
    """

    OUTPUTS = ('out', 'pre', 'hid', 'state', 'rate')
    STATES = ('h_0', 's_0')
    SPEC_KEYS = STATES + ('context_size', )

    def __init__(self, rate='vector', s_0=None, context_size=None, h_0=None, **kwargs):
        if not (rate in ('vector', 'uniform', 'log') or (
                isinstance(rate, (int, float)) and not isinstance(rate, bool))):
            raise util.ConfigurationError(
                'layer {!r}: rate must be "vector", "uniform", "log" or a number, got '
                '{!r}'.format(kwargs.get('name'), rate))
        self.s_0 = s_0
        super().__init__(h_0=h_0, **kwargs)
        self.rate = rate
        self.context_size = context_size
        self._rates = None

    @property
    def num_context(self):
        """Size of the context state."""
        c = self.context_size
        if c is None:
            return self.output_size
        if isinstance(c, float) and 0 < c <= 1:
            return max(1, int(round(c * self.output_size)))
        if isinstance(c, (int, np.integer)) and not isinstance(c, bool) and c > 0:
            return int(c)
        raise util.ConfigurationError(
            'layer {!r}: context_size must be a positive int or a fraction in (0, 1], '
            'got {!r}'.format(self.name, c))

    def _state_size(self, kind):
        return self.num_context if kind == 's_0' else self.output_size

    def _output_sizes(self):
        return {'state': self.num_context, 'rate': self.num_context}

    def setup(self):
        n, c = self.output_size, self.num_context
        self.add_weights('w', self.input_size, n + c)
        self.add_recurrent_weights('hh')
        self.add_weights('sh', c, n)
        self.add_weights('ho', n, n)
        self.add_weights('so', c, n)
        self.add_bias('b', n)
        if self.rate == 'vector':
            self.add_bias('r', c)
        else:
            self._rates = self._fixed_rates(self.rate, c)

    def transform(self, inputs):
        n, c = self.output_size, self.num_context
        xp = self._project(inputs, self.find('w'))
        r = TT.sigmoid(self.find('r')) if self.rate == 'vector' else TT.constant(self._rates)
        rate = TT.ones_like(xp[:, :, n:]) * r
        # s_t = (1 - r) s_{t-1} + r x_t: a rate loop without recurrent weights
        state, _, _ = ops.rrnn(xp[:, :, n:], rate, np.zeros((c, c), xp.dtype),
                               self._initial('s_0', inputs), 'linear', self.bptt_limit)
        hid, _ = ops.rnn(xp[:, :, :n] + dot_last(state, self.find('sh')), self.find('hh'),
                         self._initial('h_0', inputs), self._loop_activation(), self.bptt_limit)
        hid, state = self._batch_major(hid), self._batch_major(state)
        pre = dot_last(hid, self.find('ho')) + dot_last(state, self.find('so')) + self.find('b')
        return dict(pre=pre, out=self.activate(pre), hid=hid, state=state,
                    rate=self._batch_major(rate))


class Clockwork(RNN):
    r"""Clockwork RNN: groups of units ("modules") that update at different periods.

    The units are split into ``len(periods)`` equal modules; module :math:`i`
    updates at time steps :math:`t` (counted from 0 in the direction the layer
    runs) with :math:`t \bmod T_i = 0` and keeps its previous values
    otherwise. The recurrent matrix is masked so that each module receives
    input only from modules of equal or longer period (slower modules feed
    faster ones) (Koutnik et al., 2014):

    .. math::
        h_t^{(i)} = \begin{cases}
        g(x_t W_{xh}^{(i)} + h_{t-1} (M \odot W_{hh})^{(i)} + b^{(i)})
        & \text{if } t \bmod T_i = 0 \\
        h_{t-1}^{(i)} & \text{otherwise} \end{cases}

    Parameters and outputs are those of :class:`RNN`.

    Parameters
    ----------
    periods : sequence of int
        The update period of each module (sorted ascending); the layer size
        must be a multiple of their number.

    """

    SPEC_KEYS = ('h_0', 'periods')

    def __init__(self, periods=None, h_0=None, **kwargs):
        if not periods or any(not isinstance(p, (int, np.integer)) or p <= 0 for p in periods):
            raise util.ConfigurationError(
                'clockwork layer {!r} needs periods=[...] of positive ints, got {!r}'.format(
                    kwargs.get('name'), periods))
        self.periods = sorted(int(p) for p in periods)
        super().__init__(h_0=h_0, **kwargs)

    def resolve_outputs(self):
        super().resolve_outputs()
        if self.output_size % len(self.periods):
            raise util.ConfigurationError(
                'clockwork layer {!r}: size {} is not a multiple of the number of periods '
                '{} ({})'.format(self.name, self.output_size, len(self.periods), self.periods))

    def unit_periods(self):
        """Return an int array (n,) giving each unit's update period."""
        return np.repeat(self.periods, self.output_size // len(self.periods))

    def recurrent_mask(self):
        """Return the (n, n) 0/1 mask of ``hh``: unit j feeds unit i iff T_j >= T_i."""
        per = self.unit_periods()
        return (per[:, None] >= per[None, :]).astype(util.FLOAT)

    def transform(self, inputs):
        xp = self._project(inputs, self.find('xh'), self.find('b'))
        n = self.output_size
        # module i updates at steps t (counted in processing order) with t mod T_i = 0
        steps = TT.cumsum(TT.ones_like(xp[:, 0, :1]), axis=0) - 1
        periods = TT.constant(self.unit_periods().astype(xp.dtype))
        active = TT.ones_like(xp) * TT.eq(TT.mod(steps, periods), 0)[:, None, :]
        hh = self.find('hh') * TT.constant(self.recurrent_mask())
        out, pre, _ = ops.rrnn(xp, active, hh, self._initial('h_0', inputs),
                               self._loop_activation(), self.bptt_limit)
        # 'pre' keeps its value while a module waits: a rate loop without weights
        zeros = np.zeros((n, n), xp.dtype)
        held, _, _ = ops.rrnn(pre, active, zeros, np.zeros((1, n), xp.dtype), 'linear',
                              self.bptt_limit)
        return dict(pre=self._batch_major(held), out=self._batch_major(out))


class Bidirectional(Layer):
    """Run two recurrent "worker" layers over the input, one forward and one backward in time.

    Each worker has half the layer's size and is named ``'<name>_fw'`` /
    ``'<name>_bw'`` (its parameters ``'<name>_fw.xh'``...). Both halves are
    in forward time order.

    Parameters
    ----------
    worker : str, optional
        Registry name of the recurrent worker layer (default ``'rnn'``; also
        ``'lstm'``, ``'gru'``...). Other keyword arguments (``factors``,
        ``rate``, ``bptt_limit``, ``std_hh``...) go to both workers.

    Outputs: ``'out'`` (the two workers' ``'out'`` joined on the last axis,
    (batch, time, size)); ``'pre'`` and ``'cell'`` likewise when the worker
    has them; and every worker output as ``'fw_<output>'`` / ``'bw_<output>'``.

    Examples
    --------
    >>> import theanets
    >>> net = theanets.recurrent.Regressor([3, dict(form='bidirectional', size=4), 2])
    >>> sorted(p.name for p in net.layers[1].params)
    ['hid1_bw.b', 'hid1_bw.hh', 'hid1_bw.xh', 'hid1_fw.b', 'hid1_fw.hh', 'hid1_fw.xh']
    """

    _JOINED = ('out', 'pre', 'cell')
    SPEC_KEYS = ('worker', )
    TAKES_RADIUS = True

    def __init__(self, worker='rnn', **kwargs):
        if not (isinstance(worker, str) and Layer.is_registered(worker)
                and issubclass(Layer.get_class(worker), Recurrent)):
            raise util.ConfigurationError(
                'bidirectional layer {!r}: worker must name a recurrent layer form such as '
                '"rnn", "lstm" or "gru", got {!r}'.format(kwargs.get('name'), worker))
        own = util.accepted_kwargs(Layer)
        passed = {k: kwargs.pop(k) for k in list(kwargs)
                  if k not in own and not _INIT_KWARG.match(k)}
        if 'direction' in passed:
            raise util.ConfigurationError(
                'bidirectional layer {!r}: direction is set by the layer; remove '
                'direction={!r}'.format(kwargs.get('name'), passed['direction']))
        super().__init__(**kwargs)
        self.worker = worker.lower()
        self.worker_kwargs = passed
        self.workers = ()
        self._graph_layers = None

    @classmethod
    def valid_kwargs(cls, kwargs):
        """Own keywords and those of the worker layer (given to both workers)."""
        valid = super().valid_kwargs(kwargs)
        worker = kwargs.get('worker', 'rnn')
        if valid is not None and isinstance(worker, str) and Layer.is_registered(worker):
            extra = util.accepted_kwargs(Layer.get_class(worker))
            valid = None if extra is None else valid | extra
        return valid

    @classmethod
    def fixed_activation(cls, kwargs):
        """The worker's fixed activation, if it has one (e.g. an LSTM's tanh)."""
        worker = kwargs.get('worker', 'rnn')
        if isinstance(worker, str) and Layer.is_registered(worker):
            return Layer.get_class(worker).fixed_activation({})
        return None

    @property
    def forward(self):
        return self.workers[0]

    @property
    def backward(self):
        return self.workers[1]

    def resolve_inputs(self, layers):
        super().resolve_inputs(layers)
        if len(self._input_shapes) != 1 or len(self.input_shape) != 2:
            raise util.ConfigurationError(
                'bidirectional layer {!r} needs one (batch, time, variables) input, got '
                '{}'.format(self.name, dict(self._input_shapes)))

    def resolve_outputs(self):
        super().resolve_outputs()
        if self.output_size % 2:
            raise util.ConfigurationError(
                'bidirectional layer {!r}: size must be even (two halves), got {}'.format(
                    self.name, self.output_size))

    def output_shapes(self):
        shapes = {self.full_name('out'): self._output_shape}
        for prefix, worker in zip(('fw_', 'bw_'), self.workers):
            for name, shape in worker.output_shapes().items():
                out = name.split(':', 1)[1]
                shapes[self.full_name(prefix + out)] = shape
                if out in self._JOINED and prefix == 'fw_':
                    shapes[self.full_name(out)] = shape[:-1] + (self.output_size, )
        return shapes

    def bind(self, graph, reset=True, initialize=True):
        layers = []
        for layer in graph.layers:
            if layer is self:
                break
            layers.append(layer)
        self._graph_layers = _Layers(layers)
        try:
            super().bind(graph, reset=reset, initialize=initialize)
            if self.workers and not (reset and initialize):
                for worker in self.workers:
                    worker.bind(self._graph_layers, reset=False, initialize=False)
        finally:
            self._graph_layers = None

    def setup(self):
        init = {k: v for k, v in self.kwargs.items() if _INIT_KWARG.match(k)}
        workers = []
        for suffix, direction in (('fw', 'forward'), ('bw', 'backward')):
            kwargs = dict(self.worker_kwargs, **init)
            worker = Layer.build(
                self.worker, size=self.output_size // 2, inputs=self.input_name,
                name='{}_{}'.format(self.name, suffix), activation=self.activation,
                rng=int(self.rng.randint(2 ** 31 - 1)), direction=direction, **kwargs)
            worker.bind(self._graph_layers)
            workers.append(worker)
        self.workers = tuple(workers)
        for worker in self.workers:
            self._params.extend(worker.params)
            self._used_options.update(worker._used_options)

    def _drop_batch_axis(self):
        super()._drop_batch_axis()
        for worker in self.workers:
            worker._drop_batch_axis()

    @property
    def params(self):
        """The parameters of both workers."""
        return list(self._params)

    def connect(self, inputs):
        outputs, updates = collections.OrderedDict(), []
        parts = []
        for prefix, worker in zip(('fw_', 'bw_'), self.workers):
            out, upd = worker.connect(inputs)
            updates.extend(upd)
            part = collections.OrderedDict(
                (name.split(':', 1)[1], expr) for name, expr in out.items())
            parts.append(part)
            for name, expr in part.items():
                outputs[self.full_name(prefix + name)] = expr
        for name in self._JOINED:
            if name in parts[0]:
                outputs[self.full_name(name)] = TT.concatenate(
                    [parts[0][name], parts[1][name]], axis=-1)
        return collections.OrderedDict(sorted(outputs.items())), updates


class _Layers(object):
    """A stand-in graph holding the layers a Bidirectional layer's workers may read."""

    def __init__(self, layers):
        self.layers = layers
