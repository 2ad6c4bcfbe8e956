""""Edit prompt" in the Krita docker: change words of a result's prompt, keep its layout (Prompt-to-Prompt).

Krita has no staging area: a result lands as a layer and in the docker's
Results section.  So the edit works on the result selected there (the newest
when none is selected): the section below Results holds the new prompt
(filled with the selected result's), how long the original's layout is held
and an optional word to re-weight, and its button sends the edit.  The edit
lands as a new layer over the original's area, like any text-to-image
result, and in Results.  Only generated results can be edited: a refined or
inpainted one was not painted from its seed alone.

What an edit is (the original's settings and seed, the checks, the words of
a refusal) is the client core's (``protocol/prompt_edit.py``), shared with
the canvas and the CLI; this module is Krita's section and its plan.
:func:`plan_edit` is pure Python, so it is unit-tested without Krita or Qt.
"""
from __future__ import annotations

from typing import Any, Optional, Tuple

from ...protocol import prompt_edit as core
from ...protocol.errors import PlanError
from ...protocol.messages import P2P_REWEIGHT_RANGE
from ...protocol.settings import Settings
from .planning import JobPlan

TITLE = "Edit prompt"


def plan_edit(settings: Settings, seed: int, size: Tuple[int, int], canvas: Tuple[int, int], new_prompt: str,
              cross_replace: float = core.DEFAULT.cross_replace,
              self_replace: Optional[float] = core.DEFAULT.self_replace,
              reweight_word: str = "", reweight: float = 1.0, limits: Optional[Any] = None,
              source_prompt: str = "", local: bool = core.DEFAULT.local) -> JobPlan:
    """Krita's plan of an edit of the result painted with ``settings`` at ``seed`` and ``size``.

    ``source_prompt``: when that result is itself an edit, its original's prompt (the new edit is made from it).
    """
    original = core.original_from_settings(settings, seed, size,
                                           {"p2p": {"source_prompt": source_prompt}} if source_prompt else None)
    plan = core.plan_prompt_edit(original, new_prompt, cross_replace, self_replace, reweight_word, reweight, limits,
                                 local=local)
    w, h = original.size
    return JobPlan("txt2img", plan.request, (0, 0, w, h), canvas[0], canvas[1], label=plan.label)


class PromptEditSection:
    """The docker's "Edit prompt" section, bound to the panel's Results and job session."""

    def __init__(self, panel: Any):
        from .form import Section
        from .qt import QtWidgets

        self.panel = panel
        self.section = Section(TITLE, expanded=False)
        form = self.section.form
        hint = QtWidgets.QLabel("Change words of the selected result's prompt (the newest if none is selected): "
                                "it is painted again from its seed with its layout kept.")
        hint.setWordWrap(True)
        form.addRow(hint)
        self.prompt = QtWidgets.QLineEdit()
        self.prompt.setPlaceholderText("the new prompt")
        form.addRow("New prompt", self.prompt)
        d = core.DEFAULT
        self.cross = self._fraction(d.cross_replace, "Word maps held: the fraction of the steps the new words are "
                                                      "painted where the old ones were (lower lets them reshape more)")
        form.addRow("Word maps held", self.cross)
        self.self_ = self._fraction(d.self_replace, core.LAYOUT_BOX_TIP, auto=True)
        form.addRow("Layout held", self.self_)
        self.local = QtWidgets.QCheckBox("Only where the changed words are")
        self.local.setChecked(d.local)
        self.local.setToolTip("Everything the changed words do not describe stays exactly as it was painted "
                              "(off: the edit may change the whole picture)")
        form.addRow("", self.local)
        self.word = QtWidgets.QLineEdit()
        self.word.setPlaceholderText("a word to re-weight (optional)")
        self.factor = QtWidgets.QDoubleSpinBox()
        self.factor.setRange(*P2P_REWEIGHT_RANGE)
        self.factor.setSingleStep(0.25)
        self.factor.setValue(d.reweight)
        self.factor.setToolTip("More (> 1) or less (< 1) of that word, same layout")
        row = QtWidgets.QHBoxLayout()
        row.addWidget(self.word, 1)
        row.addWidget(self.factor)
        form.addRow("Re-weight", row)
        self.button = QtWidgets.QPushButton(TITLE)
        self.button.setToolTip("Paint the selected result again with the new prompt, keeping its layout "
                               "(Prompt-to-Prompt)")
        self.button.clicked.connect(self.edit)
        form.addRow("", self.button)
        # Results keeps an edit's settings but not its original's prompt: remembered here for this session,
        # so an edit of an edit is made from the first original (as in the canvas and the CLI)
        self.sources = {}
        results, plain_add = panel.results, panel.results.add

        def add(doc, request, *args, **kwargs):
            known = {e.id for e in (results.history.entries if results.history else [])}
            plain_add(doc, request, *args, **kwargs)
            edit = getattr(request, "p2p", None)
            for e in (results.history.entries if edit is not None and results.history else []):
                if e.id not in known:
                    self.sources[e.id] = edit.source_prompt

        results.add = add
        root = panel.results_section.parentWidget().layout()
        root.insertWidget(root.indexOf(panel.results_section) + 1, self.section)
        panel.results.list.currentRowChanged.connect(lambda *_a: self._fill())

    @staticmethod
    def _fraction(value: Optional[float], tip: str, auto: bool = False):
        """A 0-1 fraction; with ``auto`` one step below 0 reads "auto" (Qt's special value text) and means None."""
        from .qt import QtWidgets

        box = QtWidgets.QDoubleSpinBox()
        box.setRange(core.LAYOUT_BOX_AUTO if auto else 0.0, 1.0)
        box.setSingleStep(0.05)
        if auto:
            box.setSpecialValueText("auto")
        box.setValue(core.LAYOUT_BOX_AUTO if value is None else value)
        box.setToolTip(tip)
        return box

    def entry(self):
        """The Results entry to edit: the selected one, else the newest."""
        results = self.panel.results
        history = results.history
        if history is None or not history.entries:
            return None
        return history.get(results.selected_id()) or history.entries[0]

    def _fill(self) -> None:
        entry = self.entry()
        if entry is not None:
            self.prompt.setText(entry.prompt)

    def edit(self) -> bool:
        """Send the edit of the selected result; False (and a message in the docker) when nothing was sent."""
        panel = self.panel
        try:
            if panel.session.busy:
                panel.show_message("A job is already running: cancel it first.")
                return False
            entry = self.entry()
            if entry is None:
                raise PlanError("No result to edit yet: generate one first.")
            if entry.mode != "generate":
                raise PlanError(f"This result was {entry.mode}d: only generated results can be edited by their "
                                f"prompt (they are painted from their seed alone).")
            doc = panel.host.active_document()
            if doc is None:
                raise PlanError("Open or create a document first.")
            word = self.word.text().strip()
            plan = plan_edit(entry.to_settings(), entry.seed, tuple(entry.size), panel.host.canvas_size(doc),
                             self.prompt.text().strip(), self.cross.value(),
                             core.layout_from_box(self.self_.value()), word,
                             self.factor.value() if word else 1.0, panel.limits,
                             self.sources.get(entry.id, ""), local=self.local.isChecked())
        except PlanError as exc:
            panel.show_message(f"{TITLE}: {exc.message}", error=True)
            return False
        from .krita_host import document_format

        plan.document, plan.document_format = doc, document_format(doc)
        if not panel.session.start_job(lambda: plan):
            panel.show_message("A job is already running: cancel it first.")
            return False
        panel._set_running(True)
        panel.show_message(f"{plan.label}: sent …")
        return True


def attach(panel: Any) -> PromptEditSection:
    """Add the section to ``panel``'s docker (below Results)."""
    return PromptEditSection(panel)
