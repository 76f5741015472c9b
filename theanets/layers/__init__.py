"""Layers of a network graph; see :class:`theanets.layers.base.Layer`."""

from .base import Layer, Input, Concatenate, Flatten, Product, Reshape
from .feedforward import Feedforward, Classifier, Tied
from .convolution import Conv1, Conv2, Pool1, Pool2
from .recurrent import (Bidirectional, Clockwork, GRU, LSTM, MRNN, MUT1, RNN, RRNN,  # noqa: F401
                        SCRN)

__all__ = ['Layer', 'Input', 'Concatenate', 'Flatten', 'Product', 'Reshape',
           'Feedforward', 'Classifier', 'Tied', 'Conv1', 'Conv2', 'Pool1', 'Pool2',
           'Bidirectional', 'Clockwork', 'GRU', 'LSTM', 'MRNN', 'MUT1', 'RNN', 'RRNN', 'SCRN']
