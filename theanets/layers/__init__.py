"""Layers of a network graph; see :class:`theanets.layers.base.Layer`."""

from .base import Layer, Input, Concatenate, Flatten, Product, Reshape
from .feedforward import Feedforward, Classifier, Tied

__all__ = ['Layer', 'Input', 'Concatenate', 'Flatten', 'Product', 'Reshape',
           'Feedforward', 'Classifier', 'Tied']
