"""Atomic file writes: a temporary name in the same folder, fsync, rename.

One helper for every side that writes the artist's files (concept exports,
results history, canvas pictures and projects, installers): a crash or a
full disk never leaves half a file under the final name.  Standard library
only (vendored into the plug-ins with the rest of protocol/).
"""
from __future__ import annotations

import os
import uuid
from pathlib import Path


def write_atomic(path: os.PathLike, data: bytes) -> int:
    """Write ``data`` to ``path`` atomically; returns the byte count.  OSError on failure (nothing left behind)."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.part")
    try:
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            tmp.unlink()
        except OSError:
            pass
        raise
    return len(data)
