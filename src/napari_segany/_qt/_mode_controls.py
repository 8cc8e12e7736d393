"""The controls of everything mode's parameters, one per parameter name.

Each proposer declares its own parameters (``params_type``); the panel shows a row for
those named here (:data:`PARAMETERS`) and for the phase-2 thresholds the mode uses;
parameters without a row run with the session's defaults. Modes share a row where
they share a name (``min_size`` of AIS and APG), each with its own default.
"""

from __future__ import annotations

from typing import Any

from qtpy.QtWidgets import QCheckBox, QComboBox, QDoubleSpinBox, QSpinBox, QWidget

__all__ = ["PARAMETERS", "ZOOM_CHOICES", "make_control", "set_quietly", "value_of"]

# (text, head_zoom) of a proposer's zoom parameter
ZOOM_CHOICES = (
    ("auto", 0),
    ("none (whole plane)", 1),
    ("2 x 2 tiles", 2),
    ("3 x 3 tiles", 3),
    ("4 x 4 tiles", 4),
)
_UNIT = (0.0, 1.0, 0.05)
_RERUN = "; a new run applies it"
# name -> (row label, kind, (low, high, step) for spin boxes, tooltip)
PARAMETERS: dict[str, tuple[str, str, tuple, str]] = {
    "head_zoom": (
        "zoom",
        "zoom",
        (),
        "find small objects on enlarged tiles of the slice; 'auto' zooms in where the "
        "slice's objects are a few pixels across in the model's frame",
    ),
    "points_per_side": ("points per side", "int", (1, 128, 1), "grid of N x N point prompts"),
    "use_m2m": (
        "refine masks (m2m)",
        "check",
        (),
        "decode every candidate once more with its own mask as the prompt (SAM 2's "
        "mask-to-mask refinement: about twice the decoding)",
    ),
    "foreground_threshold": (
        "foreground thresh",
        "float",
        _UNIT,
        "pixels of at least this foreground probability belong to objects",
    ),
    "center_distance_threshold": (
        "centre distance thresh",
        "float",
        _UNIT,
        "seeds: pixels nearer an object's centre than this (lower: fewer merges)",
    ),
    "boundary_distance_threshold": (
        "boundary distance thresh",
        "float",
        _UNIT,
        "seeds: pixels farther from a boundary than this (lower: fewer merges)",
    ),
    "foreground_smoothing": (
        "foreground smoothing",
        "float",
        (0.0, 10.0, 0.2),
        "Gaussian sigma (pixels) of the foreground before thresholding; 0: none",
    ),
    "distance_smoothing": (
        "distance smoothing",
        "float",
        (0.0, 10.0, 0.2),
        "Gaussian sigma (pixels) of both distance maps; 0: none",
    ),
    "min_size": ("min object size", "int", (0, 1_000_000, 5), "drop smaller objects (pixels)"),
    "nms_threshold": (
        "mask NMS thresh",
        "float",
        _UNIT,
        "drop a mask overlapping a better one by more than this (IoU)",
    ),
    "box_refinement": (
        "refine with boxes",
        "check",
        (),
        "prompt SAM once more with each mask's box (about twice the decoding)",
    ),
    "multimask": (
        "best of 3 masks",
        "check",
        (),
        "decode three masks per seed and keep the one of highest predicted IoU",
    ),
}


def make_control(name: str) -> QWidget:
    """The control of parameter ``name`` (a key of :data:`PARAMETERS`)."""
    _, kind, limits, tip = PARAMETERS[name]
    if kind == "zoom":
        control = QComboBox()
        for text, value in ZOOM_CHOICES:
            control.addItem(text, value)
    elif kind == "check":
        control = QCheckBox()
    elif kind == "int":
        control = QSpinBox()
        control.setRange(int(limits[0]), int(limits[1]))
        control.setSingleStep(int(limits[2]))
    else:
        control = QDoubleSpinBox()
        control.setRange(*limits[:2])
        control.setDecimals(2)
        control.setSingleStep(limits[2])
    control.setToolTip(tip + _RERUN)
    return control


def value_of(control: QWidget) -> Any:
    """A control's value (a combo's item data, a check box's state, a spin's number)."""
    if isinstance(control, QComboBox):
        return control.currentData()
    if isinstance(control, QCheckBox):
        return control.isChecked()
    return round(control.value(), 4) if isinstance(control, QDoubleSpinBox) else control.value()


def set_quietly(control: QWidget, value: Any) -> None:
    """Show ``value`` in a control without its signals."""
    control.blockSignals(True)
    if isinstance(control, QComboBox):
        control.setCurrentIndex(max(control.findData(value), 0))
    elif isinstance(control, QCheckBox):
        control.setChecked(bool(value))
    else:
        control.setValue(value)
    control.blockSignals(False)


def changed_signal(control: QWidget) -> Any:
    """The signal a control emits when the user changes it."""
    if isinstance(control, QComboBox):
        return control.currentIndexChanged
    if isinstance(control, QCheckBox):
        return control.toggled
    return control.valueChanged
