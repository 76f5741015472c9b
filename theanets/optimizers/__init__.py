"""Gradient-based optimizers, mini-batch datasets and early stopping.

Our own PyTensor port of the algorithms of the ``downhill`` package, with its
names and defaults:

>>> from theanets import optimizers
>>> sorted(optimizers.Optimizer._registry.classes)
['adadelta', 'adagrad', 'adam', 'esgd', 'nag', 'rmsprop', 'rprop', 'sgd']

Use :func:`build` to create an optimizer for a loss expression, then
:meth:`Optimizer.iterate` or :meth:`Optimizer.minimize` to train.
"""

from .dataset import Dataset
from .base import NonFiniteLossError, Optimizer, build, hyperparameter_names
from .algorithms import ADADELTA, ADAGRAD, ESGD, NAG, SGD, Adam, RMSProp, RProp

__all__ = [
    'Dataset', 'Optimizer', 'NonFiniteLossError', 'build', 'hyperparameter_names',
    'SGD', 'NAG', 'RProp', 'ADAGRAD', 'RMSProp', 'ADADELTA', 'ESGD', 'Adam',
]
