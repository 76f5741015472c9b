"""Weights-only export and import: a network's parameters in a NumPy ``.npz`` file.

:meth:`Network.save <theanets.graph.Network.save>` pickles the whole model,
and unpickling can run arbitrary code, so a pickle from an untrusted source
must never be loaded. A weights file holds plain arrays only: one per
parameter, keyed by the parameter name (``'hid1.w'``, ``'out.b'``...), plus
two small marker arrays giving the format and its version. It is read with
``numpy.load(..., allow_pickle=False)``, so loading it runs no code.

To restore a model from a weights file, build the same architecture in code
and call :meth:`Network.load_weights <theanets.graph.Network.load_weights>`.
Every array is checked against the network first (names, shapes, dtypes and
finite values); if anything is wrong, an error lists every problem and no
parameter changes.

Examples
--------
>>> import os, tempfile, numpy as np, theanets
>>> net = theanets.Regressor([4, (3, 'tanh'), 2])
>>> path = os.path.join(tempfile.mkdtemp(), 'weights.npz')
>>> net.save_weights(path)
>>> twin = theanets.Regressor([4, (3, 'tanh'), 2], rng=99)
>>> twin.load_weights(path)
>>> x = np.ones((1, 4), 'f')
>>> bool((twin.predict(x) == net.predict(x)).all())
True
>>> theanets.Regressor([4, (5, 'tanh'), 2]).load_weights(path)
Traceback (most recent call last):
  ...
theanets.util.ConfigurationError: cannot load weights from ...: shape (4, 3) of 'hid1.w' ...
"""

import logging
import os
import zipfile
import zlib

import numpy as np

from . import util

__all__ = ['save', 'load', 'read', 'FORMAT_VERSION']

log = logging.getLogger(__name__)

#: Version of the weights file layout written by :func:`save`.
FORMAT_VERSION = 1
_FORMAT_KEY = '__format__'
_VERSION_KEY = '__format_version__'
_FORMAT_TAG = 'theanets-weights'


def _name(target):
    return getattr(target, 'name', target)


def _check_names(params):
    names = [p.name for p in params]
    clashes = sorted({n for n in names if names.count(n) > 1})
    if clashes:
        raise util.ConfigurationError(
            'parameter names {} occur more than once, so a weights file cannot tell them '
            'apart; give the layers unique names'.format(clashes))
    return names


def save(network, target):
    """Write the network's parameters to an ``.npz`` file (no pickle).

    Parameters
    ----------
    network : :class:`theanets.Network`
    target : str, path-like or writable binary file
        A path is written atomically (a temporary file in the same directory
        is renamed into place) and exactly as given: no ``.npz`` is appended.
    """
    params = network.params
    arrays = dict(zip(_check_names(params), (p.get_value() for p in params)))
    arrays[_FORMAT_KEY] = np.array(_FORMAT_TAG)
    arrays[_VERSION_KEY] = np.array(FORMAT_VERSION)
    if hasattr(target, 'write'):
        np.savez(target, **arrays)
    else:
        util.atomic_write(os.fspath(target), lambda handle: np.savez(handle, **arrays))
    log.info('saved %d parameter arrays to %s', len(params), _name(target))


def read(source):
    """Read a weights file into a dict ``{parameter name: array}``, checking its format.

    Parameters
    ----------
    source : str, path-like or readable binary file

    Raises
    ------
    ValueError
        If the file is truncated or corrupt, is not a theanets weights file,
        holds pickled objects, or was written by a newer format version.
    FileNotFoundError
        If the path does not exist.
    """
    what = _name(source)
    try:
        archive = np.load(source, allow_pickle=False)
        if not isinstance(archive, np.lib.npyio.NpzFile):
            raise ValueError('it holds a single {} array, not an .npz archive'.format(
                getattr(archive, 'shape', None)))
        with archive:
            arrays = {key: archive[key] for key in archive.files}
    except FileNotFoundError:
        raise
    except (ValueError, OSError, EOFError, KeyError, zipfile.BadZipFile, zlib.error) as err:
        raise ValueError('cannot read weights from {!r}: the file is truncated, corrupt or '
                         'not a weights file written by save_weights ({}: {})'.format(
                             what, type(err).__name__, err)) from err
    tag = arrays.pop(_FORMAT_KEY, None)
    version = arrays.pop(_VERSION_KEY, None)
    if tag is None or tag.shape != () or str(tag) != _FORMAT_TAG:
        raise ValueError('{!r} is an .npz archive but not a theanets weights file (no {!r} '
                         'marker); it holds {}'.format(what, _FORMAT_KEY, sorted(arrays)))
    if version is None or version.shape != () or int(version) > FORMAT_VERSION:
        raise ValueError('{!r} was written in weights format {}, newer than this theanets '
                         'reads ({}); upgrade theanets'.format(
                             what, None if version is None else version.tolist(),
                             FORMAT_VERSION))
    return arrays


def _problems(params, arrays):
    """Return a list of reasons why ``arrays`` cannot be loaded into ``params``."""
    problems = []
    names = [p.name for p in params]
    missing = [n for n in names if n not in arrays]
    extra = sorted(set(arrays) - set(names))
    if missing:
        problems.append('missing arrays for parameters {}'.format(missing))
    if extra:
        problems.append('arrays {} match no parameter of this network'.format(extra))
    for param in params:
        value = arrays.get(param.name)
        if value is None:
            continue
        want = param.get_value(borrow=True).shape
        if value.shape != want:
            problems.append('shape {} of {!r} in the file does not match {} in the '
                            'network'.format(value.shape, param.name, want))
        elif not (np.issubdtype(value.dtype, np.floating) or
                  np.issubdtype(value.dtype, np.integer)):
            problems.append('{!r} has dtype {}, not real numbers'.format(param.name,
                                                                         value.dtype))
        elif not np.isfinite(value).all():
            problems.append('{!r} holds NaN or infinite values'.format(param.name))
    return problems


def load(network, source):
    """Set the network's parameters from a weights file, all or nothing.

    Parameters
    ----------
    network : :class:`theanets.Network`
    source : str, path-like or readable binary file

    Raises
    ------
    ConfigurationError
        If the file's arrays do not match the network's parameters: missing
        or extra names, other shapes, non-numeric or non-finite values. The
        message lists every problem; no parameter is changed.
    ValueError
        If the file cannot be read (see :func:`read`).
    """
    arrays = read(source)
    params = network.params
    _check_names(params)
    problems = _problems(params, arrays)
    if problems:
        raise util.ConfigurationError(
            'cannot load weights from {!r}: {}; no parameter was changed. Build the network '
            'with the same layers (and names) as the one that saved the file'.format(
                _name(source), '; '.join(problems)))
    for param in params:
        param.set_value(np.asarray(arrays[param.name], dtype=param.dtype))
    log.info('loaded %d parameter arrays from %s', len(params), _name(source))

