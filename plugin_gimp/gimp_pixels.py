"""GIMP's pixels in and out through GEGL buffers (runs inside GIMP only).

Reads ask GEGL for ``R'G'B'A u8`` (colour) and ``Y u8`` (the selection), so
any image - 8/16/32-bit, linear or perceptual, grey or RGB, with or without
alpha - arrives in the wire's ``rgba8`` / ``gray8`` layout; GEGL converts in
C.  Selections are stored linearly, so ``Y u8`` reads their coverage as is:
a feathered edge keeps its soft values.

Writes only ever create new layers: the artist's layers and masks are never
touched, and all insertions of one run sit in one undo group.
"""
from __future__ import annotations

from typing import List, Optional, Tuple

import gi

gi.require_version("Gimp", "3.0")
gi.require_version("Gegl", "0.4")
from gi.repository import Gegl, Gimp  # noqa: E402

from . import pixels  # noqa: E402
from .geometry import Rect  # noqa: E402

RGBA_FORMAT = "R'G'B'A u8"
MASK_FORMAT = "Y u8"


class GimpInputError(ValueError):
    """The image is not in a state Impasto can work from (explained to the artist)."""


def _gegl_rect(rect: Rect) -> Gegl.Rectangle:
    return Gegl.Rectangle.new(rect.x, rect.y, rect.width, rect.height)


def image_rect(image: Gimp.Image) -> Rect:
    return Rect(0, 0, image.get_width(), image.get_height())


def drawable_rect(drawable: Gimp.Drawable) -> Rect:
    """The drawable's extent in image coordinates."""
    _ok, x, y = drawable.get_offsets()
    return Rect(x, y, drawable.get_width(), drawable.get_height())


def read_rgba(drawable: Gimp.Drawable, region: Rect) -> bytes:
    """RGBA8 pixels of ``region`` (image coordinates); transparent where the drawable does not reach."""
    _ok, ox, oy = drawable.get_offsets()
    buf = drawable.get_buffer()
    data = buf.get(_gegl_rect(region.translate(-ox, -oy)), 1.0, RGBA_FORMAT, Gegl.AbyssPolicy.NONE)
    data = bytes(data)
    pixels.check_size(data, region.width, region.height, pixels.RGBA, "drawable pixels")
    return data


def read_selection(image: Gimp.Image, region: Rect) -> bytes:
    """The selection's coverage over ``region`` as gray8 (0 = not selected, soft edges kept)."""
    buf = image.get_selection().get_buffer()
    data = bytes(buf.get(_gegl_rect(region), 1.0, MASK_FORMAT, Gegl.AbyssPolicy.NONE))
    pixels.check_size(data, region.width, region.height, pixels.GRAY, "selection")
    return data


def source_layer(drawables: List[Gimp.Drawable]) -> Optional[Gimp.Layer]:
    """The one layer to work from, or ``None`` to work from the visible image.

    A selected layer mask stands for its layer; channels, several drawables
    or none mean "what I see" (the merged visible image).
    """
    if len(drawables) != 1:
        return None
    d = drawables[0]
    if d.is_layer_mask():
        return Gimp.Layer.from_mask(d)
    if d.is_layer():
        return d
    return None


def read_visible(image: Gimp.Image, region: Rect) -> bytes:
    """RGBA8 of the visible composite over ``region``, from a throw-away copy of the image."""
    dup = image.duplicate()
    try:
        dup.undo_disable()
        merged = dup.merge_visible_layers(Gimp.MergeType.CLIP_TO_IMAGE)
        if merged is None:
            raise GimpInputError("nothing is visible: show at least one layer")
        return read_rgba(merged, region)
    finally:
        dup.delete()


def layer_type_for(image: Gimp.Image) -> Gimp.ImageType:
    base = image.get_base_type()
    if base == Gimp.ImageBaseType.GRAY:
        return Gimp.ImageType.GRAYA_IMAGE
    if base == Gimp.ImageBaseType.RGB:
        return Gimp.ImageType.RGBA_IMAGE
    raise GimpInputError("Impasto paints in RGB or greyscale images: convert this indexed image with "
                         "Image > Mode > RGB first")


def new_layer(image: Gimp.Image, name: str, place: Rect, rgba: bytes, mask: Optional[bytes] = None
              ) -> Gimp.Layer:
    """A layer at ``place`` (image coordinates) holding ``rgba``, with ``mask`` as its layer mask.

    The layer is created detached; :func:`insert_above` puts it in the image.
    """
    pixels.check_size(rgba, place.width, place.height, pixels.RGBA, "layer pixels")
    layer = Gimp.Layer.new(image, name, place.width, place.height, layer_type_for(image), 100.0,
                           Gimp.LayerMode.NORMAL)
    layer.set_offsets(place.x, place.y)
    # The daemon blends soft mask edges in perceptual (sRGB-encoded) values; compositing the layer in
    # the same space makes layer-over-original show exactly the daemon's result.
    layer.set_composite_space(Gimp.LayerColorSpace.RGB_PERCEPTUAL)
    _write(layer, rgba, RGBA_FORMAT, place.width, place.height)
    return layer


def add_mask(layer: Gimp.Layer, mask: bytes) -> Gimp.LayerMask:
    """Give a (not yet masked) layer a layer mask holding ``mask`` (gray8 of the layer's size)."""
    w, h = layer.get_width(), layer.get_height()
    pixels.check_size(mask, w, h, pixels.GRAY, "layer mask")
    layer_mask = layer.create_mask(Gimp.AddMaskType.WHITE)
    layer.add_mask(layer_mask)
    _write(layer_mask, mask, MASK_FORMAT, w, h)
    return layer_mask


def _write(drawable: Gimp.Drawable, data: bytes, fmt: str, width: int, height: int) -> None:
    buf = drawable.get_buffer()
    buf.set(Gegl.Rectangle.new(0, 0, width, height), fmt, data)
    buf.flush()
    drawable.update(0, 0, width, height)


def insert_above(image: Gimp.Image, layer: Gimp.Layer, anchor: Optional[Gimp.Layer]) -> None:
    """Insert ``layer`` right above ``anchor`` (same group), or at the top of the image."""
    if anchor is not None:
        parent = anchor.get_parent()
        position = image.get_item_position(anchor)
        image.insert_layer(layer, parent, position)
    else:
        image.insert_layer(layer, None, 0)


def selection_bounds(image: Gimp.Image) -> Tuple:
    """``Gimp.Selection.bounds`` as a plain 6-tuple for :func:`geometry.selection_rect`."""
    b = Gimp.Selection.bounds(image)
    return tuple(b)
