#!/usr/bin/env python
"""LSTM: 50 steps, batch 32, 64 one-hot inputs, 256 units, softmax over 64 classes per step.

Compares theanets.recurrent.Classifier with the same model in PyTorch (nn.LSTM +
Linear + cross-entropy, SGD), interleaved in one process.
Run: python benchmarks/bench_lstm.py [--layer gru|rnn]
"""

import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402

BATCH, STEPS, CLASSES, UNITS = 32, 50, 64, 256
LAYER = 'lstm'
for i, arg in enumerate(sys.argv):
    if arg == '--layer' and i + 1 < len(sys.argv):
        LAYER = sys.argv.pop(i + 1)
        sys.argv.pop(i)
        break


def data(rng=np.random.RandomState(0)):
    labels = rng.randint(CLASSES, size=(BATCH, STEPS + 1))
    x = np.eye(CLASSES, dtype='float32')[labels[:, :-1]]
    return x, labels[:, 1:].astype('int32')


def make_theanets(args):
    import theanets
    x, y = data()
    layer = (UNITS, LAYER) if LAYER == 'lstm' else (UNITS, LAYER, 'tanh')
    net = theanets.recurrent.Classifier([CLASSES, layer, CLASSES])
    return common.theanets_callables(net, x, y)

def make_torch(args):
    import torch
    x, y = data()
    cls = {'lstm': torch.nn.LSTM, 'gru': torch.nn.GRU, 'rnn': torch.nn.RNN}[LAYER]
    rnn = cls(CLASSES, UNITS, batch_first=True)
    out = torch.nn.Linear(UNITS, CLASSES)

    def forward(tx):
        return out(rnn(tx)[0]).reshape(-1, CLASSES)

    return common.torch_callables(forward, list(rnn.parameters()) + list(out.parameters()),
                                  torch.from_numpy(x), torch.from_numpy(y.astype('int64')))

if __name__ == '__main__':
    common.run(os.path.abspath(__file__),
               '{} {} steps, batch {}, {} units, {} classes, SGD+momentum (examples = sequences)'
               .format(LAYER.upper(), STEPS, BATCH, UNITS, CLASSES),
               BATCH, make_theanets, make_torch, extra_args=['--layer', LAYER])
