"""*Filters > Impasto > Save Result*: a result layer as a PNG that carries its parameters (GIMP only).

Each layer Impasto adds keeps its A1111 ``parameters`` text in a persistent
parasite (:data:`.save_result.PARASITE`; it survives an XCF save and a
reopen).  Saving a result writes the picture that layer makes - the layer
composited over everything below it, with the layers above it left out, so
an inpainted patch is saved as the whole inpainted picture and each picture
of a batch as itself - at the image's size, with the parameters in the
``parameters`` text chunk (:mod:`.save_result` encodes the PNG; GIMP's own
PNG export writes no such chunk).
"""
from __future__ import annotations

from typing import List

import gi

gi.require_version("Gimp", "3.0")
from gi.repository import Gimp, GObject  # noqa: E402

from ..protocol.atomic import write_atomic  # noqa: E402
from . import gimp_pixels as gp  # noqa: E402
from . import save_result  # noqa: E402
from .save_result import PARASITE, SaveError  # noqa: E402

RW = GObject.ParamFlags.READWRITE


def tag(layer: Gimp.Layer, text: str) -> None:
    """Keep ``text`` (a result's parameters) with ``layer``, saved in XCF files too."""
    layer.attach_parasite(Gimp.Parasite.new(PARASITE, Gimp.PARASITE_PERSISTENT, list(text.encode("utf-8"))))


def parameters_of(layer: Gimp.Layer) -> str:
    """The parameters a result layer carries ("" for a layer Impasto did not add)."""
    parasite = layer.get_parasite(PARASITE)
    if parasite is None:
        return ""
    return bytes(parasite.get_data()).decode("utf-8", "replace")


def declare(proc) -> None:
    """The procedure's menu entry and arguments (called from the plug-in's ``do_create_procedure``)."""
    proc.set_image_types("*")
    proc.set_sensitivity_mask(Gimp.ProcedureSensitivityMask.DRAWABLE)
    proc.set_menu_label("Save _Result…")
    proc.set_documentation(
        "Save the selected Impasto result as a PNG that carries its settings",
        "The picture the selected result layer makes (with the layers below it) at the image's size, with the "
        "prompt, seed and settings in the PNG's A1111 'parameters' text, which A1111, Civitai and "
        "`impasto generate --from` read.", proc.get_name())
    proc.add_file_argument("file", "_File", "The PNG to write", Gimp.FileChooserAction.SAVE, False, None, RW)


def _path_in(image: Gimp.Image, item) -> List[int]:
    """Stack positions from the top level down to ``item`` (ids differ in a duplicate; positions do not)."""
    out: List[int] = []
    while item is not None:
        out.insert(0, image.get_item_position(item))
        item = item.get_parent()
    return out


def _follow(image: Gimp.Image, path: List[int]):
    items, item = image.get_layers(), None
    for position in path:
        item = items[position]
        items = item.get_children() if item.is_group() else []
    return item


def picture_of(image: Gimp.Image, layer: Gimp.Layer) -> bytes:
    """RGBA8 of ``layer`` over everything below it (the layers above it hidden), at the image's size."""
    dup = image.duplicate()
    try:
        dup.undo_disable()
        item = _follow(dup, _path_in(image, layer))
        while item is not None:                    # hide what lies above, at every level up to the top
            parent = item.get_parent()
            siblings = parent.get_children() if parent is not None else dup.get_layers()
            for above in siblings[:dup.get_item_position(item)]:
                above.set_visible(False)
            item.set_visible(True)
            item = parent
        merged = dup.merge_visible_layers(Gimp.MergeType.CLIP_TO_IMAGE)
        if merged is None:
            raise SaveError("nothing is visible to save")
        return gp.read_rgba(merged, gp.image_rect(dup))
    finally:
        dup.delete()


def save(image: Gimp.Image, drawables, path: str) -> str:
    """Write the selected result layer's picture with its parameters to ``path`` (.png); the path written."""
    layer = gp.source_layer(list(drawables or []))
    if layer is None:
        raise SaveError("select the one Impasto result layer to save (Layers dock)")
    text = parameters_of(layer)
    if not text:
        raise SaveError(f"the layer {layer.get_name()!r} is not an Impasto result (it carries no parameters): "
                        f"select a layer Impasto added")
    path = save_result.png_path(path)
    rect = gp.image_rect(image)
    write_atomic(path, save_result.png_bytes(rect.width, rect.height, picture_of(image, layer), text))
    return path
