"""Where Impasto keeps user data (``IMPASTO_HOME``, the models folder).

Starting the daemon is :mod:`impasto.protocol.launcher` (one launcher for
every client); this module only adds the models folder, which only the
daemon and its tools need.  Standard library only: the CLI imports it
without pulling torch in.
"""
from __future__ import annotations

import os
from pathlib import Path

from impasto.protocol.launcher import daemon_log_path, impasto_home  # noqa: F401 (re-exported)


def default_models_dir() -> Path:
    """``$IMPASTO_MODELS_DIR`` or ``$IMPASTO_HOME/models``."""
    env = os.environ.get("IMPASTO_MODELS_DIR")
    return Path(env).expanduser() if env else impasto_home() / "models"
