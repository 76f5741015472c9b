#!/usr/bin/env python
"""Small Conv2 classifier: 28x28x1 -> conv 32 5x5 relu -> maxpool 2 -> conv 64 5x5 relu
-> maxpool 2 -> softmax 10, batch 64, SGD with momentum.

Compares theanets.convolution.Classifier with the same model in PyTorch, interleaved.
Run: python benchmarks/bench_conv.py
"""

import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402

BATCH = 64


def data(rng=np.random.RandomState(0)):
    x = rng.rand(BATCH, 28, 28, 1).astype('float32')
    y = rng.randint(10, size=BATCH).astype('int32')
    return x, y


def make_theanets(args):
    import theanets
    x, y = data()
    net = theanets.convolution.Classifier([
        (28, 28, 1),
        dict(form='conv2', size=32, filter_size=5), dict(form='pool2', pool_size=2),
        dict(form='conv2', size=64, filter_size=5), dict(form='pool2', pool_size=2),
        'flatten', 10])
    return common.theanets_callables(net, x, y)

def make_torch(args):
    import torch
    x, y = data()
    nn = torch.nn
    model = nn.Sequential(
        nn.Conv2d(1, 32, 5), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 5), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(64 * 4 * 4, 10))
    return common.torch_callables(model, model.parameters(),
                                  torch.from_numpy(x.transpose(0, 3, 1, 2).copy()),
                                  torch.from_numpy(y.astype('int64')))

if __name__ == '__main__':
    common.run(os.path.abspath(__file__), 'Conv2 classifier 28x28x1, batch 64, SGD+momentum',
               BATCH, make_theanets, make_torch)
