#!/usr/bin/env python
"""Frame-by-frame labelling of variable-length sequences with bidirectional LSTMs.

The original example trained on the CHiME speech corpus: acoustic feature
frames, each labelled with the phone being spoken. This version generates
data of the same shape so that it runs anywhere: each utterance is a chain
of "phones" (``--classes`` labels, each lasting a random number of frames),
and each frame is a noisy, smeared feature vector of its phone. Frames
near phone boundaries are ambiguous on their own, so the network profits
from context on both sides, which bidirectional layers provide.

Utterances have different lengths. A batch pads them to the longest one
and gives the padding weight 0 (``weighted=True``), so the padded frames
count neither in the loss nor in the accuracy. Batches are drawn by a
callable, so every training batch holds new utterances.

The script prints the frame accuracy on training and held-out utterances
and compares it with the accuracy of the best frame-by-frame guess.

    python examples/lstm-chime.py --layers 3 --hidden 32
"""

import click
import numpy as np

import theanets


class Utterances(object):
    """A generator of labelled feature sequences.

    Each phone class has a random mean feature vector; a frame is its phone's
    mean, blended with the neighbouring frames (so that transitions are
    gradual), plus Gaussian noise.
    """

    def __init__(self, classes, features, noise, seed):
        self.classes = classes
        self.features = features
        self.noise = noise
        self.means = np.random.RandomState(0).randn(classes, features)
        self.rng = np.random.RandomState(seed)

    def utterance(self, min_len, max_len):
        length = self.rng.randint(min_len, max_len + 1)
        labels = []
        while len(labels) < length:
            labels.extend([self.rng.randint(self.classes)] * self.rng.randint(3, 9))
        labels = np.array(labels[:length], 'int32')
        frames = self.means[labels]
        smooth = frames.copy()
        smooth[1:] += 0.5 * frames[:-1]
        smooth[:-1] += 0.5 * frames[1:]
        smooth /= 2
        return smooth + self.noise * self.rng.randn(*frames.shape), labels

    def batches(self, batch_size, min_len=20, max_len=60):
        """Return a callable giving [frames (B, T, F), labels (B, T), weights (B, T)]."""
        def batch():
            items = [self.utterance(min_len, max_len) for _ in range(batch_size)]
            longest = max(len(labels) for _, labels in items)
            x = np.zeros((batch_size, longest, self.features), 'float32')
            y = np.zeros((batch_size, longest), 'int32')
            w = np.zeros((batch_size, longest), 'float32')
            for i, (frames, labels) in enumerate(items):
                x[i, :len(labels)] = frames
                y[i, :len(labels)] = labels
                w[i, :len(labels)] = 1
            return [x, y, w]
        return batch

    def frame_guess_accuracy(self, x, y, w):
        """Accuracy of labelling each frame by its nearest phone mean (no context)."""
        dist = ((x[..., None, :] - self.means) ** 2).sum(axis=-1)
        guess = dist.argmin(axis=-1)
        return float((w * (guess == y)).sum() / w.sum())


@click.command()
@click.option('--classes', default=10, show_default=True, help='Number of phone labels.')
@click.option('--features', default=13, show_default=True, help='Features per frame.')
@click.option('--noise', default=1.5, show_default=True, help='Std of the frame noise.')
@click.option('--layers', default=3, show_default=True,
              help='Number of bidirectional LSTM layers.')
@click.option('--hidden', default=32, show_default=True,
              help='Size of each bidirectional layer (half in each direction).')
@click.option('--algo', default='adam', show_default=True)
@click.option('--learning-rate', default=3e-3, show_default=True)
@click.option('--max-updates', default=30, show_default=True,
              help='Maximum epochs of 20 batches.')
@click.option('--seed', default=13, show_default=True)
@click.option('--progress/--no-progress', default=True, help='Show a progress bar.')
@click.option('--quick', is_flag=True, help='Tiny run for smoke tests.')
def main(classes, features, noise, layers, hidden, algo, learning_rate, max_updates, seed,
         progress, quick):
    theanets.util.enable_default_logging()
    if quick:
        layers, hidden, max_updates = 1, 4, 2
    data = Utterances(classes, features, noise, seed)
    spec = [features]
    spec += [dict(form='bidirectional', worker='lstm', size=hidden) for _ in range(layers)]
    spec += [classes]
    net = theanets.recurrent.Classifier(spec, weighted=True, rng=seed)
    net.train(data.batches(16), data.batches(16), algo=algo, learning_rate=learning_rate,
              max_gradient_norm=1, train_batches=20, valid_batches=5, patience=4,
              validate_every=2, max_updates=max_updates, progress=progress)

    train = Utterances(classes, features, noise, seed).batches(64)()
    test = Utterances(classes, features, noise, seed + 1).batches(64)()
    print('{} parameters in {} bidirectional LSTM layers'.format(net.num_params, layers))
    print('nearest-mean guess, frame by frame: accuracy {:.3f}'.format(
        data.frame_guess_accuracy(*test)))
    print('frame accuracy: training utterances {:.3f}, held-out utterances {:.3f}'.format(
        net.score(*train), net.score(*test)))


if __name__ == '__main__':
    main()
