r"""Recurrent time loops in one op each, forward and backward.

A recurrent layer built on :func:`pytensor.scan` spends most of its time in the
per-step machinery of scan, and PyTensor's JAX backend cannot differentiate
scan. The ops here run the whole time loop of a recurrent layer at once, and
their gradient op runs backpropagation through time over the whole sequence.
Each op has three faces (see :mod:`.base`):

- C++ in ``c/recurrent.c``, whose header comment describes the loops;
- a NumPy ``perform``, the reference;
- a JAX twin: the same step functions run by :func:`jax.lax.scan`.

The step functions are written once against an array module ``xp`` (NumPy or
``jax.numpy``), and serve the NumPy loop, ``lax.scan`` and, for activations
the ops lack, :func:`pytensor.scan` (with ``xp`` = ``pytensor.tensor``).

The ops take the projected inputs ``x . W + b`` time-major, ``xproj`` (T, B,
k n) for ``T`` steps, ``B`` sequences and ``n`` units, read through their
strides (a reversed or transposed view costs no copy); or, given the tuple
``(x, W, b)`` in place of ``xproj``, they compute each step's projection in
the loop, where its rows stay in cache. Per step, with ``x = xproj[t]``:

RNN (``rnn``)::

    pre_t = x + h_{t-1} . hh,   h_t = g(pre_t)

GRU (``gru``; ``x`` blocks [candidate, reset, rate])::

    r = sigmoid(x_r + h_{t-1} . hr),   z = sigmoid(x_z + h_{t-1} . hz)
    pre_t = x_h + (r * h_{t-1}) . hh,  hid_t = g(pre_t),  h_t = (1 - z) h_{t-1} + z hid_t

``mut1`` is the GRU with a rate ``z`` given for every step (no ``hz``), and
``rrnn`` the same without reset gate (``r = 1``, no ``hr``).

LSTM (``lstm``; Graves 2013, diagonal peepholes; blocks [input, forget, cell, output])::

    i = sigmoid(x_i + h_{t-1} . hh_i + c_{t-1} * ci)
    f = sigmoid(x_f + h_{t-1} . hh_f + c_{t-1} * cf)
    c_t = f * c_{t-1} + i * tanh(x_c + h_{t-1} . hh_c)
    o = sigmoid(x_o + h_{t-1} . hh_o + c_t * co),   h_t = o * tanh(c_t)

MRNN (``mrnn``; F factors)::

    f_t = xfac_t * (h_{t-1} . hf),   pre_t = x + f_t . fh,   h_t = g(pre_t)

``g`` is one of :data:`ACTIVATIONS`. ``bptt_limit`` > 0 truncates
backpropagation to the last ``bptt_limit`` steps, as ``scan``'s
``truncate_gradient`` does: earlier steps, and the initial states, get zero
gradients. Forward ops with a ``cache`` output (gate values for the gradient
op) keep only one step of it where nothing reads it (e.g. in prediction
functions), by a rewrite. Only first derivatives are implemented.
"""

import collections

import numpy as np

import pytensor
import pytensor.tensor as pt
from pytensor.compile import optdb
from pytensor.gradient import DisconnectedType, grad_not_implemented
from pytensor.graph.basic import Apply
from pytensor.graph.rewriting.basic import in2out, node_rewriter
from pytensor.link.c.params_type import ParamsType
from pytensor.scalar import int32
from pytensor.tensor.type import TensorType

from .base import CSourceOp, float_inputs, jax_twin, threads, warn_once
from .product import DotLastOp, DotLeadingOp, dot_last

__all__ = ['ACTIVATIONS', 'supports_activation', 'rnn', 'gru', 'mut1', 'rrnn', 'lstm', 'mrnn',
           'RecurrentOp', 'RecurrentGradOp', 'FORWARD_ONLY_TAG']

#: activation name -> code in c/recurrent.c (enum thn_act)
ACTIVATIONS = {'linear': 0, 'relu': 1, 'rect:max': 1, 'tanh': 2, 'logistic': 3, 'sigmoid': 3}
_CANONICAL = {'rect:max': 'relu', 'sigmoid': 'logistic'}


def supports_activation(name):
    """Whether the ops compute activation ``name`` (for every cell but lstm and mut1): a
    name in :data:`ACTIVATIONS`, not a composed (``'tanh+norm:z'``) or learnable one."""
    return isinstance(name, str) and name in ACTIVATIONS


# ---- step functions: xp is numpy or jax.numpy -----------------------------------------

def _sigmoid(xp, x):
    return 0.5 * (1 + xp.tanh(0.5 * x))   # exact, and no overflow for large |x|


def _act(xp, name, x):
    if callable(name):  # any activation, run by pytensor.scan (see _run)
        return name(x)
    if name == 'relu':
        return xp.maximum(x, 0)
    if name == 'tanh':
        return xp.tanh(x)
    return _sigmoid(xp, x) if name == 'logistic' else x


def _dact(xp, name, pre, out):
    """Derivative of activation ``name`` from its argument and its value."""
    if name == 'relu':
        return (pre > 0).astype(pre.dtype)
    if name == 'tanh':
        return 1 - out * out
    return out * (1 - out) if name == 'logistic' else xp.ones_like(pre)


def _given(xp, g, like):
    """An output gradient, or zeros for an absent or empty one ("no gradient")."""
    return xp.zeros_like(like) if g is None or g.size == 0 else g


def _previous(xp, s0, s):
    """(T, B, n) states h_{t-1}: the initial state, then all but the last."""
    return xp.concatenate([s0[None], s[:-1]], axis=0)[:s.shape[0]]


def _sum_steps(xp, a, b):
    """sum over steps and batch of a_tb^T b_tb: (T, B, i), (T, B, j) -> (i, j)."""
    return xp.tensordot(a, b, axes=([0, 1], [0, 1]))


def _backward(xp, scan, step, carry, seqs, window):
    """Run ``step`` backwards over the last ``window`` steps; earlier steps get zeros."""
    first = seqs[0].shape[0] - window
    carry, outs = scan(step, carry, [s[first:] for s in seqs], reverse=True)
    if first:
        outs = tuple(xp.concatenate([xp.zeros((first,) + o.shape[1:], o.dtype), o]) for o in outs)
    return carry, outs


def _state_grad(xp, carry, s0, window, steps):
    """Gradient of an initial state (B, n) or (1, n) from the loop's last carry."""
    if window < steps:
        return xp.zeros_like(s0)
    return carry if s0.shape[0] == carry.shape[0] else carry.sum(axis=0, keepdims=True)


def _rnn_forward(xp, scan, act, keep, x, hh, h0):
    def step(h, xs):
        pre = xs[0] + h @ hh
        out = _act(xp, act, pre)
        return out, (out, pre)
    return scan(step, xp.broadcast_to(h0, (x.shape[1], hh.shape[0])), [x])[1]


def _rnn_backward(xp, scan, act, window, hh, h0, h, pre, gh, gpre):
    def step(carry, seq):
        h_t, pre_t, gh_t, gpre_t = seq
        d = (carry + gh_t) * _dact(xp, act, pre_t, h_t) + gpre_t
        return d @ hh.T, (d,)
    h0b = xp.broadcast_to(h0, h.shape[1:])
    carry, (dx,) = _backward(xp, scan, step, xp.zeros_like(h0b),
                             [h, pre, _given(xp, gh, h), _given(xp, gpre, h)], window)
    return (dx, _sum_steps(xp, _previous(xp, h0b, h), dx),
            _state_grad(xp, carry, h0, window, h.shape[0]))


def _gated_forward(xp, scan, act, keep, x, rate, hh, hr, hz, h0):
    """GRU (rate None), MUT1 (hz None) and RRNN (hr, hz None); see c/recurrent.c."""
    n = hh.shape[0]
    gates = [m for m in (hr, hz) if m is not None]
    w = xp.concatenate(gates, axis=1) if gates else None

    def step(h, xs):
        x_t, rz = xs[0], (h @ w if gates else None)
        r = None if hr is None else _sigmoid(xp, x_t[:, n:2 * n] + rz[:, :n])
        z = xs[1] if hz is None else _sigmoid(xp, x_t[:, 2 * n:] + rz[:, -n:])
        rh = h if r is None else r * h
        pre = x_t[:, :n] + rh @ hh
        hid = _act(xp, act, pre)
        out = h + z * (hid - h)
        return out, (out, pre, hid) + ((z,) if hz is not None else ()) + (
            () if r is None else (xp.concatenate([r, rh], axis=1),))
    seqs = [x] if rate is None else [x, rate]
    outs = scan(step, xp.broadcast_to(h0, (x.shape[1], n)), seqs)[1]
    return outs if keep or hr is None else outs[:-1] + (
        xp.zeros((1,) + outs[-1].shape[1:], x.dtype),)


def _gated_backward(xp, scan, act, window, rate, hh, hr, hz, h0, h, pre, hid, z, cache,
                    gh, gpre, ghid, gz):
    n = hh.shape[0]
    gates = [m for m in (hr, hz) if m is not None]
    w = xp.concatenate(gates, axis=1) if gates else None

    def step(carry, seq):
        hp, p, a, z_t, c, g_h, g_p, g_a, g_z = seq
        dh = carry + g_h
        dz = dh * (a - hp) + g_z
        dp = (dh * z_t + g_a) * _dact(xp, act, p, a) + g_p
        drh = dp @ hh.T
        r = 1 if hr is None else c[:, :n]
        blocks = [dp] + ([] if hr is None else [drh * hp * r * (1 - r)]) + (
            [dz * z_t * (1 - z_t)] if rate is None else [])
        d = xp.concatenate(blocks, axis=1)
        carry = dh * (1 - z_t) + drh * r
        return (carry if w is None else carry + d[:, n:] @ w.T), (d, dz)
    h0b = xp.broadcast_to(h0, h.shape[1:])
    hprev = _previous(xp, h0b, h)
    seqs = [hprev, pre, hid, z if rate is None else rate, hprev if cache is None else cache]
    carry, (dx, dz) = _backward(xp, scan, step, xp.zeros_like(h0b),
                                seqs + [_given(xp, g, h) for g in (gh, gpre, ghid, gz)], window)
    grads = [dx] + ([dz] if rate is not None else [])
    grads.append(_sum_steps(xp, hprev if hr is None else cache[..., n:], dx[..., :n]))
    grads += [_sum_steps(xp, hprev, dx[..., n * k:n * (k + 1)]) for k in range(1, len(gates) + 1)]
    return tuple(grads) + (_state_grad(xp, carry, h0, window, h.shape[0]),)


def _mrnn_forward(xp, scan, act, keep, x, xf, hf, fh, h0):
    def step(h, xs):
        q = h @ hf
        fac = xs[1] * q
        pre = xs[0] + fac @ fh
        out = _act(xp, act, pre)
        return out, (out, pre, fac, q)
    outs = scan(step, xp.broadcast_to(h0, (x.shape[1], hf.shape[0])), [x, xf])[1]
    return outs if keep else outs[:3] + (xp.zeros((1,) + outs[3].shape[1:], x.dtype),)


def _mrnn_backward(xp, scan, act, window, xf, hf, fh, h0, h, pre, fac, cache, gh, gpre, gfac):
    def step(carry, seq):
        h_t, p_t, xf_t, q_t, g_h, g_p, g_f = seq
        dp = (carry + g_h) * _dact(xp, act, p_t, h_t) + g_p
        dfac = dp @ fh.T + g_f
        dq = dfac * xf_t
        return dq @ hf.T, (dp, dfac * q_t, dq)
    h0b = xp.broadcast_to(h0, h.shape[1:])
    grads = [_given(xp, gh, h), _given(xp, gpre, h), _given(xp, gfac, fac)]
    carry, (dx, dxf, dq) = _backward(xp, scan, step, xp.zeros_like(h0b),
                                     [h, pre, xf, cache] + grads, window)
    return (dx, dxf, _sum_steps(xp, _previous(xp, h0b, h), dq), _sum_steps(xp, fac, dx),
            _state_grad(xp, carry, h0, window, h.shape[0]))


def _lstm_forward(xp, scan, act, keep, x, hh, ci, cf, co, h0, c0):
    n = hh.shape[0]

    def step(carry, xs):
        h, c = carry
        g = xs[0] + h @ hh
        i = _sigmoid(xp, g[:, :n] + c * ci)
        f = _sigmoid(xp, g[:, n:2 * n] + c * cf)
        u = xp.tanh(g[:, 2 * n:3 * n])
        c = f * c + i * u
        o = _sigmoid(xp, g[:, 3 * n:] + c * co)
        h = o * xp.tanh(c)
        return (h, c), (h, c, xp.concatenate([i, f, u, o], axis=1))
    shape = (x.shape[1], n)
    outs = scan(step, (xp.broadcast_to(h0, shape), xp.broadcast_to(c0, shape)), [x])[1]
    return outs if keep else outs[:2] + (xp.zeros((1,) + outs[2].shape[1:], x.dtype),)


def _lstm_backward(xp, scan, act, window, hh, ci, cf, co, h0, c0, h, c, cache, gh, gc):
    n = hh.shape[0]

    def step(carry, seq):
        dh_c, dc_c = carry
        cp, c_t, gates, g_h, g_c = seq
        i, f, u, o = (gates[:, k * n:(k + 1) * n] for k in range(4))
        dh, tc = dh_c + g_h, xp.tanh(c_t)
        dgo = dh * tc * o * (1 - o)
        dc = dc_c + g_c + dh * o * (1 - tc * tc) + dgo * co
        dgi, dgf = dc * u * i * (1 - i), dc * cp * f * (1 - f)
        d = xp.concatenate([dgi, dgf, dc * i * (1 - u * u), dgo], axis=1)
        return (d @ hh.T, dc * f + dgi * ci + dgf * cf), (d,)
    h0b, c0b = xp.broadcast_to(h0, h.shape[1:]), xp.broadcast_to(c0, h.shape[1:])
    cprev = _previous(xp, c0b, c)
    zeros = xp.zeros_like(h0b)
    (dh0, dc0), (dx,) = _backward(
        xp, scan, step, (zeros, zeros), [cprev, c, cache, _given(xp, gh, h), _given(xp, gc, h)],
        window)
    return (dx, _sum_steps(xp, _previous(xp, h0b, h), dx),
            (dx[..., :n] * cprev).sum(axis=(0, 1)), (dx[..., n:2 * n] * cprev).sum(axis=(0, 1)),
            (dx[..., 3 * n:] * c).sum(axis=(0, 1)), _state_grad(xp, dh0, h0, window, h.shape[0]),
            _state_grad(xp, dc0, c0, window, h.shape[0]))


def _numpy_scan(step, carry, seqs, reverse=False):
    """``jax.lax.scan`` in NumPy: a Python loop over the leading axis of ``seqs``."""
    steps = seqs[0].shape[0]
    outs = []
    for t in (range(steps - 1, -1, -1) if reverse else range(steps)):
        carry, out = step(carry, tuple(s[t] for s in seqs))
        outs.append(out)
    if not outs:  # no steps: the shapes of one step's outputs, stacked zero times
        _, out = step(carry, tuple(np.zeros(s.shape[1:], s.dtype) for s in seqs))
        return carry, tuple(np.zeros((0,) + o.shape, o.dtype) for o in out)
    return carry, tuple(np.stack(o) for o in zip(*(outs[::-1] if reverse else outs)))


# ---- the ops ----------------------------------------------------------------------------

class _Cell(object):
    """One cell: its C kernels (c/recurrent.c), array layouts and step functions.

    The forward op's layouts (see c/recurrent.c) are given; the gradient op's
    follow (see :class:`RecurrentGradOp`), and so does the layout of a forward op
    that projects. "-name" marks a slot the cell does not use.
    """

    def __init__(self, kernel, inputs, outputs, forward, backward):
        self.kernels = tuple(kernel.format(direction=d, T='{T}') for d in ('forward', 'backward'))
        ins, outs = inputs.split(), outputs.split()
        grads = ['-g' + o[1:] if o[0] == '-' else '~g{}?:{}'.format(*o.split(':'))
                 for o in outs if o.lstrip('-').split(':')[0] != 'cache']
        grad_ins = ins[1:] + [o.replace('K,', 'T,') for o in outs] + grads
        grad_outs = ['-d' + i[1:] if i[0] == '-' else 'd{0}:={0}'.format(i.split(':')[0])
                     if ':b,' in i else 'd{0}:{1}'.format(*i.lstrip('~').split(':')) for i in ins]
        width = ins[0].split(',')[-1]  # a forward op that projects: x, the rest, w and b
        projected = ' '.join(['~x:T,B,M'] + ins[1:] + ['w:M,' + width, 'b:' + width])
        self.layouts = ((inputs, outputs), (' '.join(grad_ins), ' '.join(grad_outs)),
                        (projected, outputs))
        self.forward, self.backward = forward, backward


_GATED = ' h:T,B,n pre:T,B,n hid:T,B,n '
_CELLS = {
    'rnn': _Cell('thn_rnn_{direction}<{T}>', '~xproj:T,B,n hh:n,n h0:b,n',
                 'h:T,B,n pre:T,B,n', _rnn_forward, _rnn_backward),
    'gru': _Cell('thn_gated_{direction}<{T}, true, false>',
                 '~xproj:T,B,3n -rate hh:n,n hr:n,n hz:n,n h0:b,n',
                 _GATED + 'rate:T,B,n cache:K,B,2n', _gated_forward, _gated_backward),
    'mut1': _Cell('thn_gated_{direction}<{T}, true, true>',
                  '~xproj:T,B,2n ~rate:T,B,n hh:n,n hr:n,n -hz h0:b,n',
                  _GATED + '-z cache:K,B,2n', _gated_forward, _gated_backward),
    'rrnn': _Cell('thn_gated_{direction}<{T}, false, true>',
                  '~xproj:T,B,n ~rate:T,B,n hh:n,n -hr -hz h0:b,n',
                  _GATED + '-z -cache', _gated_forward, _gated_backward),
    'lstm': _Cell('thn_lstm_{direction}<{T}>',
                  '~xproj:T,B,4n hh:n,4n ci:n cf:n co:n h0:b,n c0:b,n',
                  'h:T,B,n c:T,B,n cache:K,B,4n', _lstm_forward, _lstm_backward),
    'mrnn': _Cell('thn_mrnn_{direction}<{T}>', '~xproj:T,B,n ~xfac:T,B,F hf:n,F fh:F,n h0:b,n',
                  'h:T,B,n pre:T,B,n fac:T,B,F cache:K,B,F', _mrnn_forward, _mrnn_backward),
}


class _Array(collections.namedtuple('_Array', 'name dims strided optional')):
    """One array of a layout: "name:dims", "~" in front if the C code may read it
    through strides, "?" after the name if an empty array stands for zeros."""


def _parse(layout):
    """The arrays of ``layout``, None for its "-name" slots."""
    items = [item.partition(':')[::2] for item in layout.split()]
    return [None if name[0] == '-' else _Array(name.strip('~?'), tuple(dims.split(',')),
                                                name[0] == '~', name[-1] == '?')
            for name, dims in items]


def _slots(layout, values):
    """``values`` in the slots of ``layout``, None for its "-name" slots."""
    given = iter(values)
    return [a and next(given) for a in _parse(layout)]


_C_DIMS = {'T': 'THN_T', 'B': 'THN_B', 'b': 'THN_B1', 'F': 'THN_F', 'K': 'THN_K', 'M': 'THN_M'}


def _c_layouts(layout, inputs=None):
    """C initializers of the ``thn_layout`` of each array of ``layout`` (c/recurrent.c);
    an output "=name" is shaped like input ``name`` of the layout ``inputs``."""
    items, ins = [], _parse(inputs or '')
    for a in _parse(layout):
        a = a or _Array('', (), False, False)
        like = [b and b.name for b in ins].index(a.dims[0][1:]) \
            if a.dims and a.dims[0].startswith('=') else -1
        dims = ins[like].dims if like >= 0 else a.dims
        codes = [_C_DIMS.get(d) or str(int(d[:-1] or 1)) for d in dims] + ['0'] * (3 - len(dims))
        items.append('{{"{}", {}, {}, {}, {}, {{{}}}}}'.format(
            a.name, len(dims), str(a.strided).lower(), str(a.optional).lower(), like,
            ', '.join(codes)))
    return ', '.join(items)


def _dim(token, env):
    """Size of one layout token given the bound sizes ``env`` (None when unknown)."""
    if token in env or token == 'b':
        return env['B' if token == 'b' else token]
    k = int(token[:-1] or 1)
    return None if env['n'] is None else k * env['n']


def _bind(arrays, shapes, keep=False):
    """Sizes T, B, F, n, M from the first shapes (ints, None or symbolic) that give them."""
    env = {'T': None, 'B': None, 'F': None, 'n': None, 'M': None}
    for a, shape in zip(arrays, shapes):
        for token, size in zip(a.dims, shape):
            if token in env and env[token] is None and not a.optional and size is not None:
                env[token] = size
    env['K'] = env['T'] if keep else 1
    return env


def _c_bind(layout):
    """``{input, axis}`` pairs of ``layout`` giving T, B, F, n, M ({-1, -1} if none)."""
    arrays = _parse(layout)
    places = [[(k, axis) for axis in range(len(a.dims))] for k, a in enumerate(arrays) if a]
    env = _bind([a for a in arrays if a], places)
    return ', '.join('{{{}, {}}}'.format(*(env[t] or (-1, -1))) for t in 'TBFnM')


class _RecurrentBase(CSourceOp):
    """What the forward and gradient ops share: layouts, checks, C call, NumPy and JAX."""

    C_SOURCES = ('parallel.c', 'recurrent.c')
    USES_BLAS = True
    BACKWARD = False
    params_type = ParamsType(act=int32, bptt=int32, keep=int32, threads=int32)
    keep_cache = True
    project = False

    def __init__(self, cell, activation='tanh', bptt_limit=-1):
        if cell not in _CELLS:
            raise ValueError('unknown recurrent cell {!r}; known: {}'.format(
                cell, ', '.join(sorted(_CELLS))))
        if not supports_activation(activation):
            raise ValueError('{}: activation {!r} is not supported by the recurrent ops; '
                             'supported: {}'.format(cell, activation, ', '.join(ACTIVATIONS)))
        self.cell = cell
        self.activation = _CANONICAL.get(activation, activation)
        self.bptt_limit = int(bptt_limit)

    @property
    def label(self):
        return self.cell + (' gradient' if self.BACKWARD else '')

    def _layouts(self):
        return _CELLS[self.cell].layouts[2 if self.project else self.BACKWARD]

    def _inputs(self):  # the arrays of the layout, without slots
        return [a for a in _parse(self._layouts()[0]) if a]

    def _outputs(self):
        return [a for a in _parse(self._layouts()[1]) if a]

    def get_params(self, node):
        return self.params_type.get_params(
            act=ACTIVATIONS[self.activation], bptt=self.bptt_limit, keep=int(self.keep_cache),
            threads=threads())

    def make_node(self, *inputs):
        entries = self._inputs()
        if len(inputs) != len(entries):
            raise TypeError('{} takes {} inputs ({}), got {}'.format(
                self.label, len(entries), ', '.join(e.name for e in entries), len(inputs)))
        ins = float_inputs(self.label, ['{} ({})'.format(e.name, ', '.join(e.dims))
                                        for e in entries], inputs, [len(e.dims) for e in entries])
        return Apply(self, ins, [ins[s].type() if isinstance(s, int) else
                                 TensorType(ins[0].dtype, shape=s)() for s in
                                 self._output_shapes([x.type.shape for x in ins])])

    def _output_shapes(self, shapes):
        """Each output's shape from the inputs' shapes (ints, None or symbolic), or
        the position of the input whose shape it has."""
        entries = self._inputs()
        env = _bind(entries, shapes, self.keep_cache)
        names = [e.name for e in entries]
        return [names.index(o.dims[0][1:]) if o.dims[0].startswith('=') else
                tuple(_dim(d, env) for d in o.dims) for o in self._outputs()]

    def infer_shape(self, *args):  # (fgraph, node, shapes) in PyTensor 3.0, (node, shapes) later
        shapes = args[-1]
        return [shapes[s] if isinstance(s, int) else s for s in self._output_shapes(shapes)]

    def _check(self, inputs):
        """Raise the ValueError of the C code when ``inputs`` do not fit the layout."""
        entries = self._inputs()
        env = _bind(entries, [x.shape for x in inputs], self.keep_cache)
        for e, x in zip(entries, inputs):
            if e.optional and x.size == 0:
                continue
            want = tuple(_dim(d, env) for d in e.dims)
            ones = tuple(1 if d == 'b' else w for d, w in zip(e.dims, want))
            if x.shape not in (want, ones):
                raise ValueError('{}: {} has shape {}, expected {}{}'.format(
                    self.label, e.name, x.shape, want,
                    ' or {}'.format(ones) if ones != want else ''))

    def _window(self, steps):
        return steps if self.bptt_limit < 0 else min(self.bptt_limit, steps)

    def compute(self, xp, scan, inputs):
        """The op's outputs from its inputs with array module ``xp`` and loop ``scan``."""
        cell = _CELLS[self.cell]
        args = _slots(self._layouts()[0], inputs)
        if self.project:  # x . w + b in place of x
            args = [xp.matmul(args[0], args[-2]) + args[-1]] + args[1:-2]
        if self.BACKWARD:
            steps = inputs[[e.name for e in self._inputs()].index('h')].shape[0]
            return cell.backward(xp, scan, self.activation, self._window(steps), *args)
        return cell.forward(xp, scan, self.activation, self.keep_cache, *args)

    def perform(self, node, inputs, outputs, params=None):
        self._check(inputs)
        dtype = node.outputs[0].dtype
        for storage, value in zip(outputs, self.compute(np, _numpy_scan, inputs)):
            storage[0] = np.asarray(value, dtype)

    def c_call(self, node, inputs, outputs, sub):
        layout_in, layout_out = self._layouts()
        kernel = _CELLS[self.cell].kernels[self.BACKWARD].format(
            T='float' if node.outputs[0].dtype == 'float32' else 'double')
        call = '{{"{}", {}, std::vector<thn_layout>{{{}}}.data(), ' \
               'std::vector<thn_layout>{{{}}}.data(), {}, {}, {{{}}}, {p}->act, {p}->bptt, ' \
               '{p}->keep, {p}->threads, {}}}'.format(
                   self.label, kernel, _c_layouts(layout_in), _c_layouts(layout_out, layout_in),
                   len(layout_in.split()), len(layout_out.split()), _c_bind(layout_in),
                   len(layout_in.split()) - 2 if self.project else 0,
                   p=sub['params'])
        return 'thn_recurrent({}, std::vector<PyArrayObject*>{{{}}}.data(), ' \
               'std::vector<PyArrayObject**>{{{}}}.data())'.format(
                   call, ', '.join('NULL' if x is None else x for x in _slots(layout_in, inputs)),
                   ', '.join('NULL' if x is None else '&' + x
                             for x in _slots(layout_out, outputs)))


class RecurrentOp(_RecurrentBase):
    """The forward time loop of ``cell``: 'rnn', 'gru', 'mut1', 'rrnn', 'lstm' or 'mrnn'.

    Inputs and outputs follow the cell's layout (see the public functions);
    cells with a ``cache`` output keep it for the gradient op, one step of it
    only with ``keep_cache=False``. With ``project``, it takes ``x`` (T, B, M) for
    ``xproj``, and ``w`` (M, k n) and ``b`` (k n,) last: ``xproj_t = x_t . w + b``.
    """

    __props__ = ('cell', 'activation', 'bptt_limit', 'keep_cache', 'project')

    def __init__(self, cell, activation='tanh', bptt_limit=-1, keep_cache=True, project=False):
        super().__init__(cell, activation, bptt_limit)
        self.keep_cache = bool(keep_cache)
        self.project = bool(project)

    @property
    def has_cache(self):
        return self._outputs()[-1].name == 'cache'

    def pullback(self, inputs, outputs, output_grads):
        grads = list(output_grads)
        if self.has_cache:
            if not isinstance(grads.pop().type, DisconnectedType):
                raise NotImplementedError('{}: the cache output is internal; it has no '
                                          'gradient'.format(self.cell))
        if all(isinstance(g.type, DisconnectedType) for g in grads):
            return [pt.zeros_like(x) for x in inputs]
        if not self.keep_cache:
            raise NotImplementedError('{}: an op without its cache has no gradient'.format(
                self.cell))
        empty = pt.constant(np.zeros((0, 0, 0), outputs[0].dtype))
        grads = [empty if isinstance(g.type, DisconnectedType) else g for g in grads]
        grad_op = RecurrentGradOp(self.cell, self.activation, self.bptt_limit)
        weights = inputs[1:-2] if self.project else inputs[1:]
        dx, *rest = grad_op(*(list(weights) + list(outputs) + grads))
        if not self.project:
            return [dx] + rest
        x, w = inputs[0], inputs[-2]  # dx is the gradient of xproj = x . w + b
        return [DotLastOp()(dx, w.T)] + rest + [DotLeadingOp()(x, dx), dx.sum(axis=(0, 1))]


class RecurrentGradOp(_RecurrentBase):
    """Backpropagation through time for :class:`RecurrentOp`.

    Inputs: the forward op's inputs but ``xproj``, its outputs, and the
    gradients arriving at its outputs but the cache (an empty array stands for
    "no gradient"). Outputs: the gradients of the forward op's inputs.
    """

    __props__ = ('cell', 'activation', 'bptt_limit')
    BACKWARD = True

    def pullback(self, inputs, outputs, output_grads):
        return [grad_not_implemented(self, k, x) for k, x in enumerate(inputs)]


@jax_twin(_RecurrentBase)
def _recurrent_jax(op, node=None, **kwargs):
    import jax
    import jax.numpy as jnp
    dtype = node.outputs[0].dtype

    def recurrent_jax(*inputs):
        # with jax_enable_x64, JAX may hand over some inputs in float64
        return tuple(op.compute(jnp, jax.lax.scan, [jnp.asarray(x, dtype) for x in inputs]))
    return recurrent_jax


#: Tag of the rewrite below; :mod:`theanets.backend` includes it in the modes it builds.
FORWARD_ONLY_TAG = 'theanets_recurrent_forward_only'


@node_rewriter([RecurrentOp])
def _forward_only(fgraph, node):
    """An op whose cache nothing reads keeps one step of it (e.g. in predictions)."""
    op = node.op
    if not op.has_cache or not op.keep_cache or fgraph.clients.get(node.outputs[-1]):
        return None
    new = RecurrentOp(op.cell, op.activation, op.bptt_limit, False, op.project)(*node.inputs)
    return dict(zip(node.outputs[:-1], new[:-1]))


if FORWARD_ONLY_TAG not in optdb.__db__:
    optdb.register(FORWARD_ONLY_TAG, in2out(_forward_only), position=49.2)


# ---- public functions ----------------------------------------------------------------------

def _scan_loop(truncate):
    """:func:`pytensor.scan` with the calling convention of ``jax.lax.scan``."""
    def scan(step, carry, seqs, reverse=False):
        init = list(carry) if isinstance(carry, tuple) else [carry]
        count = len(step(carry, tuple(s[0] for s in seqs))[1])

        def fn(*args):
            state = args[len(seqs):]
            new, outs = step(tuple(state) if isinstance(carry, tuple) else state[0], args)
            return (list(new) if isinstance(carry, tuple) else [new]) + list(outs)
        outs = pytensor.scan(fn, sequences=list(seqs), outputs_info=init + [None] * count,
                             truncate_gradient=truncate, go_backwards=reverse,
                             return_updates=False)
        return None, tuple(outs[len(init):])
    return scan


def _run(cell, activation, bptt_limit, sequences, weights, states, count):
    """The first ``count`` outputs of ``cell`` on the given inputs.

    Everything is cast to the dtype of the first sequence; an absent initial
    state is zeros (1, n); a first sequence ``(x, w, b)`` is projected step by step.
    An activation the ops do not compute (a composed or learnable one) runs the
    cell's step function in :func:`pytensor.scan`.
    """
    first, *sequences = sequences
    project = [pt.as_tensor_variable(v) for v in first] if isinstance(first, tuple) else []
    x = project.pop(0) if project else pt.as_tensor_variable(first)
    dtype = x.dtype if x.dtype in ('float32', 'float64') else pytensor.config.floatX
    weights = [pt.as_tensor_variable(w) for w in weights]
    n = weights[0].type.shape[0]
    n = weights[0].shape[0] if n is None else n
    inputs = [pt.cast(v, dtype) for v in [x] + sequences + weights] + [
        pt.zeros((1, n), dtype) if s is None else pt.cast(s, dtype) for s in states] + [
        pt.cast(v, dtype) for v in project]
    if supports_activation(activation):
        return tuple(RecurrentOp(cell, activation, bptt_limit, project=bool(project))(
            *inputs)[:count])
    if project:
        inputs = [dot_last(inputs[0], inputs[-2]) + inputs[-1]] + inputs[1:-2]
    warn_once(('scan', cell, str(activation)),
              'recurrent %s: the recurrent ops do not compute activation %r (only %s); '
              'running the loop with pytensor.scan, which is slower and cannot be '
              'differentiated in JAX mode', cell, activation, ', '.join(ACTIVATIONS))
    args = _slots(_CELLS[cell].layouts[0][0], inputs)
    return _CELLS[cell].forward(pt, _scan_loop(bptt_limit), activation, True, *args)[:count]


_COMMON = """
    h0 : matrix (B, n) or (1, n), optional
        Initial state (zeros when None; one row serves the whole batch).
    bptt_limit : int
        Backpropagate through the last ``bptt_limit`` steps only (-1: all)."""


def rnn(xproj, hh, h0=None, activation='tanh', bptt_limit=-1):
    """Simple recurrent loop: ``pre_t = xproj_t + h_{t-1} . hh``, ``h_t = g(pre_t)``.

    Parameters
    ----------
    xproj : tensor (T, B, n)
        Projected inputs ``x . W + b`` of every step, time-major, or the tuple
        ``(x, W, b)`` of the projection to compute step by step (module docstring).
    hh : matrix (n, n)
        Recurrent weights.
    activation : str or callable
        ``g``: one of :data:`ACTIVATIONS`, or any function of a tensor (then
        the loop runs in :func:`pytensor.scan`).{}

    Returns
    -------
    h, pre : tensors (T, B, n)
    """
    return _run('rnn', activation, bptt_limit, [xproj], [hh], [h0], 2)


def gru(xproj, hh, hr, hz, h0=None, activation='tanh', bptt_limit=-1):
    """GRU loop (module docstring), blocks of ``xproj`` [candidate, reset, rate].

    Parameters
    ----------
    xproj : tensor (T, B, 3n)
    hh, hr, hz : matrix (n, n)
        Recurrent weights of the candidate, reset and rate gates.
    activation : str or callable
        ``g`` of the candidate, as for :func:`rnn`.{}

    Returns
    -------
    h, pre, hid, rate : tensors (T, B, n)
        States, the candidate's argument and value, the rate gate ``z``.
    """
    return _run('gru', activation, bptt_limit, [xproj], [hh, hr, hz], [h0], 4)


def mut1(xproj, rate, hh, hr, h0=None, bptt_limit=-1):
    """GRU loop (module docstring) with ``z = rate`` and ``g = tanh``: the MUT1 unit.

    Parameters
    ----------
    xproj : tensor (T, B, 2n)
        Blocks [candidate, reset].
    rate : tensor (T, B, n)
        Rates in [0, 1].
    hh, hr : matrix (n, n){}

    Returns
    -------
    h, pre, hid : tensors (T, B, n)
    """
    return _run('mut1', 'tanh', bptt_limit, [xproj, rate], [hh, hr], [h0], 3)


def rrnn(xproj, rate, hh, h0=None, activation='tanh', bptt_limit=-1):
    """GRU loop (module docstring) with ``z = rate`` and ``r = 1``: an RNN with rates.

    Parameters
    ----------
    xproj, rate : tensors (T, B, n)
        Projected inputs; rates in [0, 1].
    hh : matrix (n, n)
    activation : str or callable
        ``g``, as for :func:`rnn`.{}

    Returns
    -------
    h, pre, hid : tensors (T, B, n)
    """
    return _run('rrnn', activation, bptt_limit, [xproj, rate], [hh], [h0], 3)


def lstm(xproj, hh, ci, cf, co, h0=None, c0=None, bptt_limit=-1):
    """LSTM loop (module docstring), blocks [input, forget, cell, output].

    Parameters
    ----------
    xproj : tensor (T, B, 4n)
    hh : matrix (n, 4n)
    ci, cf, co : vector (n,)
        Peephole weights of the input, forget and output gates.
    c0 : matrix (B, n) or (1, n), optional
        Initial cell state, as ``h0``.{}

    Returns
    -------
    h, c : tensors (T, B, n)
        Hidden and cell states.
    """
    return _run('lstm', 'tanh', bptt_limit, [xproj], [hh, ci, cf, co], [h0, c0], 2)


def mrnn(xproj, xfac, hf, fh, h0=None, activation='tanh', bptt_limit=-1):
    """Multiplicative recurrent loop (module docstring).

    Parameters
    ----------
    xproj : tensor (T, B, n)
    xfac : tensor (T, B, F)
        Input projection onto the F factors.
    hf : matrix (n, F)
    fh : matrix (F, n)
    activation : str or callable
        ``g``, as for :func:`rnn`.{}

    Returns
    -------
    h, pre : tensors (T, B, n)
    factors : tensor (T, B, F)
    """
    return _run('mrnn', activation, bptt_limit, [xproj, xfac], [hf, fh], [h0], 3)


for _function in (rnn, gru, mut1, rrnn, lstm, mrnn):
    if _function.__doc__:  # None under python -OO
        _function.__doc__ = _function.__doc__.replace("{}", _COMMON)
