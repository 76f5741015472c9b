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
(C mode 'CVM'). Prints sequences per second (median over rounds) and the
ratio to PyTorch.

Usage::

    python benchmarks/bench_ops_recurrent.py                  # LSTM
    python benchmarks/bench_ops_recurrent.py --cell all       # LSTM, GRU, RNN
    python benchmarks/bench_ops_recurrent.py --rounds 5 --iters 20
"""

import argparse
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..'))

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
    # explicit softmax: pt.special.softmax is an OpFromGraph that PyTensor 3.0.7
    # does not inline in CVM mode, and it then runs through Python (slow)
    e = pt.exp(logits - logits.max(axis=-1, keepdims=True))
    prob = e / e.sum(axis=-1, keepdims=True)
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
        import torch
        variants['torch'] = build_torch(cell, args, x, y)
        print('[{}] torch {} with {} threads'.format(cell, torch.__version__,
                                                      torch.get_num_threads()))
    except ImportError:
        print('[{}] torch not importable: skipped'.format(cell))
    for fn in variants.values():           # warm up
        for _ in range(3):
            fn(x, y)
    rates = {name: [] for name in variants}
    for _ in range(args.rounds):
        for name, fn in variants.items():
            t0 = time.perf_counter()
            for _ in range(args.iters):
                fn(x, y)
            rates[name].append(args.iters * args.batch / (time.perf_counter() - t0))
    ref = statistics.median(rates['torch']) if 'torch' in rates else None
    print('{}: T={} B={} nin={} n={} (median of {} rounds x {} steps)'.format(
        cell.upper(), args.steps, args.batch, args.nin, args.units, args.rounds, args.iters))
    for name, values in rates.items():
        med = statistics.median(values)
        ratio = '  ({:.2f} x torch)'.format(med / ref) if ref else ''
        print('  {:6s} {:8.0f} sequences/s  [min {:.0f}, max {:.0f}]{}'.format(
            name, med, min(values), max(values), ratio))
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
    parser.add_argument('--no-scan', action='store_true', help='skip the scan variant')
    args = parser.parse_args()
    for cell in (['lstm', 'gru', 'rnn'] if args.cell == 'all' else [args.cell]):
        run(cell, args)


if __name__ == '__main__':
    main()
