"""The canvas window's file menu: new, open, import as layer, save, export - the :class:`FileMenu` mixin.

Split from :mod:`.main_window` so the window keeps only its wiring.  Every
file problem (damaged, too large, unwritable) is a dialog that changes
nothing; saving writes through a temporary file (:mod:`.project_file`).
"""
from __future__ import annotations

from pathlib import Path

from PySide6.QtGui import QPainter

from impasto.protocol import parameters

from . import dialogs, image_io, project_file, qt_images
from .document import Document
from .history import AddLayerCommand
from .layers import Layer
from .settings import GenerationSettings


class FileMenu:
    """Mixin for :class:`~.main_window.MainWindow` (uses its ``doc``, ``panel``, ``set_document``)."""

    def maybe_save(self) -> bool:
        """True when it is fine to drop the current picture (saved, discarded or unchanged)."""
        if not self.doc.is_modified():
            return True
        answer = dialogs.ask_save_changes(self, Path(self.doc.path).name if self.doc.path else "Untitled")
        if answer == "save":
            return self.save()
        return answer == "discard"

    def new_canvas(self) -> None:
        if not self.maybe_save():
            return
        size = dialogs.ask_canvas_size(self, self.doc.width, self.doc.height)
        if size is None:
            return
        try:
            image_io.check_canvas_size(size[0], size[1], "The new canvas")
        except image_io.ImageFileError as exc:
            dialogs.show_error(self, "New canvas", str(exc))
            return
        self.set_document(Document(*size))

    def open_dialog(self) -> None:
        path = dialogs.open_file(self, "Open", f"Projects and pictures (*.impasto *.png *.jpg *.jpeg *.webp *.bmp "
                                              f"*.tif *.tiff);;{dialogs.PROJECT_FILTER};;{dialogs.IMAGE_FILTER}")
        if path:
            self.open_path(path)

    def open_path(self, path: str) -> bool:
        """Open a project or a picture; a bad file gives an error dialog and changes nothing."""
        if not self.maybe_save():
            return False
        p = Path(path)
        if p.suffix.lower() == project_file.SUFFIX:
            try:
                doc, settings, warnings = project_file.load_project(p)
            except project_file.ProjectFileError as exc:
                dialogs.show_error(self, "Cannot open the project", str(exc))
                return False
            self.set_document(doc)
            if settings:
                self.panel.set_settings(GenerationSettings.from_dict(settings))
            for w in warnings:
                dialogs.show_warning(self, "Project opened without its history", w)
            return True
        try:
            image = image_io.read_image(p)
        except image_io.ImageFileError as exc:
            dialogs.show_error(self, "Cannot open the picture", str(exc))
            return False
        self.set_document(Document.from_image(image, p.stem))
        self.open_parameters(p)
        return True

    def open_parameters(self, path: Path) -> bool:
        """A picture that carries A1111 ``parameters`` (Impasto's, A1111's, Civitai's) fills the panel."""
        from impasto.backend import pictures   # Pillow: PNG chunks, and JPEG / WebP EXIF UserComment

        try:
            text = pictures.read_parameters(path)
        except pictures.PictureError:
            text = None
        if not text:
            return False
        params = parameters.parse_parameters(text)
        self.panel.set_settings(GenerationSettings.from_dict(params.settings.to_dict()))
        self.statusBar().showMessage(f"{path.name}: its settings are in the generation panel "
                                     f"(seed {params.settings.seed})", 6000)
        return True

    def import_layer_dialog(self) -> None:
        path = dialogs.open_file(self, "Import picture as layer", dialogs.IMAGE_FILTER)
        if path:
            self.import_layer(path)

    def import_layer(self, path: str) -> bool:
        """Add a picture as a new layer, centred (cropped by the canvas if larger)."""
        try:
            image = image_io.read_image(path)
        except image_io.ImageFileError as exc:
            dialogs.show_error(self, "Cannot import the picture", str(exc))
            return False
        canvas = qt_images.new_layer_image(self.doc.width, self.doc.height)
        p = QPainter(canvas)
        p.drawImage((self.doc.width - image.width()) // 2, (self.doc.height - image.height()) // 2, image)
        p.end()
        self.doc.undo.push(AddLayerCommand(self.doc, Layer(Path(path).stem, canvas), None,
                                           f"Import “{Path(path).name}”"))
        return True

    def save(self) -> bool:
        if self.doc.path and Path(self.doc.path).suffix.lower() == project_file.SUFFIX:
            return self.save_to(self.doc.path)
        return self.save_as()

    def save_as(self) -> bool:
        suggested = Path(self.doc.path).with_suffix(project_file.SUFFIX).name if self.doc.path else "untitled.impasto"
        path = dialogs.save_file(self, "Save project", dialogs.PROJECT_FILTER, suggested)
        if not path:
            return False
        if not path.lower().endswith(project_file.SUFFIX):
            path += project_file.SUFFIX
        return self.save_to(path)

    def save_to(self, path: str) -> bool:
        try:
            project_file.save_project(self.doc, path, self.panel.settings().to_dict())
        except (OSError, image_io.ImageFileError) as exc:
            dialogs.show_error(self, "Cannot save", f"The project could not be saved to {path}: {exc}. "
                                                    f"Nothing was overwritten.")
            return False
        self._update_title()
        self.statusBar().showMessage(f"Saved {path}", 4000)
        return True

    def export_dialog(self) -> None:
        suggested = Path(self.doc.path).with_suffix(".png").name if self.doc.path else "untitled.png"
        path = dialogs.save_file(self, "Export PNG", "PNG (*.png)", suggested)
        if path:
            if not path.lower().endswith(".png"):
                path += ".png"
            self.export_png(path)

    def export_parameters(self) -> str:
        """The A1111 text of the topmost visible generated layer (what made the picture), or ""."""
        for layer in reversed(self.doc.layers):
            info = getattr(layer, "info", None) or {}
            if layer.visible and isinstance(info.get("settings"), dict):
                s = GenerationSettings.from_dict(info["settings"])
                seed = int(info.get("seed", s.seed))
                denoising = s.strength if info.get("mode") in ("refine", "inpaint") else None
                return parameters.format_parameters(s, seed, (self.doc.width, self.doc.height),
                                                    s.model or str(info.get("model", "")), denoising)
        return ""

    def export_png(self, path: str) -> bool:
        try:
            data = image_io.png_bytes(self.doc.composite())
            text = self.export_parameters()
            image_io.write_atomic(path, parameters.png_with_text(data, text) if text else data)
        except (OSError, image_io.ImageFileError) as exc:
            dialogs.show_error(self, "Cannot export", f"The picture could not be written to {path}: {exc}")
            return False
        self.statusBar().showMessage(f"Exported {path}", 4000)
        return True
