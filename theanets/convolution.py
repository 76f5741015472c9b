"""Convolutional models: Regressor and Classifier on (batch, width, height, channels) data.

Examples
--------
>>> import numpy as np, theanets
>>> net = theanets.convolution.Regressor([(6, 6, 2), dict(form='conv2', size=3,
...     filter_size=3, border_mode='same'), 'flatten', 4])
>>> net.predict(np.zeros((5, 6, 6, 2), 'f')).shape
(5, 4)
"""

from . import feedforward

__all__ = ['Regressor', 'Classifier']


class Regressor(feedforward.Regressor):
    """A regressor whose input is a batch of images (batch, width, height, channels)."""

    INPUT_NDIM = 4


class Classifier(feedforward.Classifier):
    """A classifier whose input is a batch of images (batch, width, height, channels)."""

    INPUT_NDIM = 4
