"""The commands of ``pipeline.py``: one module per command (``catalog`` holds targets and models).

Each module has ``add_parsers(sub)``, which adds its sub-command with ``set_defaults(func=...)``, and
the function that runs it: it calls the library, prints the results and returns an exit code. The
library raises typed errors (deploy/errors.py); ``pipeline.main`` turns them into one line.

These modules run on the device too (Python 3.6, no torch): at import time they import only the
standard library, ``cli`` and ``deploy``; host packages are imported inside the commands that need
them (tests/test_imports.py checks both).
"""
