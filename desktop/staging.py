"""Staged results: candidates shown over the canvas until accepted or discarded.

Results never touch the artist's layers by themselves.  Each lands here as a
:class:`Candidate` with the seed and settings that made it; the artist steps
through them, accepts one (it becomes a layer, one undo step) or discards
them.  Accepting keeps the other candidates staged, so two variations can be
kept as two layers.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

from PySide6.QtCore import QObject, QRect, Signal
from PySide6.QtGui import QImage, QPainter

from . import qt_images
from .document import Document
from .history import AddLayerCommand
from .layers import GENERATED, Layer
from .settings import GenerationSettings

MODE_TITLES = {"generate": "Generated", "refine": "Refined", "inpaint": "Inpainted"}


@dataclass
class Candidate:
    image: QImage                       # the pixels to place, rect-sized, layer format
    rect: QRect                         # where they land on the canvas
    seed: int
    mode: str                           # generate | refine | inpaint
    settings: GenerationSettings
    job: str = ""
    warnings: List[str] = field(default_factory=list)
    info: Dict[str, Any] = field(default_factory=dict)

    def layer_name(self) -> str:
        prompt = self.settings.prompt.strip().replace("\n", " ")
        if len(prompt) > 40:
            prompt = prompt[:39] + "…"
        return f"{MODE_TITLES.get(self.mode, 'Generated')}: {prompt or '(no prompt)'} · seed {self.seed}"

    def to_layer(self, doc: Document) -> Layer:
        image = qt_images.new_layer_image(doc.width, doc.height)
        painter = QPainter(image)
        painter.drawImage(self.rect.topLeft(), self.image)
        painter.end()
        settings = self.settings.to_dict()
        settings["seed"] = self.seed
        return Layer(self.layer_name(), image, kind=GENERATED,
                     info={"mode": self.mode, "seed": self.seed, "settings": settings,
                           "model": self.info.get("model", "")})


class StagingArea(QObject):
    changed = Signal()

    def __init__(self, parent: Optional[QObject] = None):
        super().__init__(parent)
        self.candidates: List[Candidate] = []
        self.index = -1

    def __len__(self) -> int:
        return len(self.candidates)

    def current(self) -> Optional[Candidate]:
        return self.candidates[self.index] if 0 <= self.index < len(self.candidates) else None

    def add(self, candidates: List[Candidate]) -> None:
        """New results are appended; the first of them is shown."""
        if not candidates:
            return
        self.index = len(self.candidates)
        self.candidates.extend(candidates)
        self.changed.emit()

    def step(self, delta: int) -> None:
        if self.candidates:
            self.index = (self.index + delta) % len(self.candidates)
            self.changed.emit()

    def next(self) -> None:
        self.step(1)

    def previous(self) -> None:
        self.step(-1)

    def discard_current(self) -> None:
        if self.current() is None:
            return
        del self.candidates[self.index]
        self.index = min(self.index, len(self.candidates) - 1)
        self.changed.emit()

    def discard_all(self) -> None:
        if self.candidates:
            self.candidates.clear()
            self.index = -1
            self.changed.emit()

    def accept_current(self, doc: Document) -> Optional[Layer]:
        """The current candidate becomes the top layer (one undo step) and leaves the staging area."""
        cand = self.current()
        if cand is None:
            return None
        layer = cand.to_layer(doc)
        doc.undo.push(AddLayerCommand(doc, layer, None, f"Accept “{layer.name}”"))
        self.discard_current()
        return layer
