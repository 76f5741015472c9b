"""The example scripts, the notebook and the ``theanets-char-rnn`` command run.

Every ``examples/*.py`` script runs with ``--quick`` in a subprocess (two at a
time; they share PyTensor's compile cache) and must print its result line.
Scripts that are not in ``RESULTS`` below still have to run and print
something. ``--help`` is checked in-process with click's test runner.
"""

import concurrent.futures
import glob
import importlib.util
import os
import re
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXAMPLES = os.path.join(ROOT, 'examples')
NUMBER = r'-?(\d+\.\d+|nan)'

#: script -> regular expression its --quick output must match.
RESULTS = {
    'digits-classifier.py': r'held-out accuracy: {0} \(\d+ test digits'.format(NUMBER),
    'xor-classifier.py': r'rounded predictions: \[.*\] \(want \[0, 1, 1, 0\]\); mean squared '
                         r'error {0}'.format(NUMBER),
    'weighted-classification.py': r'rare-class recall: unweighted {0}, weighted {0}'.format(
        NUMBER),
    'mnist-classifier.py': r'test accuracy: {0} \(\d+ test images of digits\)'.format(NUMBER),
    'mnist-convolution.py': r'test accuracy: {0} \(\d+ test images of digits\)'.format(NUMBER),
    'mnist-autoencoder.py': r'reconstruction of \d+ test images: R\^2 {0}, variance '
                            r'explained {0}'.format(NUMBER),
    'mnist-deep-autoencoder.py': r'after fine-tuning: R\^2 {0}, variance explained {0}'.format(
        NUMBER),
    'mnist-deep-classifier.py': r'pretrained: test accuracy {0}'.format(NUMBER),
    'mnist-rica.py': r'reconstruction R\^2 of \d+ whitened test images: {0}'.format(NUMBER),
    'cifar-autoencoder.py': r'whitened R\^2 {0}, pixel variance explained {0}'.format(NUMBER),
    'recurrent-memory.py': r'mean absolute error {0}, R\^2 {0}'.format(NUMBER),
    'recurrent-sinusoid.py': r'best layer: \w+ \(mean squared error {0}'.format(NUMBER),
    'recurrent-text.py': r'best layer: \w+ \(next-character accuracy {0}\)'.format(NUMBER),
    'recurrent-addition.py': r'mean squared error on 1000 test sequences: {0} \(always '
                             r'answering 1: {0}\)'.format(NUMBER),
    'recurrent-autoencoder.py': r'reconstruction R\^2 of 200 test sequences: {0}'.format(NUMBER),
    'lstm-chime.py': r'frame accuracy: training utterances {0}, held-out utterances {0}'.format(
        NUMBER),
}

#: scripts that save figures (when matplotlib is installed) and their file names.
FIGURES = {
    'mnist-classifier.py': ['mnist-classifier-weights.png'],
    'mnist-convolution.py': ['mnist-convolution-filters.png'],
    'mnist-autoencoder.py': ['mnist-autoencoder-features.png',
                             'mnist-autoencoder-reconstructions.png'],
    'cifar-autoencoder.py': ['cifar-autoencoder.png'],
    'recurrent-memory.py': ['recurrent-memory.png'],
}

HAVE_MATPLOTLIB = importlib.util.find_spec('matplotlib') is not None


def scripts():
    return sorted(os.path.basename(p) for p in glob.glob(os.path.join(EXAMPLES, '*.py'))
                  if os.path.basename(p) != 'datasets.py')


def _run(script, workdir):
    env = dict(os.environ, MPLBACKEND='Agg', PYTHONWARNINGS='ignore::DeprecationWarning')
    return subprocess.run(
        [sys.executable, os.path.join(EXAMPLES, script), '--quick', '--no-progress'],
        cwd=workdir, env=env, capture_output=True, text=True, timeout=600)


@pytest.fixture(scope='module')
def quick_runs(tmp_path_factory):
    """Run every script with --quick, two at a time; return {script: (result, workdir)}."""
    dirs = {s: str(tmp_path_factory.mktemp(s.replace('.py', ''))) for s in scripts()}
    with concurrent.futures.ThreadPoolExecutor(max_workers=2) as pool:
        futures = {s: pool.submit(_run, s, d) for s, d in dirs.items()}
        return {s: (f.result(), dirs[s]) for s, f in futures.items()}


def test_every_documented_result_has_a_script():
    missing = sorted(set(RESULTS) - set(scripts()))
    assert not missing, 'RESULTS names scripts that do not exist: {}'.format(missing)


@pytest.mark.parametrize('script', scripts())
def test_quick_run_prints_result(script, quick_runs):
    result, workdir = quick_runs[script]
    output = result.stdout + result.stderr
    assert result.returncode == 0, '{} --quick failed:\n{}'.format(script, output[-4000:])
    pattern = RESULTS.get(script, r'\S')
    assert re.search(pattern, result.stdout), '{} printed no line matching {!r}:\n{}'.format(
        script, pattern, result.stdout[-3000:])
    if HAVE_MATPLOTLIB:
        for name in FIGURES.get(script, []):
            assert os.path.exists(os.path.join(workdir, name)), '{} saved no {}'.format(
                script, name)


def _load_script(script):
    """Import an example script as a module (its main() does not run)."""
    if EXAMPLES not in sys.path:
        sys.path.insert(0, EXAMPLES)
    name = 'example_' + script[:-3].replace('-', '_')
    spec = importlib.util.spec_from_file_location(name, os.path.join(EXAMPLES, script))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize('script', scripts())
def test_help(script):
    click_testing = pytest.importorskip('click.testing')
    module = _load_script(script)
    result = click_testing.CliRunner().invoke(module.main, ['--help'])
    assert result.exit_code == 0, result.output
    assert '--quick' in result.output
    assert module.__doc__ and len(module.__doc__.strip()) > 40


def test_datasets_fail_clearly_when_offline(monkeypatch, tmp_path):
    datasets = _load_script('datasets.py')
    monkeypatch.setenv('THEANETS_DATA', str(tmp_path))

    def offline(*args, **kwargs):
        raise datasets.urllib.error.URLError('no network')

    monkeypatch.setattr(datasets.urllib.request, 'urlopen', offline)
    with pytest.raises(datasets.DataUnavailable, match='offline'):
        datasets.mnist()
    import click
    with pytest.raises(click.ClickException, match='could not download CIFAR-10'):
        datasets.load('cifar')
    assert os.listdir(str(tmp_path)) == []


def test_datasets_offline_defaults():
    datasets = _load_script('datasets.py')
    digits = datasets.digits()
    assert digits.train[0].shape == (1197, 64) and digits.shape == (8, 8)
    images = datasets.generated_images(count=60)
    assert images.train[0].shape[1] == 12 * 12 * 3
    assert 0 <= images.train[0].min() and images.train[0].max() <= 1
    whitener = datasets.Whitener(digits.train[0], retain=0.9)
    z = whitener.encode(digits.test[0])
    assert z.shape == (300, whitener.k)
    back = whitener.decode(z)
    assert datasets.variance_explained(digits.test[0], back) > 0.8


# ----- the theanets-char-rnn command ------------------------------------------------

TINY = ['--time', '8', '--layers', '4', '--layer-type', 'gru', '--algo', 'adam',
        '--train-batches', '2', '--valid-batches', '1', '--batch-size', '4',
        '--max-updates', '2', '--validate-every', '1', '--no-progress', '--quiet']


def test_char_rnn_help():
    click_testing = pytest.importorskip('click.testing')
    from theanets.scripts import char_rnn
    result = click_testing.CliRunner().invoke(char_rnn.main, ['--help'])
    assert result.exit_code == 0
    for flag in ('--data', '--time', '--layers', '--layer-type', '--algo', '--save-progress',
                 '--hidden-dropout', '--rms-halflife', '--load', '--sample-length'):
        assert flag in result.output


def test_char_rnn_trains_saves_and_samples(tmp_path):
    click_testing = pytest.importorskip('click.testing')
    from theanets.scripts import char_rnn
    corpus = tmp_path / 'corpus.txt'
    corpus.write_text('the quick brown fox jumps over the lazy dog. ' * 20)
    model = str(tmp_path / 'model.pkl.gz')
    runner = click_testing.CliRunner()
    result = runner.invoke(char_rnn.main, ['--data', str(corpus), '--output', model,
                                           '--sample-length', '12', '--seed-text', 'the ']
                           + TINY + ['--hidden-l2', '0.01', '--input-dropout', '0.1'])
    assert result.exit_code == 0, result.output + repr(result.exception)
    assert os.path.exists(model)
    samples = [line for line in result.output.splitlines() if line.startswith('the ')]
    assert len(samples) == 1 and len(samples[0]) == 16
    result = runner.invoke(char_rnn.main, ['--load', model, '--streams', '2',
                                           '--sample-length', '5', '--seed-text', 'a', '-q'])
    assert result.exit_code == 0, result.output + repr(result.exception)
    assert result.output.count('--- sample:') == 2


def test_char_rnn_bundled_text_and_bad_options(tmp_path):
    click_testing = pytest.importorskip('click.testing')
    from theanets.scripts import char_rnn
    runner = click_testing.CliRunner()
    result = runner.invoke(char_rnn.main, ['--output', '', '--sample-length', '0'] + TINY)
    assert result.exit_code == 0, result.output + repr(result.exception)
    assert 'bundled story' in result.output
    result = runner.invoke(char_rnn.main, ['--algo', 'sgd', '--rms-halflife', '5',
                                           '--output', ''] + TINY[:-4])
    assert result.exit_code != 0 and 'rms-halflife' in result.output
    short = tmp_path / 'short.txt'
    short.write_text('tiny text')
    result = runner.invoke(char_rnn.main, ['--data', str(short), '--output', ''])
    assert result.exit_code != 0 and 'too short' in result.output


def test_char_rnn_console_script_installed():
    from importlib import metadata
    try:
        points = metadata.entry_points(group='console_scripts')
    except TypeError:  # pragma: no cover - Python < 3.10
        points = metadata.entry_points().get('console_scripts', [])
    names = {p.name: p.value for p in points}
    if 'theanets-char-rnn' not in names:
        pytest.skip('theanets is not installed with its entry points')
    assert names['theanets-char-rnn'] == 'theanets.scripts.char_rnn:main'


# ----- the notebook -------------------------------------------------------------------

def test_notebook_runs(tmp_path):
    nbformat = pytest.importorskip('nbformat')
    nbclient = pytest.importorskip('nbclient')
    pytest.importorskip('ipykernel')
    pytest.importorskip('matplotlib')
    notebook = nbformat.read(os.path.join(EXAMPLES, 'notebook.ipynb'), as_version=4)
    client = nbclient.NotebookClient(notebook, timeout=600, kernel_name='python3',
                                     resources={'metadata': {'path': str(tmp_path)}})
    client.execute()
    text = ''.join(o.get('text', '') for c in notebook.cells if c.cell_type == 'code'
                   for o in c.outputs if o.output_type == 'stream')
    assert re.search(r'passes; test accuracy: \d\.\d{3}', text), text[-2000:]
    # progress=True in a notebook: one status line per training run, updated in
    # place (the saved output keeps the last one), and no text progress bars
    shown = [o['data'].get('text/plain', '') for c in notebook.cells if c.cell_type == 'code'
             for o in c.outputs if o.output_type in ('display_data', 'update_display_data')]
    bars = [t for t in [text] + shown if '%|' in t]
    assert not bars, bars
    status = [t for t in shown if t.startswith('Adam ')]
    assert len(status) == 1 and re.match(r'Adam \d+ - [\d.]+ s - loss \d\.\d{4} .*acc .* - valid '
                                         r'loss \d\.\d{4} ', status[0]), shown
    images = [o for c in notebook.cells if c.cell_type == 'code' for o in c.outputs
              if 'image/png' in o.get('data', {})]
    assert len(images) == 2
