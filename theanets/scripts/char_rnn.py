"""``theanets-char-rnn``: train a character-level recurrent model on text files, then write.

The model reads text one character at a time and predicts the next one. It
is a :class:`theanets.recurrent.Classifier` whose input and output both have
one unit per character of the alphabet (plus one for "unknown"), with one or
more recurrent layers in between. After training, the model is saved and a
sample of text is drawn from it with
:meth:`~theanets.recurrent.Classifier.predict_sequence`.

Examples
--------
Train on your own files, then sample 500 characters::

    theanets-char-rnn -d corpus.txt -l 128 -L gru --sample-length 500 -o corpus-gru.pkl.gz

Sample again from the saved model without training::

    theanets-char-rnn --load corpus-gru.pkl.gz --seed-text "The " --sample-length 300

With no ``--data`` the short story shipped with theanets is used.
"""

import logging
import os

import click

import theanets

log = logging.getLogger(__name__)

BUNDLED = os.path.join(os.path.dirname(theanets.__file__), 'data', 'lighthouse.txt')
UNKNOWN = '\0'


def read_texts(paths):
    """Return the concatenated contents of ``paths`` (the bundled story if empty)."""
    if not paths:
        click.echo('no --data given; training on the bundled story {}'.format(BUNDLED))
        paths = [BUNDLED]
    parts = []
    for path in paths:
        with open(path, encoding='utf-8', errors='replace') as handle:
            parts.append(handle.read())
    return '\n'.join(parts)


def make_text(raw, alphabet, exclude, min_count):
    """Build a :class:`theanets.recurrent.Text`, applying the alphabet options."""
    text = theanets.recurrent.Text(raw, alpha=alphabet or None, min_count=min_count,
                                   unknown=UNKNOWN)
    if exclude:
        alpha = ''.join(c for c in text.alpha if c not in exclude)
        text = theanets.recurrent.Text(raw, alpha=alpha, unknown=UNKNOWN)
    if not text.alpha:
        raise click.UsageError('the alphabet is empty; lower --min-count or give --alphabet')
    return text


def build_model(alphabet, layers, layer_type, activation, seed):
    width = 1 + len(alphabet)
    specs = [width] + [(size, layer_type, activation) for size in layers] + [width]
    net = theanets.recurrent.Classifier(specs, rng=seed)
    # kept with the model, so that --load can decode its output.
    net.alphabet = alphabet
    return net


def training_kwargs(options):
    """Return the train() keywords for the given options, dropping unset ones."""
    algo = options['algo']
    accepted = theanets.optimizers.hyperparameter_names(algo)
    kwargs = dict(
        algo=algo, patience=options['patience'], validate_every=options['validate_every'],
        batch_size=options['batch_size'], train_batches=options['train_batches'],
        valid_batches=options['valid_batches'], min_improvement=options['min_improvement'],
        max_gradient_norm=options['max_gradient_norm'], learning_rate=options['learning_rate'],
        momentum=options['momentum'], nesterov=options['nesterov'],
        max_updates=options['max_updates'], progress=options['progress'],
        save_progress=options['save_progress'], save_every=options['save_every'])
    for name in ('rms_halflife', 'rms_regularizer'):
        if options[name] is not None:
            if name not in accepted:
                raise click.UsageError('--{} applies to rmsprop-like algorithms, not {!r}'
                                       .format(name.replace('_', '-'), algo))
            kwargs[name] = options[name]
    for name in ('input_noise', 'input_dropout', 'hidden_noise', 'hidden_dropout',
                 'hidden_l1', 'hidden_l2', 'weight_l1', 'weight_l2'):
        if options[name]:
            kwargs[name] = options[name]
    return {k: v for k, v in kwargs.items() if v is not None}


def sample(net, alphabet, seed_text, length, streams, seed):
    """Return ``streams`` strings: the seed text followed by ``length`` drawn characters."""
    text = theanets.recurrent.Text('', alpha=alphabet, unknown=UNKNOWN)
    start = text.encode(seed_text) or [0]
    drawn = list(net.predict_sequence(start, length, streams=streams, rng=seed))
    if streams == 1:
        drawn = [[d] for d in drawn]
    return [(seed_text + text.decode(column)).replace(UNKNOWN, '\ufffd')
            for column in zip(*drawn)]


@click.command(context_settings=dict(help_option_names=['-h', '--help']))
@click.option('-d', '--data', multiple=True, type=click.Path(exists=True, dir_okay=False),
              help='Text file to train on (repeat for several; default: a bundled story).')
@click.option('-t', '--time', 'steps', default=100, show_default=True,
              help='Characters in each training sequence.')
@click.option('-a', '--alphabet', default=None,
              help='Characters to model (default: those occurring --min-count times).')
@click.option('-A', '--exclude-alphabet', default='', help='Characters to leave out.')
@click.option('--min-count', default=2, show_default=True,
              help='Minimum count of a character to enter the default alphabet.')
@click.option('--valid-fraction', default=0.1, show_default=True,
              help='Fraction at the end of the text held out for validation.')
@click.option('-l', '--layers', multiple=True, type=int, default=(100, ), show_default=True,
              help='Size of a recurrent layer (repeat for a stack).')
@click.option('-L', '--layer-type', default='lstm', show_default=True,
              help='Recurrent layer form: lstm, gru, rnn, mrnn, scrn, clockwork...')
@click.option('-g', '--activation', default='tanh', show_default=True,
              help='Activation of the recurrent layers (the LSTM always uses tanh).')
@click.option('-O', '--algo', '--algorithm', 'algo', default='rmsprop', show_default=True,
              help='Optimizer: sgd, nag, rmsprop, adam, adadelta, adagrad, rprop, esgd.')
@click.option('-p', '--patience', default=4, show_default=True)
@click.option('-v', '--validate-every', default=10, show_default=True)
@click.option('-b', '--batch-size', default=64, show_default=True)
@click.option('-B', '--train-batches', default=None, type=int,
              help='Mini-batches per training epoch (default 100).')
@click.option('-V', '--valid-batches', default=None, type=int,
              help='Mini-batches per validation (default 100).')
@click.option('-i', '--min-improvement', default=0.0, show_default=True)
@click.option('-x', '--max-gradient-norm', default=1.0, show_default=True)
@click.option('-r', '--learning-rate', default=1e-3, show_default=True)
@click.option('-m', '--momentum', default=0.0, show_default=True)
@click.option('-n', '--nesterov', is_flag=True, help='Use Nesterov momentum.')
@click.option('--max-updates', default=None, type=int, help='Maximum training epochs.')
@click.option('-s', '--save-progress', default=None,
              help='Save the model here during training ("{}" becomes a timestamp).')
@click.option('-S', '--save-every', default=0, show_default=True, type=float,
              help='Save every this many epochs (integer) or minutes (fraction), 0: each.')
@click.option('--input-noise', default=0.0, help='Std of Gaussian noise on the inputs.')
@click.option('--input-dropout', '--input-dropouts', default=0.0,
              help='Dropout probability of the inputs.')
@click.option('--hidden-noise', default=0.0, help='Std of Gaussian noise on hidden layers.')
@click.option('--hidden-dropout', '--hidden-dropouts', default=0.0,
              help='Dropout probability of hidden layers.')
@click.option('--hidden-l1', default=0.0, help='L1 penalty on hidden activations.')
@click.option('--hidden-l2', default=0.0, help='L2 penalty on hidden activations.')
@click.option('--weight-l1', default=0.0, help='L1 penalty on weights.')
@click.option('--weight-l2', default=0.0, help='L2 penalty on weights.')
@click.option('--rms-halflife', default=None, type=float,
              help='RMSProp-family half-life of the gradient averages (default 14).')
@click.option('--rms-regularizer', default=None, type=float,
              help='RMSProp-family regularizer of the denominator (default 1e-8).')
@click.option('-o', '--output', default='char-rnn.pkl.gz', show_default=True,
              help='Where to save the trained model ("" not to save).')
@click.option('--load', 'load_path', default=None, type=click.Path(exists=True, dir_okay=False),
              help='Sample from this saved model instead of training one.')
@click.option('--seed-text', default='The ', show_default=True,
              help='Text that starts each sample.')
@click.option('--sample-length', default=300, show_default=True,
              help='Characters to generate after training (0: none).')
@click.option('--streams', default=1, show_default=True, help='Number of samples.')
@click.option('--seed', default=13, show_default=True, help='Random seed.')
@click.option('--progress/--no-progress', default=True, help='Show progress bars.')
@click.option('-q', '--quiet', is_flag=True, help='Log warnings only.')
def main(**options):
    """Train a character-level recurrent model on text files and sample text from it."""
    theanets.util.enable_default_logging(logging.WARNING if options['quiet'] else logging.INFO)
    if options['load_path']:
        net = theanets.recurrent.Classifier.load(options['load_path'])
        alphabet = options['alphabet'] or getattr(net, 'alphabet', None)
        if alphabet is None:
            raise click.UsageError('the saved model has no alphabet; give it with --alphabet')
    else:
        text = make_text(read_texts(options['data']), options['alphabet'],
                         options['exclude_alphabet'], options['min_count'])
        alphabet = text.alpha
        click.echo('{} characters, alphabet of {}: {!r}'.format(
            len(text.text), len(alphabet), alphabet))
        net = train(text, options)
        if options['output']:
            net.save(options['output'])
            click.echo('saved model to {}'.format(options['output']))
    if options['sample_length'] > 0:
        for line in sample(net, alphabet, options['seed_text'], options['sample_length'],
                           options['streams'], options['seed']):
            click.echo('--- sample:')
            click.echo(line)


def train(text, options):
    """Build and train the model on ``text``; return it."""
    steps, batch = options['steps'], options['batch_size']
    cut = int(len(text.text) * (1 - options['valid_fraction']))
    if cut < steps + 1 or len(text.text) - cut < steps + 1:
        raise click.UsageError(
            'the text ({} characters) is too short for --time {} with --valid-fraction {}; '
            'use shorter sequences or more text'.format(
                len(text.text), steps, options['valid_fraction']))
    parts = [theanets.recurrent.Text(t, alpha=text.alpha, unknown=UNKNOWN)
             for t in (text.text[:cut], text.text[cut:])]
    net = build_model(text.alpha, options['layers'], options['layer_type'],
                      options['activation'], options['seed'])
    kwargs = training_kwargs(options)
    net.train(parts[0].classifier_batches(steps, batch, rng=options['seed']),
              parts[1].classifier_batches(steps, batch, rng=options['seed'] + 1), **kwargs)
    if net.history:
        click.echo('final validation: ' + ' '.join(
            '{}={:.4f}'.format(k, v) for k, v in net.history[-1][1].items()))
    return net


if __name__ == '__main__':  # pragma: no cover
    main()
