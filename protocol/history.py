"""The results an artist made, browsable later: thumbnail, prompt, seed and the settings to re-use.

Staged results that were discarded, or accepted and painted over, used to be
gone with their settings.  A :class:`ResultHistory` keeps every result of a
document (or a session) in a folder of its own - ``index.json`` plus one
small PNG thumbnail per result - so the canvas and the Krita docker show the
same list, "use these settings" restores a result's exact knobs and seed,
and delete removes one.  The views are per host (Qt widgets); this model is
the one rule both use.  Writes are atomic (temporary file, then rename); an
unreadable index starts an empty history instead of failing the host.

Standard library only (vendored into Krita).
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

from .atomic import write_atomic
from .parameters import format_parameters, png_with_text
from .settings import Settings

INDEX = "index.json"
EDIT_KNOBS = ("strength", "mask_blur", "grow", "padding", "fill", "whole_picture")
DEFAULT_LIMIT = 200            # oldest results (and their thumbnails) go beyond this


@dataclass
class HistoryEntry:
    id: str
    created: float
    mode: str                          # generate | refine | inpaint
    seed: int
    size: Tuple[int, int]
    settings: Dict[str, Any]           # Settings.to_dict() as sent (unset knobs already resolved)
    model: str = ""
    thumbnail: str = ""                # file name in the history folder ("" = none)
    picture: str = ""                  # the full picture, a PNG carrying its A1111 parameters ("" = none)
    warnings: List[str] = field(default_factory=list)

    @property
    def prompt(self) -> str:
        return str(self.settings.get("prompt", ""))

    def to_settings(self) -> Settings:
        """The settings to re-use: the result's knobs with its seed (so the same picture comes back)."""
        s = Settings.from_dict(self.settings)
        s.seed = int(self.seed)
        return s

    def reuse(self, current: Settings) -> Settings:
        """What "use settings" puts in a form now showing ``current``.

        The result's knobs and seed; a text-to-image result sent no
        denoising strength or selection knobs, so those stay as the artist
        has them (its request's defaults would overwrite them).
        """
        s = self.to_settings()
        if self.mode == "generate":
            for name in EDIT_KNOBS:
                setattr(s, name, getattr(current, name))
        s.preview = current.preview
        return s

    def label(self) -> str:
        """One line under the thumbnail: prompt (shortened) and seed."""
        prompt = " ".join(self.prompt.split())
        if len(prompt) > 48:
            prompt = prompt[:47] + "…"
        return f"{prompt or '(no prompt)'} · seed {self.seed}"

    def parameters(self) -> str:
        """The A1111 ``parameters`` text of this result (for a tooltip, a copy, a saved file)."""
        s = self.to_settings()
        denoising = s.strength if self.mode in ("refine", "inpaint") else None
        return format_parameters(s, self.seed, self.size, self.model or s.model, denoising)


def history_key(document_path: str = "", session: str = "") -> str:
    """The folder name of a document's history: from its file path, else the session's id."""
    if document_path:
        digest = hashlib.sha1(os.path.abspath(document_path).encode("utf-8")).hexdigest()[:16]
        stem = re.sub(r"[^A-Za-z0-9_-]+", "-", Path(document_path).stem)[:32] or "document"
        return f"{stem}-{digest}"
    return "session-" + (re.sub(r"[^A-Za-z0-9_-]+", "-", session)[:40] or uuid.uuid4().hex[:12])


class ResultHistory:
    """One document's results, newest first, persisted in ``folder``."""

    def __init__(self, folder: Path, limit: int = DEFAULT_LIMIT):
        self.folder = Path(folder)
        self.limit = max(1, int(limit))
        self.entries: List[HistoryEntry] = self._load()

    # ------------------------------------------------------------------ reading

    def _load(self) -> List[HistoryEntry]:
        try:
            data = json.loads((self.folder / INDEX).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return []
        out: List[HistoryEntry] = []
        for rec in data.get("entries", []) if isinstance(data, dict) else []:
            try:
                out.append(HistoryEntry(
                    id=str(rec["id"]), created=float(rec["created"]), mode=str(rec.get("mode", "generate")),
                    seed=int(rec["seed"]), size=(int(rec["size"][0]), int(rec["size"][1])),
                    settings=dict(rec.get("settings") or {}), model=str(rec.get("model", "")),
                    thumbnail=str(rec.get("thumbnail", "")), picture=str(rec.get("picture", "")), warnings=[str(w) for w in rec.get("warnings", [])]))
            except (KeyError, TypeError, ValueError, IndexError):
                continue            # one bad record does not cost the others
        return out

    def get(self, entry_id: str) -> Optional[HistoryEntry]:
        return next((e for e in self.entries if e.id == entry_id), None)

    def thumbnail_path(self, entry: HistoryEntry) -> Optional[Path]:
        if not entry.thumbnail:
            return None
        path = self.folder / entry.thumbnail
        return path if path.is_file() else None

    def __len__(self) -> int:
        return len(self.entries)

    # ------------------------------------------------------------------ changing

    def add(self, settings: Settings, seed: int, mode: str, size: Tuple[int, int], thumbnail_png: bytes = b"",
            model: str = "", warnings: Optional[List[str]] = None, picture_png: bytes = b"") -> HistoryEntry:
        """Record one result (newest first); returns its entry.

        ``picture_png`` (the full result) is kept with the A1111 ``parameters``
        chunk written into it, so :meth:`export` saves a picture that carries
        its settings - also from hosts whose own export cannot write one.
        """
        entry_id = f"{int(time.time() * 1000):x}-{uuid.uuid4().hex[:8]}"
        data = settings.to_dict()
        data["seed"] = int(seed)
        entry = HistoryEntry(entry_id, time.time(), mode, int(seed), (int(size[0]), int(size[1])), data,
                             model or settings.model, warnings=list(warnings or []))
        self.folder.mkdir(parents=True, exist_ok=True)
        if thumbnail_png:
            entry.thumbnail = f"{entry_id}.png"
            write_atomic(self.folder / entry.thumbnail, thumbnail_png)
        if picture_png:
            entry.picture = f"{entry_id}-full.png"
            write_atomic(self.folder / entry.picture, png_with_text(picture_png, entry.parameters()))
        self.entries.insert(0, entry)
        for old in self.entries[self.limit:]:
            self._remove_thumbnail(old)
        del self.entries[self.limit:]
        self.save()
        return entry

    def delete(self, entry_id: str) -> bool:
        entry = self.get(entry_id)
        if entry is None:
            return False
        self.entries.remove(entry)
        self._remove_thumbnail(entry)
        self.save()
        return True

    def export(self, entry_id: str, dest: Path) -> Path:
        """Write a result's full picture (a PNG with its parameters) to ``dest``, ``.png`` added when missing.

        ValueError when the picture was not kept.
        """
        entry = self.get(entry_id)
        if entry is None or not entry.picture or not (self.folder / entry.picture).is_file():
            raise ValueError("this result's picture was not kept; only its settings are")
        dest = Path(dest)
        if dest.suffix.lower() != ".png":
            dest = dest.with_name(dest.name + ".png")
        write_atomic(dest, (self.folder / entry.picture).read_bytes())
        return dest

    def save(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        data = {"version": 1, "entries": [asdict(e) for e in self.entries]}
        write_atomic(self.folder / INDEX, json.dumps(data, indent=1).encode("utf-8"))

    def _remove_thumbnail(self, entry: HistoryEntry) -> None:
        for name in (entry.thumbnail, entry.picture):
            if name:
                try:
                    (self.folder / name).unlink()
                except OSError:
                    pass

