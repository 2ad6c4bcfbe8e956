"""The canvas document: size, layers, the mask, the selection and the undo stack.

Views and panels only *read* a :class:`Document` and listen to its signals;
every change an artist makes goes through an undo command from
:mod:`.history`, which calls the underscore mutators here.  That keeps undo
complete by construction: there is no other way to change the pixels.
"""
from __future__ import annotations

from typing import List, Optional

import numpy as np
from PySide6.QtCore import QObject, QPointF, QRect, QRectF, Signal
from PySide6.QtGui import QColor, QImage, QPainter, QPainterPath, QUndoStack

from . import qt_images
from .layers import Layer

MASK = "mask"  # the paint target name of the mask (layers are addressed by id)
UNDO_LIMIT = 100


class Document(QObject):
    pixels_changed = Signal(QRect)   # a region of the composite must be redrawn
    mask_changed = Signal(QRect)
    layers_changed = Signal()        # order, properties or the active layer changed
    selection_changed = Signal()

    def __init__(self, width: int, height: int, background: Optional[QColor] = QColor("white"),
                 parent: Optional[QObject] = None):
        super().__init__(parent)
        self.width, self.height = int(width), int(height)
        self.layers: List[Layer] = []
        self.active_id: str = ""
        self.mask = qt_images.new_mask_image(self.width, self.height)
        self.mask_visible = True
        self.selection = QPainterPath()
        self.path: Optional[str] = None          # the project file it was opened from / saved to
        self.undo = QUndoStack(self)
        self.undo.setUndoLimit(UNDO_LIMIT)
        if background is not None:
            bg = Layer("Background", qt_images.new_layer_image(self.width, self.height, background.rgba()))
            self._insert_layer(bg, 0)
        else:
            self._insert_layer(Layer("Layer 1", qt_images.new_layer_image(self.width, self.height)), 0)

    @classmethod
    def from_image(cls, image: QImage, name: str, parent: Optional[QObject] = None) -> "Document":
        """A one-layer document holding ``image`` (an opened PNG)."""
        doc = cls(image.width(), image.height(), background=None, parent=parent)
        doc.layers[0].image = image.convertToFormat(qt_images.LAYER_FORMAT)
        doc.layers[0].name = name
        return doc

    # ------------------------------------------------------------------ reading

    def rect(self) -> QRect:
        return QRect(0, 0, self.width, self.height)

    def layer(self, layer_id: str) -> Layer:
        for layer in self.layers:
            if layer.id == layer_id:
                return layer
        raise KeyError(layer_id)

    def index_of(self, layer_id: str) -> int:
        for i, layer in enumerate(self.layers):
            if layer.id == layer_id:
                return i
        raise KeyError(layer_id)

    def active_layer(self) -> Optional[Layer]:
        try:
            return self.layer(self.active_id)
        except KeyError:
            return self.layers[-1] if self.layers else None

    def target_image(self, target: str) -> QImage:
        """The image a paint target names: a layer id or :data:`MASK`."""
        return self.mask if target == MASK else self.layer(target).image

    def composite(self, rect: Optional[QRect] = None) -> QImage:
        """The visible layers flattened (straight over transparent), cropped to ``rect``."""
        rect = self.rect() if rect is None else rect.intersected(self.rect())
        out = qt_images.new_layer_image(max(1, rect.width()), max(1, rect.height()))
        painter = QPainter(out)
        for layer in self.layers:
            if layer.visible and layer.opacity > 0:
                painter.setOpacity(layer.opacity)
                painter.drawImage(0, 0, layer.image, rect.x(), rect.y(), rect.width(), rect.height())
        painter.end()
        return out

    def mask_array(self) -> np.ndarray:
        return qt_images.gray_array(self.mask)

    def mask_bounds(self) -> QRect:
        return qt_images.nonzero_bounds(qt_images.gray_view(self.mask))

    def has_mask(self) -> bool:
        return bool(qt_images.gray_view(self.mask).any())

    def has_selection(self) -> bool:
        return not self.selection.isEmpty() and not self.selection.boundingRect().intersected(
            QRectF(self.rect())).isEmpty()

    def selection_bounds(self) -> QRect:
        """The selection's pixel bounding box, clipped to the canvas (null when none)."""
        if not self.has_selection():
            return QRect()
        return self.selection.boundingRect().toAlignedRect().intersected(self.rect())

    def selection_mask(self) -> QImage:
        """The selection rendered as a gray8 coverage image (anti-aliased edges)."""
        img = QImage(self.width, self.height, QImage.Format.Format_ARGB32_Premultiplied)
        img.fill(0)
        if self.has_selection():
            painter = QPainter(img)
            painter.setRenderHint(QPainter.RenderHint.Antialiasing)
            painter.fillPath(self.selection, QColor(255, 255, 255))
            painter.end()
        alpha = qt_images.rgba_array(img)[..., 3]
        return qt_images.gray_from_array(alpha)

    # ------------------------------------------------------------------ mutators (undo commands only)

    def _insert_layer(self, layer: Layer, index: int) -> None:
        if (layer.image.width(), layer.image.height()) != (self.width, self.height):
            raise ValueError(f"layer {layer.name!r} is {layer.image.width()}x{layer.image.height()}, "
                             f"the canvas {self.width}x{self.height}")
        self.layers.insert(index, layer)
        self.active_id = layer.id
        self.layers_changed.emit()
        self.pixels_changed.emit(self.rect())

    def _remove_layer(self, layer_id: str) -> int:
        index = self.index_of(layer_id)
        self.layers.pop(index)
        if self.active_id == layer_id:
            self.active_id = self.layers[min(index, len(self.layers) - 1)].id if self.layers else ""
        self.layers_changed.emit()
        self.pixels_changed.emit(self.rect())
        return index

    def _move_layer(self, layer_id: str, index: int) -> None:
        layer = self.layers.pop(self.index_of(layer_id))
        self.layers.insert(index, layer)
        self.layers_changed.emit()
        self.pixels_changed.emit(self.rect())

    def _set_layer_props(self, layer_id: str, props: dict) -> None:
        self.layer(layer_id).set_props(props)
        self.layers_changed.emit()
        self.pixels_changed.emit(self.rect())

    def _paste(self, target: str, pos, pixels: QImage) -> None:
        """Replace the pixels of ``target`` at ``pos`` with ``pixels`` (no blending)."""
        image = self.target_image(target)
        rect = QRect(pos.x(), pos.y(), pixels.width(), pixels.height())
        if target == MASK:
            view = qt_images.gray_view(image)
            view[rect.top():rect.bottom() + 1, rect.left():rect.right() + 1] = qt_images.gray_array(pixels)
        else:
            painter = QPainter(image)
            painter.setCompositionMode(QPainter.CompositionMode.CompositionMode_Source)
            painter.drawImage(rect.topLeft(), pixels)
            painter.end()
        self.notify_pixels(target, rect)

    def _set_selection(self, path: QPainterPath) -> None:
        self.selection = QPainterPath(path)
        self.selection_changed.emit()

    # ------------------------------------------------------------------ not undoable

    def set_active(self, layer_id: str) -> None:
        if layer_id != self.active_id:
            self.layer(layer_id)
            self.active_id = layer_id
            self.layers_changed.emit()

    def set_mask_visible(self, visible: bool) -> None:
        self.mask_visible = bool(visible)
        self.mask_changed.emit(self.rect())

    def notify_pixels(self, target: str, rect: QRect) -> None:
        """Tell views that live painting (before the stroke's undo command exists) changed pixels."""
        if target == MASK:
            self.mask_changed.emit(rect)
        else:
            self.pixels_changed.emit(rect)

    def is_modified(self) -> bool:
        return not self.undo.isClean()

    def point_inside(self, pos: QPointF) -> bool:
        return 0 <= pos.x() < self.width and 0 <= pos.y() < self.height

