"""Shared pieces of the benchmark scripts: timing, compile-time subprocesses, tables.

Each benchmark script defines two factories, ``make_theanets(args)`` and
``make_torch(args)``, returning a *step* callable that runs one training
mini-batch (forward, backward, update), plus ``predict`` callables. This
module times them interleaved, in one process, so that machine noise affects
both alike, and measures compile time and peak memory in fresh subprocesses.

With ``--api``, a script's ``make_api(args, with_torch)`` factory times
``net.train`` itself: whole training runs over a data set of several
mini-batches, with the default monitors and a validation set, against the
compiled training step that ``net.train`` runs, called directly on the same
mini-batches (and a plain PyTorch loop over them).
"""

import argparse
import contextlib
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time

import numpy as np

#: Training algorithm of both frameworks' steps (``--algo``), with its settings.
ALGORITHMS = {
    'sgd': dict(learning_rate=1e-3, momentum=0.9),
    'rmsprop': dict(learning_rate=1e-3),
    'adam': dict(learning_rate=1e-3),
}
_ALGO = ['sgd']


def _hyper():
    """theanets' keyword arguments for the chosen algorithm (``--algo``)."""
    return dict(algo=_ALGO[0], **ALGORITHMS[_ALGO[0]])


def torch_available():
    try:
        import torch  # noqa: F401
        return True
    except ImportError:
        return False


def throughput(step, batch_size, seconds):
    """Run ``step()`` repeatedly for about ``seconds``; return examples per second."""
    step()
    count, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        step()
        count += 1
    return count * batch_size / (time.perf_counter() - start)


def interleaved(candidates, batch_size, rounds, seconds):
    """Time each candidate's step ``rounds`` times in turn; return the median rates.

    Parameters
    ----------
    candidates : dict of name -> callable, or name -> (callable, examples per call)
    batch_size : int
        Examples per call of the candidates given without their own count.
    """
    rates = {name: [] for name in candidates}
    for _ in range(rounds):
        for name, step in candidates.items():
            step, count = step if isinstance(step, tuple) else (step, batch_size)
            rates[name].append(throughput(step, count, seconds))
    return {name: float(np.median(r)) for name, r in rates.items()}


def theanets_callables(net, x, y):
    """Return (train step, predict) for a theanets model on one fixed mini-batch.

    A training step is one epoch of one mini-batch through ``net.itertrain``
    (``--algo``: by default SGD with momentum 0.9, learning rate 1e-3; no
    validation after the first), so it measures what a user's training loop
    runs, bookkeeping included.
    """
    steps = net.itertrain(lambda: [x, y], valid=[x, y], iteration_size=1, valid_batches=1,
                          validate_every=10 ** 9, patience=10 ** 9, batch_size=len(x),
                          **_hyper())
    next(steps)  # compiles the training and evaluation functions
    net.predict(x)  # compiles the prediction function
    return (lambda: next(steps)), (lambda: net.predict(x))


def batches_of(arrays, batch_size):
    """Cut a list of arrays into a list of mini-batches (views), in order."""
    n = len(arrays[0])
    return [[a[i:i + batch_size] for a in arrays] for i in range(0, n, batch_size)]


def cycle(calls):
    """Return a callable running the next of ``calls`` (callables) at each call."""
    position = [0]

    def next_call():
        calls[position[0] % len(calls)]()
        position[0] += 1

    return next_call


def theanets_api(net, train, valid, batch_size, epochs=10):
    """Return ``{name: (callable, examples per call)}`` for ``net.train`` and its step.

    ``'theanets net.train'`` runs ``net.train(train, valid, ...)`` for
    ``epochs`` epochs (``--algo``, by default SGD with momentum 0.9 and
    learning rate 1e-3; the default monitors and validation schedule);
    ``'theanets step'`` calls the compiled training function that
    ``net.train`` runs, directly, on the same mini-batches. The C versions of
    the functions are compiled first.
    """
    import theanets
    hyper = dict(_hyper(), batch_size=batch_size, max_updates=epochs, patience=10 ** 9)
    algo = hyper.pop('algo')

    def api():
        net.train(train, valid, algo=algo, **hyper)

    api()
    theanets.backend.finish_compiling()
    runner = theanets.trainer.DownhillTrainer(algo, net)
    runner.itertrain(train, valid, **hyper)
    function = runner.optimizer.function
    steps = [(lambda b=b: function(*b)) for b in batches_of(train, batch_size)]
    return {'theanets net.train': (api, epochs * len(train[0])),
            'theanets step': (cycle(steps), batch_size)}


def torch_trainer(forward, params):
    """Return ``step_on(x, y)``: one PyTorch step of ``--algo`` with cross-entropy.

    ``forward(x)`` must return logits of shape (N, classes) for the flattened batch.
    """
    import torch
    kind = {'sgd': torch.optim.SGD, 'rmsprop': torch.optim.RMSprop, 'adam': torch.optim.Adam}
    settings = dict(ALGORITHMS[_ALGO[0]])
    opt = kind[_ALGO[0]](params, lr=settings.pop('learning_rate'), **settings)
    loss_fn = torch.nn.CrossEntropyLoss()

    def step_on(x, y):
        opt.zero_grad()
        loss_fn(forward(x), y.reshape(-1)).backward()
        opt.step()

    return step_on


def torch_callables(forward, params, x, y):
    """Return (train step, predict) for a PyTorch model on one fixed mini-batch."""
    import torch
    step_on = torch_trainer(forward, params)

    def predict():
        with torch.no_grad():
            return torch.softmax(forward(x), dim=-1).argmax(dim=-1)

    return (lambda: step_on(x, y)), predict


def torch_loop(forward, params, batches):
    """Return a callable training a PyTorch model on the next of ``batches`` at each call."""
    step_on = torch_trainer(forward, params)
    return cycle([(lambda b=b: step_on(*b)) for b in batches])


def peak_memory_mb():
    """Peak resident memory of this process in MB.

    Reads ``VmHWM`` from ``/proc/self/status`` where it exists: on Linux,
    ``ru_maxrss`` of a process started by ``subprocess`` keeps the high-water
    mark of the parent it was forked from, across ``exec``.
    """
    try:
        with open('/proc/self/status') as handle:
            for line in handle:
                if line.startswith('VmHWM:'):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


@contextlib.contextmanager
def fresh_compile_env(env_extra=None):
    """The environment, with ``env_extra`` and a fresh, empty PyTensor compile directory."""
    with tempfile.TemporaryDirectory() as compiledir:
        env = dict(os.environ, **(env_extra or {}))
        flags = env.get('PYTENSOR_FLAGS', '')
        env['PYTENSOR_FLAGS'] = ','.join(filter(None, [flags, 'compiledir=' + compiledir]))
        yield env


def compile_times(script, extra_args=(), env_extra=None):
    """Return (cold, warm) seconds to build the theanets model and run it once.

    Runs ``script --compile-only`` twice in subprocesses sharing a fresh,
    empty PyTensor compile directory: the first run is cold, the second warm.
    ``env_extra`` adds environment variables, e.g. ``THEANETS_QUICK_START=off``
    to time the compilation of the C functions.
    """
    with fresh_compile_env(env_extra) as env:
        result = []
        for _ in range(2):
            out = subprocess.run([sys.executable, script, '--compile-only'] + list(extra_args),
                                 env=env, capture_output=True, text=True, check=True)
            result.append(json.loads(out.stdout.strip().splitlines()[-1])['compile'])
        return tuple(result)


def memory_of(script, framework, extra_args=()):
    """Peak memory (MB) of a subprocess that trains with only ``framework``.

    theanets runs in a compile directory of its own, filled by a first run: PyTensor
    reads the index of every entry of its compile directory when it loads a C
    function, which in a directory of a few thousand entries adds some 70 MB.
    """
    with fresh_compile_env() as env:
        for _ in range(2 if framework == 'theanets' else 1):
            out = subprocess.run([sys.executable, script, '--memory-only', framework] +
                                 list(extra_args), env=env, capture_output=True, text=True,
                                 check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])['peak_mb']


def parser(description):
    p = argparse.ArgumentParser(description=description)
    p.add_argument('--rounds', type=int, default=3, help='interleaved timing rounds')
    p.add_argument('--seconds', type=float, default=3.0, help='seconds per timing')
    p.add_argument('--mode', default=None, help='PyTensor mode for theanets (CVM, JAX, NUMBA)')
    p.add_argument('--algo', default='sgd', choices=sorted(ALGORITHMS),
                   help='training algorithm of both steps (sgd: with momentum 0.9)')
    p.add_argument('--api', action='store_true',
                   help='time net.train on a data set against its compiled step')
    p.add_argument('--compile-only', action='store_true', help=argparse.SUPPRESS)
    p.add_argument('--memory-only', default=None, help=argparse.SUPPRESS)
    p.add_argument('--no-subprocess', action='store_true',
                   help='skip the cold/warm compile and memory subprocesses')
    return p


def machine():
    return '{} {}, {} cores, Python {}'.format(
        platform.system(), platform.machine(), os.cpu_count(), platform.python_version())


def report(title, rows):
    """Print a table: rows of (label, value) pairs."""
    print('\n' + title)
    print('-' * len(title))
    width = max(len(label) for label, _ in rows)
    for label, value in rows:
        print('{:<{w}}  {}'.format(label, value, w=width))


def step_rows(make_theanets, make_torch, batch_size, args, have_torch):
    """Time the compiled training step and prediction against PyTorch; return report rows."""
    import theanets
    start = time.perf_counter()
    th_step, th_predict = make_theanets(args)
    theanets.backend.finish_compiling()     # time the C versions
    build = time.perf_counter() - start
    candidates = {'theanets train': th_step}
    predictors = {'theanets predict': th_predict}
    if have_torch:
        candidates['torch train'], predictors['torch predict'] = make_torch(args)
    rates = interleaved(dict(candidates, **predictors), batch_size, args.rounds, args.seconds)
    rows = [('build + compile in this process (s)', '{:.1f}'.format(build))]
    for name, rate in rates.items():
        rows.append(('{} (examples/s)'.format(name), '{:,.0f}'.format(rate)))
    if have_torch:
        rows.append(('train ratio theanets/torch', '{:.2f}x'.format(
            rates['theanets train'] / rates['torch train'])))
        rows.append(('predict ratio theanets/torch', '{:.2f}x'.format(
            rates['theanets predict'] / rates['torch predict'])))
    return rows


def api_rows(candidates, batch_size, args):
    """Time ``net.train``, its compiled step and a PyTorch loop; return report rows."""
    rates = interleaved(candidates, batch_size, args.rounds, args.seconds)
    rows = [('{} (examples/s)'.format(name), '{:,.0f}'.format(rate))
            for name, rate in rates.items()]
    rows.append(('net.train / compiled step', '{:.3f}x'.format(
        rates['theanets net.train'] / rates['theanets step'])))
    if 'torch loop' in rates:
        rows.append(('net.train / torch loop', '{:.2f}x'.format(
            rates['theanets net.train'] / rates['torch loop'])))
        rows.append(('compiled step / torch loop', '{:.2f}x'.format(
            rates['theanets step'] / rates['torch loop'])))
    return rows


def run(script, description, batch_size, make_theanets, make_torch, extra_args=(),
        make_api=None):
    """The main of a benchmark script: parse flags and print the comparison."""
    args = parser(description).parse_args()
    _ALGO[0] = args.algo
    if args.mode:
        import theanets
        theanets.backend.set_mode(args.mode)
    if args.compile_only:
        start = time.perf_counter()
        make_theanets(args)
        print(json.dumps({'compile': time.perf_counter() - start}))
        return
    if args.memory_only:
        make = make_theanets if args.memory_only == 'theanets' else make_torch
        step, _ = make(args)
        if args.memory_only == 'theanets':
            import theanets
            theanets.backend.finish_compiling()
        for _ in range(20):
            step()
        print(json.dumps({'peak_mb': peak_memory_mb()}))
        return
    have_torch = torch_available()
    if have_torch:
        import torch
        torch.set_num_threads(os.cpu_count())
    if args.algo != 'sgd':
        description = description.replace('SGD+momentum', args.algo)
    rows = [('machine', machine()), ('mode', args.mode or 'CVM (default)')]
    if args.api:
        if make_api is None:
            raise SystemExit('this benchmark has no --api variant')
        rows += api_rows(make_api(args, have_torch), batch_size, args)
    else:
        rows += step_rows(make_theanets, make_torch, batch_size, args, have_torch)
    if not args.no_subprocess:
        extra = list(extra_args) + (['--mode', args.mode] if args.mode else []) \
            + ['--algo', args.algo]
        cold, warm = compile_times(script, extra, {'THEANETS_QUICK_START': 'off'})
        rows.append(('compile C functions, cold cache (s)', '{:.1f}'.format(cold)))
        rows.append(('compile C functions, warm cache (s)', '{:.1f}'.format(warm)))
        cold, warm = compile_times(script, extra)
        rows.append(('first step + predict (quick start), cold cache (s)',
                     '{:.1f}'.format(cold)))
        rows.append(('first step + predict (quick start), warm cache (s)',
                     '{:.1f}'.format(warm)))
        rows.append(('peak memory theanets (MB)', '{:.0f}'.format(
            memory_of(script, 'theanets', extra))))
        if have_torch:
            rows.append(('peak memory torch (MB)', '{:.0f}'.format(
                memory_of(script, 'torch', extra))))
    report(description + (' (--api)' if args.api else ''), rows)
