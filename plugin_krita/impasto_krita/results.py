"""The docker's "Results" section: this document's results, with the settings that made them.

A Qt view (PyQt5 or PyQt6, Krita's) over the client core's
:class:`~impasto.protocol.history.ResultHistory` - the same model as the
canvas's Results dock: a thumbnail per result with its prompt and seed, the
A1111 parameters as a tooltip, "Use settings" (the form gets the result's
knobs and seed back) and "Delete".  Kept per document (by its file; an
unsaved one: this Krita session) under ``IMPASTO_HOME/history``.
"""
from __future__ import annotations

import uuid
from typing import Any, Callable, List, Optional

from ...protocol.history import ResultHistory, history_key
from ...protocol.launcher import impasto_home
from ...protocol.settings import Settings
from .qt import QtCore, QtGui, QtWidgets, Qt

THUMB = 80
SESSION = uuid.uuid4().hex[:12]


def document_key(doc: Any) -> str:
    try:
        path = doc.fileName() if doc is not None else ""
    except Exception:
        path = ""
    return history_key(path or "", SESSION)


def png_of(image: Any) -> bytes:
    """A QImage as PNG bytes (through a QBuffer: the plug-in has no Pillow)."""
    data = QtCore.QByteArray()
    buf = QtCore.QBuffer(data)
    buf.open(QtCore.QIODevice.OpenModeFlag.WriteOnly if hasattr(QtCore.QIODevice, "OpenModeFlag")
             else QtCore.QIODevice.WriteOnly)
    image.save(buf, "PNG")
    buf.close()
    return bytes(data)


class ResultsView(QtWidgets.QWidget):
    def __init__(self, use_settings: Callable[[Any], None], parent: Optional[Any] = None):
        super().__init__(parent)
        self.use_settings = use_settings
        self.history: Optional[ResultHistory] = None
        self.key = ""
        self.list = QtWidgets.QListWidget()
        self.list.setViewMode(QtWidgets.QListView.ViewMode.IconMode)
        self.list.setIconSize(QtCore.QSize(THUMB, THUMB))
        self.list.setResizeMode(QtWidgets.QListView.ResizeMode.Adjust)
        self.list.setWordWrap(True)
        self.list.setGridSize(QtCore.QSize(THUMB + 36, THUMB + 40))
        self.list.setMinimumHeight(THUMB + 50)
        self.list.itemDoubleClicked.connect(lambda *_a: self.use_selected())
        self.use_button = QtWidgets.QPushButton("Use settings")
        self.use_button.setToolTip("Put this result's prompt, settings and seed back in the form")
        self.use_button.clicked.connect(self.use_selected)
        self.delete_button = QtWidgets.QPushButton("Delete")
        self.delete_button.clicked.connect(self.delete_selected)
        self.save_button = QtWidgets.QPushButton("Save…")
        self.save_button.setToolTip("Save this result as a PNG that carries its settings (A1111 'parameters': "
                                    "Civitai and A1111's PNG Info show them; the canvas opens them)")
        self.save_button.clicked.connect(self.save_selected)
        row = QtWidgets.QHBoxLayout()
        row.addWidget(self.use_button)
        row.addWidget(self.save_button)
        row.addWidget(self.delete_button)
        lay = QtWidgets.QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.addWidget(self.list)
        lay.addLayout(row)
        self.list.currentRowChanged.connect(lambda *_a: self._buttons())
        self._buttons()

    def show_document(self, doc: Any) -> None:
        """Switch to ``doc``'s history (nothing to do when it is already shown)."""
        key = document_key(doc)
        if key != self.key or self.history is None:
            self.key = key
            self.history = ResultHistory(impasto_home() / "history" / key)
            self.refresh()

    def refresh(self) -> None:
        self.list.clear()
        for entry in (self.history.entries if self.history else []):
            item = QtWidgets.QListWidgetItem(entry.label())
            path = self.history.thumbnail_path(entry)
            if path is not None:
                item.setIcon(QtGui.QIcon(QtGui.QPixmap(str(path))))
            item.setToolTip(entry.parameters())
            item.setData(Qt.ItemDataRole.UserRole, entry.id)
            self.list.addItem(item)
        self._buttons()

    def add(self, doc: Any, request: Any, kind: str, size: Any, pictures: List[Any], warnings: List[str]) -> None:
        """Record a finished job: ``pictures`` are ``(seed, QImage)`` pairs."""
        self.show_document(doc)
        mode = {"txt2img": "generate", "img2img": "refine", "edit": "inpaint"}.get(kind, kind)
        for seed, image in pictures:
            small = image.scaled(THUMB, THUMB, Qt.AspectRatioMode.KeepAspectRatio,
                                 Qt.TransformationMode.SmoothTransformation)
            self.history.add(Settings.from_request(request, seed), seed, mode, size, png_of(small),  # type: ignore
                             request.model, warnings, png_of(image))
        self.refresh()

    def selected_id(self) -> str:
        item = self.list.currentItem()
        return str(item.data(Qt.ItemDataRole.UserRole)) if item is not None else ""

    def use_selected(self) -> None:
        entry = self.history.get(self.selected_id()) if self.history else None
        if entry is not None:
            self.use_settings(entry)

    def save_selected(self, path: str = "") -> str:
        """Save the selected result's picture (asks where unless ``path``); the path written, or ""."""
        entry = self.history.get(self.selected_id()) if self.history else None
        if entry is None:
            return ""
        if not path:
            path, _ = QtWidgets.QFileDialog.getSaveFileName(self, "Save result", f"impasto-{entry.seed}.png",
                                                            "PNG (*.png)")
            if not path:
                return ""
        try:
            return str(self.history.export(entry.id, path))
        except (OSError, ValueError) as exc:
            QtWidgets.QMessageBox.warning(self, "Save result", f"The result could not be saved: {exc}")
            return ""

    def delete_selected(self) -> None:
        if self.history is not None and self.history.delete(self.selected_id()):
            self.refresh()

    def _buttons(self) -> None:
        has = self.list.currentItem() is not None
        self.use_button.setEnabled(has)
        self.delete_button.setEnabled(has)
        self.save_button.setEnabled(has)
