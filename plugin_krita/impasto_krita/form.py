"""The docker's form: its widgets, and the form <-> :class:`Settings` mapping.

Split from :mod:`.panel` (which keeps the behaviour: session events, jobs,
previews) so each stays readable: this mixin only builds widgets on the panel
and reads / writes them; the handlers it connects (``generate``, ``cancel``,
``_form_changed``, ...) are the panel's.
"""
from __future__ import annotations

from typing import Any, Dict, Optional

from ...protocol.live import live_job
from ...protocol.messages import FILL_MODES, SAMPLERS
from ...protocol.settings import FILL_HINTS, Recommendation, fill_label, sampler_label
from ...protocol.transport import default_endpoint
from .config import join_command
from .planning import Settings
from .qt import QtWidgets, Qt
from .results import ResultsView

STATUS_COLOURS = {
    "ready": "#3fae5a", "connecting": "#d9a43b", "starting": "#d9a43b", "offline": "#8a8a8a", "failed": "#d9534f",
}


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


class DockerForm:
    """Mixin for :class:`~.panel.ImpastoPanel`: builds the form and maps it to and from :class:`Settings`."""

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
        self.sampler_combo.addItem("model default", "")     # unset: the model's recommendation
        self.sampler_combo.setSizeAdjustPolicy(
            QtWidgets.QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        self.sampler_combo.setMinimumContentsLength(12)
        for key in SAMPLERS:
            self.sampler_combo.addItem(sampler_label(key), key)   # the client core's words
        # 0 steps / CFG 0: the model's recommendation (shown as "model (20)")
        self.steps_spin = _spin(0, self.limits.max_steps, 0, tip="Denoising steps: more is slower and finer")
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
            self.fill_combo.addItem(fill_label(key), key)
            self.fill_combo.setItemData(self.fill_combo.count() - 1, FILL_HINTS.get(key, ""),
                                        Qt.ItemDataRole.ToolTipRole)
        self.fill_combo.setToolTip("What the selected area starts from")
        self.whole_check = QtWidgets.QCheckBox("Whole picture as context")
        self.whole_check.setToolTip("Let the model see the whole canvas instead of the selection plus padding")
        self.colour_check = QtWidgets.QCheckBox("Colour match at the seam")
        self.colour_check.setToolTip("Shift the repainted colours to meet the surroundings at the selection's edge")
        feather_grow = QtWidgets.QHBoxLayout()
        feather_grow.addWidget(self.feather_spin, 1)
        feather_grow.addWidget(QtWidgets.QLabel("Grow"))
        feather_grow.addWidget(self.grow_spin, 1)
        selection.form.addRow("Feather", feather_grow)
        selection.form.addRow("Padding", self.padding_spin)
        selection.form.addRow("Fill", self.fill_combo)
        selection.form.addRow("", self.whole_check)
        selection.form.addRow("", self.colour_check)
        root.addWidget(selection)

        # --- concepts
        self.concepts_section = Section("Concepts", expanded=False)
        self.concepts_hint = QtWidgets.QLabel("No concepts trained yet.")
        self.concepts_hint.setWordWrap(True)
        self.concepts_section.form.addRow(self.concepts_hint)
        self.concept_rows: Dict[str, Any] = {}
        root.addWidget(self.concepts_section)

        # --- results history (this document's)
        self.results_section = Section("Results", expanded=False)
        self.results = ResultsView(self._use_result_settings)
        self.results_section.form.addRow(self.results)
        root.addWidget(self.results_section)

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
                       self.fill_combo.currentIndexChanged, self.whole_check.toggled, self.colour_check.toggled,
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
            self.colour_check.setChecked(s.colour_match)
            self._fill_models(self.state, s.model)
        finally:
            self._loading = False
        self._update_labels()

    def read_form(self) -> Settings:
        s = Settings(
            prompt=self.prompt_edit.toPlainText(), negative_prompt=self.negative_edit.text(),
            model=self.model_combo.currentData() or "", sampler=self.sampler_combo.currentData() or "",
            steps=self.steps_spin.value(), cfg_scale=round(self.cfg_spin.value(), 2),
            seed=-1 if self.random_seed_check.isChecked() else self.seed_spin.value(),
            strength=self.strength_slider.value() / 100.0,
            batch_size=self.batch_spin.value(), mask_blur=self.feather_spin.value(), grow=self.grow_spin.value(),
            padding=self.padding_spin.value(), fill=self.fill_combo.currentData() or "original",
            whole_picture=self.whole_check.isChecked(), preview=self.preview_check.isChecked(),
            colour_match=self.colour_check.isChecked(),
        )
        concepts = []
        for name, (check, weight) in self.concept_rows.items():
            concepts.append({"name": name, "weight": round(weight.value(), 2), "enabled": check.isChecked()})
        known = set(self.concept_rows)
        concepts += [c for c in self.settings.concepts if c.get("name") not in known]  # keep unseen ones
        s.concepts = concepts
        return s

    def _use_result_settings(self, entry: Any) -> None:
        """A result's settings and seed back in the form (the Results section's "Use settings")."""
        self._load_form(entry.reuse(self.read_form()))
        self._save_form()

    def recommendation(self) -> Recommendation:
        """The chosen model's recommendation for the knobs left at "model default" (the daemon's listing)."""
        state = getattr(self, "state", None)
        if state is None:
            return Recommendation()
        rec = Recommendation.for_model(state.models, self.model_combo.currentData() or "", state.default_model)
        # a few-step LoRA ticked in the concepts (LCM-LoRA, Lightning...) brings its own settings (docs/live.md)
        active = [(n, w.value()) for n, (check, w) in getattr(self, "concept_rows", {}).items() if check.isChecked()]
        return rec.with_concepts(state.concepts, active)

    def show_recommendation(self) -> None:
        rec = self.recommendation()
        live = getattr(self, "live", None)
        if live is not None and live.enabled:
            # live jobs run the model's own few-step LoRA (the starter's LCM-LoRA) at its settings: "model
            # default" then reads those, not the model's DDIM, 20, 5.0 (the client core's live_job decides)
            rec = live_job(self.read_form(), 0, rec)[1] or rec
        self.sampler_combo.setItemText(0, rec.label())
        self.steps_spin.setSpecialValueText(f"model ({rec.steps})")
        self.cfg_spin.setSpecialValueText(f"model ({rec.cfg_scale:.1f})")

    def _update_labels(self) -> None:
        self.strength_value.setText(f"{self.strength_slider.value()} %")
        self.seed_spin.setEnabled(not self.random_seed_check.isChecked())
        self.show_recommendation()
        self._refresh_action_label()


def _select_data(combo: QtWidgets.QComboBox, value: Any) -> bool:
    index = combo.findData(value)
    if index >= 0:
        combo.setCurrentIndex(index)
        return True
    return False
