"""The Layers panel: order, visibility, opacity, names, and the mask's own row.

Top of the list is the top of the picture, as in every painting program.
Every change goes through an undo command.  A generated layer's tooltip says
how it was made, and "Use settings" loads them back into the Generate panel.
"""
from __future__ import annotations

from typing import Optional

from PySide6.QtCore import QSize, Qt, QTimer, Signal
from PySide6.QtGui import QIcon, QPainter, QPixmap
from PySide6.QtWidgets import (
    QCheckBox,
    QHBoxLayout,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QPushButton,
    QSlider,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from . import dialogs, qt_images
from .document import Document
from .history import AddLayerCommand, LayerPropsCommand, MoveLayerCommand, RemoveLayerCommand
from .layers import GENERATED, Layer

THUMB = 40


class LayersPanel(QWidget):
    use_settings_requested = Signal(dict)   # a generated layer's settings (seed included)
    mask_action = Signal(str)               # clear | from_selection | invert

    def __init__(self, doc: Document, parent: Optional[QWidget] = None):
        super().__init__(parent)
        self.doc: Optional[Document] = None
        self._syncing = False
        outer = QVBoxLayout(self)
        self.list = QListWidget()
        self.list.setIconSize(QSize(THUMB, THUMB))
        self.list.setMinimumHeight(2 * THUMB + 12)
        self.list.currentRowChanged.connect(self._on_row)
        self.list.itemChanged.connect(self._on_item_changed)
        self.list.itemDoubleClicked.connect(lambda _i: self.rename_active())
        outer.addWidget(self.list, 1)
        row = QHBoxLayout()
        row.addWidget(QLabel("Opacity"))
        self.opacity = QSlider(Qt.Orientation.Horizontal)
        self.opacity.setRange(0, 100)
        self.opacity.valueChanged.connect(self._on_opacity)
        row.addWidget(self.opacity, 1)
        outer.addLayout(row)
        row = QHBoxLayout()
        for text, tip, slot in (("+", "New layer", self.add_layer), ("−", "Delete layer", self.delete_active),
                                ("▲", "Move up", lambda: self.move_active(1)),
                                ("▼", "Move down", lambda: self.move_active(-1))):
            b = QToolButton()
            b.setText(text)
            b.setToolTip(tip)
            b.clicked.connect(slot)
            row.addWidget(b)
        self.use_settings_button = QPushButton("Use settings")
        self.use_settings_button.setToolTip("Load the settings this generated layer was made with")
        self.use_settings_button.clicked.connect(self._use_settings)
        row.addWidget(self.use_settings_button)
        row.addStretch(1)
        outer.addLayout(row)
        row = QHBoxLayout()
        self.show_mask = QCheckBox("Show mask")
        self.show_mask.toggled.connect(lambda on: self.doc.set_mask_visible(on))
        row.addWidget(self.show_mask)
        for text, action, tip in (("Clear", "clear", "Clear the inpainting mask"),
                                  ("From selection", "from_selection", "Make the selection the mask"),
                                  ("Invert", "invert", "Swap masked and unmasked areas")):
            b = QPushButton(text)
            b.setToolTip(tip)
            b.clicked.connect(lambda _=False, a=action: self.mask_action.emit(a))
            row.addWidget(b)
        outer.addLayout(row)
        self._thumbs = QTimer(self)
        self._thumbs.setSingleShot(True)
        self._thumbs.setInterval(400)
        self._thumbs.timeout.connect(self.refresh)
        self.set_document(doc)
        from . import control_layers  # "Control…": mark the active layer as a control layer

        self.control_button = control_layers.attach(self)

    def set_document(self, doc: Document) -> None:
        if self.doc is not None:
            self.doc.layers_changed.disconnect(self.refresh)
            self.doc.pixels_changed.disconnect(self._later)
            self.doc.mask_changed.disconnect(self._mask_toggled)
        self.doc = doc
        doc.layers_changed.connect(self.refresh)
        doc.pixels_changed.connect(self._later)
        doc.mask_changed.connect(self._mask_toggled)
        self.refresh()
        self._mask_toggled()

    def _later(self, *_args) -> None:
        self._thumbs.start()   # thumbnails follow strokes, but not on every mouse move

    def _mask_toggled(self, *_args) -> None:
        self.show_mask.blockSignals(True)
        self.show_mask.setChecked(self.doc.mask_visible)
        self.show_mask.blockSignals(False)

    def refresh(self) -> None:
        self._syncing = True
        self.list.clear()
        for layer in reversed(self.doc.layers):
            item = QListWidgetItem(QIcon(self._thumb(layer)), layer.name)
            item.setFlags(item.flags() | Qt.ItemFlag.ItemIsUserCheckable)
            item.setCheckState(Qt.CheckState.Checked if layer.visible else Qt.CheckState.Unchecked)
            item.setData(Qt.ItemDataRole.UserRole, layer.id)
            item.setToolTip(self._tooltip(layer))
            self.list.addItem(item)
        active = self.doc.active_layer()
        if active is not None:
            self.list.setCurrentRow(len(self.doc.layers) - 1 - self.doc.index_of(active.id))
            self.opacity.setValue(round(active.opacity * 100))
            self.use_settings_button.setEnabled(active.kind == GENERATED and bool(active.info.get("settings")))
        self._syncing = False

    def _thumb(self, layer: Layer) -> QPixmap:
        scaled = layer.image.scaled(THUMB, THUMB, Qt.AspectRatioMode.KeepAspectRatio,
                                    Qt.TransformationMode.SmoothTransformation)
        pm = QPixmap(THUMB, THUMB)
        pm.fill(Qt.GlobalColor.lightGray)
        p = QPainter(pm)
        p.drawImage((THUMB - scaled.width()) // 2, (THUMB - scaled.height()) // 2, scaled)
        p.end()
        return pm

    @staticmethod
    def _tooltip(layer: Layer) -> str:
        if layer.kind != GENERATED:
            return layer.name
        s = layer.info.get("settings", {})
        return (f"{layer.info.get('mode', 'generate').capitalize()} · seed {layer.info.get('seed')}\n"
                f"Prompt: {s.get('prompt', '')}\nNegative: {s.get('negative_prompt', '')}\n"
                f"{s.get('sampler')} · {s.get('steps')} steps · CFG {s.get('cfg_scale')} · "
                f"strength {s.get('strength')}")

    def _layer_at(self, row: int) -> Optional[Layer]:
        if 0 <= row < len(self.doc.layers):
            return self.doc.layers[len(self.doc.layers) - 1 - row]
        return None

    def _on_row(self, row: int) -> None:
        if self._syncing:
            return
        layer = self._layer_at(row)
        if layer is not None:
            self.doc.set_active(layer.id)

    def _on_item_changed(self, item: QListWidgetItem) -> None:
        if self._syncing:
            return
        layer = self.doc.layer(item.data(Qt.ItemDataRole.UserRole))
        visible = item.checkState() == Qt.CheckState.Checked
        if visible != layer.visible:
            self.doc.undo.push(LayerPropsCommand(self.doc, layer.id, {"visible": visible},
                                                 ("Show" if visible else "Hide") + f" “{layer.name}”"))

    def _on_opacity(self, value: int) -> None:
        if self._syncing:
            return
        layer = self.doc.active_layer()
        if layer is not None and round(layer.opacity * 100) != value:
            self.doc.undo.push(LayerPropsCommand(self.doc, layer.id, {"opacity": value / 100},
                                                 f"Opacity of “{layer.name}”"))

    # ------------------------------------------------------------------ actions

    def add_layer(self) -> None:
        n = len(self.doc.layers) + 1
        layer = Layer(f"Layer {n}", qt_images.new_layer_image(self.doc.width, self.doc.height))
        active = self.doc.active_layer()
        index = self.doc.index_of(active.id) + 1 if active is not None else None
        self.doc.undo.push(AddLayerCommand(self.doc, layer, index))

    def delete_active(self) -> None:
        layer = self.doc.active_layer()
        if layer is None:
            return
        if len(self.doc.layers) == 1:
            dialogs.show_info(self, "Delete layer", "A picture needs at least one layer.")
            return
        self.doc.undo.push(RemoveLayerCommand(self.doc, layer.id))

    def move_active(self, delta: int) -> None:
        layer = self.doc.active_layer()
        if layer is None:
            return
        index = self.doc.index_of(layer.id)
        new = index + delta
        if 0 <= new < len(self.doc.layers):
            self.doc.undo.push(MoveLayerCommand(self.doc, layer.id, new,
                                                f"Move “{layer.name}” {'up' if delta > 0 else 'down'}"))

    def rename_active(self) -> None:
        layer = self.doc.active_layer()
        if layer is None:
            return
        name = dialogs.ask_text(self, "Rename layer", "Name:", layer.name)
        if name and name.strip() and name.strip() != layer.name:
            self.doc.undo.push(LayerPropsCommand(self.doc, layer.id, {"name": name.strip()},
                                                 f"Rename “{layer.name}”"))

    def _use_settings(self) -> None:
        layer = self.doc.active_layer()
        if layer is not None and layer.info.get("settings"):
            self.use_settings_requested.emit(dict(layer.info["settings"]))
