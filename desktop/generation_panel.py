"""The Generate panel: the same fields as the Krita docker, plus progress.

It only edits a :class:`~.settings.GenerationSettings` and says which button
was pressed; the :mod:`.generation` controller does the rest.  A field the
daemon (or the local check) rejects is outlined in red and focused.
"""
from __future__ import annotations

import re
from typing import Dict, List, Optional

from PySide6.QtCore import QRegularExpression, Qt, Signal
from PySide6.QtGui import QRegularExpressionValidator
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFormLayout,
    QFrame,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPlainTextEdit,
    QProgressBar,
    QPushButton,
    QScrollArea,
    QSpinBox,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from impasto.protocol.messages import FILL_MODES, SAMPLERS, Limits
from impasto.protocol import sliders
from impasto.protocol.live import live_job
from impasto.protocol.settings import FILL_HINTS, Recommendation, fill_label, sampler_label

from .settings import GenerationSettings
from .slider_widgets import SlidersBox

ERROR_STYLE = "border: 2px solid #e0404a;"


class ConceptRow(QWidget):
    """One concept in use: its name and LoRA weight."""

    removed = Signal(object)

    def __init__(self, names: List[str], name: str = "", weight: float = 1.0, parent: Optional[QWidget] = None):
        super().__init__(parent)
        lay = QHBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        self.name = QComboBox()
        self.name.setEditable(True)
        self.name.addItems(names)
        self.name.setCurrentText(name)
        self.name.setToolTip("A concept trained in the Concepts panel")
        self.weight = QDoubleSpinBox()
        self.weight.setRange(-4.0, 4.0)
        self.weight.setSingleStep(0.1)
        self.weight.setValue(weight)
        self.weight.setToolTip("LoRA weight: how strongly the concept applies")
        remove = QToolButton()
        remove.setText("✕")
        remove.setToolTip("Stop using this concept")
        remove.clicked.connect(lambda: self.removed.emit(self))
        lay.addWidget(self.name, 1)
        lay.addWidget(self.weight)
        lay.addWidget(remove)

    def value(self):
        return self.name.currentText().strip(), float(self.weight.value())


class GenerationPanel(QWidget):
    run_requested = Signal(str)          # generate | refine | inpaint
    cancel_requested = Signal()

    def __init__(self, parent: Optional[QWidget] = None):
        super().__init__(parent)
        self._concept_names: List[str] = []
        self._concept_rows: List[ConceptRow] = []
        limits = Limits()
        # fields scroll; the buttons, progress and status below them stay in sight while a job runs
        root = QVBoxLayout(self)
        root.setContentsMargins(0, 0, 0, 0)
        fields_widget = QWidget()
        outer = QVBoxLayout(fields_widget)
        scroll = QScrollArea()
        scroll.setWidget(fields_widget)
        scroll.setWidgetResizable(True)
        scroll.setFrameShape(QFrame.Shape.NoFrame)
        root.addWidget(scroll, 1)
        footer = QVBoxLayout()
        footer.setContentsMargins(9, 4, 9, 6)
        root.addLayout(footer)
        form = QFormLayout()
        form.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.AllNonFixedFieldsGrow)
        outer.addLayout(form)

        self.model = QComboBox()
        self.model.addItem("Default model", "")
        self.model.setToolTip("The daemon's models folder; the default is the starter model or the first one found")
        form.addRow("Model", self.model)

        self.prompt = QPlainTextEdit()
        self.prompt.setPlaceholderText("Describe the picture…")
        self.prompt.setFixedHeight(64)
        form.addRow("Prompt", self.prompt)
        self.negative = QPlainTextEdit()
        self.negative.setPlaceholderText("What to avoid (negative prompt)")
        self.negative.setFixedHeight(44)
        form.addRow("Negative", self.negative)

        self._recommendations: Dict[str, Recommendation] = {}
        self._default_model = ""
        self.sampler = QComboBox()
        self.sampler.addItem("model default", "")          # unset: the model's recommendation
        # "model default (DPM++ 2M Karras, 20, 5.0)" must not widen the dock
        self.sampler.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        self.sampler.setMinimumContentsLength(12)
        for name in SAMPLERS:
            self.sampler.addItem(sampler_label(name), name)
        self.steps = QSpinBox()
        self.steps.setRange(0, limits.max_steps)            # 0: the model's recommendation
        self.cfg = QDoubleSpinBox()
        self.cfg.setRange(0.0, limits.max_cfg)              # 0: the model's recommendation
        self.cfg.setSingleStep(0.5)
        self.cfg.setToolTip("CFG scale: how closely to follow the prompt")
        # the sampler has a row of its own, the dock's whole width under its label:
        # "model default (LCM quadratic, 4, 1.0, starter LCM-LoRA)" is read, not cut
        sampler_caption = QLabel("Sampler")
        sampler_caption.setBuddy(self.sampler)
        form.addRow(sampler_caption)
        form.addRow(self.sampler)
        row = QHBoxLayout()
        row.addWidget(self.steps, 1)
        row.addWidget(QLabel("CFG scale"))
        row.addWidget(self.cfg, 1)
        form.addRow("Steps", row)
        self.batch = QSpinBox()
        self.batch.setRange(1, limits.max_batch)
        self.batch.setToolTip("How many variations one click makes")

        self.seed = QLineEdit()
        self.seed.setValidator(QRegularExpressionValidator(QRegularExpression(r"\d{0,19}")))
        self.seed.setPlaceholderText("random")
        self.random_seed = QCheckBox("Random")
        self.random_seed.setToolTip("A new seed for every generation")
        self.random_seed.toggled.connect(lambda on: self.seed.setEnabled(not on))
        row = QHBoxLayout()
        row.addWidget(self.seed, 1)
        row.addWidget(self.random_seed)
        form.addRow("Seed", row)
        form.addRow("Batch", self.batch)

        self.strength = QDoubleSpinBox()
        self.strength.setRange(0.0, 1.0)
        self.strength.setSingleStep(0.05)
        self.strength.setDecimals(2)
        self.strength.setToolTip("Denoising strength for Refine and Inpaint: 1 repaints fully, "
                                 "low values keep the picture")
        form.addRow("Denoising strength", self.strength)

        concepts = QGroupBox("Concepts")
        self._concepts_layout = QVBoxLayout(concepts)
        self._concepts_layout.setContentsMargins(6, 4, 6, 4)
        add = QPushButton("Add concept")
        add.clicked.connect(lambda: self.add_concept("", 1.0))
        self._concepts_layout.addWidget(add)
        outer.addWidget(concepts)
        self.sliders = SlidersBox()          # Concept Sliders: one -3..+3 slider each (slider_widgets.py)
        outer.addWidget(self.sliders)

        inpaint = QGroupBox("Inpainting")
        iform = QFormLayout(inpaint)
        self.mask_blur = QSpinBox()
        self.mask_blur.setRange(0, 256)
        self.mask_blur.setSuffix(" px")
        self.mask_blur.setToolTip("Mask blur: feathers the edge between new and old pixels")
        self.grow = QSpinBox()
        self.grow.setRange(-256, 256)
        self.grow.setSuffix(" px")
        self.grow.setToolTip("Grow the mask (negative values shrink it)")
        row = QHBoxLayout()
        row.addWidget(self.mask_blur)
        row.addWidget(QLabel("Grow"))
        row.addWidget(self.grow)
        iform.addRow("Mask blur", row)
        self.fill = QComboBox()
        for name in FILL_MODES:
            self.fill.addItem(fill_label(name), name)
            self.fill.setItemData(self.fill.count() - 1, FILL_HINTS.get(name, ""), Qt.ItemDataRole.ToolTipRole)
        self.fill.setToolTip("What the masked area starts from before it is repainted")
        iform.addRow("Fill", self.fill)
        self.colour_match = QCheckBox("Colour match")
        self.colour_match.setToolTip("Shift the repainted colours to meet the surroundings at the seam (inpaint)")
        iform.addRow("", self.colour_match)
        self.padding = QSpinBox()
        self.padding.setRange(0, 2048)
        self.padding.setSuffix(" px")
        self.padding.setToolTip("“Only masked” padding: context around the mask the model sees")
        self.whole_picture = QCheckBox("Whole picture")
        self.whole_picture.setToolTip("Repaint with the whole picture as context instead of only the masked area")
        self.whole_picture.toggled.connect(lambda on: self.padding.setEnabled(not on))
        row = QHBoxLayout()
        row.addWidget(self.padding)
        row.addWidget(self.whole_picture)
        iform.addRow("Only masked padding", row)
        outer.addWidget(inpaint)
        outer.addStretch(1)

        buttons = QHBoxLayout()
        self.generate_button = QPushButton("Generate")
        self.generate_button.setToolTip("Text to image at the canvas size (Ctrl+Enter)")
        self.refine_button = QPushButton("Refine")
        self.refine_button.setToolTip("Img2img of the picture, or of the selection only")
        self.inpaint_button = QPushButton("Inpaint")
        self.inpaint_button.setToolTip("Repaint under the mask (or inside the selection)")
        for mode, button in (("generate", self.generate_button), ("refine", self.refine_button),
                             ("inpaint", self.inpaint_button)):
            button.clicked.connect(lambda _=False, m=mode: self.run_requested.emit(m))
            buttons.addWidget(button)
        footer.addLayout(buttons)

        row = QHBoxLayout()
        self.progress = QProgressBar()
        self.progress.setRange(0, 1)
        self.progress.setValue(0)
        self.progress.setTextVisible(True)
        self.progress.setFormat("Idle")
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setEnabled(False)
        self.cancel_button.clicked.connect(lambda: self.cancel_requested.emit())
        row.addWidget(self.progress, 1)
        row.addWidget(self.cancel_button)
        footer.addLayout(row)
        self.status = QLabel("")
        self.status.setWordWrap(True)
        self.status.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        footer.addWidget(self.status)

        self._field_widgets: Dict[str, QWidget] = {
            "prompt": self.prompt, "negative_prompt": self.negative, "sampler": self.sampler, "steps": self.steps,
            "cfg_scale": self.cfg, "batch_size": self.batch, "seed": self.seed, "strength": self.strength,
            "model": self.model, "mask_blur": self.mask_blur, "grow": self.grow, "fill": self.fill,
            "padding": self.padding,
        }
        for w in self._field_widgets.values():
            for sig in ("textChanged", "valueChanged", "currentIndexChanged"):
                if hasattr(w, sig):
                    getattr(w, sig).connect(lambda *_a, w=w: w.setStyleSheet(""))
        self.model.currentIndexChanged.connect(self._show_recommendation)
        self._show_recommendation()
        self.set_settings(GenerationSettings())

    # ------------------------------------------------------------------ the model's recommendation

    def recommendation(self) -> Recommendation:
        """What the chosen model recommends for the knobs left at "model default"."""
        name = self.model.currentData() or self._default_model
        rec = self._recommendations.get(name, Recommendation())
        # a few-step LoRA on in the concepts (LCM-LoRA, Lightning...) brings its own settings (docs/live.md)
        active = [(n, w) for n, w in (r.value() for r in self._concept_rows) if n]
        return rec.with_concepts(getattr(self, "_concept_listing", []), active)

    def show_live(self, on: bool) -> None:
        """While live painting runs, "model default" shows what a live job uses, not the model's own defaults.

        A model that ships a few-step LoRA (the starter's LCM-LoRA) paints live at that LoRA's sampler,
        steps and CFG (:func:`impasto.protocol.live.live_job`); showing DDIM, 20, 5.0 then would be false.
        """
        self._live_on = on
        self._show_recommendation()

    def _show_recommendation(self, *_args) -> None:
        rec = self.recommendation()
        if getattr(self, "_live_on", False):
            rec = live_job(self.settings(), 0, rec)[1] or rec
        label = rec.label()
        self.sampler.setItemText(0, f"{label}")
        self.steps.setSpecialValueText(f"model ({rec.steps})")
        self.cfg.setSpecialValueText(f"model ({rec.cfg_scale:.1f})")
        self.sampler.setToolTip(f"Sampler. Left at {label}, the model's own recommendation is used.")

    # ------------------------------------------------------------------ settings

    def settings(self) -> GenerationSettings:
        seed_text = self.seed.text().strip()
        seed = -1 if self.random_seed.isChecked() or not seed_text else int(seed_text)
        return GenerationSettings(
            prompt=self.prompt.toPlainText().strip(), negative_prompt=self.negative.toPlainText().strip(),
            sampler=self.sampler.currentData(), steps=self.steps.value(), cfg_scale=float(self.cfg.value()),
            seed=seed, strength=float(self.strength.value()), batch_size=self.batch.value(),
            model=self.model.currentData() or "",
            mask_blur=self.mask_blur.value(), grow=self.grow.value(), fill=self.fill.currentData(),
            padding=self.padding.value(), whole_picture=self.whole_picture.isChecked(),
            colour_match=self.colour_match.isChecked(),
        ).set_concepts(sliders.merge([r.value() for r in self._concept_rows if r.value()[0]], self.sliders.weights()))

    def set_settings(self, s: GenerationSettings) -> None:
        self.prompt.setPlainText(s.prompt)
        self.negative.setPlainText(s.negative_prompt)
        self.sampler.setCurrentIndex(max(0, self.sampler.findData(s.sampler)))
        self.steps.setValue(s.steps)
        self.cfg.setValue(s.cfg_scale)
        self.set_seed(s.seed)
        self.strength.setValue(s.strength)
        self.batch.setValue(s.batch_size)
        if s.model and self.model.findData(s.model) < 0:
            self.model.addItem(s.model, s.model)
        self.model.setCurrentIndex(max(0, self.model.findData(s.model)))
        for row in list(self._concept_rows):
            self._remove_concept(row)
        plain, slider_weights = sliders.split(s.active_concepts(), self.sliders.names())
        self.sliders.set_weights(slider_weights)
        for name, weight in plain:
            self.add_concept(name, weight)
        self.mask_blur.setValue(s.mask_blur)
        self.grow.setValue(s.grow)
        self.fill.setCurrentIndex(max(0, self.fill.findData(s.fill)))
        self.padding.setValue(s.padding)
        self.whole_picture.setChecked(s.whole_picture)
        self.colour_match.setChecked(s.colour_match)

    def set_seed(self, seed: int) -> None:
        self.random_seed.setChecked(seed < 0)
        self.seed.setText("" if seed < 0 else str(seed))

    def set_models(self, models_reply) -> None:
        current = self.model.currentData() or ""
        self.model.blockSignals(True)
        self.model.clear()
        default = getattr(models_reply, "default", "") or ""
        self._default_model = default
        self._recommendations = {str(m.get("name")): Recommendation.from_model(m)
                                 for m in getattr(models_reply, "models", []) or [] if isinstance(m, dict)}
        self.model.addItem(f"Default model ({default})" if default else "Default model", "")
        for m in getattr(models_reply, "models", []) or []:
            if m.get("supported", True):
                self.model.addItem(str(m["name"]), str(m["name"]))
        if current and self.model.findData(current) < 0:
            self.model.addItem(current, current)
        self.model.setCurrentIndex(max(0, self.model.findData(current)))
        self.model.blockSignals(False)
        self._show_recommendation()

    def set_concept_listing(self, entries: List[dict]) -> None:
        """The daemon's concept listing (a few-step LoRA's ``recommended`` settings ride on it)."""
        self._concept_listing = list(entries)
        self._show_recommendation()

    def set_concept_names(self, names: List[str]) -> None:
        self._concept_names = list(names)
        for row in self._concept_rows:
            text = row.name.currentText()
            row.name.clear()
            row.name.addItems(self._concept_names)
            row.name.setCurrentText(text)

    def set_concepts_info(self, concepts: List[dict]) -> None:
        """The library listing: slider concepts get a slider (a row already naming one moves there)."""
        self.sliders.set_concepts(concepts)
        moved = {r.value()[0]: r for r in self._concept_rows if r.value()[0] in self.sliders.names()}
        self.sliders.set_weights(dict(self.sliders.weights(), **{n: r.value()[1] for n, r in moved.items()}))
        for row in moved.values():
            self._remove_concept(row)

    def add_concept(self, name: str, weight: float = 1.0) -> ConceptRow:
        row = ConceptRow(self._concept_names, name, weight)
        row.removed.connect(self._remove_concept)
        row.name.currentTextChanged.connect(self._show_recommendation)   # a few-step LoRA changes "model default"
        row.weight.valueChanged.connect(self._show_recommendation)
        self._concept_rows.append(row)
        self._concepts_layout.insertWidget(self._concepts_layout.count() - 1, row)
        self._show_recommendation()
        return row

    def _remove_concept(self, row: ConceptRow) -> None:
        self._concept_rows.remove(row)
        row.setParent(None)
        row.deleteLater()
        self._show_recommendation()

    def insert_trigger(self, trigger: str) -> None:
        """Add a concept's trigger word to the prompt unless it is already there."""
        text = self.prompt.toPlainText()
        if trigger and not re.search(rf"\b{re.escape(trigger)}\b", text):
            self.prompt.setPlainText(f"{trigger} {text}".strip())

    # ------------------------------------------------------------------ running

    def set_running(self, running: bool) -> None:
        self.cancel_button.setEnabled(running)
        if running:
            self.progress.setRange(0, 0)  # busy until the first progress event says how many steps
            self.progress.setFormat("Queued…")
        else:
            self.progress.setRange(0, 1)
            self.progress.setValue(0)
            self.progress.setFormat("Idle")

    def show_progress(self, step: int, total: int, stage: str = "", loss: Optional[float] = None) -> None:
        total = max(1, total)
        self.progress.setRange(0, total)
        self.progress.setValue(min(step, total))
        label = (stage or "step").capitalize()
        self.progress.setFormat(f"{label} {step}/{total}" + (f" · loss {loss:.4f}" if loss is not None else ""))

    def show_status(self, text: str, error: bool = False) -> None:
        self.status.setText(text)
        self.status.setStyleSheet("color: #e0404a;" if error else "")

    def highlight(self, field: Optional[str]) -> bool:
        """Outline and focus the widget for a rejected request field; False when there is none."""
        if not field:
            return False
        widget = self._field_widgets.get(field)
        m = re.match(r"concepts\[(\d+)\]", field)
        if m and int(m.group(1)) < len(self._concept_rows):
            widget = self._concept_rows[int(m.group(1))]
        if widget is None:
            return False
        widget.setStyleSheet(ERROR_STYLE)
        widget.setFocus()
        return True
