"""Canvas tools: brush, eraser, soft mask brush, rectangle and lasso selection.

Tools work in canvas pixel coordinates; the view converts mouse positions and
draws each tool's overlay.  A stroke paints *coverage* (how much of the brush
touched each pixel, the maximum over all dabs) into a scratch image and
recomposites the touched area from the pixels as they were before the
stroke.  So a soft brush never builds up darker where dabs overlap, opacity
means opacity for the whole stroke, and the finished stroke is one undo step
holding only the rectangle it touched.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import List, Optional

import numpy as np
from PySide6.QtCore import QObject, QPointF, QRect, QRectF, Qt, Signal
from PySide6.QtGui import QColor, QImage, QPainter, QPainterPath, QPen, QPolygonF, QRadialGradient

from . import qt_images
from .document import MASK, Document
from .history import PixelsCommand, SelectionCommand


@dataclass
class BrushSettings:
    """What the tool options bar edits; one instance shared by all tools."""

    size: float = 24.0            # diameter, canvas px
    hardness: float = 0.85        # 1 = hard edge, 0 = fully soft
    opacity: float = 1.0
    color: QColor = field(default_factory=lambda: QColor(30, 30, 30))
    mask_size: float = 48.0
    mask_hardness: float = 0.2    # the mask brush is soft by default: inpainting blends better
    mask_opacity: float = 1.0


class Tool(QObject):
    """Base tool: ``press``/``move``/``release`` in canvas coordinates, plus an overlay."""

    name = ""
    label = ""
    shortcut = ""
    tip = ""
    changed = Signal(QRect)   # overlay region (canvas coords) to repaint; null = everything

    def __init__(self, doc: Document, brush: BrushSettings):
        super().__init__()
        self.doc = doc
        self.brush = brush
        self.hover_pos: Optional[QPointF] = None

    def set_document(self, doc: Document) -> None:
        self.cancel()
        self.doc = doc

    def press(self, pos: QPointF, modifiers: Qt.KeyboardModifier) -> None:
        pass

    def move(self, pos: QPointF) -> None:
        pass

    def release(self, pos: QPointF) -> None:
        pass

    def cancel(self) -> None:
        pass

    def hover(self, pos: Optional[QPointF]) -> None:
        self.hover_pos = pos
        self.changed.emit(QRect())

    def overlay(self, painter: QPainter, zoom: float) -> None:
        """Draw tool feedback; ``painter`` is in canvas coordinates."""


# --------------------------------------------------------------------------- strokes


def _dab(painter: QPainter, pos: QPointF, radius: float, hardness: float) -> None:
    """One round brush dab of white coverage (the painter is in Lighten mode: max over dabs)."""
    radius = max(radius, 0.5)
    if hardness >= 0.99:
        painter.setBrush(QColor(255, 255, 255))
        painter.setPen(Qt.PenStyle.NoPen)
        painter.drawEllipse(pos, radius, radius)
        return
    grad = QRadialGradient(pos, radius)
    grad.setColorAt(0.0, QColor(255, 255, 255, 255))
    grad.setColorAt(max(0.0, min(0.99, hardness)), QColor(255, 255, 255, 255))
    grad.setColorAt(1.0, QColor(255, 255, 255, 0))
    painter.setBrush(grad)
    painter.setPen(Qt.PenStyle.NoPen)
    painter.drawEllipse(pos, radius, radius)


class StrokeTool(Tool):
    """Shared stroke machinery; subclasses say what is painted and how it is combined."""

    erase = False
    step_text = "Stroke"

    def __init__(self, doc: Document, brush: BrushSettings):
        super().__init__(doc, brush)
        self.active = False
        self.target = ""
        self.before: Optional[QImage] = None
        self.coverage: Optional[QImage] = None
        self.dirty = QRect()
        self.last = QPointF()

    # subclasses
    def radius(self) -> float:
        return self.brush.size / 2

    def hardness(self) -> float:
        return self.brush.hardness

    def pick_target(self) -> Optional[str]:
        layer = self.doc.active_layer()
        return layer.id if layer is not None else None

    def recomposite(self, rect: QRect) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def restored(self, rect: QRect) -> QPainter:
        """A painter on the target with ``rect`` put back as before the stroke, at the brush's opacity."""
        painter = QPainter(self.doc.target_image(self.target))
        painter.setCompositionMode(QPainter.CompositionMode.CompositionMode_Source)
        painter.drawImage(rect.topLeft(), self.before, rect)
        painter.setOpacity(self.brush.opacity)
        return painter

    # events
    def press(self, pos: QPointF, modifiers: Qt.KeyboardModifier) -> None:
        target = self.pick_target()
        if target is None:
            return
        self.active = True
        self.target = target
        self.before = self.doc.target_image(target).copy()
        self.coverage = qt_images.new_layer_image(self.doc.width, self.doc.height)
        self.dirty = QRect()
        self.last = QPointF(pos)
        self._paint_segment(pos, pos)

    def move(self, pos: QPointF) -> None:
        self.hover_pos = QPointF(pos)
        if not self.active:
            self.changed.emit(QRect())
            return
        self._paint_segment(self.last, pos)
        self.last = QPointF(pos)

    def release(self, pos: QPointF) -> None:
        if not self.active:
            return
        self.move(pos)
        self.active = False
        if not self.dirty.isEmpty():
            self.doc.undo.push(PixelsCommand.capture(self.doc, self.target, self.dirty, self.before, self.step_text))
        self.before = self.coverage = None

    def cancel(self) -> None:
        """Abandon a stroke in progress, restoring the pixels (Esc, or the document went away)."""
        if self.active and self.before is not None and not self.dirty.isEmpty():
            self.doc._paste(self.target, self.dirty.topLeft(), self.before.copy(self.dirty))
        self.active = False
        self.before = self.coverage = None

    def _paint_segment(self, a: QPointF, b: QPointF) -> None:
        r = self.radius()
        spacing = max(0.5, r * 0.2)
        dist = math.hypot(b.x() - a.x(), b.y() - a.y())
        n = max(1, int(dist / spacing))
        painter = QPainter(self.coverage)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        painter.setCompositionMode(QPainter.CompositionMode.CompositionMode_Lighten)
        start = 1 if dist > 0 else 0
        for i in range(start, n + 1):
            t = i / n
            _dab(painter, QPointF(a.x() + (b.x() - a.x()) * t, a.y() + (b.y() - a.y()) * t), r, self.hardness())
        painter.end()
        pad = math.ceil(r) + 2
        rect = QRectF(a, b).normalized().toAlignedRect().adjusted(-pad, -pad, pad, pad).intersected(self.doc.rect())
        if rect.isEmpty():
            return
        self.dirty = self.dirty.united(rect)
        self.recomposite(rect)
        self.doc.notify_pixels(self.target, rect)

    def overlay(self, painter: QPainter, zoom: float) -> None:
        if self.hover_pos is None:
            return
        r = self.radius()
        for color, width in ((QColor(0, 0, 0, 160), 3.0), (QColor(255, 255, 255, 220), 1.0)):
            pen = QPen(color, width / zoom)
            painter.setPen(pen)
            painter.setBrush(Qt.BrushStyle.NoBrush)
            painter.drawEllipse(self.hover_pos, r, r)


class BrushTool(StrokeTool):
    name, label, shortcut = "brush", "Brush", "B"
    tip = "Paint on the active layer ([ and ] change the size)"
    step_text = "Brush stroke"

    def recomposite(self, rect: QRect) -> None:
        painter = self.restored(rect)
        painter.setCompositionMode(QPainter.CompositionMode.CompositionMode_SourceOver)
        painter.drawImage(rect.topLeft(), self._tinted(rect))
        painter.end()

    def _tinted(self, rect: QRect) -> QImage:
        tint = qt_images.new_layer_image(rect.width(), rect.height(), self.brush.color.rgba())
        p = QPainter(tint)
        p.setCompositionMode(QPainter.CompositionMode.CompositionMode_DestinationIn)
        p.drawImage(0, 0, self.coverage, rect.x(), rect.y(), rect.width(), rect.height())
        p.end()
        return tint


class EraserTool(StrokeTool):
    name, label, shortcut = "eraser", "Eraser", "E"
    tip = "Erase to transparency on the active layer"
    step_text = "Eraser stroke"

    def recomposite(self, rect: QRect) -> None:
        painter = self.restored(rect)
        painter.setCompositionMode(QPainter.CompositionMode.CompositionMode_DestinationOut)
        painter.drawImage(rect.topLeft(), self.coverage, rect)
        painter.end()


class MaskBrushTool(StrokeTool):
    """Soft brush on the inpainting mask: where it paints, the model repaints."""

    name, label, shortcut = "mask", "Mask brush", "M"
    tip = "Paint the area to inpaint (soft edges feather into the picture); Shift+M erases mask"
    step_text = "Mask stroke"

    def radius(self) -> float:
        return self.brush.mask_size / 2

    def hardness(self) -> float:
        return self.brush.mask_hardness

    def pick_target(self) -> Optional[str]:
        return MASK

    def recomposite(self, rect: QRect) -> None:
        sl = np.s_[rect.top():rect.bottom() + 1, rect.left():rect.right() + 1]
        before = qt_images.gray_view(self.before)[sl].astype(np.float32)
        cov = qt_images.rgba_array(self.coverage.copy(rect))[..., 3].astype(np.float32) * self.brush.mask_opacity
        if self.erase:
            new = before * (1.0 - cov / 255.0)
        else:
            new = np.maximum(before, cov)
        qt_images.gray_view(self.doc.mask)[sl] = np.clip(new + 0.5, 0, 255).astype(np.uint8)

    def press(self, pos: QPointF, modifiers: Qt.KeyboardModifier) -> None:
        if not self.doc.mask_visible:
            self.doc.set_mask_visible(True)  # painting an invisible mask would be painting blind
        super().press(pos, modifiers)


class MaskEraserTool(MaskBrushTool):
    name, label, shortcut = "mask_eraser", "Mask eraser", "Shift+M"
    tip = "Remove parts of the inpainting mask"
    step_text = "Mask erase"
    erase = True


# --------------------------------------------------------------------------- selections


def combine_selection(current: QPainterPath, shape: QPainterPath, modifiers: Qt.KeyboardModifier) -> QPainterPath:
    """Shift adds to the selection, Alt subtracts from it, otherwise the shape replaces it."""
    if modifiers & Qt.KeyboardModifier.ShiftModifier and not current.isEmpty():
        return current.united(shape).simplified()
    if modifiers & Qt.KeyboardModifier.AltModifier and not current.isEmpty():
        return current.subtracted(shape).simplified()
    return shape.simplified()


class SelectionTool(Tool):
    def __init__(self, doc: Document, brush: BrushSettings):
        super().__init__(doc, brush)
        self.modifiers = Qt.KeyboardModifier.NoModifier
        self.active = False

    def shape(self) -> QPainterPath:  # pragma: no cover - abstract
        raise NotImplementedError

    def finish(self) -> None:
        self.active = False
        shape = QPainterPath()
        canvas = QPainterPath()
        canvas.addRect(QRectF(self.doc.rect()))
        raw = self.shape()
        if raw.boundingRect().width() >= 2 and raw.boundingRect().height() >= 2:
            shape = raw.intersected(canvas)
        if shape.isEmpty():
            if self.doc.has_selection() and not self.modifiers:
                self.doc.undo.push(SelectionCommand(self.doc, QPainterPath()))  # a click deselects
        else:
            self.doc.undo.push(SelectionCommand(self.doc, combine_selection(self.doc.selection, shape,
                                                                            self.modifiers)))
        self.changed.emit(QRect())

    def release(self, pos: QPointF) -> None:
        """The last point counts, then the shape becomes the selection (one undo step)."""
        if self.active:
            self.move(pos)
            self.finish()

    def cancel(self) -> None:
        self.active = False
        self.changed.emit(QRect())

    @staticmethod
    def draw_outline(painter: QPainter, path: QPainterPath, zoom: float) -> None:
        painter.setBrush(Qt.BrushStyle.NoBrush)
        painter.setPen(QPen(QColor(0, 0, 0), 1.0 / zoom))
        painter.drawPath(path)
        pen = QPen(QColor(255, 255, 255), 1.0 / zoom, Qt.PenStyle.DashLine)
        painter.setPen(pen)
        painter.drawPath(path)


class RectSelectTool(SelectionTool):
    name, label, shortcut = "rect_select", "Rectangle selection", "R"
    tip = "Drag to select; Shift adds, Alt subtracts, a click deselects"

    def __init__(self, doc: Document, brush: BrushSettings):
        super().__init__(doc, brush)
        self.start = self.end = QPointF()

    def press(self, pos: QPointF, modifiers: Qt.KeyboardModifier) -> None:
        self.active, self.modifiers = True, modifiers
        self.start = self.end = QPointF(round(pos.x()), round(pos.y()))

    def move(self, pos: QPointF) -> None:
        if self.active:
            self.end = QPointF(round(pos.x()), round(pos.y()))
            self.changed.emit(QRect())

    def shape(self) -> QPainterPath:
        path = QPainterPath()
        path.addRect(QRectF(self.start, self.end).normalized())
        return path

    def overlay(self, painter: QPainter, zoom: float) -> None:
        if self.active:
            self.draw_outline(painter, self.shape(), zoom)


class LassoSelectTool(SelectionTool):
    name, label, shortcut = "lasso", "Lasso selection", "L"
    tip = "Draw around the area to select; Shift adds, Alt subtracts"

    def __init__(self, doc: Document, brush: BrushSettings):
        super().__init__(doc, brush)
        self.points: List[QPointF] = []

    def press(self, pos: QPointF, modifiers: Qt.KeyboardModifier) -> None:
        self.active, self.modifiers = True, modifiers
        self.points = [QPointF(pos)]

    def move(self, pos: QPointF) -> None:
        if self.active:
            last = self.points[-1]
            if math.hypot(pos.x() - last.x(), pos.y() - last.y()) >= 1.0:
                self.points.append(QPointF(pos))
                self.changed.emit(QRect())

    def shape(self) -> QPainterPath:
        path = QPainterPath()
        if len(self.points) >= 3:
            path.addPolygon(QPolygonF(self.points))
            path.closeSubpath()
        return path

    def overlay(self, painter: QPainter, zoom: float) -> None:
        if self.active and len(self.points) >= 2:
            path = QPainterPath()
            path.addPolygon(QPolygonF(self.points))
            self.draw_outline(painter, path, zoom)


class PanTool(Tool):
    """Drag to move the view (the view does the moving; middle button and Space work with any tool)."""

    name, label, shortcut = "pan", "Pan", "H"
    tip = "Drag to move around; the wheel zooms"


TOOL_CLASSES = (BrushTool, EraserTool, MaskBrushTool, MaskEraserTool, RectSelectTool, LassoSelectTool, PanTool)
