"""The documentation runs: every Python code block, and the Sphinx build without warnings.

Each ``.rst`` file of the docs (and README.rst) is run as one program: its
``.. code-block:: python`` (or ``.. code:: python``) blocks execute in order in
one namespace, in a temporary working directory. A block whose options include
``:class: no-run`` is skipped (only for code that cannot run in a test, such as
a download); ``:class: requires-matplotlib`` blocks run when matplotlib is
installed.
"""

import importlib.util
import logging
import os
import re
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DOCS = os.path.join(ROOT, 'docs')

DIRECTIVE = re.compile(r'^(\s*)\.\. code(?:-block)?::\s*python3?\s*$')
OPTION = re.compile(r'^\s*:(\w[\w-]*):\s*(.*)$')


def rst_files():
    """README.rst and every .rst file under docs/ (not the build output)."""
    files = [os.path.join(ROOT, 'README.rst')]
    for folder, dirs, names in os.walk(DOCS):
        dirs[:] = sorted(d for d in dirs if not d.startswith('_'))
        files.extend(os.path.join(folder, n) for n in sorted(names) if n.endswith('.rst'))
    return [f for f in files if os.path.exists(f)]


def code_blocks(path):
    """Return [(line number, options dict, source)] for the Python blocks of an rst file."""
    with open(path, encoding='utf-8') as handle:
        lines = handle.read().splitlines()
    blocks = []
    i = 0
    while i < len(lines):
        match = DIRECTIVE.match(lines[i])
        if not match:
            i += 1
            continue
        indent = len(match.group(1))
        start = i + 1
        i += 1
        options = {}
        while i < len(lines) and OPTION.match(lines[i]):
            key, value = OPTION.match(lines[i]).groups()
            options[key] = value.split()
            i += 1
        body = []
        while i < len(lines):
            line = lines[i]
            if line.strip() and len(line) - len(line.lstrip()) <= indent:
                break
            body.append(line)
            i += 1
        text = '\n'.join(body)
        blocks.append((start, options, _dedent(text)))
    return blocks


def _dedent(text):
    lines = text.splitlines()
    width = min((len(line) - len(line.lstrip()) for line in lines if line.strip()), default=0)
    return '\n'.join(line[width:] for line in lines).strip('\n') + '\n'


def _runnable(options):
    classes = options.get('class', [])
    if 'no-run' in classes:
        return False
    if 'requires-matplotlib' in classes and importlib.util.find_spec('matplotlib') is None:
        return False
    return True


def _relative(path):
    return os.path.relpath(path, ROOT)


@pytest.fixture
def clean_logging():
    """Undo what ``theanets.util.enable_default_logging`` in a doc block changes."""
    logger = logging.getLogger('theanets')
    handlers, level = list(logger.handlers), logger.level
    yield
    logger.handlers[:] = handlers
    logger.setLevel(level)


def test_blocks_are_found():
    counts = {_relative(p): len(code_blocks(p)) for p in rst_files()}
    assert counts.get('README.rst', 0) >= 1
    assert counts.get(os.path.join('docs', 'guide.rst'), 0) >= 10
    assert sum(counts.values()) > 50


def test_parser_reads_options_and_indentation():
    text = ('.. code-block:: python\n   :class: no-run\n\n    a = 1\n\n    b = 2\n'
            'after\n\n.. code:: python\n\n    c = 3\n')
    path = os.path.join(os.path.dirname(__file__), '_tmp_parser.rst')
    try:
        with open(path, 'w') as handle:
            handle.write(text)
        blocks = code_blocks(path)
    finally:
        os.unlink(path)
    assert [(o, s) for _, o, s in blocks] == [
        ({'class': ['no-run']}, 'a = 1\n\nb = 2\n'), ({}, 'c = 3\n')]


@pytest.mark.parametrize('path', rst_files(), ids=_relative)
def test_code_blocks_run(path, tmp_path, monkeypatch, clean_logging):
    blocks = code_blocks(path)
    if not any(_runnable(options) for _, options, _ in blocks):
        pytest.skip('no runnable Python blocks')
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv('MPLBACKEND', 'Agg')
    namespace = {'__name__': '__doc__'}
    for line, options, source in blocks:
        if not _runnable(options):
            continue
        code = compile(source, '{}:{}'.format(_relative(path), line), 'exec')
        try:
            exec(code, namespace)
        except Exception as err:
            pytest.fail('{} line {}: the code block raised {}: {}\n\n{}'.format(
                _relative(path), line, type(err).__name__, err, source))


def test_sphinx_build_has_no_warnings(tmp_path):
    pytest.importorskip('sphinx')
    result = subprocess.run(
        [sys.executable, '-m', 'sphinx', '-W', '--keep-going', '-q', '-b', 'html',
         '-d', str(tmp_path / 'doctrees'), DOCS, str(tmp_path / 'html')],
        cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, 'sphinx-build -W failed:\n' + result.stdout + result.stderr
    assert os.path.exists(tmp_path / 'html' / 'index.html')
