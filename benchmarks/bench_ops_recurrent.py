"""Time the recurrent ops alone: one LSTM/GRU/RNN layer's loop, forward and backward.

For each cell, times (interleaved over several rounds, in one process):

- ``ops``: :mod:`theanets.ops.recurrent` compiled for this CPU;
- ``portable``: the same ops compiled as for a CPU without AVX-512
  (``THEANETS_PORTABLE=1``; set ``OPENBLAS_CORETYPE=Haswell`` too to emulate
  such a CPU fully);
- ``torch``: PyTorch's ``nn.LSTM``/``nn.GRU``/``nn.RNN`` on the same sizes (its
  input projection included; for comparison only).

"forward" computes the states; "train" also the gradients of every input of the
loop (projected inputs and weights). The ops split the batch among
``OMP_NUM_THREADS`` threads (default: every CPU); PyTorch uses its own setting.
Prints milliseconds per call (median and best round) and the ratio of PyTorch's
time to ours (above 1: faster than PyTorch), plus the load average: on a busy
machine every multi-threaded code slows down, unevenly.

Usage::

    python benchmarks/bench_ops_recurrent.py                      # LSTM, GRU and RNN
    python benchmarks/bench_ops_recurrent.py --cell lstm --rounds 5
"""

import argparse
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..'))

import numpy as np  # noqa: E402

import theanets  # noqa: E402  (sets PyTensor flags first)
import pytensor  # noqa: E402
import pytensor.tensor as pt  # noqa: E402

from theanets.ops import recurrent as rec  # noqa: E402

BLOCKS = {'lstm': 4, 'gru': 3, 'rnn': 1}


def weights(cell, n, rng):
    """The recurrent weights of ``cell`` after the projected inputs (float32)."""
    def w(*shape):
        return (rng.randn(*shape) / np.sqrt(shape[0])).astype('f')
    return {'lstm': [w(n, 4 * n), w(n) * 0.1, w(n) * 0.1, w(n) * 0.1],
            'gru': [w(n, n), w(n, n), w(n, n)], 'rnn': [w(n, n)]}[cell]


def build_ops(cell, args, rng, portable):
    """(forward, train) callables of the ops on fixed inputs."""
    os.environ['THEANETS_PORTABLE'] = '1' if portable else '0'   # read when compiling
    values = [rng.randn(args.steps, args.batch, BLOCKS[cell] * args.units).astype('f')]
    values += weights(cell, args.units, rng)
    inputs = [pt.tensor('v{}'.format(k), dtype='float32', shape=(None,) * v.ndim)
              for k, v in enumerate(values)]
    kwargs = {} if cell == 'lstm' else dict(activation='tanh')
    h = getattr(rec, cell)(*inputs, **kwargs)[0]
    forward = theanets.backend.function(inputs, h)
    train = theanets.backend.function(inputs, pytensor.grad(h.sum(), inputs))
    os.environ.pop('THEANETS_PORTABLE')
    return (lambda: forward(*values)), (lambda: train(*values))


def build_torch(cell, args):
    import torch
    torch.manual_seed(0)
    layer = {'lstm': torch.nn.LSTM, 'gru': torch.nn.GRU, 'rnn': torch.nn.RNN}[cell](
        args.units, args.units)
    x = torch.randn(args.steps, args.batch, args.units, requires_grad=True)

    def forward():
        with torch.no_grad():
            return layer(x)[0]

    def train():
        layer(x)[0].sum().backward()
    return forward, train


def best_and_median(fn, rounds, seconds):
    fn()
    times = []
    for _ in range(rounds):
        count, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds:
            fn()
            count += 1
        times.append((time.perf_counter() - start) / count * 1e3)
    return statistics.median(times), min(times)


def run(cell, args):
    rng = np.random.RandomState(13)
    variants = {'ops': build_ops(cell, args, rng, False),
                'portable': build_ops(cell, args, rng, True)}
    try:
        variants['torch'] = build_torch(cell, args)
    except ImportError:
        pass
    load = os.getloadavg()[0]
    results = {}
    for _ in range(args.rounds):   # interleaved: each round times every variant once
        for name, fns in variants.items():
            for kind, fn in zip(('forward', 'train'), fns):
                results.setdefault((name, kind), []).append(
                    best_and_median(fn, 1, args.seconds)[0])
    print('{}: T={} B={} n={}; {} rounds; load average {:.1f} -> {:.1f}'.format(
        cell.upper(), args.steps, args.batch, args.units, args.rounds, load,
        os.getloadavg()[0]))
    print('  {:9s} {:>26s} {:>26s}'.format('', 'forward ms (median, best)',
                                           'train ms (median, best)'))
    for name in variants:
        cells = []
        for kind in ('forward', 'train'):
            med, best = statistics.median(results[name, kind]), min(results[name, kind])
            ratio = ''
            if ('torch', kind) in results and name != 'torch':
                ratio = ' {:.2f}x'.format(statistics.median(results['torch', kind]) / med)
            cells.append('{:7.2f} {:7.2f}{:>7s}'.format(med, best, ratio))
        print('  {:9s} {:>26s} {:>26s}'.format(name, *cells))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--cell', default='all', choices=['lstm', 'gru', 'rnn', 'all'])
    parser.add_argument('--steps', type=int, default=50)
    parser.add_argument('--batch', type=int, default=32)
    parser.add_argument('--units', type=int, default=256)
    parser.add_argument('--rounds', type=int, default=3)
    parser.add_argument('--seconds', type=float, default=1.0, help='seconds per timing')
    args = parser.parse_args()
    print('environment: ' + ', '.join('{}={}'.format(k, os.environ.get(k, '(unset)')) for k in (
        'OMP_NUM_THREADS', 'OPENBLAS_NUM_THREADS', 'OPENBLAS_CORETYPE')) +
        '; {} CPUs'.format(os.cpu_count()))
    for cell in (['lstm', 'gru', 'rnn'] if args.cell == 'all' else [args.cell]):
        run(cell, args)


if __name__ == '__main__':
    main()
