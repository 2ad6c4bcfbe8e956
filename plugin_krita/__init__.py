"""Impasto's Krita plugin, as it lives in the source tree.

``impasto.desktop`` is the file Krita's plugin manager reads; ``impasto_krita/``
is the Python package Krita imports.  ``impasto install-krita``
(``impasto.backend.cli_install``) copies both into Krita's resource folder,
vendors the protocol package next to them and writes the shortcut file
``impasto_krita.action`` from :mod:`impasto_krita.actions`.
"""
