"""Benchmark theanets.ops.conv: a small conv net's SGD step, PyTensor vs. PyTorch.

Network (LeNet-like, channels-last for PyTensor, NCHW for PyTorch)::

    x (B, 28, 28, 1) -> conv 32 5x5 relu -> maxpool 2 -> conv 64 5x5 relu
      -> maxpool 2 -> dense 10 softmax -> cross-entropy, plain SGD step

The step is built directly from the ops of :mod:`theanets.ops.conv` (no
theanets model around it) and compiled in each PyTensor mode of ``--modes``
(``CVM``: their C code; ``JAX``: their JAX twins); runs are interleaved with
PyTorch's (if it is importable) and the median examples/s of several rounds is
printed. ``--profile`` prints PyTensor's per-node profile of the CVM step.

Usage::

    python benchmarks/bench_ops_conv.py [--batch 64] [--rounds 5] [--steps 10]
        [--modes CVM,JAX] [--threads N] [--profile] [--pool-mode max]

Both frameworks allocate multi-megabyte arrays each step, and glibc serves
them with fresh (page-faulting) memory until its dynamic mmap threshold has
grown past their size, which depends on what ran before in the process: the
same PyTorch step differs by up to 40% between processes. For comparisons
that do not depend on it, set ``MALLOC_MMAP_THRESHOLD_=33554432`` and
``MALLOC_TRIM_THRESHOLD_=268435456`` (the first alone disables the dynamic
threshold and makes it worse).
"""

import argparse
import os
import sys
import time


def _threads_from_argv():
    # BLAS/OpenMP thread counts must be set before numpy, PyTensor or torch load.
    for i, arg in enumerate(sys.argv):
        if arg.startswith('--threads'):
            value = arg.split('=', 1)[1] if '=' in arg else sys.argv[i + 1]
            for var in ('OPENBLAS_NUM_THREADS', 'OMP_NUM_THREADS', 'MKL_NUM_THREADS'):
                os.environ[var] = value


_threads_from_argv()

import numpy as np  # noqa: E402

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..'))

import theanets  # noqa: E402  (sets PyTensor flags first)
import pytensor  # noqa: E402
import pytensor.tensor as pt  # noqa: E402

from theanets.ops import conv as C  # noqa: E402

LR = 0.01


def init_params(seed=0):
    rng = np.random.RandomState(seed)

    def w(*shape):
        fan_in = np.prod(shape[1:])
        return (rng.randn(*shape) / np.sqrt(fan_in)).astype('f')
    return dict(w1=w(32, 1, 5, 5), b1=np.zeros(32, 'f'),
                w2=w(64, 32, 5, 5), b2=np.zeros(64, 'f'),
                w3=(rng.randn(4 * 4 * 64, 10) / 32).astype('f'), b3=np.zeros(10, 'f'))


def build_pytensor(params, mode, pool_mode='max', profile=False):
    """Compile one SGD step in PyTensor mode ``mode``; returns f(x, y) -> loss."""
    shared = {k: pytensor.shared(v.copy(), name=k) for k, v in params.items()}
    x = pt.tensor4('x', shape=(None, 28, 28, 1))
    y = pt.ivector('y')
    h = C.conv2d(x, shared['w1']) + shared['b1']
    h = C.pool2d(pt.maximum(h, 0), 2, mode=pool_mode)
    h = C.conv2d(h, shared['w2']) + shared['b2']
    h = C.pool2d(pt.maximum(h, 0), 2, mode=pool_mode)
    h = h.reshape((h.shape[0], 4 * 4 * 64))
    logits = pt.dot(h, shared['w3']) + shared['b3']
    logp = logits - pt.logsumexp(logits, axis=1, keepdims=True)
    loss = -(logp * pt.eq(y[:, None], np.arange(10))).sum(axis=1).mean()
    names = sorted(shared)
    grads = pytensor.grad(loss, [shared[k] for k in names])
    updates = [(shared[k], shared[k] - LR * g) for k, g in zip(names, grads)]
    theanets.backend.set_mode(mode)
    return theanets.backend.function([x, y], loss, updates=updates, name=mode,
                                     profile=profile or None)


def build_torch(params):
    import torch
    import torch.nn.functional as F
    torch.set_num_threads(int(os.environ.get('OMP_NUM_THREADS', os.cpu_count() or 1)))
    tp = {}
    for k, v in params.items():
        if k in ('w1', 'w2'):
            # ours is a true convolution: flip the kernel for PyTorch's correlation.
            v = v[:, :, ::-1, ::-1].copy()
        if k == 'w3':
            # ours flattens (W, H, C); PyTorch flattens (C, W, H).
            v = v.reshape(4, 4, 64, 10).transpose(2, 0, 1, 3).reshape(-1, 10).copy()
        tp[k] = torch.tensor(v, requires_grad=True)

    def step(x, y):
        h = F.max_pool2d(F.relu(F.conv2d(x, tp['w1'], tp['b1'])), 2)
        h = F.max_pool2d(F.relu(F.conv2d(h, tp['w2'], tp['b2'])), 2)
        logits = h.reshape(h.shape[0], -1) @ tp['w3'] + tp['b3']
        loss = F.cross_entropy(logits, y)
        for p in tp.values():
            p.grad = None
        loss.backward()
        with torch.no_grad():
            for p in tp.values():
                p -= LR * p.grad
        return float(loss.detach())
    return step


def timed(fn, args, steps):
    fn(*args)  # warm-up
    start = time.perf_counter()
    for _ in range(steps):
        float(fn(*args))  # waits for the result (JAX returns before computing)
    return time.perf_counter() - start


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--batch', type=int, default=64)
    parser.add_argument('--rounds', type=int, default=5)
    parser.add_argument('--steps', type=int, default=10)
    parser.add_argument('--modes', default='CVM,JAX', help='PyTensor modes to time')
    parser.add_argument('--profile', action='store_true',
                        help="print PyTensor's profile of the CVM step")
    parser.add_argument('--pool-mode', default='max')
    parser.add_argument('--threads', type=int, default=None,
                        help='BLAS/OpenMP threads for both frameworks (default: unchanged)')
    args = parser.parse_args()

    rng = np.random.RandomState(1)
    params = init_params()
    x = rng.rand(args.batch, 28, 28, 1).astype('f')
    y = rng.randint(0, 10, size=args.batch).astype('int32')

    runners = {}
    for mode in args.modes.split(','):
        t0 = time.perf_counter()
        runners[mode] = (build_pytensor(params, mode, args.pool_mode,
                                        profile=args.profile and mode == 'CVM'),
                         (x, y), args.steps)
        print('compiled {} in {:.1f}s'.format(mode, time.perf_counter() - t0))
    try:
        import torch
    except ImportError:
        print('PyTorch not importable: PyTensor figures only')
    else:
        runners['torch'] = (build_torch(params),
                            (torch.tensor(x.transpose(0, 3, 1, 2).copy()),
                             torch.tensor(y.astype('int64'))), args.steps)
        # same initial loss: the two networks compute the same function.
        first = next(iter(runners))
        fresh = build_pytensor(params, first, args.pool_mode)
        print('initial loss: pytensor {:.5f} torch {:.5f}'.format(
            float(fresh(x, y)), build_torch(params)(*runners['torch'][1])))
    rates = {name: [] for name in runners}
    for _ in range(args.rounds):
        for name, (fn, fargs, steps) in runners.items():
            elapsed = timed(fn, fargs, steps)
            rates[name].append(len(fargs[1]) * steps / elapsed)
    print('batch {}, {} rounds x {} steps, threads {} (median examples/s, '
          'forward+backward+SGD):'.format(args.batch, args.rounds, args.steps,
                                          os.environ.get('OPENBLAS_NUM_THREADS', 'default')))
    med = {name: float(np.median(r)) for name, r in rates.items()}
    for name, rate in med.items():
        line = '  {:12s} {:10.1f} ex/s'.format(name, rate)
        if 'torch' in med and name != 'torch':
            line += '   ratio to torch {:.3f}'.format(rate / med['torch'])
        print(line)
    if args.profile and 'CVM' in runners:
        runners['CVM'][0].profile.summary(n_ops_to_print=0, n_apply_to_print=15)


if __name__ == '__main__':
    main()
