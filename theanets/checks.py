"""Validation of user data before any compiled function sees it.

Each check raises :class:`~theanets.util.ConfigurationError` (a ValueError)
naming the layer or variable, the argument and the shapes involved, and
saying how to fix the input. The checks run in :meth:`Network.predict
<theanets.graph.Network.predict>` (and the other methods that take input
arrays) and before training starts, so a PyTensor function never receives
data it cannot use. ``docs/errors.rst`` lists every check with an example
message.

Examples
--------
>>> import numpy as np, theanets
>>> net = theanets.Regressor([4, 2])
>>> net.predict(np.zeros((3, 5), 'f'))
Traceback (most recent call last):
  ...
theanets.util.ConfigurationError: expected 4 values on axis 1 of input 'in', got 5 ...
"""

import warnings

import numpy as np
import scipy.sparse

from . import util

__all__ = ['inputs', 'dataset', 'array', 'score_targets', 'first_batch', 'batch_size',
           'NonFiniteDataWarning']


class NonFiniteDataWarning(RuntimeWarning):
    """Data holding NaN or inf was accepted because ``allow_nonfinite=True`` was given."""


def _describe(array):
    return 'shape {} dtype {}'.format(getattr(array, 'shape', None),
                                      getattr(array, 'dtype', type(array).__name__))


def _fmt(shape):
    return '(' + ', '.join('N' if s is None else str(s) for s in shape) + \
        (',)' if len(shape) == 1 else ')')


def _as_array(value, what):
    if scipy.sparse.issparse(value):
        return value
    if hasattr(value, 'get_value'):
        value = value.get_value()
    try:
        return np.asarray(value)
    except Exception as err:
        raise util.ConfigurationError('{}: cannot convert {!r} to an array ({})'.format(
            what, type(value).__name__, err)) from err


def _check_numeric(array, what):
    """Reject strings, objects and complex numbers; bools and ints are fine."""
    dtype = array.dtype
    if dtype == bool or (np.issubdtype(dtype, np.number)
                         and not np.issubdtype(dtype, np.complexfloating)):
        return
    raise util.ConfigurationError('{} needs real numbers, got {}; convert it with '
                                  'np.asarray(data, dtype="float32")'.format(
                                      what, _describe(array)))


def _check_finite(array, what, allow_nonfinite):
    if not np.issubdtype(array.dtype, np.floating):
        return
    data = array.data if scipy.sparse.issparse(array) else array
    with np.errstate(over='ignore', invalid='ignore'):
        if np.isfinite(np.add.reduce(data, axis=None)):  # else a NaN, an infinity or overflow
            return
    bad = data.size - int(np.isfinite(data).sum())
    if not bad:
        return
    message = '{} holds {} NaN or infinite value(s)'.format(what, bad)
    if allow_nonfinite:
        warnings.warn(message + '; using it because allow_nonfinite=True',
                      NonFiniteDataWarning, stacklevel=4)
        return
    raise util.ConfigurationError(
        message + '; clean the data, or pass allow_nonfinite=True to use it anyway')


def _check_shape(want, array, what, hint=''):
    """Compare an array's shape with a layer shape ``want`` (None = any size)."""
    if array.ndim != len(want):
        raise util.ConfigurationError(
            '{} expects {}-D data of shape {}, got {}-D data of {}{}'.format(
                what, len(want), _fmt(want), array.ndim, _describe(array), hint))
    for axis, (size, have) in enumerate(zip(want, array.shape)):
        if size is not None and size != have:
            raise util.ConfigurationError(
                'expected {} values on axis {} of {}, got {} (data {}); check the '
                'layer sizes in layers=[...]'.format(size, axis, what, have, _describe(array)))
    if array.shape[0] == 0:
        raise util.ConfigurationError('{} received an empty array ({}); give at least one '
                                      'example'.format(what, _describe(array)))


def _check_input(layer, array, allow_nonfinite):
    what = 'input {!r}'.format(layer.name)
    want = (None, ) + tuple(layer.output_shape)  # shapes are per example
    hint = ' (recurrent models take (batch, time, variables) arrays)' if len(want) == 3 else ''
    _check_shape(want, array, what, hint)
    _check_numeric(array, what)
    _check_finite(array, what, allow_nonfinite)
    if scipy.sparse.issparse(array):
        if not layer.sparse:
            raise util.ConfigurationError(
                '{} received a sparse matrix; build the input with sparse=True, e.g. '
                'layers=[dict(size=..., sparse="csr"), ...], or pass x.toarray()'.format(what))
        return array.astype(util.FLOAT)
    if layer.sparse:
        raise util.ConfigurationError(
            '{} expects a scipy sparse {} matrix, got a dense array; convert it with '
            'scipy.sparse.csr_matrix(x)'.format(
                what, layer.sparse if isinstance(layer.sparse, str) else 'csr'))
    return np.asarray(array, dtype=util.FLOAT)


def _input_layers(net):
    from .layers import Input
    return [l for l in net.layers if isinstance(l, Input)]


def inputs(net, arrays, allow_nonfinite=False):
    """Check and convert input arrays for ``net``'s Input layers.

    Parameters
    ----------
    net : :class:`theanets.Network`
    arrays : list of array-likes
        One per Input layer, in layer order.
    allow_nonfinite : bool, optional
        Warn (:class:`NonFiniteDataWarning`) instead of failing on NaN or inf.

    Returns
    -------
    list of ndarray (floatX) or sparse matrices
    """
    layers = _input_layers(net)
    if len(arrays) != len(layers):
        raise util.ConfigurationError(
            '{} has {} input layer(s) ({}) but got {} array(s); give one array per input'
            .format(type(net).__name__, len(layers), [l.name for l in layers], len(arrays)))
    result = [_check_input(l, _as_array(a, 'input {!r}'.format(l.name)), allow_nonfinite)
              for l, a in zip(layers, arrays)]
    _check_lengths(result, [l.name for l in layers], [a.ndim - 1 for a in result], len(result))
    return result


def array(shape, value, what, allow_nonfinite=False):
    """Check and convert one array for a graph output of layer shape ``shape``.

    Used for the codes given to :meth:`Autoencoder.decode
    <theanets.feedforward.Autoencoder.decode>`.
    """
    value = _as_array(value, what)
    if scipy.sparse.issparse(value):
        value = value.toarray()
    _check_shape(shape, value, what)
    _check_numeric(value, what)
    _check_finite(value, what, allow_nonfinite)
    return np.asarray(value, dtype=util.FLOAT)


def _target_columns(net, var):
    """Number of columns a float target needs, or None when the loss reads another output."""
    if var.name != 'target':
        return None
    return net.layers[-1].output_size


def _check_target(var, array, net, allow_nonfinite):
    what = 'target array {!r}'.format(var.name)
    if array.ndim != var.ndim:
        raise util.ConfigurationError(
            '{} of {} must be {}-D, got {}-D data of {}{}'.format(
                what, type(net).__name__, var.ndim, array.ndim, _describe(array),
                ' (class labels are one int per example{})'.format(
                    ' and time step' if var.ndim == 2 else '')
                if var.dtype.startswith('int') else ''))
    if array.size == 0:
        raise util.ConfigurationError('{} is empty ({})'.format(what, _describe(array)))
    _check_numeric(array, what)
    if var.dtype.startswith('int'):
        return _check_labels(array, net, what)
    _check_finite(array, what, allow_nonfinite)
    columns = _target_columns(net, var)
    if columns is not None and array.shape[-1] != columns:
        raise util.ConfigurationError(
            'expected {} columns in {} for output layer {!r}, got {} (data {}); the '
            'target needs one column per output unit'.format(
                columns, what, net.layers[-1].name, array.shape[-1], _describe(array)))
    return np.asarray(array, dtype=util.FLOAT)


def _check_labels(array, net, what):
    if not np.issubdtype(array.dtype, np.integer):
        finite = np.issubdtype(array.dtype, np.floating) and np.isfinite(array).all()
        if finite and np.all(np.mod(array, 1) == 0):
            hint = '; convert with labels.astype("int32")'
        else:
            hint = '; a classifier needs integer class labels 0, 1, ..., K - 1'
        raise util.ConfigurationError('{} holds {} values, not integer labels{}'.format(
            what, array.dtype, hint))
    k = net.layers[-1].output_size or 0
    low, high = int(array.min()), int(array.max())
    if low < 0 or high >= k:
        raise util.ConfigurationError(
            '{} holds labels in [{}, {}] but output layer {!r} has {} classes, so labels '
            'must be in [0, {}]; give the output layer {} units or renumber the labels'
            .format(what, low, high, net.layers[-1].name, k, k - 1, max(high + 1, k)))
    return np.asarray(array, dtype='int32')


def _check_weights(array, target, target_name, allow_nonfinite, what='weights array'):
    if array.shape != target.shape:
        raise util.ConfigurationError(
            '{} has shape {} but must match the target {!r} shape {}; give one weight '
            'per target value'.format(what, array.shape, target_name, target.shape))
    _check_numeric(array, what)
    _check_finite(array, what, allow_nonfinite)
    finite = array[np.isfinite(array)] if np.issubdtype(array.dtype, np.floating) else array
    if finite.size and finite.min() < 0:
        raise util.ConfigurationError(
            '{} holds negative values (min {}); weights must be >= 0'.format(
                what, finite.min()))
    if not np.any(array):
        raise util.ConfigurationError(
            '{} is all zero, so every example is ignored and the loss is 0 / 0; give some '
            'examples a positive weight'.format(what))
    return np.asarray(array, dtype=util.FLOAT)


def dataset(net, arrays, allow_nonfinite=False):
    """Check and convert a training dataset ``[inputs..., target, weights]`` for ``net``.

    Parameters
    ----------
    net : :class:`theanets.Network`
    arrays : list of array-likes
        In the order of ``net.variables``.
    allow_nonfinite : bool, optional
        Warn (:class:`NonFiniteDataWarning`) instead of failing on NaN or inf.

    Returns
    -------
    list of ndarray (or sparse matrices for sparse inputs)

    Raises
    ------
    ConfigurationError
        On a wrong number of arrays, wrong dimensions or columns, mismatched
        numbers of examples or time steps, empty data, non-integer or
        out-of-range labels, weights of the wrong shape, negative or all zero,
        or NaN/inf values.
    """
    if not isinstance(arrays, (list, tuple)):
        raise util.ConfigurationError(
            'training data must be a list of arrays such as [x, y], got {}'.format(
                type(arrays).__name__))
    variables = net.variables
    names = [v.name for v in variables]
    if len(arrays) != len(variables):
        raise util.ConfigurationError(
            '{} trains on {} array(s) {} but got {}; give them in that order'.format(
                type(net).__name__, len(variables), names, len(arrays)))
    _check_losses(net)
    n_inputs = len(net.inputs)
    result = inputs(net, arrays[:n_inputs], allow_nonfinite)
    leads = [a.ndim - 1 for a in result]
    for var, value in zip(variables[n_inputs:], arrays[n_inputs:]):
        value = _as_array(value, 'array {!r}'.format(var.name))
        if var.name == 'weights':
            target = result[-1]
            result.append(_check_weights(value, target, names[len(result) - 1],
                                         allow_nonfinite))
            leads.append(leads[-1])
        else:
            result.append(_check_target(var, value, net, allow_nonfinite))
            leads.append(value.ndim if var.dtype.startswith('int') else value.ndim - 1)
    _check_lengths(result, names, leads, n_inputs)
    return result


def _check_losses(net):
    """Check that every loss reads outputs that exist and fit its target.

    An output compared with float targets needs as many dimensions as the
    target; one compared with class labels needs one more (the class scores).
    A loss that reconstructs an input (autoencoders) needs the input's size.
    """
    shapes = {}
    for layer in net.layers:
        shapes.update(layer.output_shapes())
    model = type(net).__name__
    for loss in net.losses:
        target = loss.variables[0]
        for name in loss.output_names():
            if name not in shapes:
                raise util.unknown_name(
                    'output', name, shapes, where='{}: the {} loss reads an output'.format(
                        model, type(loss).__name__))
            _check_loss_output(model, loss, target, name, shapes[name])
        for layer in _input_layers(net):
            if layer.input is target and loss.output_name in shapes:
                _check_reconstruction(model, layer, loss.output_name, shapes[loss.output_name])


def _check_loss_output(model, loss, target, name, shape):
    labels = target.dtype.startswith('int')
    want = target.ndim + labels
    if 1 + len(shape) == want:
        return
    raise util.ConfigurationError(
        '{}: the {} loss compares {}-D {} {!r} with output {!r}, which must then be {}-D{}, '
        'but is {}-D of shape {}; add a "flatten" layer before the output layer, or give '
        'the loss a target of {} dimensions, e.g. net.set_loss({!r}, target={})'.format(
            model, type(loss).__name__, target.ndim, 'class labels' if labels else 'target',
            target.name, name, want,
            ' (the axes of the labels plus one of class scores)' if labels else ' too',
            1 + len(shape), _fmt((None, ) + tuple(shape)), len(shape) + 1 - labels,
            type(loss).__name__.lower(), len(shape) + 1 - labels))


def _check_reconstruction(model, layer, name, shape):
    have, want = shape[-1], layer.output_shape[-1]
    if None not in (have, want) and have != want:
        raise util.ConfigurationError(
            '{} reproduces input {!r} ({} values) from output {!r}, which has {}; '
            'give the last layer {} units'.format(model, layer.name, want, name, have, want))


_AXIS_NAMES = {0: 'examples', 1: 'time steps'}


def _check_lengths(arrays, names, leads, n_inputs):
    """Check that arrays agree on their leading (example, time) axes.

    Every array must have the same number of examples (axis 0). A target or
    weights array must also agree with each input on the further leading axes
    both have, e.g. the time axis of recurrent models; ``leads[i]`` is the
    number of leading axes of ``arrays[i]`` (all but the variables axis).
    """
    pairs = [(i, j) for i in range(len(arrays)) for j in range(i + 1, len(arrays))]
    for axis in range(max(leads) if leads else 0):
        for i, j in pairs:
            if axis > 0 and j < n_inputs:
                continue  # several inputs need only the same number of examples
            if axis >= min(leads[i], leads[j]) or arrays[i].shape[axis] == arrays[j].shape[axis]:
                continue
            kind = _AXIS_NAMES.get(axis, 'values on axis {}'.format(axis))
            raise util.ConfigurationError(
                'arrays have different numbers of {} (axis {}): {}; every array needs '
                'the same {}'.format(
                    kind, axis, ', '.join('{}={}'.format(n, a.shape[axis])
                                          for n, a, l in zip(names, arrays, leads) if l > axis),
                    'number of rows' if axis == 0 else 'length on axis {}'.format(axis)))


def score_targets(net, n_examples, y, w=None):
    """Check the true values ``y`` and weights ``w`` given to ``score``.

    Parameters
    ----------
    net : :class:`theanets.Network`
    n_examples : int
        Number of examples of the input data.
    y : array-like
        Targets shaped like the network's training target (labels for classifiers).
    w : array-like, optional
        Weights shaped like ``y`` (or like ``y`` without its last axis for
        real-valued targets).

    Returns
    -------
    y, w : ndarray (w may be None)
    """
    net.ensure_ready()
    var = net.losses[0].variables[0]
    y = _check_target(var, _as_array(y, 'target array {!r}'.format(var.name)), net, False)
    if y.shape[0] != n_examples:
        raise util.ConfigurationError(
            'score() got {} input example(s) but {} target row(s) {}; give one target per '
            'example'.format(n_examples, y.shape[0], _describe(y)))
    if w is None:
        return y, None
    w = _as_array(w, 'weights array')
    target = y if w.ndim == y.ndim or var.dtype.startswith('int') else y[..., 0]
    return y, _check_weights(w, target, var.name, False)


class _CheckedBatches(object):
    """A batch callable whose first batch was checked; it returns that batch first."""

    def __init__(self, source, first):
        self._source = source
        self._first = first

    def __call__(self):
        if self._first is not None:
            batch, self._first = self._first, None
            return batch
        return self._source()


class _SizedCheckedBatches(_CheckedBatches):
    """A checked batch callable for a source with ``len`` (its iteration size)."""

    def __len__(self):
        return len(self._source)


def first_batch(net, source, allow_nonfinite=False, name='training'):
    """Check the first batch of a batch callable; return a callable giving the same batches.

    The source is called once now. The returned callable hands out that
    (checked) batch first and then calls the source, so no batch is lost and
    the source is called exactly as often as before.
    """
    batch = source()
    if not isinstance(batch, (list, tuple)):
        raise util.ConfigurationError(
            'the {} data callable must return a list of arrays such as [x, y], got {}'
            .format(name, type(batch).__name__))
    try:
        checked = dataset(net, list(batch), allow_nonfinite)
    except util.ConfigurationError as err:
        raise util.ConfigurationError('first batch of the {} data callable: {}'.format(
            name, err)) from None
    kind = _SizedCheckedBatches if hasattr(source, '__len__') else _CheckedBatches
    return kind(source, checked)


def batch_size(value, n_examples, name='training'):
    """Warn when an explicit ``batch_size`` exceeds the number of examples.

    Training then uses all examples in one batch (the batch size is clamped).
    """
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool) \
            and value > n_examples:
        warnings.warn('batch_size={} is larger than the {} data ({} examples); using one '
                      'batch of {}'.format(value, name, n_examples, n_examples),
                      UserWarning, stacklevel=5)
