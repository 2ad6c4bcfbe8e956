"""The canvas's Concept Sliders box: one -3..+3 slider for each slider concept in the library.

Why a module of its own: the Generate panel only wires it in (a few lines);
which concepts are sliders, the integer positions, the labels and how the
weights join the job's concepts all come from the client core
(``protocol/sliders.py``), shared with the Krita docker and the GIMP dialog.
"""
from __future__ import annotations

from typing import Dict, Iterable, List, Mapping, Optional

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QGridLayout, QGroupBox, QLabel, QSlider, QToolButton, QWidget

from impasto.protocol import sliders


class SliderRow:
    """The widgets of one slider: its name, the two ends' labels, the slider, its value and a reset."""

    def __init__(self, spec: sliders.SliderSpec, grid: QGridLayout, row: int, changed):
        self.spec = spec
        self.name = QLabel(spec.name)
        self.low = QLabel(spec.low)
        self.high = QLabel(spec.high)
        self.slider = QSlider(Qt.Orientation.Horizontal)
        self.slider.setRange(*sliders.POSITIONS)
        self.slider.setPageStep(sliders.to_position(0.5))
        self.slider.setTickPosition(QSlider.TickPosition.TicksBelow)
        self.slider.setTickInterval(sliders.to_position(1.0))
        self.slider.setToolTip(spec.tooltip)
        self.value = QLabel(sliders.format_weight(0.0))
        self.value.setMinimumWidth(44)
        self.reset = QToolButton()
        self.reset.setText("0")
        self.reset.setToolTip("Back to 0: the slider off")
        self.reset.clicked.connect(lambda: self.slider.setValue(0))
        self.slider.valueChanged.connect(lambda _v: (self.value.setText(sliders.format_weight(self.weight())),
                                                     changed()))
        for col, w in enumerate((self.name, self.low, self.slider, self.high, self.value, self.reset)):
            grid.addWidget(w, row, col)

    def weight(self) -> float:
        return sliders.from_position(self.slider.value())

    def set_weight(self, weight: float) -> None:
        self.slider.setValue(sliders.to_position(weight))

    def widgets(self) -> List[QWidget]:
        return [self.name, self.low, self.slider, self.high, self.value, self.reset]


class SlidersBox(QGroupBox):
    """All slider concepts; hidden while the library has none."""

    changed = Signal()

    def __init__(self, parent: Optional[QWidget] = None):
        super().__init__("Sliders", parent)
        self.setToolTip("Concept Sliders: dial an attribute down (left) or up (right); 0 is off")
        self._grid = QGridLayout(self)
        self._grid.setContentsMargins(6, 4, 6, 4)
        self._rows: Dict[str, SliderRow] = {}
        self.setVisible(False)

    def set_concepts(self, concepts: Iterable[Mapping]) -> None:
        """Rebuild from a library listing (``Concepts`` reply entries); weights of sliders still there are kept."""
        kept = self.weights()
        for row in self._rows.values():
            for w in row.widgets():
                w.setParent(None)
                w.deleteLater()
        self._rows = {}
        for i, spec in enumerate(sliders.slider_specs(concepts)):
            row = SliderRow(spec, self._grid, i, self.changed.emit)
            row.set_weight(kept.get(spec.name, 0.0))
            self._rows[spec.name] = row
        self.setVisible(bool(self._rows))

    def names(self) -> List[str]:
        return list(self._rows)

    def weights(self) -> Dict[str, float]:
        return {name: row.weight() for name, row in self._rows.items()}

    def set_weights(self, weights: Mapping[str, float]) -> None:
        """Each slider to its weight in ``weights`` (0 when absent)."""
        for name, row in self._rows.items():
            row.set_weight(float(weights.get(name, 0.0)))

    def row(self, name: str) -> SliderRow:
        return self._rows[name]
