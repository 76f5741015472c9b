"""What ``train(progress=True)`` shows while a network trains.

Where the output goes decides the form:

- in a terminal, one progress bar for the whole training run: it counts the
  mini-batches of the current epoch and its postfix holds the latest
  training and validation monitors. Log records of the ``theanets`` and root
  loggers are routed through the bar while it runs, so they print above it
  instead of tearing it;
- in a Jupyter notebook, one line of text per training run, updated in place
  (the saved notebook keeps the final line);
- anywhere else (a log file, a pipe, CI), no bar: one line per validation,
  e.g. ``Adam 10 - 1.2 s - loss 0.5123 acc 0.8712 - valid loss 0.5333 acc 0.8640 *``.

``progress=False`` (the default) shows nothing; logging is unaffected.
"""

import contextlib
import logging
import sys
import time

__all__ = ['Progress', 'create']


def _fmt(values, prefix=''):
    return ' '.join('{}{} {:.4f}'.format(prefix, k, v) for k, v in values.items())


def _in_notebook():
    """True inside a Jupyter kernel (IPython with a kernel), e.g. a notebook."""
    if 'ipykernel' not in sys.modules:
        return False
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    return shell is not None and getattr(shell, 'kernel', None) is not None


def _is_terminal(stream):
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def _writes_to_console(handler):
    return isinstance(handler, logging.StreamHandler) and \
        getattr(handler, 'stream', None) in (sys.stdout, sys.stderr)


def create(enabled, name, batches):
    """Return the progress display for a training run of the optimizer ``name``.

    Parameters
    ----------
    enabled : bool
        The ``progress`` setting; False gives a display that shows nothing.
    name : str
        The algorithm, e.g. ``'Adam'``.
    batches : int
        Mini-batches per epoch.
    """
    if not enabled:
        return Progress(name, batches)
    if _in_notebook():
        return _Notebook(name, batches)
    if _is_terminal(sys.stderr):
        return _Bar(name, batches)
    return _Lines(name, batches)


class Progress(object):
    """A progress display that shows nothing; the base of the others.

    Used as a context manager around the training run. The optimizer calls
    :meth:`batch` after each mini-batch, :meth:`epoch` after each epoch and
    :meth:`validation` after each validation.
    """

    def __init__(self, name, batches):
        self.name = name
        self.batches = batches
        self.start = time.time()
        self.training = None
        self.valid = None
        self.best = ''

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    def batch(self):
        """One mini-batch was trained."""

    def epoch(self, number, training):
        """Epoch ``number`` (from 1) ended with mean monitors ``training``."""
        self.training = (number, training)

    def validation(self, number, values, improved):
        """The validation after ``number`` epochs gave ``values`` (best so far if ``improved``)."""
        self.valid = values
        self.best = ' *' if improved else ''

    def close(self):
        """The training run ended."""

    def status(self):
        """One line: the latest epoch's monitors and the latest validation."""
        parts = []
        if self.training is not None:
            parts.append('{} {}'.format(self.name, self.training[0]))
            parts.append('{:.1f} s'.format(time.time() - self.start))
            parts.append(_fmt(self.training[1]))
        else:
            parts.append('{} 0'.format(self.name))
        if self.valid is not None:
            parts.append('valid ' + _fmt(self.valid) + self.best)
        return ' - '.join(parts)


class _Lines(Progress):
    """Output that is not a terminal: one concise line on stdout per validation."""

    def validation(self, number, values, improved):
        super().validation(number, values, improved)
        print(self.status(), file=sys.stdout, flush=True)


class _Notebook(Progress):
    """A Jupyter notebook: one text line per run, updated in place."""

    INTERVAL = 0.25

    def __init__(self, name, batches):
        super().__init__(name, batches)
        from IPython.display import display
        self._count = 0
        self._shown = 0.0
        self._handle = display(self._text(), display_id=True)

    def _text(self):
        from IPython.display import Pretty
        epoch = self.training[0] + 1 if self.training is not None else 1
        return Pretty('{} [epoch {}: {}/{} batches]'.format(
            self.status(), epoch, self._count, self.batches))

    def _show(self, force=False):
        now = time.time()
        if force or now - self._shown >= self.INTERVAL:
            self._shown = now
            self._handle.update(self._text())

    def batch(self):
        self._count += 1
        self._show()

    def epoch(self, number, training):
        super().epoch(number, training)
        self._count = 0
        self._show()

    def validation(self, number, values, improved):
        super().validation(number, values, improved)
        self._show()

    def close(self):
        from IPython.display import Pretty
        self._handle.update(Pretty(self.status()))


class _Bar(Progress):
    """A terminal: one tqdm bar per run; log records print above it."""

    def __init__(self, name, batches):
        super().__init__(name, batches)
        import tqdm
        from tqdm.contrib.logging import logging_redirect_tqdm
        self._stack = contextlib.ExitStack()
        loggers = [logger for logger in (logging.root, logging.getLogger('theanets'))
                   if any(_writes_to_console(h) for h in logger.handlers)]
        if loggers:
            self._stack.enter_context(logging_redirect_tqdm(loggers=loggers))
        self._bar = tqdm.tqdm(total=batches, desc='{} 1'.format(name), file=sys.stderr,
                              leave=True, dynamic_ncols=True, unit='batch')
        self._next = None   # the epoch number to show when its first batch ends

    def batch(self):
        if self._next is not None:
            self._bar.reset()
            self._bar.set_description('{} {}'.format(self.name, self._next), refresh=False)
            self._next = None
        self._bar.update()

    def epoch(self, number, training):
        super().epoch(number, training)
        self._postfix()
        self._next = number + 1

    def validation(self, number, values, improved):
        super().validation(number, values, improved)
        self._postfix()

    def _postfix(self):
        values = dict(self.training[1]) if self.training is not None else {}
        values.update(('val_' + k, v) for k, v in (self.valid or {}).items())
        self._bar.set_postfix_str(' '.join('{}={:.4f}'.format(k, v)
                                           for k, v in values.items()), refresh=True)

    def close(self):
        try:
            self._bar.close()
        finally:
            self._stack.close()
