"""Impasto for Krita: generate, refine and inpaint the selection from a docker.

Krita imports this package at start (``impasto.desktop`` names it) and it
registers the docker and its actions.  Imported anywhere else - the test
suite, ``impasto install-krita`` - it registers nothing, so its pure modules
(:mod:`.pixels`, :mod:`.masks`, :mod:`.planning`, :mod:`.placement`) are
usable and testable without Krita.

The plugin never imports numpy, PIL or torch: Krita's Python on Windows and
macOS has none of them.
"""
import os

__version__ = "0.1.0"

try:
    from krita import Krita as _Krita
except ImportError:  # not inside Krita
    _Krita = None

if _Krita is not None and os.environ.get("IMPASTO_KRITA_NO_REGISTER") != "1":
    from .plugin import register as _register

    _register(_Krita.instance())
