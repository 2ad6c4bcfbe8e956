"""The canvas window: canvas in the middle, tools on top, panels on the right.

This module wires the parts together (the file menu's commands are the
:class:`~.file_menu.FileMenu` mixin); the parts
themselves (document, tools, panels, staging, daemon link) know nothing of
each other.  Every failure that reaches the artist - a damaged file, a
picture too large, a daemon gone - arrives as a dialog or a sentence in a
panel through :mod:`.dialogs`, never as a crash.
"""
from __future__ import annotations

from pathlib import Path
from typing import Dict, Optional

from PySide6.QtCore import QPointF, QRectF, Qt, QTimer
from PySide6.QtGui import (
    QAction,
    QActionGroup,
    QColor,
    QIcon,
    QKeySequence,
    QPainterPath,
    QPixmap,
    QShortcut,
)
from PySide6.QtWidgets import (
    QDockWidget,
    QLabel,
    QMainWindow,
    QPushButton,
    QScrollArea,
    QSpinBox,
    QToolButton,
    QUndoView,
    QVBoxLayout,
    QWidget,
)

from . import dialogs, qt_images
from .canvas_view import CanvasView
from .concepts_panel import ConceptsPanel
from .connection import CONNECTED, DOWN, INCOMPATIBLE, STARTING, DaemonLink
from .document import Document
from .file_menu import FileMenu
from .generation import GenerationController
from .generation_panel import GenerationPanel
from .results_panel import ResultsPanel, history_for
from .history import SelectionCommand, fill_mask_command, mask_from_image_command
from .layers import Layer
from .layers_panel import LayersPanel
from .settings import GenerationSettings
from .staging import StagingArea
from .live import LiveController
from .staging_bar import StagingBar
from .prompt_edit import PromptEditor
from .tools import TOOL_CLASSES, BrushSettings, Tool

DEFAULT_SIZE = (512, 512)
STATE_COLORS = {CONNECTED: "#3ec46d", STARTING: "#e8b43a", DOWN: "#e0404a", INCOMPATIBLE: "#e0404a"}
PAINT_TOOLS = ("brush", "eraser")
MASK_TOOLS = ("mask", "mask_eraser")


def _scrolled(widget: QWidget) -> QScrollArea:
    area = QScrollArea()
    area.setWidget(widget)
    area.setWidgetResizable(True)
    area.setFrameShape(QScrollArea.Shape.NoFrame)
    return area


class MainWindow(FileMenu, QMainWindow):
    def __init__(self, link: DaemonLink, doc: Optional[Document] = None):
        super().__init__()
        self.link = link
        self._docks_sized = False       # sized once, when first shown
        self._listed_concepts = False   # the concept library is listed once per connection
        self.doc = doc or Document(*DEFAULT_SIZE)
        self.doc.setParent(self)
        self.brush = BrushSettings()
        self.view = CanvasView(self.doc)
        self.tools: Dict[str, Tool] = {cls.name: cls(self.doc, self.brush) for cls in TOOL_CLASSES}
        self.staging = StagingArea(self)
        self.staging_bar = StagingBar(self.staging)
        central = QWidget()
        lay = QVBoxLayout(central)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.setSpacing(0)
        lay.addWidget(self.view, 1)
        lay.addWidget(self.staging_bar)
        self.setCentralWidget(central)

        self.panel = GenerationPanel()
        self.controller = GenerationController(link, self.panel, self.view, self.staging, lambda: self.doc, self)
        self.live = LiveController(link, self.panel, self.view, lambda: self.doc, self)   # desktop/live.py
        self.concepts = ConceptsPanel(link)
        self.layers_panel = LayersPanel(self.doc)
        self.history_view = QUndoView(self.doc.undo)
        self.history_view.setEmptyLabel("Opened")
        self.results = ResultsPanel(history_for(self.doc.path or ""), current=self.panel.settings)
        self.results.settings_requested.connect(self.panel.set_settings)
        self.controller.produced.connect(lambda cands: self.results.add(self.doc, cands))
        self._docks()
        self._actions()
        self._menus()
        self._toolbars()
        self._status_bar()
        self._wire()
        self.prompt_editor = PromptEditor(self)   # "Edit prompt…" on a staged result (desktop/prompt_edit.py)
        self.select_tool("brush")
        self.resize(1360, 860)
        self._update_title()

    # ------------------------------------------------------------------ construction

    def _docks(self) -> None:
        def dock(title: str, widget: QWidget, name: str) -> QDockWidget:
            d = QDockWidget(title, self)
            d.setObjectName(name)
            d.setWidget(widget)
            d.setFeatures(QDockWidget.DockWidgetFeature.DockWidgetMovable
                          | QDockWidget.DockWidgetFeature.DockWidgetFloatable)
            self.addDockWidget(Qt.DockWidgetArea.RightDockWidgetArea, d)
            return d

        self.generate_dock = dock("Generate", self.panel, "generate")
        self.concepts_dock = dock("Concepts", _scrolled(self.concepts), "concepts")
        self.tabifyDockWidget(self.generate_dock, self.concepts_dock)
        self.layers_dock = dock("Layers", self.layers_panel, "layers")
        self.history_dock = dock("History", self.history_view, "history")
        self.tabifyDockWidget(self.layers_dock, self.history_dock)
        self.results_dock = dock("Results", self.results, "results")
        self.tabifyDockWidget(self.layers_dock, self.results_dock)
        self.generate_dock.raise_()
        self.layers_dock.raise_()


    def _action(self, text: str, slot, shortcut=None, tip: str = "") -> QAction:
        a = QAction(text, self)
        if shortcut:
            a.setShortcut(QKeySequence(shortcut))
        if tip:
            a.setStatusTip(tip)
            a.setToolTip(tip)
        a.triggered.connect(lambda _=False: slot())
        self.addAction(a)
        return a

    def _actions(self) -> None:
        A = self._action
        self.a_new = A("&New canvas…", self.new_canvas, QKeySequence.StandardKey.New)
        self.a_open = A("&Open…", self.open_dialog, QKeySequence.StandardKey.Open,
                        "Open a project or a picture")
        self.a_import = A("&Import picture as layer…", self.import_layer_dialog, "Ctrl+Shift+I")
        self.a_save = A("&Save", self.save, QKeySequence.StandardKey.Save)
        self.a_save_as = A("Save &as…", self.save_as, QKeySequence.StandardKey.SaveAs)
        self.a_export = A("&Export PNG…", self.export_dialog, "Ctrl+E")
        self.a_quit = A("&Quit", self.close, QKeySequence.StandardKey.Quit)
        self.a_undo = A("&Undo", lambda: self.doc.undo.undo(), QKeySequence.StandardKey.Undo)
        self.a_redo = A("&Redo", lambda: self.doc.undo.redo(), QKeySequence.StandardKey.Redo)
        self.a_select_all = A("Select &all", self.select_all, QKeySequence.StandardKey.SelectAll)
        self.a_deselect = A("&Deselect", self.deselect, "Ctrl+Shift+A")
        self.a_clear_mask = A("&Clear mask", lambda: self.mask_action("clear"), "Ctrl+Shift+M")
        self.a_mask_sel = A("&Mask from selection", lambda: self.mask_action("from_selection"))
        self.a_invert_mask = A("&Invert mask", lambda: self.mask_action("invert"))
        self.a_zoom_in = A("Zoom &in", self.view.zoom_in, QKeySequence.StandardKey.ZoomIn)
        self.a_zoom_out = A("Zoom &out", self.view.zoom_out, QKeySequence.StandardKey.ZoomOut)
        self.a_fit = A("&Fit to window", self.view.fit, "Ctrl+0")
        self.a_actual = A("&Actual pixels (100 %)", lambda: self.view.set_zoom(1.0), "Ctrl+1")
        self.a_show_mask = A("Show &mask", lambda: self.doc.set_mask_visible(self.a_show_mask.isChecked()))
        self.a_show_mask.setCheckable(True)
        self.a_show_mask.setChecked(True)
        self.a_generate = A("&Generate", lambda: self.controller.run("generate"), "Ctrl+Return",
                            "Text to image at the canvas size")
        self.a_refine = A("&Refine", lambda: self.controller.run("refine"), "Ctrl+Shift+Return",
                          "Img2img of the picture or the selection")
        self.a_inpaint = A("&Inpaint", lambda: self.controller.run("inpaint"), "Ctrl+I",
                           "Repaint under the mask or inside the selection")
        self.a_cancel = A("&Cancel generation", self.controller.cancel_all,
                          "Ctrl+.")
        self.a_accept = A("&Accept candidate", self.accept_candidate, tip="Keep the staged result as a layer")
        self.a_discard = A("&Discard candidate", self.staging.discard_current)
        self.a_next = A("&Next candidate", self.staging.next)
        self.a_prev = A("&Previous candidate", self.staging.previous)
        self.a_live = A("&Live painting", lambda: self.live.set_enabled(self.a_live.isChecked()), "Ctrl+Shift+L",
                        "Every stroke repaints the picture (img2img at the live model's settings)")
        self.a_live.setCheckable(True)
        self.a_keep_live = A("&Keep live picture", self.live.keep, "Ctrl+Shift+K", "Copy the live picture into a layer")
        self.a_discard_live = A("Discard live picture", self.live.discard)
        self.live.changed.connect(self._on_live_changed)
        self._on_live_changed()
        self.live.status.connect(lambda text, _error: self.statusBar().showMessage(text, 5000))
        self.a_start_daemon = A("&Start the daemon", self.link.start_daemon)
        self.a_autostart = A("Start the daemon &automatically", lambda: setattr(
            self.link, "autostart", self.a_autostart.isChecked()))
        self.a_autostart.setCheckable(True)
        self.a_autostart.setChecked(self.link.autostart)
        # staging keys act while the canvas has focus, so they never steal typing in the prompt
        for key, slot in ((Qt.Key.Key_Return, self.accept_candidate), (Qt.Key.Key_Enter, self.accept_candidate),
                          (Qt.Key.Key_Delete, self.staging.discard_current), (Qt.Key.Key_Right, self.staging.next),
                          (Qt.Key.Key_Left, self.staging.previous)):
            sc = QShortcut(QKeySequence(key), self.view)
            sc.setContext(Qt.ShortcutContext.WidgetShortcut)
            sc.activated.connect(slot)

    def _menus(self) -> None:
        mb = self.menuBar()
        m = mb.addMenu("&File")
        for a in (self.a_new, self.a_open, self.a_import, None, self.a_save, self.a_save_as, self.a_export, None,
                  self.a_quit):
            m.addSeparator() if a is None else m.addAction(a)
        m = mb.addMenu("&Edit")
        for a in (self.a_undo, self.a_redo, None, self.a_select_all, self.a_deselect, None, self.a_clear_mask,
                  self.a_mask_sel, self.a_invert_mask):
            m.addSeparator() if a is None else m.addAction(a)
        m = mb.addMenu("&View")
        for a in (self.a_zoom_in, self.a_zoom_out, self.a_fit, self.a_actual, None, self.a_show_mask):
            m.addSeparator() if a is None else m.addAction(a)
        m = mb.addMenu("&Generate")
        for a in (self.a_generate, self.a_refine, self.a_inpaint, self.a_cancel, None, self.a_accept,
                  self.a_discard, self.a_next, self.a_prev, None, self.a_live, self.a_keep_live, self.a_discard_live):
            m.addSeparator() if a is None else m.addAction(a)
        m = mb.addMenu("&Daemon")
        m.addAction(self.a_start_daemon)
        m.addAction(self.a_autostart)
        m = mb.addMenu("&Window")
        for d in (self.generate_dock, self.concepts_dock, self.layers_dock, self.history_dock, self.results_dock):
            m.addAction(d.toggleViewAction())

    def _toolbars(self) -> None:
        tb = self.addToolBar("Tools")
        tb.setObjectName("tools")
        tb.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextOnly)
        self.tool_group = QActionGroup(self)
        self.tool_actions: Dict[str, QAction] = {}
        for name, tool in self.tools.items():
            a = QAction(tool.label, self)
            a.setCheckable(True)
            a.setShortcut(QKeySequence(tool.shortcut))
            a.setToolTip(f"{tool.label} ({tool.shortcut}): {tool.tip}")
            a.triggered.connect(lambda _=False, n=name: self.select_tool(n))
            self.tool_group.addAction(a)
            tb.addAction(a)
            self.tool_actions[name] = a
        ob = self.addToolBar("Brush")
        ob.setObjectName("brush")
        ob.addWidget(QLabel(" Size "))
        self.size_spin = QSpinBox()
        self.size_spin.setRange(1, 1000)
        self.size_spin.setSuffix(" px")
        self.size_spin.valueChanged.connect(self._brush_from_widgets)
        ob.addWidget(self.size_spin)
        ob.addWidget(QLabel(" Hardness "))
        self.hardness_spin = QSpinBox()
        self.hardness_spin.setRange(0, 100)
        self.hardness_spin.setSuffix(" %")
        self.hardness_spin.valueChanged.connect(self._brush_from_widgets)
        ob.addWidget(self.hardness_spin)
        ob.addWidget(QLabel(" Opacity "))
        self.opacity_spin = QSpinBox()
        self.opacity_spin.setRange(1, 100)
        self.opacity_spin.setSuffix(" %")
        self.opacity_spin.valueChanged.connect(self._brush_from_widgets)
        ob.addWidget(self.opacity_spin)
        ob.addWidget(QLabel(" "))
        self.color_button = QToolButton()
        self.color_button.setToolTip("Brush colour")
        self.color_button.clicked.connect(self.choose_color)
        ob.addWidget(self.color_button)
        self._update_color_button()

    def _status_bar(self) -> None:
        sb = self.statusBar()
        self.conn_label = QLabel()
        self.conn_label.setTextFormat(Qt.TextFormat.RichText)
        self.start_button = QPushButton("Start daemon")
        self.start_button.clicked.connect(self.link.start_daemon)
        self.start_button.setVisible(False)
        self.size_label = QLabel()
        self.pos_label = QLabel()
        self.zoom_label = QLabel()
        sb.addWidget(self.conn_label, 1)
        sb.addWidget(self.start_button)
        sb.addPermanentWidget(self.pos_label)
        sb.addPermanentWidget(self.size_label)
        sb.addPermanentWidget(self.zoom_label)
        self._on_link_state(self.link.state, self.link.message)
        self._on_zoom(self.view.zoom)

    def _wire(self) -> None:
        self.staging.changed.connect(self._on_staging)
        self.staging_bar.accept_requested.connect(self.accept_candidate)
        self.staging_bar.reuse_seed_requested.connect(self.panel.set_seed)
        self.staging_bar.reuse_settings_requested.connect(self._reuse_candidate)
        self.link.state_changed.connect(self._on_link_state)
        self.link.models_changed.connect(self.panel.set_models)
        self.concepts.use_requested.connect(self._use_concept)
        self.concepts.concepts_listed.connect(self.panel.set_concept_names)
        self.concepts.concepts_info.connect(self.panel.set_concepts_info)
        self.concepts.concepts_listed.connect(lambda _names: self.panel.set_concept_listing(self.concepts.concepts))
        self.layers_panel.use_settings_requested.connect(self._reuse_layer_settings)
        self.layers_panel.mask_action.connect(self.mask_action)
        self.view.brush_size_step.connect(self._step_brush_size)
        self.view.zoom_changed.connect(self._on_zoom)
        self.view.cursor_moved.connect(self._on_cursor)
        self._connect_doc()

    def _connect_doc(self) -> None:
        d = self.doc
        d.undo.cleanChanged.connect(self._update_title)
        d.undo.canUndoChanged.connect(self.a_undo.setEnabled)
        d.undo.canRedoChanged.connect(self.a_redo.setEnabled)
        d.mask_changed.connect(lambda _r: self.a_show_mask.setChecked(self.doc.mask_visible))
        self.a_undo.setEnabled(d.undo.canUndo())
        self.a_redo.setEnabled(d.undo.canRedo())
        self.size_label.setText(f"{d.width} × {d.height} px")

    # ------------------------------------------------------------------ document

    def set_document(self, doc: Document) -> None:
        """Replace the picture: running jobs are cancelled and staged results dropped (they were for the old one)."""
        self.controller.forget_all()
        self.staging.discard_all()
        for tool in self.tools.values():
            tool.set_document(doc)
        old = self.doc
        self.doc = doc
        doc.setParent(self)
        self.view.set_document(doc)
        self.layers_panel.set_document(doc)
        self.history_view.setStack(doc.undo)
        self.results.set_history(history_for(doc.path or ""))
        self._connect_doc()
        self.a_show_mask.setChecked(doc.mask_visible)
        self._update_title()
        if old is not doc:
            old.deleteLater()

    def _update_title(self, *_args) -> None:
        name = Path(self.doc.path).name if self.doc.path else "Untitled"
        self.setWindowTitle(f"{name}{' *' if self.doc.is_modified() else ''} — Impasto canvas")

    # ------------------------------------------------------------------ selection and mask

    def select_all(self) -> None:
        path = QPainterPath()
        path.addRect(QRectF(self.doc.rect()))
        self.doc.undo.push(SelectionCommand(self.doc, path, "Select all"))

    def deselect(self) -> None:
        if self.doc.has_selection():
            self.doc.undo.push(SelectionCommand(self.doc, QPainterPath(), "Deselect"))

    def mask_action(self, action: str) -> None:
        d = self.doc
        if action == "clear":
            if d.has_mask():
                d.undo.push(fill_mask_command(d, d.rect(), 0, "Clear mask"))
        elif action == "from_selection":
            if not d.has_selection():
                self.statusBar().showMessage("Select an area first (R or L).", 4000)
                return
            d.undo.push(mask_from_image_command(d, d.selection_mask(), "Mask from selection"))
            d.set_mask_visible(True)
        elif action == "invert":
            inverted = qt_images.gray_from_array(255 - d.mask_array())
            d.undo.push(mask_from_image_command(d, inverted, "Invert mask"))
            d.set_mask_visible(True)

    # ------------------------------------------------------------------ tools

    def select_tool(self, name: str) -> None:
        tool = self.tools[name]
        self.tool_actions[name].setChecked(True)
        self.view.set_tool(tool)
        self._brush_to_widgets()

    def _brush_to_widgets(self) -> None:
        mask = self.view.tool is not None and self.view.tool.name in MASK_TOOLS
        b = self.brush
        for w in (self.size_spin, self.hardness_spin, self.opacity_spin):
            w.blockSignals(True)
        self.size_spin.setValue(round(b.mask_size if mask else b.size))
        self.hardness_spin.setValue(round(100 * (b.mask_hardness if mask else b.hardness)))
        self.opacity_spin.setValue(round(100 * (b.mask_opacity if mask else b.opacity)))
        for w in (self.size_spin, self.hardness_spin, self.opacity_spin):
            w.blockSignals(False)
        self.color_button.setEnabled(not mask)

    def _brush_from_widgets(self) -> None:
        mask = self.view.tool is not None and self.view.tool.name in MASK_TOOLS
        b = self.brush
        if mask:
            b.mask_size, b.mask_hardness = float(self.size_spin.value()), self.hardness_spin.value() / 100
            b.mask_opacity = self.opacity_spin.value() / 100
        else:
            b.size, b.hardness = float(self.size_spin.value()), self.hardness_spin.value() / 100
            b.opacity = self.opacity_spin.value() / 100
        self.view.update()

    def _step_brush_size(self, direction: int) -> None:
        value = self.size_spin.value()
        step = max(1, round(value * 0.15))
        self.size_spin.setValue(max(1, value + direction * step))

    def choose_color(self) -> None:
        color = dialogs.pick_color(self, self.brush.color)
        if color is not None:
            self.brush.color = QColor(color)
            self._update_color_button()

    def _update_color_button(self) -> None:
        pm = QPixmap(20, 20)
        pm.fill(self.brush.color)
        self.color_button.setIcon(QIcon(pm))

    # ------------------------------------------------------------------ staging and generation

    def _on_staging(self) -> None:
        cand = self.staging.current()
        if cand is None:
            self.view.set_candidate(None)
        else:
            self.view.set_candidate(cand.image, cand.rect)
            self.view.setFocus()

    def accept_candidate(self) -> Optional[Layer]:
        layer = self.staging.accept_current(self.doc)
        if layer is not None:
            self.statusBar().showMessage(f"Accepted as layer “{layer.name}” (Ctrl+Z undoes)", 5000)
        return layer

    def _reuse_candidate(self, cand) -> None:
        self.panel.set_settings(cand.settings)
        self.panel.set_seed(cand.seed)

    def _reuse_layer_settings(self, data: dict) -> None:
        settings = GenerationSettings.from_dict(data)
        self.panel.set_settings(settings)
        if "seed" in data:
            self.panel.set_seed(int(data["seed"]))

    def _use_concept(self, name: str, trigger: str) -> None:
        if name not in [n for n, _w in self.panel.settings().active_concepts()]:
            self.panel.add_concept(name, 1.0)
        self.panel.insert_trigger(trigger)
        self.generate_dock.raise_()

    def _on_live_changed(self) -> None:
        """Live painting's menu state: the toggle follows live mode; Keep and Discard act only on a live picture."""
        self.a_live.setChecked(self.live.enabled)
        has_picture = self.live.candidate is not None
        self.a_keep_live.setEnabled(has_picture)
        self.a_discard_live.setEnabled(has_picture)

    # ------------------------------------------------------------------ status

    def _on_link_state(self, state: str, message: str) -> None:
        color = STATE_COLORS.get(state, "#9aa4b4")
        self.conn_label.setText(f"<span style='color:{color}'>●</span> {message}")
        self.conn_label.setToolTip(message)
        self.start_button.setVisible(state == DOWN)
        for a in (self.a_generate, self.a_refine, self.a_inpaint):
            a.setEnabled(state == CONNECTED)
        for b in (self.panel.generate_button, self.panel.refine_button, self.panel.inpaint_button):
            b.setEnabled(state == CONNECTED)
            b.setToolTip(b.toolTip().split("\n")[0] + ("" if state == CONNECTED else f"\n{message}"))
        self.concepts.train_button.setEnabled(state == CONNECTED and self.concepts.job is None)
        if state == CONNECTED and not self._listed_concepts:
            self._listed_concepts = True
            self.concepts.refresh()
        if state != CONNECTED:
            self._listed_concepts = False

    def _on_zoom(self, zoom: float) -> None:
        self.zoom_label.setText(f"{zoom * 100:.0f} %")

    def _on_cursor(self, pos: QPointF) -> None:
        if self.doc.point_inside(pos):
            self.pos_label.setText(f"{int(pos.x())}, {int(pos.y())}")
        else:
            self.pos_label.setText("")

    def showEvent(self, event) -> None:  # noqa: N802
        super().showEvent(event)
        if not self._docks_sized:  # dock sizes only stick once the window is laid out
            self._docks_sized = True
            QTimer.singleShot(0, self._size_docks)

    def _size_docks(self) -> None:
        self.resizeDocks([self.generate_dock], [420], Qt.Orientation.Horizontal)
        h = max(400, self.height())
        self.resizeDocks([self.generate_dock, self.layers_dock], [int(h * 0.7), int(h * 0.3)],
                         Qt.Orientation.Vertical)

    def closeEvent(self, event) -> None:  # noqa: N802
        if not self.maybe_save():
            event.ignore()
            return
        self.controller.cancel_all()
        self.live.set_enabled(False)
        self.link.close()
        event.accept()

