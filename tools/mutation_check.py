"""Mutation check: remove one component's contribution and see whether a test notices.

Every loss, regularizer, activation, optimizer and trainer of theanets must
have a test that fails when that component stops doing its job. This script
breaks one component at a time ("a mutant"), runs the test file that covers
that kind of component, and reports which tests failed. A mutant no test
notices is a *survivor*: a missing or toothless test.

Mutants are generated from the registries, so a new class is checked without
editing this file:

- ``loss:<Class>``: the loss returns ``0 * value``;
- ``regularizer:<Class>``: its term is zero (``_term``/``loss``), or its
  noise/dropout leaves the values unchanged (``_apply``, random state kept);
- ``activation:<name>``: a :data:`theanets.activations.COMMON` function
  becomes the identity (``linear`` becomes ``tanh``); an Activation
  subclass returns its input (``Compose`` applies only its second function);
- ``optimizer:<name>``: the update leaves the parameters unchanged;
- ``trainer:<name>``: the trainer yields its monitors but its parameter
  changes are undone after each step (it does not train).

Term mutants (listed in :data:`TERMS`) remove one specific part by editing
one line of a method's source (e.g. RMSProp without its RMS scaling, Adam
without bias correction, momentum ignored). An edit whose text is no longer
in the source is an error, so the list stays in step with the code.

Usage::

    python tools/mutation_check.py                 # every mutant, table on stdout
    python tools/mutation_check.py --list          # the mutant names
    python tools/mutation_check.py --only 'optimizer:*' --jobs 2
    python tools/mutation_check.py --report mutants.md --maxfail 3

Each mutant runs ``python -m pytest -p mutation_check <files>`` with
``THEANETS_MUTANT=<name>`` in the environment: imported as a pytest plugin,
this module applies the mutant in ``pytest_configure`` (before any test
module is imported) and records the failing tests. The script exits with 1
when a mutant survives (or the unmutated baseline fails), so CI can run it.
This file is not collected by pytest (it lives outside ``testpaths``).
"""

import argparse
import fnmatch
import inspect
import json
import os
import subprocess
import sys
import tempfile
import textwrap
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)

#: Test file(s) each kind of component is checked against.
FILES = {
    'loss': ['test/test_losses.py'],
    'regularizer': ['test/test_regularizers.py'],
    'activation': ['test/test_activations.py'],
    'optimizer': ['test/test_optimizers.py'],
    'trainer': ['test/test_trainer.py'],
}


class MutantError(Exception):
    """A mutant cannot be applied (its edit does not match the source any more)."""


# ----- applying mutants -----------------------------------------------------------------

def _zero_result(cls, method):
    original = getattr(cls, method)

    def mutant(self, *args, **kwargs):
        return 0 * original(self, *args, **kwargs)
    setattr(cls, method, mutant)


def _zero_loss(cls):
    def mutant(self, layers, outputs):
        return 0
    cls.loss = mutant


def _unchanged_values(cls):
    original = cls._apply

    def mutant(self, state, expr):
        new_state, _ = original(self, state, expr)
        return new_state, expr
    cls._apply = mutant


def _identity(cls):
    def mutant(self, x):
        return x
    cls.__call__ = mutant


def _no_step(cls):
    original = cls._updates_for

    def mutant(self, param, grad):
        for var, expr in original(self, param, grad):
            yield var, (0 * expr if var is param else expr)
    cls._updates_for = mutant


def _undo_training(cls):
    original = cls.itertrain

    def mutant(self, *args, **kwargs):
        params = self.network.params
        before = [p.get_value() for p in params]
        for result in original(self, *args, **kwargs):
            for param, value in zip(params, before):
                param.set_value(value)
            yield result
    cls.itertrain = mutant


def _source(cls, method, old):
    source = textwrap.dedent(inspect.getsource(cls.__dict__[method]))
    if source.count(old) != 1:
        raise MutantError('{}.{}: {!r} occurs {} times in its source'.format(
            cls.__name__, method, old, source.count(old)))
    return source


def edit(cls, method, old, new):
    """Replace ``old`` by ``new`` (once) in the source of ``cls.method`` and install it."""
    function = cls.__dict__[method]
    source = _source(cls, method, old).replace(old, new).replace(
        'super()', 'super(__mutant_class__, self)')
    namespace = dict(vars(sys.modules[cls.__module__]), __mutant_class__=cls)
    exec(compile(source, '<mutant {}.{}>'.format(cls.__name__, method), 'exec'), namespace)
    setattr(cls, method, namespace[function.__name__])


def _classes(base):
    """The registered subclasses of a registry base class, once each, by name."""
    found = {}
    for cls in base._registry.classes.values():
        if cls is not base:
            found[cls.__name__] = cls
    return found


def _regularizer_mutant(cls):
    own = cls.__dict__
    if '_term' in own:
        return lambda: _zero_result(cls, '_term')
    if '_apply' in own:
        return lambda: _unchanged_values(cls)
    if 'loss' in own:
        return lambda: _zero_loss(cls)
    raise MutantError('regularizer {} has no contribution to remove'.format(cls.__name__))


def _set_common(name, function):
    from theanets import activations
    activations.COMMON[name] = function


def _terms():
    """Term mutants: name -> (kind, function applying it)."""
    from theanets import activations as A
    from theanets import graph as N
    from theanets import losses as L
    from theanets import trainer as T
    from theanets.optimizers import algorithms as G
    from theanets.optimizers import base as B

    def term(cls, method, old, new):
        def apply():
            edit(cls, method, old, new)
        apply.check = lambda: _source(cls, method, old)
        return apply

    terms = {
        # losses and regularizers: a shared part is dropped
        'loss:weight-ignored': term(
            N.Network, 'loss', 'sum(l.weight * l(outputs)', 'sum(l(outputs)'),
        'loss:weights-ignored': term(
            L.Loss, '_weighted_mean', 'if self._weights is None:', 'if True:'),
        'loss:label-weights-ignored': term(
            L.CrossEntropy, '_mean', 'if w is None', 'if True'),
        'regularizer:weight-ignored': term(
            N.Network, 'loss', 'total + reg.weight * term', 'total + term'),
        # learnable activations: a parameter is ignored
        'activation:prelu-without-leak': term(
            A.Prelu, '__call__', 'TT.exp(self.leak) * ', ''),
        'activation:lgrelu-without-gain': term(
            A.LGrelu, '__call__', 'TT.exp(self.gain) * _relu', '_relu'),
        'activation:elu-without-gain': term(
            A.Elu, '__call__', 'TT.exp(self.gain) * ', ''),
        'activation:maxout-without-intercept': term(
            A.Maxout, '__call__', ' + self.intercept', ''),
        # optimizers: one term of the update rule is dropped
        'optimizer:momentum-ignored': term(
            B.Optimizer, '_momentum', "if not structure['momentum']:", 'if True:'),
        'optimizer:nesterov-ignored': term(
            B.Optimizer, '_momentum', "if structure['nesterov']:", 'if False:'),
        'optimizer:elementwise-clip-ignored': term(
            B.Optimizer, '_clip', 'return pt.clip(grad, -limit, limit)', 'return grad'),
        'optimizer:norm-clip-ignored': term(
            B.Optimizer, '_clip', 'return grad * (limit / pt.maximum(norm, limit))',
            'return grad'),
        'optimizer:nag-without-nesterov': term(
            G.NAG, '_adjust', "config['nesterov'] = True", 'pass'),
        'optimizer:rprop-without-step-adaptation': term(
            G.RProp, '_updates_for', 'step_tm1 * factor', 'step_tm1'),
        'optimizer:rprop-without-sign-flip-reset': term(
            G.RProp, '_updates_for', 'grad = pt.switch(flipped, 0, grad)', 'pass'),
        'optimizer:rprop-without-step-limits': term(
            G.RProp, '_updates_for', 'step = pt.clip(step_tm1 * factor,',
            'step = (lambda step, low, high: step)(step_tm1 * factor,'),
        'optimizer:adagrad-without-accumulation': term(
            G.ADAGRAD, '_updates_for', 'g2_t = g2_tm1 + pt.sqr(grad)', 'g2_t = pt.sqr(grad)'),
        'optimizer:adagrad-without-scaling': term(
            G.ADAGRAD, '_updates_for', "/ pt.sqrt(g2_t + self._hp('rms_regularizer'))", ''),
        'optimizer:rmsprop-without-scaling': term(
            G.RMSProp, '_updates_for', 'grad / rms', 'grad'),
        'optimizer:rmsprop-without-mean-term': term(
            G.RMSProp, '_updates_for', 'g2_t - pt.sqr(g1_t)', 'g2_t'),
        'optimizer:rmsprop-without-averaging': term(
            G.RMSProp, '_updates_for', "gamma = _decay(self._hp('rms_halflife'))", 'gamma = 0'),
        'optimizer:adadelta-without-step-average': term(
            G.ADADELTA, '_updates_for', 'grad * pt.sqrt(x2_tm1 + eps)', 'grad * pt.sqrt(eps)'),
        'optimizer:adadelta-without-scaling': term(
            G.ADADELTA, '_updates_for', ' / pt.sqrt(g2_t + eps)', ''),
        'optimizer:esgd-without-scaling': term(
            G.ESGD, '_updates_for', "/ (pt.sqrt(d_t) + self._hp('rms_regularizer'))", ''),
        'optimizer:esgd-gradient-not-hessian': term(
            G.ESGD, '_updates_for', 'pt.sqr(hv)', 'pt.sqr(grad)'),
        'optimizer:adam-without-bias-correction': term(
            G.Adam, '_updates_for', 'm_hat = m_t / (1 - beta1 ** self._t)', 'm_hat = m_t'),
        'optimizer:adam-without-second-moment': term(
            G.Adam, '_updates_for', "/ (pt.sqrt(v_hat) + self._hp('rms_regularizer'))", ''),
        'optimizer:adam-without-first-moment': term(
            G.Adam, '_updates_for', 'yield param, (self._hp(\'learning_rate\') * m_hat',
            'yield param, (self._hp(\'learning_rate\') * grad'),
        # trainers: one part of the strategy is dropped
        'trainer:layerwise-only-last-stage': term(
            T.SupervisedPretrainer, '_stages', 'yield self._tap_stage(layers, i)', 'pass'),
        'trainer:layerwise-tied-only-last-stage': term(
            T.SupervisedPretrainer, '_stages', 'yield self._tied_stage(layers, i)', 'pass'),
        'trainer:sample-without-targets': term(
            T.SampleTrainer, 'itertrain', "if np.issubdtype(targets.dtype, np.floating):",
            'if False:'),
        'trainer:sample-without-inputs': term(
            T.SampleTrainer, 'itertrain',
            "if param not in done and len(shape) == 2 and shape[0] == x.shape[1]:", 'if False:'),
        'trainer:pretrain-nonlinear-decoder': term(
            T.UnsupervisedPretrainer, '_shadow', "activation='linear' if last else", 'activation='),
    }
    return terms


def mutants():
    """Return ``{name: (kind, apply)}`` for every mutant, in a stable order."""
    import theanets
    from theanets import activations, losses, optimizers, regularizers, trainer

    found = {}
    for name, cls in sorted(_classes(losses.Loss).items()):
        found['loss:' + name] = lambda cls=cls: _zero_result(cls, '__call__')
    for name, cls in sorted(_classes(regularizers.Regularizer).items()):
        found['regularizer:' + name] = _regularizer_mutant(cls)
    for name in sorted(activations.COMMON):
        function = theanets.activations.COMMON['tanh'] if name == 'linear' else (lambda z: z)
        found['activation:' + name] = lambda n=name, f=function: _set_common(n, f)
    for name, cls in sorted(_classes(activations.Activation).items()):
        if name == 'Compose':
            found['activation:Compose'] = lambda cls=cls: edit(
                cls, '__call__', 'self.g(self.f(x))', 'self.g(x)')
            found['activation:Compose'].check = lambda cls=cls: _source(
                cls, '__call__', 'self.g(self.f(x))')
        else:
            found['activation:' + name] = lambda cls=cls: _identity(cls)
    for name, cls in sorted(_classes(optimizers.Optimizer).items()):
        found['optimizer:' + name] = lambda cls=cls: _no_step(cls)
    for name, cls in [('downhill', trainer.DownhillTrainer), ('sample', trainer.SampleTrainer),
                      ('layerwise', trainer.SupervisedPretrainer),
                      ('pretrain', trainer.UnsupervisedPretrainer)]:
        found['trainer:' + name] = lambda cls=cls: _undo_training(cls)
    found.update(_terms())
    order = list(FILES)
    return {name: (name.split(':')[0], found[name]) for name in sorted(
        found, key=lambda n: (order.index(n.split(':')[0]), n.split(':', 1)[1].lower()))}


# ----- the pytest plugin ------------------------------------------------------------------

_FAILED = []


def pytest_configure(config):
    name = os.environ.get('THEANETS_MUTANT')
    if name and name != 'none':
        mutants()[name][1]()


def pytest_runtest_logreport(report):
    if report.failed:
        _FAILED.append(report.nodeid)


def pytest_sessionfinish(session, exitstatus):
    path = os.environ.get('THEANETS_MUTANT_REPORT')
    if path:
        with open(path, 'w') as handle:
            json.dump(sorted(set(_FAILED)), handle)


# ----- the driver -------------------------------------------------------------------------

def run(name, files, maxfail, timeout):
    """Run ``files`` under mutant ``name``; return (failed test ids, seconds, note)."""
    with tempfile.NamedTemporaryFile('r', suffix='.json') as report:
        env = dict(os.environ, THEANETS_MUTANT=name, THEANETS_MUTANT_REPORT=report.name,
                   PYTHONPATH=os.pathsep.join([HERE, ROOT] + [
                       p for p in os.environ.get('PYTHONPATH', '').split(os.pathsep) if p]))
        command = [sys.executable, '-m', 'pytest', '-q', '--no-header', '-p', 'mutation_check']
        if maxfail:
            command.append('--maxfail={}'.format(maxfail))
        start = time.time()
        try:
            result = subprocess.run(command + files, cwd=ROOT, env=env, capture_output=True,
                                    text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            return ['(timeout after {} s)'.format(timeout)], time.time() - start, 'timeout'
        seconds = time.time() - start
        text = report.read()
        failed = json.loads(text) if text else []
        note = ''
        if result.returncode not in (0, 1):
            note = 'pytest exit {}: {}'.format(
                result.returncode, (result.stdout + result.stderr).strip().splitlines()[-1:])
            failed = failed or ['(pytest error)']
        return failed, seconds, note


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--only', action='append', default=[],
                        help='glob(s) over mutant names, e.g. "optimizer:*"')
    parser.add_argument('--list', action='store_true', help='list the mutants and exit')
    parser.add_argument('--jobs', type=int, default=1, help='mutants run at once')
    parser.add_argument('--maxfail', type=int, default=0,
                        help='stop each run after this many failures (0: run all tests)')
    parser.add_argument('--timeout', type=int, default=900, help='seconds per mutant')
    parser.add_argument('--report', help='also write the table to this file')
    args = parser.parse_args(argv)

    sys.path[:0] = [ROOT]
    table = mutants()
    names = [n for n in table if not args.only or any(fnmatch.fnmatch(n, p) for p in args.only)]
    if args.list:
        print('\n'.join(names))
        return 0
    for name in names:   # every source edit must still match the code
        getattr(table[name][1], 'check', lambda: None)()

    kinds = sorted({table[n][0] for n in names})
    jobs = [('none', FILES[k]) for k in kinds] + [(n, FILES[table[n][0]]) for n in names]
    results = {}
    from concurrent.futures import ThreadPoolExecutor
    with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        futures = {(n, tuple(f)): pool.submit(run, n, f, args.maxfail, args.timeout)
                   for n, f in jobs}
        for (name, files), future in futures.items():
            results[name, files] = future.result()
            failed, seconds, note = results[name, files]
            print('{:<48} {:>4} failed {:6.1f} s {}'.format(
                name, len(failed), seconds, note), file=sys.stderr, flush=True)

    lines = ['| mutant | files | failing tests |', '|---|---|---|']
    survivors, broken = [], []
    for (name, files), (failed, seconds, note) in results.items():
        files_text = ', '.join(os.path.basename(f) for f in files)
        if name == 'none':
            if failed:
                broken.append(files_text)
            lines.append('| (unmutated) | {} | {} |'.format(files_text, len(failed)))
            continue
        if not failed:
            survivors.append(name)
        shown = ', '.join('`{}`'.format(f.split('::', 1)[-1]) for f in failed[:3])
        more = ' (+{} more)'.format(len(failed) - 3) if len(failed) > 3 else ''
        lines.append('| {} | {} | {} |'.format(
            name, files_text, (shown + more) if failed else '**SURVIVED**'))
    lines.append('')
    lines.append('{} mutants, {} survivors{}'.format(
        len(names), len(survivors), ': ' + ', '.join(survivors) if survivors else ''))
    if broken:
        lines.append('the unmutated tests fail in: ' + ', '.join(broken))
    text = '\n'.join(lines)
    print(text)
    if args.report:
        with open(args.report, 'w') as handle:
            handle.write(text + '\n')
    return 1 if survivors or broken else 0


if __name__ == '__main__':
    sys.exit(main())
