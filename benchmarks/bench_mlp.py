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
    net = theanets.Classifier(list(SIZES))
    steps = net.itertrain(lambda: [x, y], valid=[x, y], algo='sgd', learning_rate=1e-3,
                          momentum=0.9, iteration_size=1, valid_batches=1,
                          validate_every=10 ** 9, patience=10 ** 9, batch_size=BATCH)
    next(steps)  # compiles the training and evaluation functions
    net.predict(x)  # compiles the prediction function
    return (lambda: next(steps)), (lambda: net.predict(x))


def make_torch(args):
    import torch
    x, y = data()
    tx, ty = torch.from_numpy(x), torch.from_numpy(y.astype('int64'))
    layers = []
    for a, b in zip(SIZES[:-2], SIZES[1:-1]):
        layers += [torch.nn.Linear(a, b), torch.nn.ReLU()]
    model = torch.nn.Sequential(*layers, torch.nn.Linear(SIZES[-2], SIZES[-1]))
    opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
    loss_fn = torch.nn.CrossEntropyLoss()

    def step():
        opt.zero_grad()
        loss_fn(model(tx), ty).backward()
        opt.step()

    def predict():
        with torch.no_grad():
            return torch.softmax(model(tx), dim=-1).argmax(dim=-1)

    return step, predict


if __name__ == '__main__':
    common.run(os.path.abspath(__file__), 'MLP 784-512-512-10, batch 128, SGD+momentum',
               BATCH, make_theanets, make_torch)
