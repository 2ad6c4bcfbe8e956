"""Every modal question and message the canvas asks or shows goes through here.

One module so that the wording stays consistent, and so that tests replace
these functions with recorders (a modal dialog would block a headless run)
and check that a bad file produced a message rather than a crash.  Callers
use ``dialogs.show_error(...)`` - the module attribute - never a ``from``
import, so a patched function is the one called.
"""
from __future__ import annotations

from typing import List, Optional

from PySide6.QtGui import QColor
from PySide6.QtWidgets import QColorDialog, QFileDialog, QInputDialog, QMessageBox, QWidget

IMAGE_FILTER = "Images (*.png *.jpg *.jpeg *.webp *.bmp *.tif *.tiff)"
PROJECT_FILTER = "Impasto project (*.impasto)"


def show_error(parent: Optional[QWidget], title: str, text: str) -> None:
    QMessageBox.critical(parent, title, text)


def show_warning(parent: Optional[QWidget], title: str, text: str) -> None:
    QMessageBox.warning(parent, title, text)


def show_info(parent: Optional[QWidget], title: str, text: str) -> None:
    QMessageBox.information(parent, title, text)


def confirm(parent: Optional[QWidget], title: str, text: str) -> bool:
    answer = QMessageBox.question(parent, title, text,
                                  QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No,
                                  QMessageBox.StandardButton.No)
    return answer == QMessageBox.StandardButton.Yes


def ask_save_changes(parent: Optional[QWidget], name: str) -> str:
    """'save', 'discard' or 'cancel' for a document with unsaved changes."""
    box = QMessageBox(QMessageBox.Icon.Warning, "Unsaved changes", f"Save the changes to {name}?",
                      QMessageBox.StandardButton.Save | QMessageBox.StandardButton.Discard
                      | QMessageBox.StandardButton.Cancel, parent)
    answer = box.exec()
    return {QMessageBox.StandardButton.Save: "save",
            QMessageBox.StandardButton.Discard: "discard"}.get(QMessageBox.StandardButton(answer), "cancel")


def ask_text(parent: Optional[QWidget], title: str, label: str, text: str = "") -> Optional[str]:
    value, ok = QInputDialog.getText(parent, title, label, text=text)
    return value if ok else None


def ask_canvas_size(parent: Optional[QWidget], width: int, height: int) -> Optional[tuple]:
    text, ok = QInputDialog.getText(parent, "New canvas", "Size in pixels (width × height):",
                                    text=f"{width}x{height}")
    if not ok:
        return None
    try:
        w, h = (int(v) for v in text.lower().replace("×", "x").split("x"))
    except ValueError:
        show_error(parent, "New canvas", f"“{text}” is not a size: write it like 1024x768.")
        return None
    return w, h


def open_file(parent: Optional[QWidget], title: str, filters: str) -> Optional[str]:
    path, _ = QFileDialog.getOpenFileName(parent, title, "", filters)
    return path or None


def open_files(parent: Optional[QWidget], title: str, filters: str) -> List[str]:
    paths, _ = QFileDialog.getOpenFileNames(parent, title, "", filters)
    return list(paths)


def save_file(parent: Optional[QWidget], title: str, filters: str, suggested: str = "") -> Optional[str]:
    path, _ = QFileDialog.getSaveFileName(parent, title, suggested, filters)
    return path or None


def open_folder(parent: Optional[QWidget], title: str) -> Optional[str]:
    path = QFileDialog.getExistingDirectory(parent, title)
    return path or None


def pick_color(parent: Optional[QWidget], current: QColor) -> Optional[QColor]:
    color = QColorDialog.getColor(current, parent, "Brush colour")
    return color if color.isValid() else None
