"""Control layers on the canvas: a layer marked as control steers the composition of every job.

A layer is marked by its ``info["control"]`` (a :class:`~impasto.protocol.control.ControlLayer`
as a dict: type, strength, start / end, model), so the mark is saved with the
project like the rest of a layer's info.  At Generate / Refine / Inpaint the
planner's window of each marked layer is read (:func:`controls_for`) - the
same rectangle the picture is read in, so an "only masked" inpaint sends only
the region around the mask - and travels as a control unit; the client core
builds the units (:func:`impasto.protocol.planner.plan_job`).

A control layer usually stays hidden (it guides the picture, it is not part
of it); hidden or not, its pixels are read.  The "Control…" button of the
Layers panel marks or unmarks the active layer (:class:`ControlLayerDialog`).
"""
from __future__ import annotations

from typing import List, Optional, Tuple

from PySide6.QtCore import QRect
from PySide6.QtWidgets import (QCheckBox, QComboBox, QDialog, QDialogButtonBox, QDoubleSpinBox, QFormLayout,
                               QLineEdit, QPushButton, QWidget)

from impasto.protocol.control import ControlLayer
from impasto.protocol.messages import CONTROL_TYPES

from . import qt_images
from .document import Document
from .layers import Layer

KEY = "control"


def control_of(layer: Layer) -> Optional[ControlLayer]:
    """The layer's control settings, or None when it is not a control layer."""
    data = layer.info.get(KEY) if isinstance(layer.info, dict) else None
    if not isinstance(data, dict):
        return None
    try:
        return ControlLayer.from_dict(data)
    except TypeError:
        return None


def mark(doc: Document, layer: Layer, control: Optional[ControlLayer]) -> None:
    """Mark ``layer`` as a control layer with ``control`` (None: an ordinary layer again)."""
    if control is None:
        layer.info.pop(KEY, None)
    else:
        data = control.to_dict()
        data["source"] = layer.id
        layer.info[KEY] = data
    doc.layers_changed.emit()


def controls_for(doc: Document, window: Tuple[int, int, int, int]) -> List[Tuple[ControlLayer, bytes]]:
    """Every enabled control layer (bottom to top) with its RGBA8 pixels inside ``window``."""
    x0, y0, x1, y1 = window
    rect = QRect(x0, y0, x1 - x0, y1 - y0)
    out = []
    for layer in doc.layers:
        control = control_of(layer)
        if control is None or not control.enabled:
            continue
        out.append((control, qt_images.rgba_array(layer.image.copy(rect)).tobytes()))
    return out


class ControlLayerDialog(QDialog):
    """Use the layer as a control layer: type, strength, start / end of the schedule, control model."""

    def __init__(self, layer: Layer, parent: Optional[QWidget] = None):
        super().__init__(parent)
        self.setWindowTitle(f"Control layer: {layer.name}")
        current = control_of(layer)
        form = QFormLayout(self)
        self.enabled = QCheckBox("Use this layer as a control layer")
        self.enabled.setChecked(current is not None)
        self.type = QComboBox()
        self.type.addItems(list(CONTROL_TYPES))
        self.type.setToolTip("What the daemon makes of the layer first: scribble (strokes), line art, canny / soft "
                             "edges of a picture, raw (the layer already is the map); depth and pose need their "
                             "estimator's weights")
        self.strength = QDoubleSpinBox()
        self.strength.setRange(0.0, 2.0)
        self.strength.setSingleStep(0.05)
        self.start, self.end = QDoubleSpinBox(), QDoubleSpinBox()
        for spin in (self.start, self.end):
            spin.setRange(0.0, 1.0)
            spin.setSingleStep(0.05)
        self.model = QLineEdit()
        self.model.setPlaceholderText("the installed one that fits")
        c = current or ControlLayer()
        self.type.setCurrentText(c.type)
        self.strength.setValue(c.strength)
        self.start.setValue(c.start)
        self.end.setValue(c.end)
        self.model.setText(c.model)
        form.addRow(self.enabled)
        form.addRow("Type", self.type)
        form.addRow("Strength", self.strength)
        form.addRow("Start", self.start)
        form.addRow("End", self.end)
        form.addRow("Control model", self.model)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel)
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        form.addRow(buttons)

    def value(self) -> Optional[ControlLayer]:
        if not self.enabled.isChecked():
            return None
        return ControlLayer(type=self.type.currentText(), strength=float(self.strength.value()),
                            start=float(self.start.value()), end=float(self.end.value()),
                            model=self.model.text().strip())


def edit_active(panel) -> None:
    """The Layers panel's "Control…" button: mark or unmark the active layer."""
    doc = panel.doc
    layer = doc.active_layer() if doc is not None else None
    if layer is None:
        return
    dialog = ControlLayerDialog(layer, panel)
    if dialog.exec() == QDialog.DialogCode.Accepted:
        mark(doc, layer, dialog.value())


def attach(panel) -> QPushButton:
    """A "Control…" button beside the Layers panel's "Use settings"."""
    button = QPushButton("Control…")
    button.setToolTip("Use the active layer as a control layer (a sketch, line art or map that steers the "
                      "composition)")
    button.clicked.connect(lambda: edit_active(panel))
    layout = panel.layout()
    for i in range(layout.count()):
        inner = layout.itemAt(i).layout()
        if inner is not None and inner.indexOf(panel.use_settings_button) >= 0:
            inner.insertWidget(inner.indexOf(panel.use_settings_button) + 1, button)
            break
    return button
