#!/usr/bin/env python
"""MLP 784-512-512-10 (relu, softmax cross-entropy), batch 128, SGD with momentum.

Compares theanets.Classifier with the same model in PyTorch (if installed),
interleaved in one process. Run: python benchmarks/bench_mlp.py
"""

import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402

BATCH = 128
SIZES = (784, 512, 512, 10)


def data(rng=np.random.RandomState(0)):
    x = rng.randn(BATCH, SIZES[0]).astype('float32')
    y = rng.randint(SIZES[-1], size=BATCH).astype('int32')
    return x, y


def make_theanets(args):
    import theanets
    x, y = data()
    return common.theanets_callables(theanets.Classifier(list(SIZES)), x, y)

def make_torch(args):
    import torch
    x, y = data()
    layers = []
    for a, b in zip(SIZES[:-2], SIZES[1:-1]):
        layers += [torch.nn.Linear(a, b), torch.nn.ReLU()]
    model = torch.nn.Sequential(*layers, torch.nn.Linear(SIZES[-2], SIZES[-1]))
    return common.torch_callables(model, model.parameters(), torch.from_numpy(x),
                                  torch.from_numpy(y.astype('int64')))

if __name__ == '__main__':
    common.run(os.path.abspath(__file__), 'MLP 784-512-512-10, batch 128, SGD+momentum',
               BATCH, make_theanets, make_torch)
