"""The docker's contents: prompt, knobs, Generate / Cancel, progress and live preview.

A plain QWidget (the Krita ``DockWidget`` only wraps it), so it is built and
screenshotted offscreen in tests the same way Krita shows it.  It talks to
the document through a host object (:class:`~.krita_host.KritaHost` in Krita)
and to the daemon through a :class:`~.session.Session`; every session
callback arrives here on the UI thread through :class:`Poster`.
"""
from __future__ import annotations

import dataclasses
import threading
import time
import traceback
from typing import Any, Callable, Dict, List, Optional

from . import planning
from ...protocol.messages import FILL_MODES, SAMPLERS, Limits
from ...protocol.transport import default_endpoint
from .config import ConnectionConfig, SettingsStore, join_command, load_connection, save_connection, split_command
from .krita_host import document_format, prepare_layer
from .masks import crop
from .placement import PlacementError, plan_layers
from .planning import CanvasSnapshot, JobPlan, Settings
from .qt import QtCore, QtGui, QtWidgets, Qt, Signal, rgba_qimage
from .session import ConnectionState, Session, SessionListener
from .wording import describe_exception

SAMPLER_NAMES = {
    "euler": "Euler", "euler_a": "Euler a", "ddim": "DDIM", "ddpm": "DDPM",
    "dpmpp_2m": "DPM++ 2M", "dpmpp_2m_karras": "DPM++ 2M Karras", "lcm": "LCM",
}
FILL_NAMES = {
    "original": "Original pixels", "blur": "Blurred surroundings", "neutral": "Neutral gray", "noise": "Noise",
}
STATUS_COLOURS = {
    "ready": "#3fae5a", "connecting": "#d9a43b", "starting": "#d9a43b", "offline": "#8a8a8a", "failed": "#d9534f",
}
PREVIEW_SIDE = 256


class Poster(QtCore.QObject):
    """Runs callables on the thread this object lives in (Krita's UI thread)."""

    invoke = Signal(object)

    def __init__(self, parent: Optional[QtCore.QObject] = None):
        super().__init__(parent)
        self.invoke.connect(self._run)

    def post(self, fn: Callable[[], None]) -> None:
        self.invoke.emit(fn)

    @staticmethod
    def _run(fn: Callable[[], None]) -> None:
        try:
            fn()
        except Exception:  # a UI callback must never take Krita down
            traceback.print_exc()


class Section(QtWidgets.QWidget):
    """A titled, collapsible group: keeps the docker short until a knob is needed."""

    def __init__(self, title: str, expanded: bool = False, parent: Optional[QtWidgets.QWidget] = None):
        super().__init__(parent)
        self.toggle = QtWidgets.QToolButton(self)
        self.toggle.setText(title)
        self.toggle.setCheckable(True)
        self.toggle.setChecked(expanded)
        self.toggle.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
        self.toggle.setAutoRaise(True)
        self.toggle.setStyleSheet("QToolButton { font-weight: bold; border: none; }")
        self.body = QtWidgets.QWidget(self)
        self.form = QtWidgets.QFormLayout(self.body)
        self.form.setContentsMargins(14, 0, 0, 4)
        self.form.setFieldGrowthPolicy(QtWidgets.QFormLayout.FieldGrowthPolicy.AllNonFixedFieldsGrow)
        lay = QtWidgets.QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.setSpacing(2)
        lay.addWidget(self.toggle)
        lay.addWidget(self.body)
        self.toggle.toggled.connect(self._update)
        self._update(expanded)

    def _update(self, expanded: bool) -> None:
        self.toggle.setArrowType(Qt.ArrowType.DownArrow if expanded else Qt.ArrowType.RightArrow)
        self.body.setVisible(expanded)


def _spin(lo: int, hi: int, value: int, suffix: str = "", tip: str = "") -> QtWidgets.QSpinBox:
    box = QtWidgets.QSpinBox()
    box.setRange(lo, hi)
    box.setValue(value)
    if suffix:
        box.setSuffix(suffix)
    if tip:
        box.setToolTip(tip)
    return box


class ImpastoPanel(QtWidgets.QWidget, SessionListener):
    """Generate, refine and inpaint the selection from a Krita docker."""

    def __init__(self, host: Any, store: SettingsStore, install_info: Optional[Dict[str, Any]] = None,
                 parent: Optional[QtWidgets.QWidget] = None, autoconnect: bool = True,
                 limits: Optional[Any] = None):
        super().__init__(parent)
        self.host = host
        self.store = store
        self.limits = limits or Limits()
        self.poster = Poster(self)
        self.connection = load_connection(store, install_info)
        self.session = Session(self.connection, self, self.poster.post)
        self.settings = planning.load_form(store.get("form"))
        self.state = ConnectionState()
        self.last_result: Optional[Any] = None
        self.last_layers: List[Any] = []
        self.last_message = ""
        self.outcome = ""                 # how the last job ended: layers | failed | cancelled
        self.outcome_count = 0            # bumped when a job ends (tests and scripts wait on it)
        self._job_started = 0.0
        self._preview_image: Optional[QtGui.QImage] = None
        self._loading = False
        self._build()
        self._load_form(self.settings)
        self._save_timer = QtCore.QTimer(self)
        self._save_timer.setSingleShot(True)
        self._save_timer.setInterval(600)
        self._save_timer.timeout.connect(self._save_form)
        self._canvas_timer = QtCore.QTimer(self)
        self._canvas_timer.setInterval(400)
        self._canvas_timer.timeout.connect(self._refresh_action_label)
        self._canvas_timer.start()
        self._alive_timer = QtCore.QTimer(self)
        self._alive_timer.setInterval(10000)
        self._alive_timer.timeout.connect(self.session.check_alive)
        self._alive_timer.start()
        self._set_running(False)
        if autoconnect:
            self.state_changed(ConnectionState(status="connecting", message=f"Connecting to {self.session.endpoint} …"))
            # Opening Krita never starts the daemon (it holds a model in memory): Generate or ⟳ does.
            self.session.connect(allow_start=False)
        else:
            self.state_changed(ConnectionState(status="offline", message="Not connected: press ⟳ to connect."))

    # ------------------------------------------------------------------ building

    def _build(self) -> None:
        root = QtWidgets.QVBoxLayout(self)
        root.setContentsMargins(6, 6, 6, 6)
        root.setSpacing(6)

        top = QtWidgets.QHBoxLayout()
        self.status_dot = QtWidgets.QLabel("●")
        self.status_label = QtWidgets.QLabel()
        self.status_label.setWordWrap(True)
        self.status_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.reconnect_button = QtWidgets.QToolButton()
        self.reconnect_button.setText("⟳")
        self.reconnect_button.setToolTip("Reconnect to the daemon and refresh the model and concept lists")
        self.reconnect_button.clicked.connect(lambda: self.session.connect())
        top.addWidget(self.status_dot, 0, Qt.AlignmentFlag.AlignTop)
        top.addWidget(self.status_label, 1)
        top.addWidget(self.reconnect_button, 0, Qt.AlignmentFlag.AlignTop)
        root.addLayout(top)

        form = QtWidgets.QFormLayout()
        form.setFieldGrowthPolicy(QtWidgets.QFormLayout.FieldGrowthPolicy.AllNonFixedFieldsGrow)
        self.model_combo = QtWidgets.QComboBox()
        self.model_combo.setToolTip("The checkpoint the daemon paints with")
        self.prompt_edit = QtWidgets.QPlainTextEdit()
        self.prompt_edit.setPlaceholderText("What to paint, e.g. “a red fox in morning mist, oil painting”")
        self.prompt_edit.setFixedHeight(64)
        self.prompt_edit.setTabChangesFocus(True)
        self.negative_edit = QtWidgets.QLineEdit()
        self.negative_edit.setPlaceholderText("What to avoid")
        self.negative_edit.setToolTip("Negative prompt")
        form.addRow("Model", self.model_combo)
        form.addRow("Prompt", self.prompt_edit)
        form.addRow("Negative", self.negative_edit)
        root.addLayout(form)

        strength_row = QtWidgets.QHBoxLayout()
        strength_row.addWidget(QtWidgets.QLabel("Strength"))
        self.strength_slider = QtWidgets.QSlider(Qt.Orientation.Horizontal)
        self.strength_slider.setRange(1, 100)
        self.strength_slider.setToolTip("Denoising strength: 100 % paints from scratch (generate / inpaint), "
                                        "less keeps more of what is on the canvas (refine)")
        self.strength_value = QtWidgets.QLabel("100 %")
        self.strength_value.setMinimumWidth(44)
        self.strength_value.setAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        strength_row.addWidget(self.strength_slider, 1)
        strength_row.addWidget(self.strength_value)
        root.addLayout(strength_row)

        buttons = QtWidgets.QHBoxLayout()
        self.generate_button = QtWidgets.QPushButton("Generate")
        self.generate_button.setMinimumHeight(30)
        self.generate_button.setToolTip("Generate on the canvas, or inpaint the selection (Ctrl+Shift+Return)")
        font = self.generate_button.font()
        font.setBold(True)
        self.generate_button.setFont(font)
        self.cancel_button = QtWidgets.QPushButton("Cancel")
        self.cancel_button.setMinimumHeight(30)
        self.cancel_button.setToolTip("Stop the running job (Ctrl+Shift+X)")
        self.generate_button.clicked.connect(self.generate)
        self.cancel_button.clicked.connect(self.cancel)
        buttons.addWidget(self.generate_button, 1)
        buttons.addWidget(self.cancel_button)
        root.addLayout(buttons)

        self.progress = QtWidgets.QProgressBar()
        self.progress.setRange(0, 1)
        self.progress.setValue(0)
        self.progress.setTextVisible(True)
        self.progress.setFormat("")
        self.progress.setFixedHeight(16)
        root.addWidget(self.progress)

        self.preview = QtWidgets.QLabel()
        self.preview.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.preview.setMinimumHeight(96)
        self.preview.setSizePolicy(QtWidgets.QSizePolicy.Policy.Expanding, QtWidgets.QSizePolicy.Policy.Preferred)
        self.preview.setStyleSheet("QLabel { background: palette(base); border: 1px solid palette(mid); color: palette(mid); }")
        self.preview.setText("Live preview")
        root.addWidget(self.preview)

        self.message_label = QtWidgets.QLabel()
        self.message_label.setWordWrap(True)
        self.message_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        root.addWidget(self.message_label)

        # --- sampling
        sampling = Section("Sampling", expanded=True)
        self.sampler_combo = QtWidgets.QComboBox()
        for key in SAMPLERS:
            self.sampler_combo.addItem(SAMPLER_NAMES.get(key, key), key)
        self.steps_spin = _spin(1, self.limits.max_steps, 20, tip="Denoising steps: more is slower and finer")
        self.cfg_spin = QtWidgets.QDoubleSpinBox()
        self.cfg_spin.setRange(0.0, self.limits.max_cfg)
        self.cfg_spin.setSingleStep(0.5)
        self.cfg_spin.setDecimals(1)
        self.cfg_spin.setToolTip("CFG scale: how strictly to follow the prompt")
        steps_cfg = QtWidgets.QHBoxLayout()
        steps_cfg.addWidget(self.steps_spin, 1)
        steps_cfg.addWidget(QtWidgets.QLabel("CFG"))
        steps_cfg.addWidget(self.cfg_spin, 1)
        self.seed_spin = _spin(0, 2 ** 31 - 1, 0, tip="The seed: the same seed and settings give the same picture")
        self.random_seed_check = QtWidgets.QCheckBox("Random")
        self.random_seed_check.setToolTip("A new seed for every job (the one used is shown after the job)")
        self.reuse_seed_button = QtWidgets.QToolButton()
        self.reuse_seed_button.setText("♻")
        self.reuse_seed_button.setToolTip("Keep the last job's seed")
        self.reuse_seed_button.clicked.connect(self._reuse_seed)
        seed_row = QtWidgets.QHBoxLayout()
        seed_row.addWidget(self.seed_spin, 1)
        seed_row.addWidget(self.random_seed_check)
        seed_row.addWidget(self.reuse_seed_button)
        self.batch_spin = _spin(1, self.limits.max_batch, 1,
                                tip="Variants per job: one layer each, the first visible, the others hidden")
        self.preview_check = QtWidgets.QCheckBox("Live preview while painting")
        sampling.form.addRow("Sampler", self.sampler_combo)
        sampling.form.addRow("Steps", steps_cfg)
        sampling.form.addRow("Seed", seed_row)
        sampling.form.addRow("Batch", self.batch_spin)
        sampling.form.addRow("", self.preview_check)
        root.addWidget(sampling)

        # --- selection
        selection = Section("Selection (inpaint)", expanded=True)
        self.feather_spin = _spin(0, 256, 8, " px", "Mask blur: how softly the new pixels blend into the old")
        self.grow_spin = _spin(-256, 256, 0, " px", "Grow (or, negative, shrink) the selection before painting")
        self.padding_spin = _spin(0, 2048, 32, " px", "“Only masked” context: how much around the selection "
                                                       "the model sees")
        self.fill_combo = QtWidgets.QComboBox()
        for key in FILL_MODES:
            self.fill_combo.addItem(FILL_NAMES.get(key, key), key)
        self.fill_combo.setToolTip("What the selected area starts from")
        self.whole_check = QtWidgets.QCheckBox("Whole picture as context")
        self.whole_check.setToolTip("Let the model see the whole canvas instead of the selection plus padding")
        feather_grow = QtWidgets.QHBoxLayout()
        feather_grow.addWidget(self.feather_spin, 1)
        feather_grow.addWidget(QtWidgets.QLabel("Grow"))
        feather_grow.addWidget(self.grow_spin, 1)
        selection.form.addRow("Feather", feather_grow)
        selection.form.addRow("Padding", self.padding_spin)
        selection.form.addRow("Fill", self.fill_combo)
        selection.form.addRow("", self.whole_check)
        root.addWidget(selection)

        # --- concepts
        self.concepts_section = Section("Concepts", expanded=False)
        self.concepts_hint = QtWidgets.QLabel("No concepts trained yet.")
        self.concepts_hint.setWordWrap(True)
        self.concepts_section.form.addRow(self.concepts_hint)
        self.concept_rows: Dict[str, Any] = {}
        root.addWidget(self.concepts_section)

        # --- connection
        conn = Section("Connection", expanded=False)
        self.endpoint_edit = QtWidgets.QLineEdit()
        self.endpoint_edit.setPlaceholderText(default_endpoint())
        self.command_edit = QtWidgets.QLineEdit()
        self.command_edit.setPlaceholderText("e.g. impasto  or  /path/to/venv/bin/impasto")
        self.command_edit.setToolTip("The command that runs Impasto; `serve` is added to start the daemon")
        self.autostart_check = QtWidgets.QCheckBox("Start the daemon automatically")
        apply_button = QtWidgets.QPushButton("Apply and reconnect")
        apply_button.clicked.connect(self._apply_connection)
        conn.form.addRow("Endpoint", self.endpoint_edit)
        conn.form.addRow("Daemon", self.command_edit)
        conn.form.addRow("", self.autostart_check)
        conn.form.addRow("", apply_button)
        root.addWidget(conn)
        root.addStretch(1)

        self.endpoint_edit.setText(self.connection.endpoint)
        self.command_edit.setText(join_command(self.connection.daemon_command))
        self.autostart_check.setChecked(self.connection.auto_start)

        for signal in (self.prompt_edit.textChanged, self.negative_edit.textChanged,
                       self.strength_slider.valueChanged, self.sampler_combo.currentIndexChanged,
                       self.steps_spin.valueChanged, self.cfg_spin.valueChanged, self.seed_spin.valueChanged,
                       self.random_seed_check.toggled, self.batch_spin.valueChanged, self.preview_check.toggled,
                       self.feather_spin.valueChanged, self.grow_spin.valueChanged, self.padding_spin.valueChanged,
                       self.fill_combo.currentIndexChanged, self.whole_check.toggled,
                       self.model_combo.currentIndexChanged):
            signal.connect(self._form_changed)

    # ------------------------------------------------------------------ form <-> settings

    def _load_form(self, s: Settings) -> None:
        self._loading = True
        try:
            self.prompt_edit.setPlainText(s.prompt)
            self.negative_edit.setText(s.negative_prompt)
            self.strength_slider.setValue(max(1, min(100, round(s.strength * 100))))
            _select_data(self.sampler_combo, s.sampler)
            self.steps_spin.setValue(s.steps)
            self.cfg_spin.setValue(s.cfg_scale)
            if s.seed >= 0:
                self.seed_spin.setValue(min(2 ** 31 - 1, s.seed))
            self.random_seed_check.setChecked(s.seed < 0)
            self.batch_spin.setValue(s.batch_size)
            self.preview_check.setChecked(s.preview)
            self.feather_spin.setValue(s.mask_blur)
            self.grow_spin.setValue(s.grow)
            self.padding_spin.setValue(s.padding)
            _select_data(self.fill_combo, s.fill)
            self.whole_check.setChecked(s.whole_picture)
            self._fill_models(self.state, s.model)
        finally:
            self._loading = False
        self._update_labels()

    def read_form(self) -> Settings:
        s = Settings(
            prompt=self.prompt_edit.toPlainText(), negative_prompt=self.negative_edit.text(),
            model=self.model_combo.currentData() or "", sampler=self.sampler_combo.currentData() or "euler_a",
            steps=self.steps_spin.value(), cfg_scale=round(self.cfg_spin.value(), 2),
            seed=-1 if self.random_seed_check.isChecked() else self.seed_spin.value(),
            strength=self.strength_slider.value() / 100.0,
            batch_size=self.batch_spin.value(), mask_blur=self.feather_spin.value(), grow=self.grow_spin.value(),
            padding=self.padding_spin.value(), fill=self.fill_combo.currentData() or "original",
            whole_picture=self.whole_check.isChecked(), preview=self.preview_check.isChecked(),
        )
        concepts = []
        for name, (check, weight) in self.concept_rows.items():
            concepts.append({"name": name, "weight": round(weight.value(), 2), "enabled": check.isChecked()})
        known = set(self.concept_rows)
        concepts += [c for c in self.settings.concepts if c.get("name") not in known]  # keep unseen ones
        s.concepts = concepts
        return s

    def _form_changed(self, *_: Any) -> None:
        if self._loading:
            return
        self._update_labels()
        self._save_timer.start()

    def _save_form(self) -> None:
        self.settings = self.read_form()
        try:
            self.store.set("form", self.settings.to_json())
        except Exception:
            pass

    def _update_labels(self) -> None:
        self.strength_value.setText(f"{self.strength_slider.value()} %")
        self.seed_spin.setEnabled(not self.random_seed_check.isChecked())
        self._refresh_action_label()

    def _refresh_action_label(self) -> None:
        doc = None
        try:
            doc = self.host.active_document()
            has_sel = doc is not None and self.host.has_selection(doc)
        except Exception:
            has_sel = False
        s = Settings(strength=self.strength_slider.value() / 100.0)
        label = planning.action_label(s, has_sel)
        if self.generate_button.text() != label:
            self.generate_button.setText(label)
        self.generate_button.setEnabled(not self.session.busy and doc is not None)

    def _reuse_seed(self) -> None:
        if self.last_result is not None and self.last_result.seeds:
            self.random_seed_check.setChecked(False)
            self.seed_spin.setValue(int(self.last_result.seeds[0]) % (2 ** 31))

    def _apply_connection(self) -> None:
        cfg = ConnectionConfig(endpoint=self.endpoint_edit.text().strip(),
                               daemon_command=split_command(self.command_edit.text()),
                               auto_start=self.autostart_check.isChecked(),
                               models_dir=self.connection.models_dir, daemon_env=self.connection.daemon_env)
        self.connection = cfg
        try:
            save_connection(self.store, cfg)
        except Exception:
            pass
        self.session.reconfigure(cfg)
        self.session.connect()

    # ------------------------------------------------------------------ models and concepts

    def _fill_models(self, state: ConnectionState, wanted: Optional[str] = None) -> None:
        current = wanted if wanted is not None else (self.model_combo.currentData() or "")
        was_loading, self._loading = self._loading, True
        try:
            self.model_combo.clear()
            default = state.default_model
            self.model_combo.addItem(f"Default ({default})" if default else "Default", "")
            for m in state.models:
                name = str(m.get("name", ""))
                if name:
                    arch = m.get("arch") or ""
                    self.model_combo.addItem(f"{name}  ·  {arch}" if arch else name, name)
            if current and not _select_data(self.model_combo, current):
                self.model_combo.addItem(f"{current} (not on this daemon)", current)
                _select_data(self.model_combo, current)
        finally:
            self._loading = was_loading

    def _fill_concepts(self, concepts: List[Dict[str, Any]]) -> None:
        saved = {c.get("name"): c for c in self.read_form().concepts} if self.concept_rows else \
            {c.get("name"): c for c in self.settings.concepts}
        for check, weight in self.concept_rows.values():
            self.concepts_section.form.removeRow(check)
        self.concept_rows = {}
        self.concepts_hint.setVisible(not concepts)
        for c in concepts:
            name = str(c.get("name", ""))
            if not name:
                continue
            trigger = c.get("trigger") or ""
            check = QtWidgets.QCheckBox(f"{name}  ({trigger})" if trigger else name)
            if trigger:
                check.setToolTip(f"Trigger word: {trigger} - put it in the prompt")
            weight = QtWidgets.QDoubleSpinBox()
            weight.setRange(-2.0, 2.0)
            weight.setSingleStep(0.05)
            weight.setDecimals(2)
            weight.setToolTip("LoRA weight")
            prev = saved.get(name, {})
            check.setChecked(bool(prev.get("enabled", False)))
            weight.setValue(float(prev.get("weight", 1.0)))
            check.toggled.connect(self._form_changed)
            weight.valueChanged.connect(self._form_changed)
            self.concepts_section.form.addRow(check, weight)
            self.concept_rows[name] = (check, weight)

    # ------------------------------------------------------------------ session callbacks (UI thread)

    def state_changed(self, state: ConnectionState) -> None:
        models_changed = (state.models, state.default_model) != (self.state.models, self.state.default_model)
        concepts_changed = state.concepts != self.state.concepts
        self.state = state
        colour = STATUS_COLOURS.get(state.status, "#8a8a8a")
        self.status_dot.setStyleSheet(f"QLabel {{ color: {colour}; font-size: 14px; }}")
        self.status_label.setText(state.message or state.status.capitalize())
        self.status_dot.setToolTip(state.status)
        if models_changed:
            self._fill_models(state)
        if concepts_changed or (state.ready and not self.concept_rows and state.concepts):
            self._fill_concepts(state.concepts)
        self.reconnect_button.setEnabled(state.status not in ("connecting", "starting"))

    def job_started(self, plan: JobPlan) -> None:
        self._job_started = time.monotonic()
        self.progress.setRange(0, 0)  # busy until the first step arrives
        self.progress.setFormat("")
        self.show_message(f"{plan.label}: sent, waiting for the daemon …")

    def job_queued(self, plan: JobPlan, position: int) -> None:
        if position > 0:
            self.show_message(f"{plan.label}: queued behind {position} job{'s' if position > 1 else ''} …")

    def job_progress(self, plan: JobPlan, progress: Any) -> None:
        if self.progress.maximum() == 0:  # the first step: the daemon is painting
            self.show_message(f"{plan.label}: painting …")
        total = max(1, int(progress.total))
        self.progress.setRange(0, total)
        self.progress.setValue(min(total, int(progress.step)))
        self.progress.setFormat(f"%v / %m {progress.stage}".strip())
        if progress.preview is not None:
            p = progress.preview
            self.set_preview(rgba_qimage(p.data, p.width, p.height))

    def job_finished(self, plan: JobPlan, result: Any) -> None:
        self.last_result = result
        elapsed = time.monotonic() - self._job_started
        self.progress.setRange(0, 1)
        self.progress.setValue(1)
        self.progress.setFormat("done")
        try:
            layers = plan_layers(plan, result)
        except PlacementError as exc:
            self._job_done_error(str(exc))
            return
        fmt = plan.document_format
        self.show_message(f"{plan.label}: adding {len(layers)} layer{'s' if len(layers) > 1 else ''} …")

        def prepare() -> None:  # pixel conversion off the UI thread
            try:
                prepared = [prepare_layer(fmt, layer) for layer in layers]
            except Exception as exc:
                message = describe_exception(exc)
                self.poster.post(lambda: self._job_done_error(message))
                return
            self.poster.post(lambda: self._apply_layers(plan, result, prepared, elapsed))

        threading.Thread(target=prepare, name="impasto-prepare", daemon=True).start()

    def _ended(self, outcome: str) -> None:
        self.outcome = outcome
        self.outcome_count += 1

    def _apply_layers(self, plan: JobPlan, result: Any, prepared: List[Any], elapsed: float) -> None:
        self._set_running(False)
        doc = plan.document
        if doc is None or not self.host.is_open(doc):
            self.show_message("The document was closed before the result arrived; nothing was added.", error=True)
            self._ended("failed")
            return
        try:
            self.last_layers = self.host.add_layers(doc, prepared)
        except Exception as exc:
            self.show_message(describe_exception(exc), error=True)
            self._ended("failed")
            return
        if self.last_layers and hasattr(self.host, "activate"):
            # Krita's layer panel learns about a new node a moment after it is added: select it then
            first_node = self.last_layers[0]
            QtCore.QTimer.singleShot(150, lambda: self.host.activate(doc, first_node))
        first = prepared[0].plan
        self.set_preview(rgba_qimage(first.rgba, first.width, first.height))
        seeds = ", ".join(str(s) for s in result.seeds[:4]) + (" …" if len(result.seeds) > 4 else "")
        count = len(prepared)
        where = f" at {first.x},{first.y}" if plan.kind == "edit" else ""
        extra = f" (the first visible, {count - 1} hidden)" if count > 1 else ""
        text = f"{count} new layer{'s' if count > 1 else ''}{where}{extra} · seed {seeds} · {elapsed:.1f} s"
        for w in result.warnings:
            text += f"\n⚠ {w}"
        self.show_message(text)
        self._ended("layers")

    def _job_done_error(self, message: str) -> None:
        self._set_running(False)
        self.show_message(message, error=True)
        self._ended("failed")

    def job_cancelled(self, plan: Optional[JobPlan]) -> None:
        self._set_running(False)
        self.progress.setRange(0, 1)
        self.progress.setValue(0)
        self.progress.setFormat("cancelled")
        self.show_message("Cancelled.")
        self._ended("cancelled")

    def job_failed(self, plan: Optional[JobPlan], message: str) -> None:
        self._set_running(False)
        self.progress.setRange(0, 1)
        self.progress.setValue(0)
        self.progress.setFormat("")
        self.show_message(message, error=True)
        self._ended("failed")

    # ------------------------------------------------------------------ actions

    def generate(self) -> bool:
        """Read the canvas (UI thread, fast) and hand the rest to the session; False if nothing started."""
        try:
            return self._generate()
        except Exception as exc:  # never a traceback in Krita
            self._set_running(False)
            self.show_message(describe_exception(exc), error=True)
            return False

    def _generate(self) -> bool:
        if self.session.busy:
            self.show_message("A job is already running: cancel it first.")
            return False
        settings = self.read_form()
        self.settings = settings
        # concepts remembered from another daemon are kept in the form, but only listed ones are sent
        settings = dataclasses.replace(settings, concepts=[c for c in settings.concepts
                                                           if c.get("name") in self.concept_rows])
        doc = self.host.active_document()
        if doc is None:
            self.show_message("Open or create a document first.", error=True)
            return False
        width, height = self.host.canvas_size(doc)
        selection = self.host.read_selection(doc)
        read = planning.read_plan(settings, width, height, selection)
        raw, fmt, rgba = (None, document_format(doc), None)
        if read.needs_pixels:
            raw, fmt, rgba = self.host.read_pixels(doc, read.window)
        window_sel = crop(selection, width, read.window, 1) if (read.mask_info and selection is not None) else None
        snapshot = CanvasSnapshot(width, height, read.window, raw, fmt, window_sel, read.mask_info,
                                  getattr(doc, "name", lambda: "")(), rgba)
        doc_fmt = document_format(doc)
        limits = self.limits

        def build() -> JobPlan:
            plan = planning.plan_job(snapshot, settings, limits)
            plan.document = doc
            plan.document_format = doc_fmt
            return plan

        if not self.session.start_job(build):
            self.show_message("A job is already running: cancel it first.")
            return False
        self._set_running(True)
        self.show_message(f"{planning.action_label(settings, read.mask_info is not None)}: preparing the canvas …")
        return True

    def cancel(self) -> None:
        if self.session.busy:
            self.session.cancel()
            self.show_message("Cancelling …")

    # ------------------------------------------------------------------ display

    def _set_running(self, running: bool) -> None:
        self.cancel_button.setEnabled(running)
        self.generate_button.setEnabled(not running)
        if not running:
            self._refresh_action_label()

    def show_message(self, text: str, error: bool = False) -> None:
        self.last_message = text
        self.message_label.setStyleSheet("QLabel { color: #d9534f; }" if error else "")
        self.message_label.setText(text)

    def set_preview(self, image: QtGui.QImage) -> None:
        self._preview_image = image
        self._show_preview()

    def _show_preview(self) -> None:
        if self._preview_image is None or self._preview_image.isNull():
            return
        side = max(64, min(PREVIEW_SIDE, self.preview.width() - 4))
        pix = QtGui.QPixmap.fromImage(self._preview_image).scaled(
            side, side, Qt.AspectRatioMode.KeepAspectRatio, Qt.TransformationMode.SmoothTransformation)
        self.preview.setPixmap(pix)

    def resizeEvent(self, event: Any) -> None:  # noqa: N802 (Qt naming)
        super().resizeEvent(event)
        self._show_preview()

    def shutdown(self) -> None:
        """Stop timers and close the connection (Krita is closing the window)."""
        for t in (self._save_timer, self._canvas_timer, self._alive_timer):
            t.stop()
        self._save_form()
        self.session.close()


def _select_data(combo: QtWidgets.QComboBox, value: Any) -> bool:
    index = combo.findData(value)
    if index >= 0:
        combo.setCurrentIndex(index)
        return True
    return False
