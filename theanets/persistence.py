"""Model files: a pickle of the network whose state carries a version and a checksum.

:meth:`Network.save <theanets.graph.Network.save>` writes ``pickle.dump(net)``
(gzip-compressed when the name ends in ``.gz``), as theanets 0.8 did, so
``pickle.load`` and ``joblib.load`` return the network itself. What the
network pickles as its state is a small dict:

================== ====================================================
``format``         ``'theanets-model'``
``format_version`` :data:`FORMAT_VERSION`
``theanets_version`` the version that saved it
``sha256``         digest of ``state``
``state``          the network's attributes, pickled to bytes
================== ====================================================

Unpickling checks it (:func:`unpack_state`): a future format version, a
digest that does not match (a corrupt file) or a foreign state raise
:class:`ModelFileError`, a ``ValueError``; another theanets version warns.
:meth:`Network.load <theanets.graph.Network.load>` adds the file name to
every error and also reads the files of earlier versions:

- format 2: a dict ``{format, format_version, theanets_version, sha256,
  network}`` with the network pickled to bytes;
- format 1: the same dict holding the network object.

Networks of formats 1 and 2 stored shapes with the batch axis; they are
converted when loaded. Only load pickles from sources you trust: unpickling
can run code. :mod:`theanets.weights` is the safe format for sharing.
"""

import gzip
import hashlib
import os
import pickle
import warnings

from . import util

__all__ = ['FORMAT_VERSION', 'ModelFileError', 'pack_state', 'unpack_state', 'write', 'read']

#: Version of the model file layout written by :func:`write`.
FORMAT_VERSION = 3
FORMAT_TAG = 'theanets-model'


class ModelFileError(util.Error, ValueError):
    """A model file or pickled network is corrupt, foreign, or too new to read."""


def pack_state(state):
    """Return the dict a network pickles: ``state`` as checked bytes with the format version."""
    from . import __version__
    blob = pickle.dumps(state, -1)
    return dict(format=FORMAT_TAG, format_version=FORMAT_VERSION, theanets_version=__version__,
                sha256=hashlib.sha256(blob).hexdigest(), state=blob)


def is_packed(state):
    """True if ``state`` was made by :func:`pack_state` (of any format version)."""
    return isinstance(state, dict) and state.get('format') == FORMAT_TAG


def _check_version(payload):
    version = payload.get('format_version')
    if isinstance(version, bool) or not isinstance(version, int) or version > FORMAT_VERSION:
        raise ModelFileError(
            'the model was written by theanets {} in model format {}, newer than this '
            'theanets reads ({}); upgrade theanets'.format(
                payload.get('theanets_version'), version, FORMAT_VERSION))
    from . import __version__
    if payload.get('theanets_version') != __version__:
        warnings.warn('the model was saved by theanets {}; this is theanets {}. It may not '
                      'behave the same; check its predictions, or save it again with this '
                      'version'.format(payload.get('theanets_version'), __version__),
                      UserWarning, stacklevel=4)
    return version


def _checked_loads(blob, digest):
    if not isinstance(blob, bytes) or hashlib.sha256(blob).hexdigest() != digest:
        raise ModelFileError('the model data do not match their SHA-256 checksum, so the file '
                             'is corrupt; use another copy or an earlier checkpoint')
    try:
        return pickle.loads(blob)
    except Exception as err:
        raise ModelFileError('the model data cannot be read ({}: {})'.format(
            type(err).__name__, err)) from err


def unpack_state(state):
    """Return the network attributes held by a pickled state, checking it.

    Returns
    -------
    dict
        The attributes.
    bool
        True for a state of format 1 or 2, whose shapes hold the batch axis.

    Raises
    ------
    ModelFileError
        For a newer format, a checksum that does not match, or damaged data.
    """
    if not is_packed(state):  # a plain attribute dict: pickled by format 1 or 2
        if not isinstance(state, dict):
            raise ModelFileError('a pickled network holds a {}, not its attributes'.format(
                type(state).__name__))
        return state, True
    _check_version(state)
    inner = _checked_loads(state.get('state'), state.get('sha256'))
    if not isinstance(inner, dict):
        raise ModelFileError('the model data hold a {}, not network attributes'.format(
            type(inner).__name__))
    return inner, False


def _open(path, mode):
    return gzip.open(path, mode) if path.lower().endswith('.gz') else open(path, mode)


def write(obj, target):
    """Pickle ``obj`` to a path (atomically; gzip for ``.gz``) or a writable binary handle."""
    if hasattr(target, 'write'):
        pickle.dump(obj, target, -1)
        return
    target = os.fspath(target)

    def dump(raw):
        if target.lower().endswith('.gz'):
            # no name or time stamp in the header: same model, same bytes
            with gzip.GzipFile(filename='', fileobj=raw, mode='wb', mtime=0) as zipped:
                pickle.dump(obj, zipped, -1)
        else:
            pickle.dump(obj, raw, -1)
    util.atomic_write(target, dump)


def name_of(source):
    return getattr(source, 'name', source)


def read(source, network_class):
    """Unpickle a model file; return the network (reading formats 1 and 2 too).

    Raises
    ------
    ValueError
        Naming the file, for a truncated, corrupt, foreign or too new file.
    FileNotFoundError
        If the path does not exist.
    """
    what = name_of(source)
    try:
        if hasattr(source, 'read'):
            payload = pickle.load(source)
        else:
            with _open(os.fspath(source), 'rb') as handle:
                payload = pickle.load(handle)
        return _network_of(payload, network_class, what)
    except ModelFileError as err:
        raise ModelFileError('cannot load a theanets model from {!r}: {}'.format(
            what, err)) from None
    except FileNotFoundError:
        raise
    except Exception as err:  # any failure to unpickle means a damaged or foreign file
        raise ModelFileError('cannot load a theanets model from {!r}: the file is truncated, '
                             'corrupt or not a theanets model ({}: {})'.format(
                                 what, type(err).__name__, err)) from err


def _network_of(payload, network_class, what):
    if isinstance(payload, network_class):
        return payload
    if not is_packed(payload):
        raise ModelFileError('it is not a theanets model file (found a pickled {})'.format(
            type(payload).__name__))
    version = _check_version(payload)
    network = payload.get('network')
    if version >= 2:
        network = _checked_loads(network, payload.get('sha256'))
    if not isinstance(network, network_class):
        raise ModelFileError('it is a theanets model file without a network (found {})'.format(
            type(network).__name__))
    return network
