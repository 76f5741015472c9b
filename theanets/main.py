"""The :class:`Experiment`: a small wrapper that creates, trains, saves and loads a network.

Examples
--------
>>> import numpy as np, theanets
>>> exp = theanets.Experiment(theanets.Regressor, [3, 4, 2])
>>> x, y = np.zeros((8, 3), 'f'), np.zeros((8, 2), 'f')
>>> _ = exp.train([x, y], algo='sgd', learning_rate=1e-2, max_updates=1)
>>> exp.network.predict(x).shape
(8, 2)
"""

import os

from . import graph
from . import util

__all__ = ['Experiment']


class Experiment(object):
    """Hold one network: load it from a file, take an instance, or build one.

    Parameters
    ----------
    network : str, Network or Network subclass
        A path to a saved model (loaded), a Network instance (used as is), or
        a model class called with ``*args`` and ``**kwargs``.
    """

    def __init__(self, network, *args, **kwargs):
        if isinstance(network, (str, os.PathLike)) and os.path.isfile(network):
            self.network = graph.Network.load(network)
        elif isinstance(network, graph.Network):
            self.network = network
        elif isinstance(network, type) and issubclass(network, graph.Network):
            if network is graph.Network:
                raise util.ConfigurationError(
                    'Experiment needs a model class such as theanets.Regressor, '
                    'not the bare Network class')
            self.network = network(*args, **kwargs)
        else:
            raise util.ConfigurationError(
                'Experiment takes a saved model path, a Network or a model class; got {!r}'
                .format(network))

    def train(self, *args, **kwargs):
        """Train the network; arguments as for :meth:`Network.train`."""
        return self.network.train(*args, **kwargs)

    def itertrain(self, *args, **kwargs):
        """Train the network step by step; arguments as for :meth:`Network.itertrain`."""
        return self.network.itertrain(*args, **kwargs)

    def save(self, path):
        """Save the network to ``path``."""
        self.network.save(path)

    def load(self, path):
        """Load a network from ``path``, keep it and return it."""
        self.network = graph.Network.load(path)
        return self.network
