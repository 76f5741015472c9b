"""Concurrent use: processes sharing a compile cache, threads sharing a network, files.

People run several trainings at once (hyperparameter searches with joblib or
multiprocessing, several notebooks). They share PyTensor's compile directory,
may call ``predict`` on one network from several threads, and may load a model
file while another process saves it.
"""

import os
import subprocess
import sys
import textwrap
import threading
import types

import numpy as np
import pytensor
import pytest

import theanets

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Trains a small MLP and a small LSTM and saves their parameters to argv[1].
WORKER = textwrap.dedent('''
    import sys
    import numpy as np
    import theanets

    rng = np.random.RandomState(3)
    x = rng.randn(40, 4).astype('f')
    y = rng.randn(40, 2).astype('f')
    xs = rng.randn(6, 5, 3).astype('f')
    ys = rng.randn(6, 5, 2).astype('f')
    mlp = theanets.Regressor([4, (8, 'tanh'), 2], rng=5)
    mlp.train([x, y], algo='adam', max_updates=6, batch_size=10, patience=100)
    lstm = theanets.recurrent.Regressor([3, (5, 'lstm'), 2], rng=5)
    lstm.train([xs, ys], algo='rmsprop', max_updates=4, batch_size=3, patience=100)
    values = {p.name: p.get_value() for p in mlp.params + lstm.params}
    np.savez(sys.argv[1], **values)
''')


def _env(compiledir=None):
    env = dict(os.environ)
    if compiledir is not None:
        flags = [f for f in env.get('PYTENSOR_FLAGS', '').split(',')
                 if f and not f.startswith(('base_compiledir', 'compiledir'))]
        env['PYTENSOR_FLAGS'] = ','.join(flags + ['base_compiledir=' + str(compiledir)])
    env['PYTHONPATH'] = os.pathsep.join([ROOT] + [p for p in [env.get('PYTHONPATH')] if p])
    return env


def _start(script, out, compiledir):
    return subprocess.Popen([sys.executable, '-c', script, str(out)], env=_env(compiledir),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def _finish(proc, timeout=900):
    output, _ = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, output.decode(errors='replace')[-3000:]


def _run_on_two_threads(script):
    """Run ``script`` in a fresh process whose C ops may use two threads; it must exit 0."""
    env = dict(_env(), OMP_NUM_THREADS='2', OPENBLAS_NUM_THREADS='2')
    _finish(subprocess.Popen([sys.executable, '-c', script], env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT))


@pytest.mark.slow
def test_four_processes_on_an_empty_compile_cache_train_like_a_lone_run(tmp_path):
    shared = tmp_path / 'shared-cache'
    procs = [_start(WORKER, tmp_path / 'run{}.npz'.format(i), shared) for i in range(4)]
    for proc in procs:
        _finish(proc)
    _finish(_start(WORKER, tmp_path / 'lone.npz', tmp_path / 'lone-cache'))
    lone = np.load(tmp_path / 'lone.npz')
    for i in range(4):
        run = np.load(tmp_path / 'run{}.npz'.format(i))
        assert sorted(run.files) == sorted(lone.files)
        for name in lone.files:
            np.testing.assert_allclose(run[name], lone[name], rtol=1e-6, atol=1e-7,
                                       err_msg='process {} parameter {}'.format(i, name))


def test_threads_calling_predict_on_one_network_get_single_threaded_results():
    rng = np.random.RandomState(4)
    net = theanets.Classifier([5, (16, 'relu'), 3], rng=2)
    net.train([rng.randn(30, 5).astype('f'), rng.randint(3, size=30).astype('i')],
              algo='sgd', max_updates=2, batch_size=10)
    inputs = [rng.randn(50 + 7 * i, 5).astype('f') for i in range(4)]
    expected = [net.predict(x) for x in inputs]
    results = {i: [] for i in range(4)}
    errors = []
    barrier = threading.Barrier(4)

    def work(i):
        try:
            barrier.wait()
            for _ in range(25):
                results[i].append(net.predict(inputs[i]))
        except Exception as err:  # reported below with the thread's number
            errors.append((i, err))

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, errors
    for i in range(4):
        assert len(results[i]) == 25
        for got in results[i]:
            np.testing.assert_array_equal(got, expected[i])


SAVER = textwrap.dedent('''
    import sys
    import theanets

    nets = [theanets.Regressor([3, (40, 'tanh'), 2], rng=seed) for seed in (1, 2)]
    for i in range(int(sys.argv[2])):
        nets[i % 2].save(sys.argv[1])
''')


def test_loading_while_another_process_saves_never_sees_a_partial_file(tmp_path):
    path = tmp_path / 'model.pkl'
    nets = [theanets.Regressor([3, (40, 'tanh'), 2], rng=seed) for seed in (1, 2)]
    nets[0].save(path)
    known = [n.find('hid1', 'w').get_value() for n in nets]
    saver = subprocess.Popen([sys.executable, '-c', SAVER, str(path), '200'],
                             env=_env(tmp_path / 'cache'), stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT)
    loads = 0
    while saver.poll() is None or loads < 20:
        net = theanets.Regressor.load(path)
        w = net.find('hid1', 'w').get_value()
        assert any(np.array_equal(w, k) for k in known)
        loads += 1
    _finish(saver)
    assert loads >= 20


# Runs a threaded C op (a convolution), forks, and in the child runs it again and an op
# whose module the parent never loaded (a pooling gradient); the child exits 0 if both
# match the parent's values. libgomp's threads do not survive fork(): without
# c/parallel.c's fork handler the child waits forever for them (here: until its alarm).
FORKED = textwrap.dedent('''
    import os, signal, sys
    import numpy as np
    import pytensor, pytensor.tensor as pt
    from theanets import backend
    from theanets.ops import conv

    x, w = pt.tensor4('x'), pt.tensor4('w')
    rng = np.random.RandomState(4)
    xv, wv = rng.rand(8, 20, 20, 3).astype('f'), rng.rand(6, 3, 3, 3).astype('f')
    forward = backend.function([x, w], conv.ConvOp()(x, w))
    pooled = conv.pool2d(x, (2, 2), (2, 2), 'max')
    out = conv.np_pool2d(xv, (2, 2), (2, 2), 'max')
    expected = forward(xv, wv), conv.np_pool2d_scatter(xv, out, np.ones_like(out), (2, 2),
                                                       (2, 2), 'max')
    pid = os.fork()
    if pid == 0:
        signal.alarm(60)
        backward = backend.function([x], pytensor.grad(pooled.sum(), x))
        same = [np.allclose(forward(xv, wv), expected[0]),
                np.allclose(backward(xv), expected[1])]
        os._exit(0 if all(same) else 1)
    status = os.waitpid(pid, 0)[1]
    sys.exit('child: ' + str(status) if status else 0)
''')


def test_a_forked_child_runs_the_threaded_ops():
    _run_on_two_threads(FORKED)


# The same ops compiled without OpenMP (as on macOS or with clang): threads started per
# call (c/parallel.c's fallback). Exits 0 if the flags lack -fopenmp, a warning says so, and
# the values match.
NO_OPENMP = textwrap.dedent('''
    import logging.handlers, sys, types
    import numpy as np
    import pytensor, pytensor.tensor as pt
    from theanets import backend
    from theanets.ops import base, conv, recurrent

    base.sys = types.SimpleNamespace(platform='darwin')   # c_compile_args reads sys.platform
    said = logging.handlers.BufferingHandler(100)
    base.log.addHandler(said)
    assert '-fopenmp' not in conv.ConvOp().c_compile_args(), conv.ConvOp().c_compile_args()
    assert any('no OpenMP' in r.getMessage() for r in said.buffer), said.buffer
    rng = np.random.RandomState(5)
    x, w = pt.tensor4('x', dtype='float64'), pt.tensor4('w', dtype='float64')
    s = pt.tensor3('s', dtype='float64')
    xv, wv = rng.rand(8, 20, 20, 3), rng.rand(6, 3, 3, 3)
    y = conv.conv2d(x, w)
    sv, hh = rng.randn(5, 16, 4), pt.constant(rng.randn(4, 4) * 0.3)
    h = recurrent.rnn(s, hh, pt.zeros((16, 4), 'float64'), 'tanh')[0]
    f = backend.function([x, w, s], [y, pytensor.grad(y.sum(), w), h])
    out, dw, hv = f(xv, wv, sv)
    np.testing.assert_allclose(out, conv.np_conv2d(xv, wv, (1, 1), 'valid'), rtol=1e-10)
    np.testing.assert_allclose(dw, conv.np_conv2d_grad_weights(
        xv, wv, np.ones_like(out), (1, 1), 'valid'), rtol=1e-10)
    ref = np.zeros((16, 4))
    for t in range(5):
        ref = np.tanh(sv[t] + ref @ hh.data)
        np.testing.assert_allclose(hv[t], ref, rtol=1e-10)
''')


def test_the_ops_without_openmp_start_threads_per_call():
    _run_on_two_threads(NO_OPENMP)


class _Compiler(object):
    """``pytensor.config`` with another compiler version (PyTensor's cannot change once read)."""

    def __init__(self, version):
        self.gcc_version_str = version

    def __getattr__(self, name):
        return getattr(pytensor.config, name)


@pytest.mark.parametrize('version', ['8', 'g++ (GCC) 8.5.0 20210514'])  # PyTensor 3.0 / 3.3
def test_gcc_before_9_compiles_the_ops_without_openmp_and_says_so(monkeypatch, caplog, version):
    from theanets.ops import base, conv
    monkeypatch.setattr(base, '_WARNED', set())
    monkeypatch.setattr(base, 'pytensor', types.SimpleNamespace(config=_Compiler(version)))
    assert '-fopenmp' not in conv.ConvOp().c_compile_args()
    assert 'no OpenMP (GCC 9+ on Linux)' in caplog.text
    base.pytensor.config.gcc_version_str = 'g++ (Debian 12.2.0-14) 12.2.0'
    assert '-fopenmp' in conv.ConvOp().c_compile_args() or not sys.platform.startswith('linux')
