"""The package's modules import each other without cycles.

Every import counts, also those inside functions: a module that imports
another only when called still depends on it. ``from .pkg import name``
depends on ``pkg/__init__`` and on ``pkg/name`` when that is a module; a
module's ``from . import name`` depends only on the sibling module ``name``.
"""

import ast
import os

import theanets

PACKAGE = os.path.dirname(os.path.abspath(theanets.__file__))


def _modules():
    """Map dotted module names to file paths for every module of the package."""
    result = {}
    for folder, _, files in os.walk(PACKAGE):
        for name in files:
            if name.endswith('.py'):
                path = os.path.join(folder, name)
                rel = os.path.relpath(path, os.path.dirname(PACKAGE))[:-3].split(os.sep)
                if rel[-1] == '__init__':
                    rel = rel[:-1]
                result['.'.join(rel)] = path
    return result


def _imports(module, path, modules):
    """Yield the package modules ``module`` imports (at any depth of its code)."""
    is_package = path.endswith('__init__.py')
    base = module.split('.') if is_package else module.split('.')[:-1]
    with open(path) as handle:
        tree = ast.parse(handle.read(), path)
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name in modules:
                    yield alias.name
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parent = base[:len(base) - node.level + 1]
                target = '.'.join(parent + ([node.module] if node.module else []))
            else:
                target = node.module or ''
            own_package = node.level and target == '.'.join(base)
            if target in modules and target != 'theanets' and not own_package:
                yield target
            for alias in node.names:
                sub = '{}.{}'.format(target, alias.name)
                if sub in modules:
                    yield sub


def import_graph():
    """Return {module: set of package modules it imports}, leaving out the top package.

    ``theanets/__init__`` imports everything to offer the public names; modules
    import ``theanets`` only to reach a submodule, which is counted instead.
    """
    modules = _modules()
    return {m: set(_imports(m, p, modules)) - {m, 'theanets'}
            for m, p in modules.items() if m != 'theanets'}


def cycles(graph):
    """Return the strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(node):
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for succ in sorted(graph.get(node, ())):
            if succ not in index:
                visit(succ)
                low[node] = min(low[node], low[succ])
            elif succ in on_stack:
                low[node] = min(low[node], index[succ])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_walker_finds_a_cycle():
    assert cycles({'a': {'b'}, 'b': {'c'}, 'c': {'a'}, 'd': {'a'}}) == [['a', 'b', 'c']]
    assert cycles({'a': {'b'}, 'b': set()}) == []


def test_walker_sees_imports_inside_functions():
    graph = import_graph()
    # graph.py compiles through backend inside functions as well as at the top
    assert 'theanets.backend' in graph['theanets.graph']
    assert 'theanets.layers.feedforward' in graph['theanets.layers']


def test_package_imports_have_no_cycle():
    found = cycles(import_graph())
    assert found == []
