"""What a canvas is made of: raster layers, plus one soft mask.

Every layer is a full-canvas ARGB32 premultiplied image, so compositing,
painting and undo never deal with offsets; generated results that cover only
part of the canvas (inpainting patches) are simply transparent elsewhere.
A generated layer remembers how it was made (prompt, seed, sampler...) so the
artist can reuse those settings later, even after reopening the project.
"""
from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any, Dict

from PySide6.QtGui import QImage

PAINT = "paint"
GENERATED = "generated"
LAYER_KINDS = (PAINT, GENERATED)


def new_layer_id() -> str:
    return uuid.uuid4().hex[:12]


@dataclass(eq=False)
class Layer:
    name: str
    image: QImage
    kind: str = PAINT
    visible: bool = True
    opacity: float = 1.0
    id: str = field(default_factory=new_layer_id)
    info: Dict[str, Any] = field(default_factory=dict)  # generation settings + seed for generated layers

    def props(self) -> Dict[str, Any]:
        """The properties an undoable edit may change (pixels aside)."""
        return {"name": self.name, "visible": self.visible, "opacity": self.opacity}

    def set_props(self, props: Dict[str, Any]) -> None:
        self.name = str(props.get("name", self.name))
        self.visible = bool(props.get("visible", self.visible))
        self.opacity = max(0.0, min(1.0, float(props.get("opacity", self.opacity))))
