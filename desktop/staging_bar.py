"""The bar under the canvas while results are staged.

Shows which candidate is on screen (2 / 4), its seed and how it was made,
and offers Accept, Discard, Discard all, and reusing the seed or all the
settings.  Keyboard: Left/Right step, Enter accepts, Delete discards (the
main window binds those shortcuts to the same slots).
"""
from __future__ import annotations

from typing import Optional

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QFrame, QHBoxLayout, QLabel, QPushButton, QToolButton, QVBoxLayout, QWidget

from .staging import StagingArea


class StagingBar(QFrame):
    accept_requested = Signal()
    reuse_seed_requested = Signal(int)
    reuse_settings_requested = Signal(object)   # Candidate

    def __init__(self, staging: StagingArea, parent: Optional[QWidget] = None):
        super().__init__(parent)
        self.staging = staging
        self.setFrameShape(QFrame.Shape.StyledPanel)
        self.setObjectName("StagingBar")
        self.setStyleSheet("#StagingBar { background: #2c3440; color: #eef; border-top: 2px solid #50aaff; }"
                           "#StagingBar QLabel { color: #eef; }")
        lay = QHBoxLayout(self)
        lay.setContentsMargins(8, 4, 8, 4)
        self.prev_button = QToolButton()
        self.prev_button.setText("◀")
        self.prev_button.setToolTip("Previous candidate (Left)")
        self.prev_button.clicked.connect(staging.previous)
        self.counter = QLabel("")
        self.counter.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.counter.setMinimumWidth(48)
        self.next_button = QToolButton()
        self.next_button.setText("▶")
        self.next_button.setToolTip("Next candidate (Right)")
        self.next_button.clicked.connect(staging.next)
        text = QVBoxLayout()
        text.setSpacing(0)
        self.title = QLabel("")
        self.title.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.details = QLabel("")
        self.details.setStyleSheet("color: #b8c4d8;")
        self.details.setWordWrap(True)     # a daemon warning ("size changed: ...") must not widen the window
        self.title.setWordWrap(True)
        self.details.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        text.addWidget(self.title)
        text.addWidget(self.details)
        self.seed_button = QPushButton("Use seed")
        self.seed_button.setToolTip("Put this candidate's seed in the Generate panel")
        self.seed_button.clicked.connect(self._reuse_seed)
        self.settings_button = QPushButton("Use settings")
        self.settings_button.setToolTip("Load everything this candidate was made with into the Generate panel")
        self.settings_button.clicked.connect(self._reuse_settings)
        self.accept_button = QPushButton("Accept")
        self.accept_button.setToolTip("Keep this candidate as a new layer (Enter); Ctrl+Z undoes it")
        self.accept_button.setStyleSheet("font-weight: bold;")
        self.accept_button.clicked.connect(lambda: self.accept_requested.emit())
        self.discard_button = QPushButton("Discard")
        self.discard_button.setToolTip("Drop this candidate (Delete)")
        self.discard_button.clicked.connect(staging.discard_current)
        self.discard_all_button = QPushButton("Discard all")
        self.discard_all_button.clicked.connect(staging.discard_all)
        for w in (self.prev_button, self.counter, self.next_button):
            lay.addWidget(w)
        lay.addLayout(text, 1)
        for w in (self.seed_button, self.settings_button, self.accept_button, self.discard_button,
                  self.discard_all_button):
            lay.addWidget(w)
        staging.changed.connect(self.refresh)
        self.refresh()

    def refresh(self) -> None:
        cand = self.staging.current()
        self.setVisible(cand is not None)
        if cand is None:
            return
        n = len(self.staging)
        self.counter.setText(f"{self.staging.index + 1} / {n}")
        self.prev_button.setEnabled(n > 1)
        self.next_button.setEnabled(n > 1)
        self.title.setText(f"{cand.layer_name()}")
        details = cand.settings.summary(cand.mode)
        if cand.warnings:
            details += "  ⚠ " + "; ".join(cand.warnings)
        self.details.setText(details)
        self.details.setToolTip(f"Prompt: {cand.settings.prompt}\nNegative: {cand.settings.negative_prompt}\n"
                                f"Seed: {cand.seed}\n{details}")

    def _reuse_seed(self) -> None:
        cand = self.staging.current()
        if cand is not None:
            self.reuse_seed_requested.emit(cand.seed)

    def _reuse_settings(self) -> None:
        cand = self.staging.current()
        if cand is not None:
            self.reuse_settings_requested.emit(cand)
