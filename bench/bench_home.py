"""A throwaway Impasto home for a benchmark: a temp folder as IMPASTO_HOME, the model symlinked in.

Shared by the concept benchmarks (``python bench/concept_*.py`` puts this folder on the path).
The caller removes ``work`` at the end; the model itself is only linked, never copied or touched.
"""
from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Optional, Tuple


def temp_engine(prefix: str, model: Optional[Path] = None, tiny_fallback: bool = True) -> Optional[Tuple[Path, object, Path]]:
    """``(work, engine, model)``: ``model`` or else the installed starter, else (``tiny_fallback``)
    the tiny test model built in ``work``; None when there is no model to run on."""
    work = Path(tempfile.mkdtemp(prefix=prefix))
    os.environ["IMPASTO_HOME"] = str(work / "home")
    from impasto.backend.engine import Engine
    from impasto.backend.engine.models import starter_dir

    model = model or starter_dir()
    if model is None:
        if not tiny_fallback:
            shutil.rmtree(work, ignore_errors=True)
            return None
        from impasto.backend.tiny_model import build_tiny_model

        model = build_tiny_model(work / "models" / "tiny")
    model = Path(model).resolve()
    models = work / "models"
    models.mkdir(parents=True, exist_ok=True)
    if not (models / model.name).exists():
        os.symlink(model, models / model.name)
    return work, Engine(models), model
