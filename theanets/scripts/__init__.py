"""Command-line tools installed with theanets (see ``setup.py`` entry points)."""
