"""Control layers in the Krita docker: pick a layer, a control type, a strength and a range - several at once.

Each row names one of the document's layers (by Krita's unique id, so
renaming or moving it keeps the row); at Generate its pixels are read *in the
job's window* - the same rectangle the canvas is read in, so an "only masked"
inpaint sends only the region around the selection - and travel as the
unit's control image (:mod:`...protocol.control` builds the units, the daemon
runs the preprocessor and the control model).  A control layer is usually
hidden: it guides the picture, it is not part of it; hidden layers are read
all the same.

Krita glue only (the node API, a Qt group box); the job is planned by the
client core like everywhere else.
"""
from __future__ import annotations

from typing import Any, Callable, List, Optional, Tuple

from ...protocol.control import ControlLayer
from ...protocol.errors import PlanError
from ...protocol.messages import CONTROL_TYPES
from .masks import Rect
from .pixels import PixelFormat
from .qt import QtWidgets

LayerChoice = Tuple[str, str]      # (name shown, unique id)


def _walk(nodes) -> List[Any]:
    out = []
    for node in nodes or []:
        out.append(node)
        try:
            out.extend(_walk(node.childNodes()))
        except Exception:
            pass
    return out


def layer_choices(doc: Any) -> List[LayerChoice]:
    """The document's paint layers (top to bottom as Krita lists them) as (name, unique id)."""
    if doc is None:
        return []
    out = []
    for node in _walk(list(doc.topLevelNodes())):
        if node.type() in ("paintlayer", "filelayer", "vectorlayer", "grouplayer"):
            out.append((node.name(), node.uniqueId().toString()))
    return out


def find_node(doc: Any, uid: str) -> Optional[Any]:
    for node in _walk(list(doc.topLevelNodes())):
        if node.uniqueId().toString() == uid:
            return node
    return None


def read_controls(doc: Any, layers: List[ControlLayer], window: Rect) -> List[Tuple[ControlLayer, bytes, PixelFormat]]:
    """Each enabled control layer's raw pixels inside ``window`` (converted to RGBA8 by the planning step)."""
    x, y, w, h = window
    out = []
    for i, layer in enumerate(layers):
        if not layer.enabled:
            continue
        node = find_node(doc, layer.source) if layer.source else None
        if node is None:
            raise PlanError(f"control layer {i + 1}: its layer is no longer in the document - pick another one",
                            "control")
        fmt = PixelFormat.of(node.colorModel(), node.colorDepth(), node.colorProfile())
        if not fmt.supported:
            raise PlanError(f"control layer {i + 1} ({node.name()}) is {node.colorModel()}: convert it to RGBA "
                            f"or greyscale", "control")
        out.append((layer, bytes(node.pixelData(x, y, w, h)), fmt))
    return out


class _LayerCombo(QtWidgets.QComboBox):
    """A layer picker that lists the document's layers afresh each time it opens."""

    def __init__(self, choices: Callable[[], List[LayerChoice]], parent=None):
        super().__init__(parent)
        self._choices = choices
        self.refresh()

    def refresh(self, keep: str = "") -> None:
        keep = keep or (self.currentData() or "")
        self.blockSignals(True)
        self.clear()
        for name, uid in self._choices():
            self.addItem(name, uid)
        index = self.findData(keep) if keep else -1
        if index >= 0:
            self.setCurrentIndex(index)
        self.blockSignals(False)

    def showPopup(self) -> None:  # noqa: N802 (Qt naming)
        self.refresh()
        super().showPopup()


class ControlRow(QtWidgets.QWidget):
    def __init__(self, choices: Callable[[], List[LayerChoice]], on_remove: Callable[["ControlRow"], None],
                 parent=None):
        super().__init__(parent)
        row = QtWidgets.QHBoxLayout(self)
        row.setContentsMargins(0, 0, 0, 0)
        self.layer_combo = _LayerCombo(choices)
        self.layer_combo.setToolTip("The layer whose pixels steer the picture (it may be hidden)")
        self.type_combo = QtWidgets.QComboBox()
        self.type_combo.addItems(list(CONTROL_TYPES))
        self.type_combo.setCurrentText("scribble")
        self.type_combo.setToolTip("What the daemon makes of the layer first: scribble (strokes), line art, "
                                   "canny / soft edges of a picture, raw (the layer already is the map)")
        self.strength = QtWidgets.QDoubleSpinBox()
        self.strength.setRange(0.0, 2.0)
        self.strength.setSingleStep(0.05)
        self.strength.setValue(1.0)
        self.strength.setToolTip("Control strength (0 leaves it out)")
        self.start = QtWidgets.QDoubleSpinBox()
        self.end = QtWidgets.QDoubleSpinBox()
        for spin, value, tip in ((self.start, 0.0, "Start: the fraction of the steps before the layer acts"),
                                 (self.end, 1.0, "End: the fraction of the steps after which it stops")):
            spin.setRange(0.0, 1.0)
            spin.setSingleStep(0.05)
            spin.setValue(value)
            spin.setToolTip(tip)
        remove = QtWidgets.QToolButton()
        remove.setText("✕")
        remove.setToolTip("Remove this control layer")
        remove.clicked.connect(lambda: on_remove(self))
        for widget, stretch in ((self.layer_combo, 2), (self.type_combo, 1), (self.strength, 0), (self.start, 0),
                                (self.end, 0), (remove, 0)):
            row.addWidget(widget, stretch)

    def value(self) -> ControlLayer:
        return ControlLayer(type=self.type_combo.currentText(), source=self.layer_combo.currentData() or "",
                            strength=float(self.strength.value()), start=float(self.start.value()),
                            end=float(self.end.value()))

    def set_value(self, layer: ControlLayer) -> None:
        self.type_combo.setCurrentText(layer.type)
        self.strength.setValue(layer.strength)
        self.start.setValue(layer.start)
        self.end.setValue(layer.end)
        self.layer_combo.refresh(layer.source)


class ControlLayersBox(QtWidgets.QGroupBox):
    """Zero or more control rows and an "Add control layer" button."""

    def __init__(self, document: Callable[[], Any], parent=None):
        super().__init__("Control layers", parent)
        self._document = document
        self.rows: List[ControlRow] = []
        self._layout = QtWidgets.QVBoxLayout(self)
        self._layout.setContentsMargins(4, 4, 4, 4)
        self.add_button = QtWidgets.QPushButton("Add control layer")
        self.add_button.setToolTip("Steer the composition with a layer: a sketch, line art, edges or a map")
        self.add_button.clicked.connect(lambda: self.add())
        self._layout.addWidget(self.add_button)

    def choices(self) -> List[LayerChoice]:
        try:
            return layer_choices(self._document())
        except Exception:
            return []

    def add(self, layer: Optional[ControlLayer] = None) -> ControlRow:
        row = ControlRow(self.choices, self.remove)
        if layer is not None:
            row.set_value(layer)
        self.rows.append(row)
        self._layout.insertWidget(self._layout.count() - 1, row)
        return row

    def remove(self, row: ControlRow) -> None:
        self.rows.remove(row)
        row.setParent(None)
        row.deleteLater()

    def layers(self) -> List[ControlLayer]:
        return [row.value() for row in self.rows]

    def read(self, doc: Any, window: Rect) -> List[Tuple[ControlLayer, bytes, PixelFormat]]:
        return read_controls(doc, self.layers(), window)


def attach(panel: Any) -> ControlLayersBox:
    """Put a control-layers box into the docker, above its Generate buttons."""
    box = ControlLayersBox(lambda: panel.host.active_document(), panel)
    layout = panel.layout()
    index = layout.count()
    for i in range(layout.count()):          # right below the strength row
        inner = layout.itemAt(i).layout()
        if inner is not None and inner.indexOf(panel.strength_slider) >= 0:
            index = i + 1
    layout.insertWidget(index, box)
    return box
