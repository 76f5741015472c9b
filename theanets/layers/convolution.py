"""Convolution and pooling layers over channels-last data.

- :class:`Conv1` convolves (batch, time, channels) along time;
- :class:`Conv2` convolves (batch, width, height, channels) along width and height;
- :class:`Pool1` and :class:`Pool2` take the max or mean over windows.

The arithmetic is in :mod:`theanets.ops.conv`: a true convolution with a
flipped kernel, as Theano's ``conv2d`` computed, and pooling, as operations
with C code (patches of a chunk of output positions copied into a cache-sized
buffer, one BLAS product per chunk) and a JAX implementation: the same graph in
every mode.

Examples
--------
>>> import numpy as np, theanets
>>> net = theanets.convolution.Classifier([
...     (8, 8, 1),
...     dict(form='conv2', size=4, filter_size=(3, 3)),
...     dict(form='pool2', pool_size=(2, 2)),
...     'flatten', 10])
>>> net.layers[1].output_shape, net.layers[2].output_shape
((6, 6, 4), (3, 3, 4))
>>> net.predict(np.zeros((2, 8, 8, 1), 'f')).shape
(2,)
"""

import logging

import numpy as np

from .. import util
from ..ops import conv
from .base import Layer

__all__ = ['Convolution', 'Conv1', 'Conv2', 'Pooling', 'Pool1', 'Pool2']

log = logging.getLogger(__name__)


def _checked(layer, check, *args):
    """``check(*args)`` (a validator of :mod:`theanets.ops.conv`), its errors naming ``layer``."""
    try:
        return check(*args)
    except ValueError as err:
        raise util.ConfigurationError('layer {!r}: {}'.format(layer, err)) from None


def _spatial_output(layer, spatial, what):
    """Set ``layer``'s output shape from its input's and the window arithmetic ``spatial``.

    ``spatial(positions)`` maps the input's spatial sizes to the output's.
    """
    shape = layer.input_shape
    if len(shape) != layer.NDIM + 1:
        raise util.ConfigurationError(
            'layer {!r} ({}) needs {}-D input (batch, {}channels), got {!r} of shape {} '
            'per example'.format(layer.name, type(layer).__name__, layer.NDIM + 2,
                                 'position, ' * layer.NDIM, layer.input_name, shape))
    positions = spatial(shape[:-1])
    if any(s is not None and s < 1 for s in positions):
        raise util.ConfigurationError('layer {!r}: {} does not fit input {}'.format(
            layer.name, what, shape[:-1]))
    return positions + (shape[-1], )


class Convolution(Layer, abstract=True):
    """Base class of convolution layers over ``NDIM`` spatial axes.

    Parameters
    ----------
    filter_size : int or tuple of int
        Filter length along each spatial axis.
    stride : int or tuple of int, optional
        Step between filter positions (default 1).
    border_mode : {'valid', 'full', 'same'}, optional
        ``'valid'`` (default) uses only positions inside the data, ``'full'``
        every overlap, ``'same'`` keeps ceil(size / stride) positions.

    Parameters of the layer: ``'w'`` (size, channels, f1, ..., fk) for Conv2
    and (size, channels, 1, f) for Conv1, and ``'b'`` (size,). Outputs:
    ``'out'`` and ``'pre'``, (batch, positions..., size).
    """

    NDIM = None
    OUTPUTS = ('out', 'pre')

    def __init__(self, filter_size=None, stride=1, border_mode='valid', **kwargs):
        name = kwargs.get('name')
        if filter_size is None:
            raise util.ConfigurationError(
                'convolution layer {!r} needs filter_size='.format(name))
        self.border_mode = _checked(name, conv.check_border_mode, border_mode)
        self.filter_size = _checked(name, conv.check_ints, filter_size, self.NDIM, 'filter_size')
        self.stride = _checked(name, conv.check_ints, stride, self.NDIM, 'stride')
        super().__init__(**kwargs)

    def resolve_outputs(self):
        if self.size is None:
            raise util.ConfigurationError(
                'convolution layer {!r} needs a size (the number of filters)'.format(self.name))
        shape = _spatial_output(
            self, lambda p: conv.output_shape(p, self.filter_size, self.stride,
                                              self.border_mode),
            'filter {} with border_mode={!r}'.format(self.filter_size, self.border_mode))
        self._output_shape = shape[:-1] + (self.size, )

    def _filter_shape(self):
        return (self.output_size, self.input_size) + self.filter_size

    def setup(self):
        shape = self._filter_shape()
        self.add_weights('w', shape[0], int(np.prod(shape[1:])), shape=shape)
        self.add_bias('b', self.output_size)

    def _convolve(self, x, w):
        raise NotImplementedError

    def transform(self, inputs):
        pre = self._convolve(inputs, self.find('w')) + self.find('b')
        return dict(pre=pre, out=self.activate(pre))

    def log(self):
        super().log()
        log.debug('layer %s: filter %s, stride %s, border %s', self.name,
                       self.filter_size, self.stride, self.border_mode)


Convolution._registry.add(Convolution)


class Conv1(Convolution):
    """1-D convolution along the time axis of (batch, time, channels) input.

    Weights ``'w'`` have shape (size, channels, 1, filter_size).
    """

    NDIM = 1

    def _filter_shape(self):
        return (self.output_size, self.input_size, 1) + self.filter_size

    def _convolve(self, x, w):
        return conv.conv1d(x, w, stride=self.stride[0], border_mode=self.border_mode)


class Conv2(Convolution):
    """2-D convolution over (batch, width, height, channels) input.

    Weights ``'w'`` have shape (size, channels, filter width, filter height).
    """

    NDIM = 2

    def _convolve(self, x, w):
        return conv.conv2d(x, w, stride=self.stride, border_mode=self.border_mode)


class Pooling(Layer, abstract=True):
    """Base class of pooling layers: max or mean over windows, channels unchanged.

    Parameters
    ----------
    pool_size : int or tuple of int
        Window length along each spatial axis.
    stride : int or tuple of int, optional
        Step between windows; defaults to ``pool_size``. Windows that do not
        fit inside the input are dropped.
    mode : {'max', 'mean', 'average'}, optional
        Default ``'max'``.
    """

    NDIM = None
    FIXED_ACTIVATION = ('linear', 'a pooling layer takes the max or mean of each window and '
                        'applies no activation')

    def __init__(self, pool_size=None, stride=None, mode='max', **kwargs):
        name = kwargs.get('name')
        if pool_size is None:
            raise util.ConfigurationError('pooling layer {!r} needs pool_size='.format(name))
        self.mode = _checked(name, conv.check_pool_mode, mode)
        self.pool_size = _checked(name, conv.check_ints, pool_size, self.NDIM, 'pool_size')
        self.stride = self.pool_size if stride is None else _checked(
            name, conv.check_ints, stride, self.NDIM, 'stride')
        super().__init__(**kwargs)

    def resolve_outputs(self):
        self._output_shape = _spatial_output(
            self, lambda p: conv.pool_output_shape(p, self.pool_size, self.stride),
            'pool {}'.format(self.pool_size))


Pooling._registry.add(Pooling)


class Pool1(Pooling):
    """Pool (batch, time, channels) input over windows along time."""

    NDIM = 1

    def transform(self, inputs):
        return conv.pool1d(inputs, self.pool_size[0], stride=self.stride[0], mode=self.mode)


class Pool2(Pooling):
    """Pool (batch, width, height, channels) input over 2-D windows."""

    NDIM = 2

    def transform(self, inputs):
        return conv.pool2d(inputs, self.pool_size, stride=self.stride, mode=self.mode)
