"""The ``.impasto`` project file: layers, mask, selection, settings and undo history.

A zip archive holding ``manifest.json`` and PNG blobs (one per layer, the
mask, and the before/after pixels of each undo step).  PNG keeps every layer
readable by any tool even if Impasto is gone; JSON keeps the structure
inspectable.  The file is assembled in memory and written through a rename,
so saving over the artist's only copy can never leave it half written.

A damaged history never costs the picture: if the undo steps cannot be
rebuilt, the layers open without them and the artist is told.
"""
from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple, Union

from PySide6.QtCore import QObject

from . import history, image_io, qt_images
from .document import Document
from .layers import LAYER_KINDS, Layer

FORMAT = "impasto-canvas"
VERSION = 1
SUFFIX = ".impasto"
MANIFEST = "manifest.json"


class ProjectFileError(Exception):
    """A project that cannot be opened; ``str()`` is written for the artist."""


def save_project(doc: Document, path: Union[str, Path], settings: Optional[Dict[str, Any]] = None) -> None:
    """Write ``doc`` (with its undo history) to ``path`` atomically and mark it clean."""
    path = Path(path)
    blobs: Dict[str, bytes] = {}

    def put(data: bytes) -> str:
        name = f"pixels/{len(blobs):05d}.png"
        blobs[name] = data
        return name

    stack = doc.undo
    manifest = {
        "format": FORMAT,
        "version": VERSION,
        "width": doc.width,
        "height": doc.height,
        "active": doc.active_id,
        "mask_visible": doc.mask_visible,
        "layers": [history._layer_record(layer, layer.image, put) for layer in doc.layers],
        "mask": put(image_io.png_bytes(doc.mask)),
        "selection": history.path_to_polygons(doc.selection),
        "settings": settings or {},
        "history": {
            "index": stack.index(),
            "commands": [history.command_record(stack.command(i), put) for i in range(stack.count())],
        },
    }
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr(MANIFEST, json.dumps(manifest, indent=1), compress_type=zipfile.ZIP_DEFLATED)
        for name, data in blobs.items():
            zf.writestr(name, data, compress_type=zipfile.ZIP_STORED)  # PNG is compressed already
    image_io.write_atomic(path, buf.getvalue())
    doc.path = str(path)
    stack.setClean()


def load_project(path: Union[str, Path], parent: Optional[QObject] = None
                 ) -> Tuple[Document, Dict[str, Any], List[str]]:
    """``(document, generation settings, warnings)`` from a project file, or :class:`ProjectFileError`."""
    path = Path(path)
    try:
        zf = zipfile.ZipFile(path)
    except FileNotFoundError:
        raise ProjectFileError(f"{path.name} does not exist.") from None
    except (zipfile.BadZipFile, OSError) as exc:
        raise ProjectFileError(f"{path.name} is not an Impasto project or is damaged ({exc}).") from None
    with zf:
        try:
            manifest = json.loads(zf.read(MANIFEST))
        except KeyError:
            raise ProjectFileError(f"{path.name} is not an Impasto project (no manifest).") from None
        except (ValueError, zipfile.BadZipFile, OSError) as exc:
            raise ProjectFileError(f"{path.name} is damaged: its manifest cannot be read ({exc}).") from None

        def get(name: str) -> bytes:
            try:
                return zf.read(str(name))
            except (KeyError, zipfile.BadZipFile, OSError) as exc:
                raise image_io.ImageFileError(f"the project is missing {name} ({exc})") from None

        if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
            raise ProjectFileError(f"{path.name} is not an Impasto canvas project.")
        if int(manifest.get("version", 0)) > VERSION:
            raise ProjectFileError(f"{path.name} was saved by a newer Impasto (format {manifest['version']}); "
                                   f"update Impasto to open it.")
        warnings: List[str] = []
        try:
            doc = _build(manifest, get, parent, with_history=True)
        except (image_io.ImageFileError, KeyError, TypeError, ValueError, IndexError) as exc:
            warnings.append(f"The undo history of {path.name} could not be restored ({exc}); "
                            f"the picture itself opened intact.")
            try:
                doc = _build(manifest, get, parent, with_history=False)
            except image_io.ImageFileError as exc2:
                raise ProjectFileError(f"{path.name} is damaged: {exc2}") from None
            except (KeyError, TypeError, ValueError, IndexError) as exc2:
                raise ProjectFileError(f"{path.name} is damaged: bad manifest entry ({exc2!r}).") from None
    doc.path = str(path)
    settings = manifest.get("settings") if isinstance(manifest.get("settings"), dict) else {}
    return doc, settings, warnings


def _build(manifest: dict, get: Callable[[str], bytes], parent: Optional[QObject], with_history: bool) -> Document:
    width, height = int(manifest["width"]), int(manifest["height"])
    image_io.check_canvas_size(width, height, "the project's canvas")
    doc = Document(width, height, background=None, parent=parent)
    layers: List[Layer] = []
    for rec in manifest["layers"]:
        layer = history._layer_from_record(rec, get)
        if (layer.image.width(), layer.image.height()) != (width, height):
            raise image_io.ImageFileError(f"layer {layer.name!r} does not match the canvas size")
        if layer.kind not in LAYER_KINDS:
            layer.kind = "paint"
        layers.append(layer)
    if not layers:
        raise image_io.ImageFileError("the project has no layers")
    if len({layer.id for layer in layers}) != len(layers):
        raise image_io.ImageFileError("two layers share an id")
    doc.layers = layers
    doc.active_id = manifest.get("active") if manifest.get("active") in {l.id for l in layers} else layers[-1].id
    mask = image_io.image_from_png_bytes(get(manifest["mask"]), "the mask").convertToFormat(qt_images.MASK_FORMAT)
    if (mask.width(), mask.height()) == (width, height):
        doc.mask = mask
    doc.mask_visible = bool(manifest.get("mask_visible", True))
    doc.selection = history.path_from_polygons(manifest.get("selection") or [])
    if with_history:
        _rebuild_history(doc, manifest.get("history") or {}, get)
    return doc


def _rebuild_history(doc: Document, hist: dict, get: Callable[[str], bytes]) -> None:
    records = hist.get("commands") or []
    index = int(hist.get("index", len(records)))
    if not 0 <= index <= len(records):
        raise ValueError(f"history index {index} outside 0..{len(records)}")
    # Parse everything first: a bad record must fail before the document is touched.
    commands = [history.command_from_record(doc, rec, get, applied=i < index) for i, rec in enumerate(records)]
    for cmd in commands:
        cmd.no_merge = True
        doc.undo.push(cmd)       # steps after ``index`` are redone here ...
    doc.undo.setIndex(index)     # ... and undone again: the redo side of the stack is back
    doc.undo.setClean()
