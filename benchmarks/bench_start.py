#!/usr/bin/env python
"""Time to the first epoch of the README's job, examples/digits-classifier.py.

Runs the example in fresh processes sharing a new, empty PyTensor compile
directory: the first run is cold, the second warm. For each run it prints the
seconds from the first "compiling" log record to the end of the first training
epoch, the time of the whole script (imports excluded) and the count of C
modules compiled.
Run: python benchmarks/bench_start.py [--runs 2] [--quick-start on|off|SECONDS]
"""

import argparse
import json
import logging
import os
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
EXAMPLE = os.path.join(os.path.dirname(HERE), 'examples', 'digits-classifier.py')


class _Clock(logging.Handler):
    """Record the time of the first 'compiling', epoch and end-of-training log records."""

    def __init__(self):
        super().__init__(logging.INFO)
        self.times = {}

    def emit(self, record):
        message = record.getMessage()
        now = time.perf_counter()
        if message.startswith('compiling') and 'compile' not in self.times:
            self.times['compile'] = now
        elif message.split(' ')[:2] == ['Adam', '1']:
            self.times.setdefault('first epoch', now)


def child(args):
    """Run the example in this process; print the timings as JSON on the last line."""
    import theanets  # noqa: F401  (sets the PyTensor flags before cmodule loads)
    from pytensor.link.c import cmodule  # only to count the C modules compiled
    compiled = []
    original = cmodule.GCC_compiler.compile_str

    def counting(*a, **k):
        compiled.append(1)
        return original(*a, **k)

    cmodule.GCC_compiler.compile_str = staticmethod(counting)
    clock = _Clock()
    logger = logging.getLogger('theanets')
    logger.addHandler(clock)
    logger.setLevel(logging.INFO)
    import runpy
    sys.argv = [EXAMPLE, '--no-progress', '--max-updates', str(args.max_updates)]
    start = time.perf_counter()
    try:
        runpy.run_path(EXAMPLE, run_name='__main__')
    except SystemExit:
        pass
    end = time.perf_counter()
    times = {k: v - start for k, v in clock.times.items()}
    times.update(total=end - start, modules=len(compiled))
    print(json.dumps(times))


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--runs', type=int, default=2, help='runs sharing one compile directory')
    p.add_argument('--max-updates', type=int, default=300)
    p.add_argument('--quick-start', default=None,
                   help='THEANETS_QUICK_START for the runs (default: the library default)')
    p.add_argument('--child', action='store_true', help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        return child(args)
    with tempfile.TemporaryDirectory() as compiledir:
        env = dict(os.environ)
        env['PYTENSOR_FLAGS'] = ','.join(filter(None, [env.get('PYTENSOR_FLAGS', ''),
                                                       'compiledir=' + compiledir]))
        if args.quick_start is not None:
            env['THEANETS_QUICK_START'] = args.quick_start
        print('digits-classifier.py, Python {}.{}, quick start {}'.format(
            sys.version_info[0], sys.version_info[1], env.get('THEANETS_QUICK_START', 'default')))
        for run in range(args.runs):
            out = subprocess.run([sys.executable, __file__, '--child', '--max-updates',
                                  str(args.max_updates)], env=env, capture_output=True,
                                 text=True, check=True)
            t = json.loads(out.stdout.strip().splitlines()[-1])
            print('run {} ({} cache): first epoch done {:.1f} s after compiling started, '
                  'whole script {:.1f} s, {} C modules compiled'.format(
                      run + 1, 'cold' if run == 0 else 'warm',
                      t.get('first epoch', float('nan')) - t.get('compile', float('nan')),
                      t['total'], t['modules']))


if __name__ == '__main__':
    main()
