"""Impasto for GIMP 3: the plug-in (``gimp_*`` modules, run inside GIMP) and its pure parts.

Importing this package never imports GIMP: the pure modules (geometry,
pixels, jobs, results, settings, daemon_link, job_runner) are tested under
plain pytest; ``impasto install-gimp`` copies the whole folder into GIMP's
plug-ins folder next to a copy of the wire protocol.  Imports stay relative
so the copy works under any package name.  See docs/gimp.md.
"""
