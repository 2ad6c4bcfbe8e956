"""Undoable edits, and how they are written into a project file.

Every change to a :class:`~.document.Document` is one of the commands here,
pushed on the document's ``QUndoStack``.  Each command addresses layers by id
and carries its own pixels (only the rectangle a stroke touched, before and
after), so the whole stack can be serialised into the project file and
rebuilt on open: an artist can undo yesterday's strokes after reopening.

Commands built for something that already happened on screen (a finished
brush stroke) are created with ``applied=True``: their first ``redo`` - the
one ``QUndoStack.push`` performs - is skipped.
"""
from __future__ import annotations

from typing import Callable, Dict, List, Optional, Type

from PySide6.QtCore import QPointF, QRect
from PySide6.QtGui import QImage, QPainterPath, QPolygonF, QUndoCommand

from . import image_io, qt_images
from .document import MASK, Document
from .layers import Layer

Put = Callable[[bytes], str]        # stores PNG bytes in the project file, returns their name
Get = Callable[[str], bytes]

_MERGE_PROPS = 1


class Command(QUndoCommand):
    KIND = ""

    def __init__(self, doc: Document, text: str, applied: bool = False):
        super().__init__(text)
        self.doc = doc
        self._skip_redo = applied
        self.no_merge = False  # set on steps rebuilt from a project file: they must stay separate

    def redo(self) -> None:
        if self._skip_redo:
            self._skip_redo = False
            return
        self.apply()

    def apply(self) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def to_record(self, put: Put) -> dict:  # pragma: no cover - abstract
        raise NotImplementedError


class PixelsCommand(Command):
    """A rectangle of one layer (or the mask) before and after a stroke or fill."""

    KIND = "pixels"

    def __init__(self, doc: Document, target: str, rect: QRect, before: QImage, after: QImage, text: str,
                 applied: bool = True):
        super().__init__(doc, text, applied)
        self.target, self.rect, self.before, self.after = target, QRect(rect), before, after

    @classmethod
    def capture(cls, doc: Document, target: str, rect: QRect, before_full: QImage, text: str) -> "PixelsCommand":
        """The command for a change already made to ``target``, given a copy of it from before."""
        rect = rect.intersected(doc.rect())
        after = doc.target_image(target).copy(rect)
        return cls(doc, target, rect, before_full.copy(rect), after, text)

    def apply(self) -> None:
        self.doc._paste(self.target, self.rect.topLeft(), self.after)

    def undo(self) -> None:
        self.doc._paste(self.target, self.rect.topLeft(), self.before)

    def to_record(self, put: Put) -> dict:
        r = self.rect
        return {"target": self.target, "rect": [r.x(), r.y(), r.width(), r.height()],
                "before": put(image_io.png_bytes(self.before)), "after": put(image_io.png_bytes(self.after))}

    @classmethod
    def from_record(cls, doc: Document, rec: dict, text: str, get: Get, applied: bool) -> "PixelsCommand":
        x, y, w, h = (int(v) for v in rec["rect"])
        fmt = qt_images.MASK_FORMAT if rec["target"] == MASK else qt_images.LAYER_FORMAT
        before = image_io.image_from_png_bytes(get(rec["before"]), "an undo step").convertToFormat(fmt)
        after = image_io.image_from_png_bytes(get(rec["after"]), "an undo step").convertToFormat(fmt)
        if (before.width(), before.height()) != (w, h) or (after.width(), after.height()) != (w, h):
            raise image_io.ImageFileError("an undo step's pixels do not match its rectangle")
        return cls(doc, str(rec["target"]), QRect(x, y, w, h), before, after, text, applied)


def _layer_record(layer: Layer, image: QImage, put: Put) -> dict:
    return {"id": layer.id, "name": layer.name, "kind": layer.kind, "visible": layer.visible,
            "opacity": layer.opacity, "info": layer.info, "image": put(image_io.png_bytes(image))}


def _layer_from_record(rec: dict, get: Get) -> Layer:
    image = image_io.image_from_png_bytes(get(rec["image"]), f"layer {rec.get('name', '')!r}")
    return Layer(name=str(rec["name"]), image=image.convertToFormat(qt_images.LAYER_FORMAT),
                 kind=str(rec.get("kind", "paint")), visible=bool(rec.get("visible", True)),
                 opacity=float(rec.get("opacity", 1.0)), id=str(rec["id"]), info=dict(rec.get("info") or {}))


class AddLayerCommand(Command):
    KIND = "add_layer"

    def __init__(self, doc: Document, layer: Layer, index: Optional[int], text: str = "", applied: bool = False):
        super().__init__(doc, text or f"New layer “{layer.name}”", applied)
        self.layer = layer
        self.index = len(doc.layers) if index is None else index
        self.initial = QImage(layer.image)  # implicitly shared: later strokes detach the layer's copy

    def apply(self) -> None:
        self.doc._insert_layer(self.layer, self.index)

    def undo(self) -> None:
        self.layer = self.doc.layer(self.layer.id)
        self.doc._remove_layer(self.layer.id)

    def to_record(self, put: Put) -> dict:
        return {"index": self.index, "layer": _layer_record(self.layer, self.initial, put)}

    @classmethod
    def from_record(cls, doc: Document, rec: dict, text: str, get: Get, applied: bool) -> "AddLayerCommand":
        return cls(doc, _layer_from_record(rec["layer"], get), int(rec["index"]), text, applied)


class RemoveLayerCommand(Command):
    KIND = "remove_layer"

    def __init__(self, doc: Document, layer_id: str, text: str = "", applied: bool = False,
                 layer: Optional[Layer] = None, index: Optional[int] = None):
        self.layer = layer or doc.layer(layer_id)
        super().__init__(doc, text or f"Delete layer “{self.layer.name}”", applied)
        self.index = doc.index_of(layer_id) if index is None else index

    def apply(self) -> None:
        self.layer = self.doc.layer(self.layer.id)
        self.index = self.doc._remove_layer(self.layer.id)

    def undo(self) -> None:
        self.doc._insert_layer(self.layer, self.index)

    def to_record(self, put: Put) -> dict:
        return {"index": self.index, "layer": _layer_record(self.layer, self.layer.image, put)}

    @classmethod
    def from_record(cls, doc: Document, rec: dict, text: str, get: Get, applied: bool) -> "RemoveLayerCommand":
        layer = _layer_from_record(rec["layer"], get)
        return cls(doc, layer.id, text, applied, layer=layer, index=int(rec["index"]))


class MoveLayerCommand(Command):
    KIND = "move_layer"

    def __init__(self, doc: Document, layer_id: str, new_index: int, text: str = "", applied: bool = False,
                 old_index: Optional[int] = None):
        super().__init__(doc, text or "Move layer", applied)
        self.layer_id, self.new_index = layer_id, new_index
        self.old_index = doc.index_of(layer_id) if old_index is None else old_index

    def apply(self) -> None:
        self.doc._move_layer(self.layer_id, self.new_index)

    def undo(self) -> None:
        self.doc._move_layer(self.layer_id, self.old_index)

    def to_record(self, put: Put) -> dict:
        return {"layer": self.layer_id, "old": self.old_index, "new": self.new_index}

    @classmethod
    def from_record(cls, doc: Document, rec: dict, text: str, get: Get, applied: bool) -> "MoveLayerCommand":
        return cls(doc, str(rec["layer"]), int(rec["new"]), text, applied, old_index=int(rec["old"]))


class LayerPropsCommand(Command):
    """Rename, show/hide or change opacity; consecutive opacity drags merge into one step."""

    KIND = "layer_props"

    def __init__(self, doc: Document, layer_id: str, after: dict, text: str = "", applied: bool = False,
                 before: Optional[dict] = None):
        super().__init__(doc, text or "Layer properties", applied)
        self.layer_id = layer_id
        self.before = dict(before) if before is not None else doc.layer(layer_id).props()
        self.after = {**self.before, **after}

    def apply(self) -> None:
        self.doc._set_layer_props(self.layer_id, self.after)

    def undo(self) -> None:
        self.doc._set_layer_props(self.layer_id, self.before)

    def id(self) -> int:  # noqa: A003 - Qt's name
        return _MERGE_PROPS

    def mergeWith(self, other: QUndoCommand) -> bool:  # noqa: N802 - Qt's name
        if not isinstance(other, LayerPropsCommand) or other.layer_id != self.layer_id or other.no_merge:
            return False
        changed = {k for k in self.after if self.after[k] != self.before[k]}
        other_changed = {k for k in other.after if other.after[k] != other.before[k]}
        if changed != {"opacity"} or other_changed != {"opacity"}:
            return False
        self.after = dict(other.after)
        return True

    def to_record(self, put: Put) -> dict:
        return {"layer": self.layer_id, "before": self.before, "after": self.after}

    @classmethod
    def from_record(cls, doc: Document, rec: dict, text: str, get: Get, applied: bool) -> "LayerPropsCommand":
        return cls(doc, str(rec["layer"]), dict(rec["after"]), text, applied, before=dict(rec["before"]))


def path_to_polygons(path: QPainterPath) -> List[List[List[float]]]:
    return [[[p.x(), p.y()] for p in poly] for poly in path.toSubpathPolygons()]


def path_from_polygons(polys: List[List[List[float]]]) -> QPainterPath:
    path = QPainterPath()
    for poly in polys:
        if len(poly) >= 3:
            path.addPolygon(QPolygonF([QPointF(float(x), float(y)) for x, y in poly]))
            path.closeSubpath()
    return path


class SelectionCommand(Command):
    KIND = "selection"

    def __init__(self, doc: Document, after: QPainterPath, text: str = "", applied: bool = False,
                 before: Optional[QPainterPath] = None):
        super().__init__(doc, text or ("Deselect" if after.isEmpty() else "Select"), applied)
        self.before = QPainterPath(doc.selection if before is None else before)
        self.after = QPainterPath(after)

    def apply(self) -> None:
        self.doc._set_selection(self.after)

    def undo(self) -> None:
        self.doc._set_selection(self.before)

    def to_record(self, put: Put) -> dict:
        return {"before": path_to_polygons(self.before), "after": path_to_polygons(self.after)}

    @classmethod
    def from_record(cls, doc: Document, rec: dict, text: str, get: Get, applied: bool) -> "SelectionCommand":
        return cls(doc, path_from_polygons(rec["after"]), text, applied, before=path_from_polygons(rec["before"]))


COMMANDS: Dict[str, Type[Command]] = {
    cls.KIND: cls
    for cls in (PixelsCommand, AddLayerCommand, RemoveLayerCommand, MoveLayerCommand, LayerPropsCommand,
                SelectionCommand)
}


def command_record(cmd: QUndoCommand, put: Put) -> dict:
    if not isinstance(cmd, Command):
        raise TypeError(f"{type(cmd).__name__} cannot be saved in a project")
    return {"kind": cmd.KIND, "text": cmd.text(), **cmd.to_record(put)}


def command_from_record(doc: Document, rec: dict, get: Get, applied: bool) -> Command:
    cls = COMMANDS.get(rec.get("kind", ""))
    if cls is None:
        raise image_io.ImageFileError(f"the project's history holds an unknown step {rec.get('kind')!r}")
    return cls.from_record(doc, rec, str(rec.get("text", "")), get, applied)


def fill_mask_command(doc: Document, rect: QRect, value: int, text: str) -> PixelsCommand:
    """Set every mask pixel of ``rect`` to ``value`` (0 clears, 255 masks fully) as one undo step."""
    rect = rect.intersected(doc.rect())
    before = doc.mask.copy(rect)
    after = QImage(before)
    after.fill(value)
    return PixelsCommand(doc, MASK, rect, before, after, text, applied=False)


def mask_from_image_command(doc: Document, new_mask: QImage, text: str) -> PixelsCommand:
    """Replace the whole mask (e.g. from the selection) as one undo step."""
    return PixelsCommand(doc, MASK, doc.rect(), doc.mask.copy(), new_mask, text, applied=False)

