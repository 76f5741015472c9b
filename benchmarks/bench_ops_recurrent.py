"""Benchmark the fused recurrent Ops against pytensor.scan and PyTorch.

Workload (per training step): one-hot inputs over ``--nin`` symbols, batch
``--batch`` of sequences of ``--steps`` time steps, a recurrent layer of
``--units`` units, a softmax output over ``--nin`` classes at every step,
cross-entropy loss, and a plain SGD update of every parameter.

Variants, each timed on the same data, interleaved over several rounds:

- ``fused``: :mod:`theanets.ops.recurrent` Ops (the whole time loop in one Op);
- ``scan``: the same model with :func:`pytensor.scan`;
- ``torch``: PyTorch ``nn.LSTM``/``nn.GRU``/``nn.RNN`` + ``nn.Linear`` +
  cross-entropy + SGD (only when torch is importable; for comparison only).

Both PyTensor variants are compiled with :func:`theanets.backend.function`
(C mode 'CVM'). Prints sequences per second -- the median and the best
round -- and their ratios to PyTorch, plus the load average: on a busy
machine multi-threaded code (PyTorch's and OpenBLAS's too) slows down a lot
and unevenly, and the best rounds are the better estimate of unloaded speed.
Thread counts: ``THEANETS_NUM_THREADS`` (or ``OMP_NUM_THREADS``) for the
fused float32 kernels, ``OPENBLAS_NUM_THREADS`` for PyTensor's BLAS, and
``--torch-threads`` for PyTorch.

OpenBLAS worker threads keep spinning for about 2**28 cycles after each BLAS
call (``OPENBLAS_THREAD_TIMEOUT``, default 28), long enough to steal CPU from
the fused Ops' threads throughout a training step; ``--openblas-timeout 4``
sets ``OPENBLAS_THREAD_TIMEOUT=4`` before OpenBLAS loads (it must be set
before ``import theanets``).

Usage::

    python benchmarks/bench_ops_recurrent.py                  # LSTM
    python benchmarks/bench_ops_recurrent.py --cell all       # LSTM, GRU, RNN
    python benchmarks/bench_ops_recurrent.py --rounds 5 --iters 20
    python benchmarks/bench_ops_recurrent.py --cell all --openblas-timeout 4
"""

import argparse
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..'))

if __name__ == '__main__' and '--openblas-timeout' in sys.argv:   # before OpenBLAS loads
    os.environ['OPENBLAS_THREAD_TIMEOUT'] = sys.argv[sys.argv.index('--openblas-timeout') + 1]

import numpy as np  # noqa: E402

import theanets  # noqa: E402,F401  (sets PyTensor flags first)
import pytensor  # noqa: E402
import pytensor.tensor as pt  # noqa: E402

from theanets.ops import recurrent as rec  # noqa: E402

BLOCKS = {'lstm': 4, 'gru': 3, 'rnn': 1}


def make_data(args, rng):
    ids = rng.randint(0, args.nin, size=(args.batch, args.steps))
    x = np.zeros((args.batch, args.steps, args.nin), 'float32')
    x[np.arange(args.batch)[:, None], np.arange(args.steps)[None, :], ids] = 1
    y = rng.randint(0, args.nin, size=(args.batch, args.steps)).astype('int64')
    return x, y


def build_pytensor(cell, fused, args, rng):
    """Compile one SGD training step; returns a callable f(x, y) -> loss."""
    n, nin, k = args.units, args.nin, BLOCKS[cell]

    def shared(name, *shape, scale=None):
        scale = 1 / np.sqrt(sum(shape[-2:])) if scale is None else scale
        return pytensor.shared((rng.randn(*shape) * scale).astype('float32'), name=name)

    w = shared('w', nin, k * n)
    b = shared('b', k * n, scale=0.0)
    params = [w, b]
    x = pt.tensor3('x', dtype='float32')
    y = pt.matrix('y', dtype='int64')
    # project time-major inputs: one product for all steps, contiguous result
    xproj = x.dimshuffle(1, 0, 2).dot(w) + b
    if cell == 'lstm':
        hh = shared('hh', n, 4 * n)
        ci, cf, co = (shared(name, n, scale=0.1) for name in ('ci', 'cf', 'co'))
        params += [hh, ci, cf, co]
        fn = rec.lstm if fused else rec.lstm_scan
        h = fn(xproj, hh, ci, cf, co)[0]
    elif cell == 'gru':
        hh, hr, hz = (shared(name, n, n) for name in ('hh', 'hr', 'hz'))
        params += [hh, hr, hz]
        fn = rec.gru if fused else rec.gru_scan
        h = fn(xproj, hh, hr, hz, activation='tanh')[0]
    else:
        hh = shared('hh', n, n)
        params += [hh]
        fn = rec.rnn if fused else rec.rnn_scan
        h = fn(xproj, hh, activation='tanh')[0]
    wo = shared('wo', n, nin)
    bo = shared('bo', nin, scale=0.0)
    params += [wo, bo]
    hb = h.dimshuffle(1, 0, 2)                      # (B, T, n), as a layer returns it
    logits = (hb.dot(wo) + bo).reshape((-1, nin))
    # softmax over the classes, cross-entropy as theanets computes it
    prob = pt.special.softmax(logits, axis=-1)
    p_true = prob[pt.arange(prob.shape[0]), y.flatten()]
    loss = -pt.log(pt.clip(p_true, 1e-8, 1)).mean()
    grads = pytensor.grad(loss, params)
    updates = [(p, p - args.lr * g) for p, g in zip(params, grads)]
    return theanets.backend.function([x, y], loss, updates=updates,
                                     name='{}-{}'.format(cell, 'fused' if fused else 'scan'))


def build_torch(cell, args, x, y):
    import torch
    torch.manual_seed(0)
    rnn = {'lstm': torch.nn.LSTM, 'gru': torch.nn.GRU, 'rnn': torch.nn.RNN}[cell](
        args.nin, args.units)
    lin = torch.nn.Linear(args.units, args.nin)
    opt = torch.optim.SGD(list(rnn.parameters()) + list(lin.parameters()), lr=args.lr)
    xt = torch.from_numpy(np.ascontiguousarray(x.transpose(1, 0, 2)))  # time-major
    yt = torch.from_numpy(np.ascontiguousarray(y.T))

    def step(*_):
        opt.zero_grad()
        h = rnn(xt)[0]
        loss = torch.nn.functional.cross_entropy(lin(h).reshape(-1, args.nin), yt.reshape(-1))
        loss.backward()
        opt.step()
        return loss.item()
    return step


def run(cell, args):
    rng = np.random.RandomState(13)
    x, y = make_data(args, rng)
    variants = {}
    t0 = time.perf_counter()
    variants['fused'] = build_pytensor(cell, True, args, rng)
    print('[{}] compiled fused in {:.1f}s'.format(cell, time.perf_counter() - t0))
    if not args.no_scan:
        t0 = time.perf_counter()
        variants['scan'] = build_pytensor(cell, False, args, rng)
        print('[{}] compiled scan in {:.1f}s'.format(cell, time.perf_counter() - t0))
    try:
        if args.no_torch:
            raise ImportError
        import torch
        if args.torch_threads:
            torch.set_num_threads(args.torch_threads)
        variants['torch'] = build_torch(cell, args, x, y)
        print('[{}] torch {} with {} threads'.format(cell, torch.__version__,
                                                      torch.get_num_threads()))
    except ImportError:
        print('[{}] torch skipped'.format(cell))
    for fn in variants.values():           # warm up
        for _ in range(3):
            fn(x, y)
    rates = {name: [] for name in variants}
    load0 = os.getloadavg()[0]
    for _ in range(args.rounds):
        for name, fn in variants.items():
            time.sleep(args.pause)          # let the previous variant's threads go idle
            t0 = time.perf_counter()
            for _ in range(args.iters):
                fn(x, y)
            rates[name].append(args.iters * args.batch / (time.perf_counter() - t0))
    print('{}: T={} B={} nin={} n={}; {} rounds x {} steps; load average {:.1f} -> {:.1f}'
          .format(cell.upper(), args.steps, args.batch, args.nin, args.units, args.rounds,
                  args.iters, load0, os.getloadavg()[0]))
    ref_med = statistics.median(rates['torch']) if 'torch' in rates else None
    ref_best = max(rates['torch']) if 'torch' in rates else None
    print('  {:6s} {:>18s} {:>18s}'.format('', 'median seq/s', 'best seq/s'))
    for name, values in rates.items():
        med, best = statistics.median(values), max(values)
        r_med = ' ({:.2f}x)'.format(med / ref_med) if ref_med else ''
        r_best = ' ({:.2f}x)'.format(best / ref_best) if ref_best else ''
        print('  {:6s} {:>10.0f}{:8s} {:>10.0f}{:8s}'.format(name, med, r_med, best, r_best))
    return rates


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--cell', default='lstm', choices=['lstm', 'gru', 'rnn', 'all'])
    parser.add_argument('--steps', type=int, default=50)
    parser.add_argument('--batch', type=int, default=32)
    parser.add_argument('--nin', type=int, default=64)
    parser.add_argument('--units', type=int, default=256)
    parser.add_argument('--lr', type=float, default=0.01)
    parser.add_argument('--rounds', type=int, default=5)
    parser.add_argument('--iters', type=int, default=10)
    parser.add_argument('--pause', type=float, default=0.3,
                        help='seconds of rest before each timed run')
    parser.add_argument('--torch-threads', type=int, default=0,
                        help='PyTorch intra-op threads (default: its own choice)')
    parser.add_argument('--no-scan', action='store_true', help='skip the scan variant')
    parser.add_argument('--no-torch', action='store_true', help='skip the PyTorch variant')
    parser.add_argument('--openblas-timeout', type=int, default=None,
                        help='set OPENBLAS_THREAD_TIMEOUT (4..30) before OpenBLAS loads')
    args = parser.parse_args()
    print('environment: ' + ', '.join('{}={}'.format(k, os.environ.get(k, '(unset)')) for k in (
        'OPENBLAS_THREAD_TIMEOUT', 'OPENBLAS_NUM_THREADS', 'THEANETS_NUM_THREADS',
        'OMP_NUM_THREADS')) + '; {} CPUs'.format(os.cpu_count()))
    for cell in (['lstm', 'gru', 'rnn'] if args.cell == 'all' else [args.cell]):
        run(cell, args)


if __name__ == '__main__':
    main()
