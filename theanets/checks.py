"""Validation of user data before any compiled function sees it.

Each check raises :class:`~theanets.util.ConfigurationError` (a ValueError)
naming the layer or variable, the argument and the shapes involved, and
saying how to fix the input.
"""

import numpy as np
import scipy.sparse

from . import util

__all__ = ['inputs', 'dataset']


def _describe(array):
    return 'shape {} dtype {}'.format(getattr(array, 'shape', None),
                                      getattr(array, 'dtype', type(array).__name__))


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


def _check_finite(array, what, allow_nonfinite):
    if allow_nonfinite or not np.issubdtype(array.dtype, np.floating):
        return
    data = array.data if scipy.sparse.issparse(array) else array
    if not np.isfinite(data).all():
        bad = int((~np.isfinite(data)).sum())
        raise util.ConfigurationError(
            '{} holds {} NaN or infinite value(s); clean the data or pass '
            'allow_nonfinite=True to train anyway'.format(what, bad))


def _check_input(layer, array, allow_nonfinite):
    what = 'input {!r}'.format(layer.name)
    want = layer.output_shape
    if array.ndim != len(want):
        hint = ' (recurrent models take (batch, time, variables) arrays)' \
            if len(want) == 3 else ''
        raise util.ConfigurationError(
            '{} expects {}-D data of shape {}, got {}-D data of {}{}'.format(
                what, len(want), _fmt(want), array.ndim, _describe(array), hint))
    for axis, (size, have) in enumerate(zip(want, array.shape)):
        if size is not None and size != have:
            raise util.ConfigurationError(
                'expected {} values on axis {} of {}, got {} (data {}); check the '
                'input layer size in layers=[...]'.format(
                    size, axis, what, have, _describe(array)))
    if array.shape[0] == 0:
        raise util.ConfigurationError('{} received an empty array ({})'.format(
            what, _describe(array)))
    _check_finite(array, what, allow_nonfinite)
    if scipy.sparse.issparse(array):
        if not layer.sparse:
            raise util.ConfigurationError(
                '{} received a sparse matrix; build the input with sparse=True'.format(what))
        return array.astype(util.FLOAT)
    if layer.sparse:
        raise util.ConfigurationError(
            '{} expects a scipy sparse {} matrix, got a dense array'.format(
                what, layer.sparse if isinstance(layer.sparse, str) else 'csr'))
    if not np.issubdtype(array.dtype, np.number) and array.dtype != bool:
        raise util.ConfigurationError('{} needs numeric data, got {}'.format(
            what, _describe(array)))
    return np.asarray(array, dtype=util.FLOAT)


def _fmt(shape):
    return '(' + ', '.join('N' if s is None else str(s) for s in shape) + ')'


def _input_layers(net):
    from .layers import Input
    return [l for l in net.layers if isinstance(l, Input)]


def inputs(net, arrays, allow_nonfinite=False):
    """Check and convert input arrays for ``net``'s Input layers.

    Returns
    -------
    list of ndarray (floatX) or sparse matrices
    """
    layers = _input_layers(net)
    if len(arrays) != len(layers):
        raise util.ConfigurationError(
            '{} has {} input layer(s) ({}) but got {} array(s); give one array per input'
            .format(type(net).__name__, len(layers), [l.name for l in layers], len(arrays)))
    return [_check_input(l, _as_array(a, 'input {!r}'.format(l.name)), allow_nonfinite)
            for l, a in zip(layers, arrays)]


def _check_target(loss_var, array, net, allow_nonfinite):
    what = 'target array {!r}'.format(loss_var.name)
    if array.ndim != loss_var.ndim:
        raise util.ConfigurationError(
            '{} of {} must be {}-D, got {}-D data of {}'.format(
                what, type(net).__name__, loss_var.ndim, array.ndim, _describe(array)))
    if loss_var.dtype.startswith('int'):
        return _check_labels(array, net, what)
    _check_finite(array, what, allow_nonfinite)
    out = net.layers[-1].output_size
    if array.shape[-1] != out and loss_var.name == 'target':
        raise util.ConfigurationError(
            'expected {} columns in {} for output layer {!r}, got {} (data {})'.format(
                out, what, net.layers[-1].name, array.shape[-1], _describe(array)))
    return np.asarray(array, dtype=util.FLOAT)


def _check_labels(array, net, what):
    if not np.issubdtype(array.dtype, np.integer):
        if np.issubdtype(array.dtype, np.floating) and np.all(np.mod(array, 1) == 0):
            hint = '; convert with labels.astype("int32")'
        else:
            hint = '; classifiers need integer class labels'
        raise util.ConfigurationError('{} holds {} values, not integer labels{}'.format(
            what, array.dtype, hint))
    k = net.layers[-1].output_size
    if array.size and (array.min() < 0 or (k is not None and array.max() >= k)):
        raise util.ConfigurationError(
            '{} holds labels in [{}, {}] but output layer {!r} has {} classes '
            '(labels must be in [0, {}])'.format(
                what, array.min(), array.max(), net.layers[-1].name, k, k - 1))
    return np.asarray(array, dtype='int32')


def dataset(net, arrays, allow_nonfinite=False):
    """Check and convert a training dataset ``[inputs..., target, weights]`` for ``net``.

    Raises
    ------
    ConfigurationError
        On a wrong number of arrays, wrong dimensions or columns, mismatched
        numbers of examples, empty data, non-integer or out-of-range labels,
        weights of the wrong shape, or NaN/inf values.
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
    n_inputs = len(net.inputs)
    result = inputs(net, arrays[:n_inputs], allow_nonfinite)
    for var, array in zip(variables[n_inputs:], arrays[n_inputs:]):
        array = _as_array(array, 'array {!r}'.format(var.name))
        if var.name == 'weights':
            result.append(_check_weights(array, result, names, allow_nonfinite))
        else:
            result.append(_check_target(var, array, net, allow_nonfinite))
    _check_lengths(result, names)
    return result


def _check_weights(array, previous, names, allow_nonfinite):
    target = previous[-1]
    if array.shape != target.shape:
        raise util.ConfigurationError(
            'weights array has shape {} but must match the target {!r} shape {}'.format(
                array.shape, names[len(previous) - 1], target.shape))
    _check_finite(array, 'weights array', allow_nonfinite)
    return np.asarray(array, dtype=util.FLOAT)


def _check_lengths(arrays, names):
    lengths = [a.shape[0] for a in arrays]
    if len(set(lengths)) > 1:
        raise util.ConfigurationError(
            'arrays have different numbers of examples: {}; every array needs one row '
            'per example'.format(', '.join('{}={}'.format(n, l) for n, l in zip(names, lengths))))
