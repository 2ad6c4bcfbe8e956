"""Reading and writing image files without trusting them.

An artist's file may be truncated, not an image at all, or declare a size
that would eat all memory.  :func:`read_image` checks the header's size
against the canvas limits *before* decoding and turns every failure into an
:class:`ImageFileError` whose message can be shown as is.  Writes go to a
temporary file in the same folder and are renamed into place, so a crash or
a full disk never leaves half a PNG where the artist's work was.
"""
from __future__ import annotations

from pathlib import Path
from typing import Union

from PySide6.QtCore import QBuffer, QByteArray, QIODevice
from PySide6.QtGui import QImage, QImageReader

from impasto.protocol.atomic import write_atomic  # noqa: F401 (re-exported: the canvas's writers use it)
from impasto.protocol.messages import Limits

from . import qt_images

CANVAS_LIMITS = Limits()  # the daemon's defaults: what it can be asked to work on


class ImageFileError(Exception):
    """A file that cannot become a canvas or a layer; ``str()`` is written for the artist."""


def check_canvas_size(width: int, height: int, what: str, limits: Limits = CANVAS_LIMITS) -> None:
    if width <= 0 or height <= 0:
        raise ImageFileError(f"{what} has no pixels ({width}×{height}).")
    if max(width, height) > limits.max_side or width * height > limits.max_pixels:
        raise ImageFileError(
            f"{what} is {width}×{height} px, larger than Impasto can paint on: at most "
            f"{limits.max_side} px a side and {limits.max_pixels / 1e6:.1f} megapixels. "
            f"Scale it down in another program first."
        )


def read_image(path: Union[str, Path], limits: Limits = CANVAS_LIMITS) -> QImage:
    """An image file as a layer-format QImage, or :class:`ImageFileError`."""
    path = Path(path)
    name = path.name
    if not path.is_file():
        raise ImageFileError(f"{name} does not exist or is not a file.")
    reader = QImageReader(str(path))
    reader.setAutoTransform(True)
    if not reader.canRead():
        raise ImageFileError(f"{name} is not an image Impasto can read ({reader.errorString()}).")
    size = reader.size()
    if size.isValid():
        check_canvas_size(size.width(), size.height(), name, limits)
    # Qt refuses to allocate more than this even when the header lied about the size.
    reader.setAllocationLimit(max(256, limits.max_pixels * 8 // (1 << 20)))
    image = reader.read()
    if image.isNull():
        raise ImageFileError(f"{name} is damaged and could not be read ({reader.errorString()}).")
    check_canvas_size(image.width(), image.height(), name, limits)
    return image.convertToFormat(qt_images.LAYER_FORMAT)


def png_bytes(image: QImage) -> bytes:
    data = QByteArray()
    buf = QBuffer(data)
    buf.open(QIODevice.OpenModeFlag.WriteOnly)
    if not image.save(buf, "PNG"):
        raise ImageFileError("the image could not be encoded as PNG")
    buf.close()
    return bytes(data.data())


def image_from_png_bytes(data: bytes, what: str) -> QImage:
    image = QImage()
    if not image.loadFromData(data, "PNG"):
        raise ImageFileError(f"{what} is damaged (not a readable PNG).")
    return image


def save_png(image: QImage, path: Union[str, Path]) -> None:
    write_atomic(path, png_bytes(image))
