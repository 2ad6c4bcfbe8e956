"""The canvas's "Results" dock: every result of this picture, with the settings that made it.

A view over the client core's :class:`~impasto.protocol.history.ResultHistory`
(the Krita docker shows the same model): a thumbnail per result with its
prompt and seed, the A1111 parameters as a tooltip, "Use settings" (the
generation panel gets the result's knobs and seed back) and "Delete".  The
history is kept per document (an untitled picture: per session) under
``IMPASTO_HOME/history``, so it survives closing the canvas.
"""
from __future__ import annotations

import uuid
from typing import Callable, List, Optional

from PySide6.QtCore import QRect, QSize, Qt, Signal
from PySide6.QtGui import QIcon, QImage, QPainter, QPixmap
from PySide6.QtWidgets import QHBoxLayout, QListWidget, QListWidgetItem, QPushButton, QVBoxLayout, QWidget

from impasto.protocol.history import ResultHistory, history_key
from impasto.protocol.launcher import impasto_home

from . import image_io
from .settings import GenerationSettings

THUMB = 96
SESSION = uuid.uuid4().hex[:12]          # untitled pictures of this run share one history


def history_for(document_path: str = "") -> ResultHistory:
    return ResultHistory(impasto_home() / "history" / history_key(document_path, SESSION))


def result_pngs(doc, image: QImage, rect: QRect):
    """(thumbnail, full picture) PNGs of the document as the result would make it (drawn over it)."""
    canvas = doc.composite()
    painter = QPainter(canvas)
    painter.drawImage(rect.topLeft(), image)
    painter.end()
    small = canvas.scaled(THUMB, THUMB, Qt.AspectRatioMode.KeepAspectRatio, Qt.TransformationMode.SmoothTransformation)
    return image_io.png_bytes(small), image_io.png_bytes(canvas)


class ResultsPanel(QWidget):
    settings_requested = Signal(object)      # GenerationSettings to put in the generation panel

    def __init__(self, history: Optional[ResultHistory] = None, parent: Optional[QWidget] = None,
                 current: Optional[Callable[[], GenerationSettings]] = None):
        super().__init__(parent)
        self.current = current or GenerationSettings
        self.history = history or history_for("")
        self.list = QListWidget()
        self.list.setViewMode(QListWidget.ViewMode.IconMode)
        self.list.setIconSize(QSize(THUMB, THUMB))
        self.list.setResizeMode(QListWidget.ResizeMode.Adjust)
        self.list.setWordWrap(True)
        self.list.setGridSize(QSize(THUMB + 40, THUMB + 44))
        self.list.itemDoubleClicked.connect(lambda _item: self.use_selected())
        self.use_button = QPushButton("Use settings")
        self.use_button.setToolTip("Put this result's prompt, settings and seed in the generation panel")
        self.use_button.clicked.connect(self.use_selected)
        self.delete_button = QPushButton("Delete")
        self.delete_button.clicked.connect(self.delete_selected)
        self.save_button = QPushButton("Save…")
        self.save_button.setToolTip("Save this result as a PNG that carries its settings (A1111 'parameters')")
        self.save_button.clicked.connect(lambda: self.save_selected())
        buttons = QHBoxLayout()
        buttons.addWidget(self.use_button)
        buttons.addWidget(self.save_button)
        buttons.addWidget(self.delete_button)
        lay = QVBoxLayout(self)
        lay.addWidget(self.list, 1)
        lay.addLayout(buttons)
        self.list.currentRowChanged.connect(self._update_buttons)
        self.refresh()

    def set_history(self, history: ResultHistory) -> None:
        self.history = history
        self.refresh()

    def refresh(self) -> None:
        self.list.clear()
        for entry in self.history.entries:
            item = QListWidgetItem(entry.label())
            path = self.history.thumbnail_path(entry)
            if path is not None:
                item.setIcon(QIcon(QPixmap(str(path))))
            item.setToolTip(entry.parameters())
            item.setData(Qt.ItemDataRole.UserRole, entry.id)
            self.list.addItem(item)
        self._update_buttons()

    def add(self, doc, candidates: List) -> None:
        """Record the candidates of one result (newest first)."""
        for cand in candidates:
            thumb, full = result_pngs(doc, cand.image, cand.rect)
            self.history.add(cand.settings, cand.seed, cand.mode, (doc.width, doc.height), thumb,
                             str(cand.info.get("model", "")), list(cand.warnings), full)
        self.refresh()

    def selected_id(self) -> str:
        item = self.list.currentItem()
        return str(item.data(Qt.ItemDataRole.UserRole)) if item is not None else ""

    def use_selected(self) -> None:
        entry = self.history.get(self.selected_id())
        if entry is not None:
            self.settings_requested.emit(GenerationSettings.from_dict(entry.reuse(self.current()).to_dict()))

    def save_selected(self, path: str = "") -> str:
        """Save the selected result's picture with its parameters (asks where unless ``path``)."""
        entry = self.history.get(self.selected_id())
        if entry is None:
            return ""
        if not path:
            from . import dialogs

            path = dialogs.save_file(self, "Save result", "PNG (*.png)", f"impasto-{entry.seed}.png")
            if not path:
                return ""
        try:
            return str(self.history.export(entry.id, path))
        except (OSError, ValueError) as exc:
            from . import dialogs

            dialogs.show_error(self, "Save result", f"The result could not be saved: {exc}")
            return ""

    def delete_selected(self) -> None:
        if self.history.delete(self.selected_id()):
            self.refresh()

    def _update_buttons(self, *_args) -> None:
        has = self.list.currentItem() is not None
        self.use_button.setEnabled(has)
        self.delete_button.setEnabled(has)
        self.save_button.setEnabled(has)

