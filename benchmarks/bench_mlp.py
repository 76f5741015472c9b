#!/usr/bin/env python
"""MLP 784-512-512-10 (relu, softmax cross-entropy), batch 128, SGD with momentum.

Compares theanets.Classifier with the same model in PyTorch (if installed),
interleaved in one process. Run: python benchmarks/bench_mlp.py

With --api: ``net.train`` on 16 mini-batches (validation set: 2 mini-batches,
default monitors) against its compiled step and a PyTorch loop over the same
mini-batches.
"""

import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402

BATCH = 128
SIZES = (784, 512, 512, 10)
TRAIN_BATCHES, VALID_BATCHES = 16, 2


def data(n=BATCH, seed=0):
    rng = np.random.RandomState(seed)
    x = rng.randn(n, SIZES[0]).astype('float32')
    y = rng.randint(SIZES[-1], size=n).astype('int32')
    return x, y


def make_theanets(args):
    import theanets
    x, y = data()
    return common.theanets_callables(theanets.Classifier(list(SIZES)), x, y)


def torch_model():
    import torch
    layers = []
    for a, b in zip(SIZES[:-2], SIZES[1:-1]):
        layers += [torch.nn.Linear(a, b), torch.nn.ReLU()]
    return torch.nn.Sequential(*layers, torch.nn.Linear(SIZES[-2], SIZES[-1]))


def make_torch(args):
    import torch
    x, y = data()
    model = torch_model()
    return common.torch_callables(model, model.parameters(), torch.from_numpy(x),
                                  torch.from_numpy(y.astype('int64')))


def make_api(args, with_torch):
    import theanets
    train = list(data(BATCH * TRAIN_BATCHES, seed=1))
    valid = list(data(BATCH * VALID_BATCHES, seed=2))
    result = common.theanets_api(theanets.Classifier(list(SIZES)), train, valid, BATCH)
    if with_torch:
        import torch
        model = torch_model()
        batches = [[torch.from_numpy(x), torch.from_numpy(y.astype('int64'))]
                   for x, y in common.batches_of(train, BATCH)]
        result['torch loop'] = (common.torch_loop(model, model.parameters(), batches), BATCH)
    return result


if __name__ == '__main__':
    common.run(os.path.abspath(__file__), 'MLP 784-512-512-10, batch 128, SGD+momentum',
               BATCH, make_theanets, make_torch, make_api=make_api)
