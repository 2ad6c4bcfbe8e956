"""Starting the local daemon from the canvas: see :mod:`impasto.backend.launcher`.

The launcher is standard library only, so the canvas opens without importing
torch; this module only re-exports what the canvas uses.
"""
from impasto.backend.launcher import daemon_log_path, impasto_home, spawn_daemon  # noqa: F401
