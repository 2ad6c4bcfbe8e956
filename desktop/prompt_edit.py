""""Edit prompt…" on a staged result: change words of its prompt, keep its layout (Prompt-to-Prompt).

The staging bar gets one more button.  It opens a small dialog holding the
candidate's prompt to edit, how long the original's layout is held (the
word-map and layout injection fractions) and an optional word to re-weight;
OK sends the edit and its result is staged like any other (so it can be
accepted, discarded or edited again - an edit of an edit is made from the
first original, the client core's rule).  Only generated candidates can be
edited: a refined or inpainted one was not painted from its seed alone.

What the edit *is* lives in the client core
(:mod:`impasto.protocol.prompt_edit`, shared with Krita and the CLI); this
module is the canvas's dialog and the few lines that hand the plan to the
generation controller, whose event handling (progress, previews, staging,
errors in sentences) is the same as for Generate.
"""
from __future__ import annotations

from typing import Optional

from PySide6.QtCore import QObject, QRect
from PySide6.QtWidgets import (
    QCheckBox, QDialog, QDialogButtonBox, QDoubleSpinBox, QFormLayout, QHBoxLayout, QLabel, QLineEdit,
    QPlainTextEdit, QPushButton, QWidget,
)

from impasto.protocol import errors
from impasto.protocol import prompt_edit as core
from impasto.protocol.messages import P2P_REWEIGHT_RANGE, ProtocolError

from . import job_plans
from .settings import GenerationSettings
from .staging import Candidate

TITLE = "Edit prompt"


class PromptEditDialog(QDialog):
    """The new prompt and how the edit holds the original's layout."""

    def __init__(self, candidate: Candidate, parent: Optional[QWidget] = None):
        super().__init__(parent)
        self.setWindowTitle(f"{TITLE} · seed {candidate.seed}")
        d = core.DEFAULT
        form = QFormLayout(self)
        form.addRow(QLabel("Change words of the prompt; the picture keeps its layout and only what the changed "
                           "words describe changes."))
        self.prompt = QPlainTextEdit(candidate.settings.prompt)
        self.prompt.setFixedHeight(64)
        form.addRow("New prompt", self.prompt)
        self.cross = self._fraction(d.cross_replace, "Word maps held: the fraction of the steps the new words are "
                                                      "painted where the old ones were (lower lets them reshape more)")
        form.addRow("Word maps held", self.cross)
        self.self_ = self._fraction(d.self_replace, core.LAYOUT_BOX_TIP, auto=True)
        form.addRow("Layout held", self.self_)
        self.local = QCheckBox("Only where the changed words are")
        self.local.setChecked(d.local)
        self.local.setToolTip("Everything the changed words do not describe stays exactly as it was painted "
                              "(off: the edit may change the whole picture)")
        form.addRow("", self.local)
        row = QHBoxLayout()
        self.word = QLineEdit()
        self.word.setPlaceholderText("a word of the new prompt (optional)")
        self.factor = QDoubleSpinBox()
        self.factor.setRange(*P2P_REWEIGHT_RANGE)
        self.factor.setSingleStep(0.25)
        self.factor.setValue(d.reweight)
        self.factor.setToolTip("More (> 1) or less (< 1) of that word, same layout")
        row.addWidget(self.word, 1)
        row.addWidget(self.factor)
        form.addRow("Re-weight", row)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel)
        buttons.button(QDialogButtonBox.StandardButton.Ok).setText(TITLE)
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        form.addRow(buttons)

    @staticmethod
    def _fraction(value: Optional[float], tip: str, auto: bool = False) -> QDoubleSpinBox:
        """A 0-1 fraction; with ``auto`` one step below 0 reads "auto" (Qt's special value text) and means None."""
        box = QDoubleSpinBox()
        box.setRange(core.LAYOUT_BOX_AUTO if auto else 0.0, 1.0)
        box.setSingleStep(0.05)
        if auto:
            box.setSpecialValueText("auto")
        box.setValue(core.LAYOUT_BOX_AUTO if value is None else value)
        box.setToolTip(tip)
        return box

    def values(self) -> dict:
        word = self.word.text().strip()
        return dict(new_prompt=self.prompt.toPlainText().strip(), cross_replace=self.cross.value(),
                    self_replace=core.layout_from_box(self.self_.value()), reweight_word=word,
                    reweight=self.factor.value() if word else 1.0, local=self.local.isChecked())


def editable(candidate: Optional[Candidate]) -> bool:
    """Only a generated (text to image) candidate with a known seed can be edited by its prompt."""
    return candidate is not None and candidate.mode == "generate" and candidate.seed >= 0


def plan_for(candidate: Candidate, new_prompt: str, cross_replace: float = core.DEFAULT.cross_replace,
             self_replace: Optional[float] = core.DEFAULT.self_replace, reweight_word: str = "",
             reweight: float = 1.0, local: bool = core.DEFAULT.local) -> job_plans.JobPlan:
    """The canvas plan of an edit of ``candidate``: the client core's request, landing where it lies."""
    rect = QRect(candidate.rect)
    original = core.original_from_settings(candidate.settings, candidate.seed, (rect.width(), rect.height()),
                                           candidate.info)
    plan = core.plan_prompt_edit(original, new_prompt, cross_replace, self_replace, reweight_word, reweight,
                                 local=local)
    settings = GenerationSettings.from_dict(original.settings.to_dict())
    settings.prompt = plan.request.prompt
    return job_plans.JobPlan("generate", plan.request, settings, rect, rect, None, plan)


class PromptEditor(QObject):
    """The staging bar's "Edit prompt…" button, its dialog and the job it sends through the controller."""

    def __init__(self, window, parent: Optional[QObject] = None):
        super().__init__(parent or window)
        self.window = window
        self.dialog: Optional[PromptEditDialog] = None
        bar = window.staging_bar
        self.button = QPushButton(f"{TITLE}…")
        self.button.setToolTip("Change words of this candidate's prompt and paint it again from its seed, "
                               "keeping its layout (Prompt-to-Prompt)")
        self.button.clicked.connect(self.open)
        lay = bar.layout()
        lay.insertWidget(lay.indexOf(bar.settings_button) + 1, self.button)
        window.staging.changed.connect(self._refresh)
        self._refresh()

    def _refresh(self) -> None:
        self.button.setEnabled(editable(self.window.staging.current()))

    def open(self) -> Optional[PromptEditDialog]:
        cand = self.window.staging.current()
        if not editable(cand):
            return None
        self.dialog = PromptEditDialog(cand, self.window)
        self.dialog.accepted.connect(lambda c=cand, d=self.dialog: self.edit(c, **d.values()))
        self.dialog.open()
        return self.dialog

    def edit(self, candidate: Candidate, **values) -> Optional[str]:
        """Plan and send the edit; the job id, or None when it could not be sent (the panel says why)."""
        ctl, panel = self.window.controller, self.window.panel
        if not ctl.link.connected:
            panel.show_status(f"Cannot edit the prompt: {ctl.link.message}", error=True)
            return None
        try:
            plan = plan_for(candidate, **values)
        except job_plans.PlanError as exc:
            panel.show_status(f"{TITLE}: {exc}", error=True)
            panel.highlight(exc.field)
            return None
        holder = {}
        try:
            job = ctl.link.submit(plan.request, lambda ev: ctl._on_event(holder["id"], ev))
        except ProtocolError as exc:
            panel.show_status(f"Cannot edit the prompt: {errors.describe_exception(exc)}", error=True)
            return None
        holder["id"] = job.id
        ctl.jobs[job.id] = (job, plan)
        panel.set_running(True)
        panel.show_status(f"{TITLE}: sent to the daemon…")
        return job.id
