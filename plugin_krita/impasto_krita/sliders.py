"""The docker's Concept Slider rows: a -3..+3 slider in place of a concept's checkbox and weight box.

Why a module of its own: the docker's concept list (``panel.py``) keeps one
``(check, weight)`` pair a concept and reads ``check.isChecked()`` and
``weight.value()``; a slider row gives it the same two methods, so the panel
only picks the row kind (a few lines).  Which concepts are sliders, the
integer positions and the labels are the client core's (``protocol/sliders.py``).
A slider at 0 is off (not sent), so the name label says "on" by its weight.
"""
from __future__ import annotations

from typing import Any, Callable, Dict, Mapping, Tuple

from ...protocol import sliders
from ...protocol.sliders import is_slider  # noqa: F401 (the panel asks here which rows are sliders)
from .qt import Qt, QtWidgets, Signal


class SliderWeight(QtWidgets.QWidget):
    """A horizontal slider with the two ends' words and the signed weight; ``value()`` like a spin box."""

    valueChanged = Signal(float)   # noqa: N815 (Qt naming, as QDoubleSpinBox)

    def __init__(self, spec: sliders.SliderSpec, parent: Any = None):
        super().__init__(parent)
        lay = QtWidgets.QHBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        self.low = QtWidgets.QLabel(spec.low)
        self.high = QtWidgets.QLabel(spec.high)
        self.slider = QtWidgets.QSlider(Qt.Orientation.Horizontal)
        self.slider.setRange(*sliders.POSITIONS)
        self.slider.setPageStep(sliders.to_position(0.5))
        self.slider.setToolTip(spec.tooltip)
        self.label = QtWidgets.QLabel(sliders.format_weight(0.0))
        self.label.setMinimumWidth(40)
        for w in (self.low, self.slider, self.high, self.label):
            lay.addWidget(w)
        lay.setStretch(1, 1)
        self.slider.valueChanged.connect(self._moved)

    def _moved(self, _pos: int) -> None:
        self.label.setText(sliders.format_weight(self.value()))
        self.valueChanged.emit(self.value())

    def value(self) -> float:
        return sliders.from_position(self.slider.value())

    def setValue(self, weight: float) -> None:   # noqa: N802 (Qt naming)
        self.slider.setValue(sliders.to_position(weight))


class SliderName(QtWidgets.QLabel):
    """The row's name; "checked" while the slider is off 0 (what the docker sends)."""

    def __init__(self, name: str, weight: SliderWeight):
        super().__init__(name)
        self._weight = weight
        self.setToolTip("Concept Slider: move it off 0 to use it")

    def isChecked(self) -> bool:   # noqa: N802 (the QCheckBox method the docker reads)
        return self._weight.value() != 0


def slider_row(concept: Mapping[str, Any], saved: Dict[str, Any], changed: Callable) -> Tuple[Any, Any]:
    """The ``(check, weight)`` pair of a slider concept, set to its saved weight when it was enabled."""
    spec = sliders.spec(concept)
    weight = SliderWeight(spec)
    if saved.get("enabled", False):
        weight.setValue(float(saved.get("weight", 0.0)))
    weight.valueChanged.connect(changed)
    return SliderName(spec.name, weight), weight
