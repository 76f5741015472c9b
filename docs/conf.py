"""Sphinx configuration of the theanets documentation.

Build with ``sphinx-build -W -b html docs docs/_build/html``.
"""

import importlib
import os
import sys

from docutils import nodes
from docutils.parsers.rst import Directive, directives
from docutils.statemachine import StringList

sys.path.insert(0, os.path.abspath(os.path.join(os.path.dirname(__file__), '..')))

import theanets  # noqa: E402

project = 'theanets'
author = 'the theanets developers'
copyright = 'theanets developers; MIT license'
version = release = theanets.__version__

extensions = [
    'sphinx.ext.autodoc',
    'sphinx.ext.autosummary',
    'sphinx.ext.mathjax',
    'sphinx.ext.napoleon',
    'sphinx.ext.viewcode',
]

autosummary_generate = False
autodoc_member_order = 'bysource'
autodoc_default_options = {'members': True, 'show-inheritance': True}
napoleon_google_docstring = False
napoleon_numpy_docstring = True
napoleon_use_rtype = False
napoleon_use_ivar = True

master_doc = 'index'
exclude_patterns = ['_build']
templates_path = []
html_static_path = []
html_theme = 'alabaster'
html_theme_options = {'description': 'Neural networks on PyTensor', 'fixed_sidebar': True}
pygments_style = 'sphinx'


def _importable(name):
    try:
        importlib.import_module(name)
    except ImportError:
        return False
    return True


class OptionalAutomodule(Directive):
    """``.. optional-automodule:: theanets.convolution`` documents a module if it exists.

    The options are passed on to ``automodule``; a missing module gives a
    short note instead of a build warning, so the reference can list modules
    that are still being written.
    """

    required_arguments = 1
    option_spec = {'members': directives.unchanged, 'no-index': directives.flag,
                   'show-inheritance': directives.flag}

    def run(self):
        name = self.arguments[0]
        if not _importable(name):
            text = 'The module ``{}`` is not part of this build.'.format(name)
            para = nodes.paragraph()
            self.state.nested_parse(StringList([text]), self.content_offset, para)
            return [para]
        lines = ['.. automodule:: ' + name]
        for key, value in self.options.items():
            lines.append('   :{}:{}'.format(key, ' ' + value if value else ''))
        holder = nodes.section()
        holder.document = self.state.document
        self.state.nested_parse(StringList(lines, source='optional-automodule'),
                                self.content_offset, holder)
        return holder.children


def setup(app):
    app.add_directive('optional-automodule', OptionalAutomodule)
