"""Start-up housekeeping: temporary files a crash left behind are removed.

Why: every file Impasto writes goes to a hidden temporary name first and is
renamed into place (concept folders ``.tmp-*``, checkpoints ``.tmp-*``,
cached pictures ``.*.part``, the secret's ``.daemon.secret.*.tmp``).  A crash
between the two leaves the temporary behind; the concept library only cleaned
those older than a minute, once per process, so a daemon restarted at once
kept them forever.  At start the daemon is the only writer of its home, so
everything temporary can go (interrupted replaces are put back by the
library's own recovery).
"""
from __future__ import annotations

import logging
import shutil
from pathlib import Path
from typing import Optional

from impasto.protocol import credentials

log = logging.getLogger("impasto.daemon")


def clean_stale_temporaries(home: Optional[Path] = None) -> int:
    """Remove crash leftovers under IMPASTO_HOME; returns how many went."""
    root = credentials.impasto_home(home)
    removed = 0
    concepts = root / "concepts"
    if concepts.is_dir():
        from impasto.backend.concepts.library import ConceptLibrary

        before = sum(1 for p in concepts.iterdir() if p.name.startswith((".tmp-", ".trash-", ".deleted-")))
        ConceptLibrary(concepts).recover(stale_seconds=0)
        removed += before - sum(1 for p in concepts.iterdir()
                                if p.name.startswith((".tmp-", ".trash-", ".deleted-")))
    training = root / "training"
    if training.is_dir():
        for p in training.glob("*/.tmp-*"):
            shutil.rmtree(p, ignore_errors=True)
            removed += 1
    cache = root / "cache"
    if cache.is_dir():
        for p in cache.rglob(".*.part"):
            try:
                p.unlink()
                removed += 1
            except OSError:
                pass
    for p in root.glob(f".{credentials.SECRET_NAME}.*.tmp") if root.is_dir() else ():
        try:
            p.unlink()
            removed += 1
        except OSError:
            pass
    if removed:
        log.info("removed %d temporary file(s)/folder(s) left by an interrupted run", removed)
    return removed
