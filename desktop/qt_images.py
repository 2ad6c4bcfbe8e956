"""Pixels between Qt, numpy and the wire.

The canvas keeps layers as ``QImage.Format_ARGB32_Premultiplied`` (what
QPainter is fastest at) and the mask as ``Format_Grayscale8``.  The wire wants
straight-alpha RGBA8 and tightly packed gray8 (Qt pads each row of a gray
image to 4 bytes), so every crossing goes through the functions here and
nowhere else.
"""
from __future__ import annotations

import numpy as np
from PySide6.QtCore import QRect
from PySide6.QtGui import QImage

from impasto.protocol.messages import Image as WireImage

LAYER_FORMAT = QImage.Format.Format_ARGB32_Premultiplied
MASK_FORMAT = QImage.Format.Format_Grayscale8


def new_layer_image(width: int, height: int, fill: int = 0x00000000) -> QImage:
    img = QImage(width, height, LAYER_FORMAT)
    img.fill(fill)
    return img


def new_mask_image(width: int, height: int) -> QImage:
    img = QImage(width, height, MASK_FORMAT)
    img.fill(0)
    return img


def gray_view(img: QImage) -> np.ndarray:
    """A writable (h, w) uint8 view of a Grayscale8 image (row padding dropped).

    The view does not keep ``img`` alive: use it only while the caller holds the image.
    """
    assert img.format() == MASK_FORMAT, img.format()
    h, bpl = img.height(), img.bytesPerLine()
    arr = np.frombuffer(img.bits(), np.uint8).reshape(h, bpl)
    return arr[:, : img.width()]


def gray_array(img: QImage) -> np.ndarray:
    """A packed copy of a Grayscale8 image's pixels (always a copy: the image may be a temporary)."""
    h, bpl = img.height(), img.bytesPerLine()
    arr = np.frombuffer(img.constBits(), np.uint8).reshape(h, bpl)
    return arr[:, : img.width()].copy()


def gray_from_array(arr: np.ndarray) -> QImage:
    arr = np.ascontiguousarray(arr, dtype=np.uint8)
    h, w = arr.shape
    return QImage(arr.data, w, h, w, MASK_FORMAT).copy()


def rgba_array(img: QImage) -> np.ndarray:
    """Straight-alpha (h, w, 4) RGBA copy of any QImage."""
    rgba = img.convertToFormat(QImage.Format.Format_RGBA8888)
    h, w, bpl = rgba.height(), rgba.width(), rgba.bytesPerLine()
    arr = np.frombuffer(rgba.constBits(), np.uint8).reshape(h, bpl)[:, : w * 4]
    return arr.reshape(h, w, 4).copy()


def rgba_from_array(arr: np.ndarray) -> QImage:
    """(h, w, 4) straight RGBA -> layer-format QImage."""
    arr = np.ascontiguousarray(arr, dtype=np.uint8)
    h, w, _ = arr.shape
    return QImage(arr.data, w, h, w * 4, QImage.Format.Format_RGBA8888).convertToFormat(LAYER_FORMAT)


def to_wire(img: QImage) -> WireImage:
    arr = rgba_array(img)
    return WireImage(width=img.width(), height=img.height(), data=arr.tobytes(), format="rgba8")


def mask_to_wire(img: QImage) -> WireImage:
    arr = gray_array(img)
    return WireImage(width=img.width(), height=img.height(), data=arr.tobytes(), format="gray8")


def from_wire(img: WireImage) -> QImage:
    """A wire image (rgba8 or gray8) as a layer-format QImage (gray becomes opaque grey)."""
    img.check()
    if img.format == "gray8":
        gray = np.frombuffer(img.data, np.uint8).reshape(img.height, img.width)
        arr = np.empty((img.height, img.width, 4), np.uint8)
        arr[..., :3] = gray[..., None]
        arr[..., 3] = 255
        return rgba_from_array(arr)
    return QImage(img.data, img.width, img.height, img.width * 4, QImage.Format.Format_RGBA8888).convertToFormat(
        LAYER_FORMAT
    )


def nonzero_bounds(gray: np.ndarray) -> QRect:
    """Bounding rectangle of the non-zero pixels of a (h, w) array (null QRect when all zero)."""
    rows = np.flatnonzero(gray.any(axis=1))
    if rows.size == 0:
        return QRect()
    cols = np.flatnonzero(gray.any(axis=0))
    return QRect(int(cols[0]), int(rows[0]), int(cols[-1] - cols[0] + 1), int(rows[-1] - rows[0] + 1))


def multiply_alpha(img: QImage, coverage: np.ndarray) -> QImage:
    """``img`` with its alpha multiplied by ``coverage`` (h, w uint8): clips a result to a soft shape."""
    arr = rgba_array(img)
    arr[..., 3] = (arr[..., 3].astype(np.uint16) * coverage.astype(np.uint16) + 127) // 255
    return rgba_from_array(arr)
