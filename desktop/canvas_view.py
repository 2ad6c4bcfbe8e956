"""The widget the artist paints on: zoom, pan, overlays, and mouse to tool.

It draws, bottom to top: a checkerboard for transparency, the flattened
layers (cached, refreshed only where the document says pixels changed), the
staged candidate or the live generation preview in the place it will land,
the mask as a red veil, the selection's marching ants and the tool's own
feedback (brush outline, lasso in progress).

Wheel zooms around the cursor; the middle button, Space+drag or the Pan tool
move the view; ``[``/``]`` resize the brush, ``0`` fits, ``1`` is 100 %.
"""
from __future__ import annotations

from typing import Optional

import numpy as np
from PySide6.QtCore import QPointF, QRect, QRectF, QSize, Qt, Signal
from PySide6.QtGui import (
    QBrush,
    QColor,
    QImage,
    QKeyEvent,
    QMouseEvent,
    QPainter,
    QPaintEvent,
    QPen,
    QPixmap,
    QWheelEvent,
)
from PySide6.QtWidgets import QSizePolicy, QWidget

from . import qt_images
from .document import Document
from .tools import PanTool, Tool

MIN_ZOOM, MAX_ZOOM = 0.02, 32.0
MASK_COLOR = (230, 40, 60)
MASK_ALPHA = 0.45


def _checker_brush() -> QBrush:
    tile = QPixmap(16, 16)
    tile.fill(QColor(205, 205, 205))
    p = QPainter(tile)
    p.fillRect(0, 0, 8, 8, QColor(245, 245, 245))
    p.fillRect(8, 8, 8, 8, QColor(245, 245, 245))
    p.end()
    return QBrush(tile)


class CanvasView(QWidget):
    zoom_changed = Signal(float)
    cursor_moved = Signal(QPointF)       # canvas coordinates under the mouse
    brush_size_step = Signal(int)        # +1 / -1 from [ and ]

    def __init__(self, doc: Document, parent: Optional[QWidget] = None):
        super().__init__(parent)
        self.setFocusPolicy(Qt.FocusPolicy.StrongFocus)
        self.setMouseTracking(True)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        self.setMinimumSize(200, 200)
        self.setAttribute(Qt.WidgetAttribute.WA_OpaquePaintEvent)
        self.doc: Optional[Document] = None
        self.tool: Optional[Tool] = None
        self.zoom = 1.0
        self.offset = QPointF(0, 0)
        self._fitted = False              # keep fitting on resize until the artist zooms or pans
        self._composite = QImage()
        self._mask_overlay = QImage()
        self._checker = _checker_brush()
        self._space = False
        self._panning: Optional[QPointF] = None
        self._candidate: Optional[QImage] = None
        self._candidate_rect = QRect()
        self._preview: Optional[QImage] = None
        self._preview_rect = QRect()
        self.set_document(doc)

    # ------------------------------------------------------------------ document and tool

    def set_document(self, doc: Document) -> None:
        if self.doc is not None:
            for sig, slot in self._connections():
                sig.disconnect(slot)
        self.doc = doc
        for sig, slot in self._connections():
            sig.connect(slot)
        self._composite = doc.composite()
        self._mask_overlay = qt_images.new_layer_image(doc.width, doc.height)
        self._refresh_mask(doc.rect())
        self.clear_overlays()
        self._fitted = False
        self.fit()

    def _connections(self):
        d = self.doc
        return ((d.pixels_changed, self._on_pixels), (d.mask_changed, self._on_mask),
                (d.selection_changed, self.update))

    def set_tool(self, tool: Tool) -> None:
        if self.tool is not None:
            self.tool.cancel()
            self.tool.hover(None)
            self.tool.changed.disconnect(self._on_tool_changed)
        self.tool = tool
        tool.changed.connect(self._on_tool_changed)
        self._update_cursor()
        self.update()

    def _on_tool_changed(self, _rect: QRect) -> None:
        self.update()

    def _on_pixels(self, rect: QRect) -> None:
        rect = rect.intersected(self.doc.rect())
        if rect.isEmpty():
            return
        patch = self.doc.composite(rect)
        p = QPainter(self._composite)
        p.setCompositionMode(QPainter.CompositionMode.CompositionMode_Source)
        p.drawImage(rect.topLeft(), patch)
        p.end()
        self.update(self._to_widget_rect(rect))

    def _on_mask(self, rect: QRect) -> None:
        self._refresh_mask(rect)
        self.update(self._to_widget_rect(rect))

    def _refresh_mask(self, rect: QRect) -> None:
        rect = rect.intersected(self.doc.rect())
        if rect.isEmpty():
            return
        m = qt_images.gray_view(self.doc.mask)[rect.top():rect.bottom() + 1, rect.left():rect.right() + 1]
        a = m.astype(np.float32) * MASK_ALPHA
        arr = np.empty(m.shape + (4,), np.uint8)
        for i, c in enumerate(MASK_COLOR):
            arr[..., i] = c
        arr[..., 3] = (a + 0.5).astype(np.uint8)
        patch = qt_images.rgba_from_array(arr)
        p = QPainter(self._mask_overlay)
        p.setCompositionMode(QPainter.CompositionMode.CompositionMode_Source)
        p.drawImage(rect.topLeft(), patch)
        p.end()

    # ------------------------------------------------------------------ overlays from generation

    def set_candidate(self, image: Optional[QImage], rect: QRect = QRect()) -> None:
        """Show a staged result where it would land (``None`` hides it)."""
        self._candidate, self._candidate_rect = image, QRect(rect)
        self.update()

    def set_preview(self, image: Optional[QImage], rect: QRect = QRect()) -> None:
        """Show a live preview of the job in progress, scaled into ``rect``."""
        self._preview, self._preview_rect = image, QRect(rect)
        self.update()

    def clear_overlays(self) -> None:
        self._candidate = self._preview = None
        self.update()

    def composite_image(self) -> QImage:
        return QImage(self._composite)

    # ------------------------------------------------------------------ coordinates and zoom

    def to_canvas(self, pos: QPointF) -> QPointF:
        return QPointF((pos.x() - self.offset.x()) / self.zoom, (pos.y() - self.offset.y()) / self.zoom)

    def to_widget(self, pos: QPointF) -> QPointF:
        return QPointF(pos.x() * self.zoom + self.offset.x(), pos.y() * self.zoom + self.offset.y())

    def _to_widget_rect(self, rect: QRect) -> QRect:
        r = QRectF(self.to_widget(QPointF(rect.topLeft())), QSize(rect.width(), rect.height()) * self.zoom)
        return r.toAlignedRect().adjusted(-2, -2, 2, 2)

    def fit(self) -> None:
        """Show the whole canvas, centred (what a new or opened picture starts with)."""
        if self.doc is None or self.width() < 10:
            return
        margin = 24
        z = min((self.width() - 2 * margin) / self.doc.width, (self.height() - 2 * margin) / self.doc.height)
        self._set_zoom_raw(max(MIN_ZOOM, min(MAX_ZOOM, z)))
        self.offset = QPointF((self.width() - self.doc.width * self.zoom) / 2,
                              (self.height() - self.doc.height * self.zoom) / 2)
        self._fitted = True
        self.update()

    def set_zoom(self, zoom: float, anchor: Optional[QPointF] = None) -> None:
        """Zoom keeping the canvas point under ``anchor`` (widget coords; default: centre) in place."""
        anchor = QPointF(self.width() / 2, self.height() / 2) if anchor is None else anchor
        before = self.to_canvas(anchor)
        self._set_zoom_raw(max(MIN_ZOOM, min(MAX_ZOOM, zoom)))
        self.offset = QPointF(anchor.x() - before.x() * self.zoom, anchor.y() - before.y() * self.zoom)
        self._fitted = False
        self.update()

    def _set_zoom_raw(self, zoom: float) -> None:
        if zoom != self.zoom:
            self.zoom = zoom
            self.zoom_changed.emit(zoom)

    def zoom_in(self) -> None:
        self.set_zoom(self.zoom * 1.25)

    def zoom_out(self) -> None:
        self.set_zoom(self.zoom / 1.25)

    def pan_by(self, dx: float, dy: float) -> None:
        self.offset += QPointF(dx, dy)
        self._fitted = False
        self.update()

    def resizeEvent(self, event) -> None:  # noqa: N802
        if self._fitted or self.zoom == 1.0 and self.offset == QPointF(0, 0):
            self.fit()
        super().resizeEvent(event)

    # ------------------------------------------------------------------ painting

    def paintEvent(self, event: QPaintEvent) -> None:  # noqa: N802
        p = QPainter(self)
        p.fillRect(event.rect(), QColor(58, 58, 62))
        if self.doc is None:
            return
        p.save()
        p.translate(self.offset)
        p.scale(self.zoom, self.zoom)
        canvas = QRectF(self.doc.rect())
        p.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform, self.zoom < 2.0)
        # the checkerboard keeps its on-screen size at any zoom
        p.save()
        p.resetTransform()
        p.setBrushOrigin(self.offset.toPoint())
        p.fillRect(QRectF(self.to_widget(canvas.topLeft()), self.to_widget(canvas.bottomRight())), self._checker)
        p.restore()
        p.drawImage(QPointF(0, 0), self._composite)
        if self._candidate is not None:
            p.drawImage(QRectF(self._candidate_rect), self._candidate)
        if self._preview is not None:
            p.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform, True)
            p.drawImage(QRectF(self._preview_rect), self._preview)
            p.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform, self.zoom < 2.0)
        if self.doc.mask_visible and self._candidate is None and self._preview is None:
            p.drawImage(QPointF(0, 0), self._mask_overlay)
        self._paint_outlines(p)
        if self.tool is not None:
            p.setRenderHint(QPainter.RenderHint.Antialiasing)
            self.tool.overlay(p, self.zoom)
        p.restore()
        p.end()

    def _paint_outlines(self, p: QPainter) -> None:
        cosmetic = 1.0 / self.zoom
        p.setBrush(Qt.BrushStyle.NoBrush)
        p.setPen(QPen(QColor(20, 20, 20), cosmetic))
        p.drawRect(QRectF(self.doc.rect()).adjusted(-cosmetic, -cosmetic, 0, 0))
        if self.doc.has_selection():
            p.setPen(QPen(QColor(0, 0, 0), cosmetic))
            p.drawPath(self.doc.selection)
            p.setPen(QPen(QColor(255, 255, 255), cosmetic, Qt.PenStyle.DashLine))
            p.drawPath(self.doc.selection)
        staged = self._candidate_rect if self._candidate is not None else (
            self._preview_rect if self._preview is not None else QRect())
        if not staged.isEmpty() and staged != self.doc.rect():
            p.setPen(QPen(QColor(80, 170, 255), 2 * cosmetic, Qt.PenStyle.DashLine))
            p.drawRect(QRectF(staged))

    # ------------------------------------------------------------------ input

    def _update_cursor(self) -> None:
        if self._panning is not None:
            self.setCursor(Qt.CursorShape.ClosedHandCursor)
        elif self._space or isinstance(self.tool, PanTool):
            self.setCursor(Qt.CursorShape.OpenHandCursor)
        elif self.tool is not None and self.tool.name in ("brush", "eraser", "mask", "mask_eraser"):
            self.setCursor(Qt.CursorShape.CrossCursor)
        else:
            self.setCursor(Qt.CursorShape.ArrowCursor)

    def mousePressEvent(self, event: QMouseEvent) -> None:  # noqa: N802
        pos = event.position()
        wants_pan = event.button() == Qt.MouseButton.MiddleButton or (
            event.button() == Qt.MouseButton.LeftButton and (self._space or isinstance(self.tool, PanTool)))
        if wants_pan:
            self._panning = pos
            self._update_cursor()
        elif event.button() == Qt.MouseButton.LeftButton and self.tool is not None:
            self.tool.press(self.to_canvas(pos), event.modifiers())
        event.accept()

    def mouseMoveEvent(self, event: QMouseEvent) -> None:  # noqa: N802
        pos = event.position()
        if self._panning is not None:
            delta = pos - self._panning
            self._panning = pos
            self.pan_by(delta.x(), delta.y())
            return
        cpos = self.to_canvas(pos)
        self.cursor_moved.emit(cpos)
        if self.tool is not None:
            if event.buttons() & Qt.MouseButton.LeftButton:
                self.tool.move(cpos)
            else:
                self.tool.hover(cpos)

    def mouseReleaseEvent(self, event: QMouseEvent) -> None:  # noqa: N802
        if self._panning is not None and event.button() in (Qt.MouseButton.MiddleButton, Qt.MouseButton.LeftButton):
            self._panning = None
            self._update_cursor()
            return
        if event.button() == Qt.MouseButton.LeftButton and self.tool is not None:
            self.tool.release(self.to_canvas(event.position()))

    def leaveEvent(self, event) -> None:  # noqa: N802
        if self.tool is not None:
            self.tool.hover(None)
        super().leaveEvent(event)

    def wheelEvent(self, event: QWheelEvent) -> None:  # noqa: N802
        steps = event.angleDelta().y() / 120.0
        if event.modifiers() & Qt.KeyboardModifier.ShiftModifier:
            self.pan_by(event.angleDelta().y() / 2, 0)
        elif steps:
            self.set_zoom(self.zoom * (1.2 ** steps), event.position())
        event.accept()

    def keyPressEvent(self, event: QKeyEvent) -> None:  # noqa: N802
        key = event.key()
        if key == Qt.Key.Key_Space and not event.isAutoRepeat():
            self._space = True
            self._update_cursor()
        elif key == Qt.Key.Key_Escape and self.tool is not None:
            self.tool.cancel()
        elif key == Qt.Key.Key_BracketLeft:
            self.brush_size_step.emit(-1)
        elif key == Qt.Key.Key_BracketRight:
            self.brush_size_step.emit(1)
        elif key == Qt.Key.Key_0:
            self.fit()
        elif key == Qt.Key.Key_1:
            self.set_zoom(1.0)
        elif key in (Qt.Key.Key_Plus, Qt.Key.Key_Equal):
            self.zoom_in()
        elif key == Qt.Key.Key_Minus:
            self.zoom_out()
        else:
            super().keyPressEvent(event)

    def keyReleaseEvent(self, event: QKeyEvent) -> None:  # noqa: N802
        if event.key() == Qt.Key.Key_Space and not event.isAutoRepeat():
            self._space = False
            self._update_cursor()
        else:
            super().keyReleaseEvent(event)

    def sizeHint(self) -> QSize:  # noqa: D401
        return QSize(900, 700)

