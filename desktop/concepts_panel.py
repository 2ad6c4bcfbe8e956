"""The Concepts panel: personal concepts (LoRA) - train, list, use, rename, delete, import, export.

Training starts from pictures dropped onto the panel (files or folders), a
name, a trigger word (the word that calls the concept up in a prompt) and a
class noun ("cat", "person", "style"); the daemon trains in the background
and reports loss and sample pictures, shown here as they come.  The library
itself lives on the daemon's side: this panel only speaks the protocol
(``Train``, ``ListConcepts``, ``ConceptAction``).
"""
from __future__ import annotations

from pathlib import Path
from typing import Dict, List, Optional

from PySide6.QtCore import QSize, Qt, Signal
from PySide6.QtGui import QIcon, QImage, QPixmap
from PySide6.QtWidgets import (
    QAbstractItemView,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QListView,
    QListWidget,
    QListWidgetItem,
    QProgressBar,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from impasto.protocol import Job, concept_files
from impasto.protocol.messages import (
    Cancelled,
    Error,
    Limits,
    Progress,
    ProtocolError,
    Result,
    Train,
    validate_job,
)
from impasto.protocol.sliders import is_slider

from . import dialogs, image_io, qt_images
from .connection import DaemonLink

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff"}
TRAIN_MAX_SIDE = 1024      # training crops to the model's size anyway: no need to send 40 MP photos


def shrink_for_training(image: QImage) -> QImage:
    if max(image.width(), image.height()) <= TRAIN_MAX_SIDE:
        return image
    return image.scaled(TRAIN_MAX_SIDE, TRAIN_MAX_SIDE, Qt.AspectRatioMode.KeepAspectRatio,
                        Qt.TransformationMode.SmoothTransformation)


def expand_paths(paths: List[str]) -> List[Path]:
    """Files as given; folders become the images directly inside them (sorted)."""
    out: List[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            out.extend(sorted(c for c in p.iterdir() if c.suffix.lower() in IMAGE_SUFFIXES and c.is_file()))
        else:
            out.append(p)
    return out


class TrainingImages(QListWidget):
    """Thumbnails of the pictures to train on; accepts dropped files and folders."""

    rejected = Signal(list)      # ["name: why", ...] for files that could not be used

    def __init__(self, parent: Optional[QWidget] = None):
        super().__init__(parent)
        self.setViewMode(QListView.ViewMode.IconMode)
        self.setIconSize(QSize(72, 72))
        self.setResizeMode(QListView.ResizeMode.Adjust)
        self.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
        self.setAcceptDrops(True)
        self.setDragDropMode(QAbstractItemView.DragDropMode.DropOnly)
        self.setMinimumHeight(110)
        self.setToolTip("Drop 3-20 pictures of your concept here (files or a folder)")
        self.images: List[QImage] = []

    def add_paths(self, paths: List[str]) -> int:
        problems: List[str] = []
        added = 0
        for path in expand_paths(paths):
            try:
                image = image_io.read_image(path)
            except image_io.ImageFileError as exc:
                problems.append(str(exc))
                continue
            self.add_image(shrink_for_training(image), path.name)
            added += 1
        if problems:
            self.rejected.emit(problems)
        return added

    def add_image(self, image: QImage, label: str) -> None:
        self.images.append(image)
        thumb = QPixmap.fromImage(image.scaled(72, 72, Qt.AspectRatioMode.KeepAspectRatio,
                                               Qt.TransformationMode.SmoothTransformation))
        item = QListWidgetItem(QIcon(thumb), label)
        item.setToolTip(f"{label} · {image.width()}×{image.height()}")
        self.addItem(item)

    def remove_selected(self) -> None:
        for row in sorted((self.row(i) for i in self.selectedItems()), reverse=True):
            self.takeItem(row)
            del self.images[row]

    def clear_images(self) -> None:
        self.clear()
        self.images.clear()

    # drag and drop
    def dragEnterEvent(self, event) -> None:  # noqa: N802
        if event.mimeData().hasUrls():
            event.acceptProposedAction()
        else:
            super().dragEnterEvent(event)

    def dragMoveEvent(self, event) -> None:  # noqa: N802
        if event.mimeData().hasUrls():
            event.acceptProposedAction()
        else:
            super().dragMoveEvent(event)

    def dropEvent(self, event) -> None:  # noqa: N802
        paths = [u.toLocalFile() for u in event.mimeData().urls() if u.isLocalFile()]
        if paths:
            self.add_paths(paths)
            event.acceptProposedAction()


class ConceptsPanel(QWidget):
    use_requested = Signal(str, str)      # concept name, trigger word
    concepts_listed = Signal(list)        # the concept names, for the Generate panel's pickers
    concepts_info = Signal(list)          # the listing's entries (dicts), for the Generate panel's sliders

    def __init__(self, link: DaemonLink, parent: Optional[QWidget] = None):
        super().__init__(parent)
        self.link = link
        self.concepts: List[Dict[str, object]] = []
        self.job: Optional[Job] = None
        outer = QVBoxLayout(self)

        library = QGroupBox("Library")
        lib = QVBoxLayout(library)
        self.list = QListWidget()
        self.list.setMinimumHeight(90)
        self.list.setIconSize(QSize(40, 40))
        self.list.itemDoubleClicked.connect(lambda _item: self.use_selected())
        lib.addWidget(self.list)
        row = QHBoxLayout()
        self.use_button = QPushButton("Use")
        self.use_button.setToolTip("Add to the Generate panel's concepts and put its trigger word in the prompt")
        self.use_button.clicked.connect(self.use_selected)
        self.rename_button = QPushButton("Rename…")
        self.rename_button.clicked.connect(self.rename_selected)
        self.delete_button = QPushButton("Delete")
        self.delete_button.clicked.connect(self.delete_selected)
        for b in (self.use_button, self.rename_button, self.delete_button):
            row.addWidget(b)
        lib.addLayout(row)
        row = QHBoxLayout()
        self.import_button = QPushButton("Import…")
        self.import_button.clicked.connect(self.import_concept)
        self.export_button = QPushButton("Export…")
        self.export_button.clicked.connect(self.export_selected)
        self.refresh_button = QPushButton("Refresh")
        self.refresh_button.clicked.connect(self.refresh)
        for b in (self.import_button, self.export_button, self.refresh_button):
            row.addWidget(b)
        lib.addLayout(row)
        outer.addWidget(library)

        train = QGroupBox("Train a concept")
        form = QFormLayout(train)
        self.images = TrainingImages()
        self.images.rejected.connect(lambda problems: dialogs.show_warning(
            self, "Some pictures were skipped", "\n".join(problems)))
        form.addRow(self.images)
        row = QHBoxLayout()
        add = QPushButton("Add pictures…")
        add.clicked.connect(self.add_pictures)
        remove = QPushButton("Remove")
        remove.clicked.connect(self.images.remove_selected)
        clear = QPushButton("Clear")
        clear.clicked.connect(self.images.clear_images)
        for b in (add, remove, clear):
            row.addWidget(b)
        form.addRow(row)
        self.name = QLineEdit()
        self.name.setPlaceholderText("e.g. Mimi")
        form.addRow("Name", self.name)
        self.trigger = QLineEdit()
        self.trigger.setPlaceholderText("one word, e.g. mimicat")
        self.trigger.setToolTip("Trigger word: write it in a prompt to call the concept up")
        form.addRow("Trigger word", self.trigger)
        self.class_noun = QLineEdit()
        self.class_noun.setPlaceholderText("what it is: cat, person, style…")
        form.addRow("Class", self.class_noun)
        self.steps = QSpinBox()
        self.steps.setRange(0, Limits().max_train_steps)
        self.steps.setSpecialValueText("model default")   # 0: the model's recommendation
        self.steps.setValue(0)
        self.steps.setToolTip("Training steps: more learns more detail and takes longer "
                              "(model default: what the model recommends, else 400)")
        form.addRow("Steps", self.steps)
        self.class_images = QSpinBox()
        self.class_images.setRange(0, 500)
        self.class_images.setValue(Train.class_images)
        self.class_images.setToolTip("Prior preservation: pictures of the class the model paints first, so it "
                                     "does not forget what any other cat looks like. 0 turns it off (faster).")
        form.addRow("Class pictures", self.class_images)
        row = QHBoxLayout()
        self.train_button = QPushButton("Train")
        self.train_button.clicked.connect(self.train)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setEnabled(False)
        self.cancel_button.clicked.connect(self.cancel)
        row.addWidget(self.train_button)
        row.addWidget(self.cancel_button)
        form.addRow(row)
        self.progress = QProgressBar()
        self.progress.setRange(0, 1)
        self.progress.setValue(0)
        self.progress.setFormat("Idle")
        form.addRow(self.progress)
        self.sample = QLabel()
        self.sample.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.sample.setMinimumHeight(96)
        self.sample.setToolTip("The latest sample picture from training")
        form.addRow(self.sample)
        outer.addWidget(train)
        self.status = QLabel("")
        self.status.setWordWrap(True)
        outer.addWidget(self.status)
        outer.addStretch(1)

    # ------------------------------------------------------------------ library

    def refresh(self) -> None:
        self.link.call(lambda c: c.concepts(timeout=15), self._listed, self._failed("list the concepts"))

    def _listed(self, reply) -> None:
        self.concepts = [c for c in reply.concepts if isinstance(c, dict) and c.get("name")]
        self.list.clear()
        for c in self.concepts:
            extra = [str(c[k]) for k in ("method", "class_noun", "base_model") if c.get(k)]
            if is_slider(c):   # a Concept Slider: dialled in the Generate panel's Sliders box
                extra.insert(0, "slider")
            if c.get("steps"):
                extra.append(f"{c['steps']} steps")
            item = QListWidgetItem(f"{c['name']} — “{c.get('trigger', '')}”" + (f"  ({', '.join(extra)})"
                                                                                   if extra else ""))
            item.setData(Qt.ItemDataRole.UserRole, c)
            samples = c.get("samples") or []
            if isinstance(samples, list) and samples and Path(str(samples[0])).is_file():
                item.setIcon(QIcon(str(samples[0])))  # the daemon is local: its sample files are ours to read
            item.setToolTip("\n".join(f"{k}: {v}" for k, v in c.items()))
            self.list.addItem(item)
        self.concepts_listed.emit([str(c["name"]) for c in self.concepts])
        self.concepts_info.emit(list(self.concepts))
        if not self.concepts and not self.status.text():  # a hint, never over a real message
            self.show_status("No concepts yet: drop a few pictures below and train one.")

    def _failed(self, what: str):
        def report(exc: BaseException) -> None:
            message = exc.message if isinstance(exc, ProtocolError) else str(exc)
            self.show_status(f"Could not {what}: {message}", error=True)
        return report

    def selected(self) -> Optional[Dict[str, object]]:
        item = self.list.currentItem()
        return item.data(Qt.ItemDataRole.UserRole) if item is not None else None

    def use_selected(self) -> None:
        c = self.selected()
        if c is not None:
            self.use_requested.emit(str(c["name"]), str(c.get("trigger", "")))

    def _action(self, action: str, name: str, done_text: str, call=None, **fields) -> None:
        def done(reply) -> None:
            notes = [str(n) for n in (getattr(reply, "info", {}) or {}).get("notes", [])]
            self.show_status(" ".join([done_text] + notes))
            self.refresh()
        call = call or (lambda c: c.concept_action(action, name, **fields))
        self.link.call(call, done, self._failed(f"{action} {name!r}"))

    def delete_selected(self) -> None:
        c = self.selected()
        if c is None:
            return
        name = str(c["name"])
        if dialogs.confirm(self, "Delete concept", f"Delete the concept “{name}” from the library? "
                                                   f"Export it first to keep a copy."):
            self._action("delete", name, f"Deleted “{name}”.")

    def rename_selected(self) -> None:
        c = self.selected()
        if c is None:
            return
        name = str(c["name"])
        new = dialogs.ask_text(self, "Rename concept", "New name:", name)
        if new and new.strip() and new.strip() != name:
            self._action("rename", name, f"Renamed “{name}” to “{new.strip()}”.", new_name=new.strip())

    def import_concept(self) -> None:
        path = dialogs.open_file(self, "Import a concept", "Concepts (*.safetensors *.zip *.impasto-concept);;"
                                                           "All files (*)")
        if not path:
            return
        name = dialogs.ask_text(self, "Import concept", "Name in the library:", Path(path).stem)
        if name and name.strip():
            # this side reads the file and sends its bytes: the daemon never opens a path
            self._action("import", name.strip(), f"Imported “{name.strip()}”.",
                         call=lambda c: concept_files.import_concept(c, path, name.strip()))

    def export_selected(self) -> None:
        c = self.selected()
        if c is None:
            return
        name = str(c["name"])
        path = dialogs.save_file(self, "Export concept", "Concepts (*.safetensors *.zip *.impasto-concept);;"
                                                         "All files (*)", f"{name}.safetensors")
        if path:
            # the daemon answers with the bytes; this side writes the file, atomically
            self._action("export", name, f"Exported “{name}” to {path}.",
                         call=lambda c: concept_files.export_concept(c, name, path))

    # ------------------------------------------------------------------ training

    def add_pictures(self) -> None:
        paths = dialogs.open_files(self, "Pictures of the concept", dialogs.IMAGE_FILTER)
        if paths:
            self.images.add_paths(paths)

    def training_request(self) -> Train:
        """The Train message for the form as filled in; ProtocolError names a bad field."""
        req = Train(name=self.name.text().strip(), trigger=self.trigger.text().strip(),
                    class_noun=self.class_noun.text().strip(), steps=self.steps.value(),
                    images=[qt_images.to_wire(img) for img in self.images.images], preview=True,
                    sample_every=max(1, min(100, (self.steps.value() or 400) // 4)),
                    class_images=self.class_images.value(), prior_preservation=self.class_images.value() > 0)
        req.job = "pending-check"
        try:
            validate_job(req)
        finally:
            req.job = ""
        return req

    def train(self) -> None:
        if self.job is not None:
            return
        if not self.link.connected:
            self.show_status(f"Cannot train: {self.link.message}", error=True)
            return
        try:
            req = self.training_request()
        except ProtocolError as exc:
            self.show_status(exc.message, error=True)
            widget = {"name": self.name, "trigger": self.trigger, "images": self.images,
                      "steps": self.steps}.get(exc.field or "")
            if widget is not None:
                widget.setFocus()
            return
        self.job = self.link.submit(req, self._on_event)
        self.train_button.setEnabled(False)
        self.cancel_button.setEnabled(True)
        self.progress.setRange(0, 0)
        self.progress.setFormat("Queued…")
        self.show_status(f"Training “{req.name}”…")

    def cancel(self) -> None:
        if self.job is not None:
            try:
                self.job.cancel()
            except ProtocolError:
                pass
            self.show_status("Cancelling the training…")

    def _on_event(self, ev) -> None:
        if isinstance(ev, Progress):
            self.progress.setRange(0, max(1, ev.total))
            self.progress.setValue(min(ev.step, max(1, ev.total)))
            stage = (ev.stage or "train").capitalize()
            self.progress.setFormat(f"{stage} {ev.step}/{ev.total}" +
                                    (f" · loss {ev.loss:.4f}" if ev.loss is not None else ""))
            if ev.preview is not None:
                self._show_sample(qt_images.from_wire(ev.preview))
        elif isinstance(ev, (Result, Error, Cancelled)):
            self.job = None
            self.train_button.setEnabled(True)
            self.cancel_button.setEnabled(False)
            self.progress.setRange(0, 1)
            self.progress.setValue(1 if isinstance(ev, Result) else 0)
            if isinstance(ev, Result):
                concept = ev.info.get("concept")
                name = concept.get("name") if isinstance(concept, dict) else None
                name = name or self.name.text().strip()
                self.progress.setFormat("Done")
                if ev.images:
                    self._show_sample(qt_images.from_wire(ev.images[0]))
                self.show_status(f"Trained “{name}”. Use it with its trigger word in a prompt.")
                self.refresh()
            elif isinstance(ev, Error):
                self.progress.setFormat("Failed")
                self.show_status(f"Training failed: {ev.message}", error=True)
            else:
                self.progress.setFormat("Cancelled")
                self.show_status("Training cancelled.")

    def _show_sample(self, image: QImage) -> None:
        self.sample.setPixmap(QPixmap.fromImage(image).scaled(
            160, 160, Qt.AspectRatioMode.KeepAspectRatio, Qt.TransformationMode.SmoothTransformation))

    def show_status(self, text: str, error: bool = False) -> None:
        self.status.setText(text)
        self.status.setStyleSheet("color: #e0404a;" if error else "")
