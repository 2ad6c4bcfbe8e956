#!/usr/bin/env python3
"""Impasto for GIMP 3: local diffusion painting (Filters > Impasto).

`impasto install-gimp` copies this file as ``plug-ins/impasto/impasto.py``
with the plug-in's code beside it in ``impasto_gimp/`` (the wire protocol
and the plug-in modules, standard library + GObject introspection only: no
pyzmq, numpy or Pillow needed in GIMP's Python).  GIMP starts it once to
register the procedures and again for every run.
"""
import os
import sys


def _main() -> None:
    here = os.path.dirname(os.path.abspath(__file__))
    if here not in sys.path:
        sys.path.insert(0, here)
    from impasto_gimp.plugin_gimp.gimp_plugin import main

    main()


if __name__ == "__main__":
    _main()
