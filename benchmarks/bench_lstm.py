#!/usr/bin/env python
"""LSTM: 50 steps, batch 32, 64 one-hot inputs, 256 units, softmax over 64 classes per step.

Compares theanets.recurrent.Classifier with the same model in PyTorch (nn.LSTM +
Linear + cross-entropy, SGD), interleaved in one process.
Run: python benchmarks/bench_lstm.py [--layer gru|rnn] [--api]

With --api: ``net.train`` on 16 mini-batches (validation set: 2 mini-batches,
default monitors) against its compiled step and a PyTorch loop over the same
mini-batches.
"""

import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402

BATCH, STEPS, CLASSES, UNITS = 32, 50, 64, 256
TRAIN_BATCHES, VALID_BATCHES = 16, 2
LAYER = 'lstm'
for i, arg in enumerate(sys.argv):
    if arg == '--layer' and i + 1 < len(sys.argv):
        LAYER = sys.argv.pop(i + 1)
        sys.argv.pop(i)
        break


def data(n=BATCH, seed=0):
    rng = np.random.RandomState(seed)
    labels = rng.randint(CLASSES, size=(n, STEPS + 1))
    x = np.eye(CLASSES, dtype='float32')[labels[:, :-1]]
    return x, labels[:, 1:].astype('int32')


def theanets_model():
    import theanets
    layer = (UNITS, LAYER) if LAYER == 'lstm' else (UNITS, LAYER, 'tanh')
    return theanets.recurrent.Classifier([CLASSES, layer, CLASSES])


def make_theanets(args):
    x, y = data()
    return common.theanets_callables(theanets_model(), x, y)


def torch_model():
    """Return (forward, params) of the PyTorch model."""
    import torch
    cls = {'lstm': torch.nn.LSTM, 'gru': torch.nn.GRU, 'rnn': torch.nn.RNN}[LAYER]
    rnn = cls(CLASSES, UNITS, batch_first=True)
    out = torch.nn.Linear(UNITS, CLASSES)

    def forward(tx):
        return out(rnn(tx)[0]).reshape(-1, CLASSES)

    return forward, list(rnn.parameters()) + list(out.parameters())


def make_torch(args):
    import torch
    x, y = data()
    forward, params = torch_model()
    return common.torch_callables(forward, params, torch.from_numpy(x),
                                  torch.from_numpy(y.astype('int64')))


def make_api(args, with_torch):
    train = list(data(BATCH * TRAIN_BATCHES, seed=1))
    valid = list(data(BATCH * VALID_BATCHES, seed=2))
    result = common.theanets_api(theanets_model(), train, valid, BATCH)
    if with_torch:
        import torch
        forward, params = torch_model()
        batches = [[torch.from_numpy(x), torch.from_numpy(y.astype('int64'))]
                   for x, y in common.batches_of(train, BATCH)]
        result['torch loop'] = (common.torch_loop(forward, params, batches), BATCH)
    return result


if __name__ == '__main__':
    common.run(os.path.abspath(__file__),
               '{} {} steps, batch {}, {} units, {} classes, SGD+momentum (examples = sequences)'
               .format(LAYER.upper(), STEPS, BATCH, UNITS, CLASSES),
               BATCH, make_theanets, make_torch, extra_args=['--layer', LAYER],
               make_api=make_api)
