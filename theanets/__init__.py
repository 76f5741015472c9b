"""theanets: neural network models on PyTensor.

The public names of the 0.8 API: the models (:class:`Autoencoder`,
:class:`Regressor`, :class:`Classifier`, and those of :mod:`theanets.recurrent`
and :mod:`theanets.convolution`), :class:`Network`, :class:`Layer`,
:class:`Loss`, :class:`Activation`, :class:`Regularizer` and :class:`Experiment`.
"""

from . import backend  # noqa: F401  (first: sets PyTensor flags before pytensor loads)

__version__ = '0.8.0'

from . import util  # noqa: E402
from .activations import Activation  # noqa: E402
from .feedforward import Autoencoder, Regressor, Classifier  # noqa: E402
from .graph import Network  # noqa: E402
from .layers import Layer  # noqa: E402
from .losses import Loss  # noqa: E402
from .main import Experiment  # noqa: E402
from .regularizers import Regularizer  # noqa: E402
from . import layers, losses, regularizers, trainer, optimizers  # noqa: E402
from . import recurrent  # noqa: E402
from . import devices  # noqa: E402,F401
from . import convolution  # noqa: E402

__all__ = ['Experiment', 'Activation', 'Autoencoder', 'Classifier', 'Layer', 'Loss', 'Network',
           'Regressor', 'Regularizer', 'layers', 'losses', 'regularizers', 'trainer',
           'optimizers', 'recurrent', 'convolution', 'util', '__version__']
