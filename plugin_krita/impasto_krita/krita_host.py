"""Everything that touches Krita's document API, in one place (call it on Krita's UI thread).

Reading: the merged visible image (``Document.pixelData``) of a window of the
canvas, the global selection as a gray8 plane.  Writing: new paint layers
whose pixels are filled *before* they join the document, so adding each one
is exactly one "Add Layer" undo step (Krita 5's ``Node.addChildNode`` is an
undoable command; ``setPixelData`` is not, hence the order).

Colour spaces: RGBA and greyscale at 8/16-bit integer and 16/32-bit float are
converted in Python by :mod:`.pixels` (profile-aware: linear-light profiles
get the sRGB curve).  Other models (CMYK, Lab, XYZ, YCbCr) are read through
Krita's own colour-managed 8-bit rendering of the projection
(``Document.thumbnail`` at full size, which is exact for 8-bit sRGB) and
results are added as RGBA 8-bit layers that Krita composites into the document.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, List, Optional, Tuple

from .masks import BoxedMask, Rect, crop
from .pixels import PixelFormat, RGBA8, from_rgba8, swap_red_blue
from .placement import LayerPlan

SRGB_PROFILE = "sRGB-elle-V2-srgbtrc.icc"


@dataclass
class PreparedLayer:
    """A layer's pixels already in the target layer's colour space (done off the UI thread)."""

    plan: LayerPlan
    data: bytes
    rgba8_layer: bool   # the layer must be switched to RGBA/U8 sRGB first (documents in CMYK, Lab, ...)


def document_format(doc: Any) -> PixelFormat:
    return PixelFormat.of(doc.colorModel(), doc.colorDepth(), doc.colorProfile())


def prepare_layer(fmt: PixelFormat, layer: LayerPlan) -> PreparedLayer:
    """Pure Python: RGBA8 -> the document's own pixel layout (or BGRA8 for Krita to convert)."""
    if fmt.supported:
        return PreparedLayer(layer, from_rgba8(layer.rgba, fmt), False)
    return PreparedLayer(layer, swap_red_blue(layer.rgba), True)


class KritaHost:
    """Reads canvases and adds result layers through Krita's Python API."""

    def __init__(self, app: Any = None):
        if app is None:
            from krita import Krita  # only inside Krita

            app = Krita.instance()
        self.app = app

    # ------------------------------------------------------------------ documents

    def active_document(self) -> Optional[Any]:
        return self.app.activeDocument()

    def is_open(self, doc: Any) -> bool:
        try:
            return any(d == doc for d in self.app.documents())
        except Exception:
            return False

    @staticmethod
    def canvas_size(doc: Any) -> Tuple[int, int]:
        return int(doc.width()), int(doc.height())

    @staticmethod
    def has_selection(doc: Any) -> bool:
        sel = doc.selection()
        return sel is not None and sel.width() > 0 and sel.height() > 0

    def read_selection(self, doc: Any) -> Optional[BoxedMask]:
        """The global selection as gray8 (soft values kept) within its bounds on the canvas, or None.

        Only the selection's bounding box is read (Krita knows it without
        reading pixels): a 600 x 500 selection on a 4K canvas is 0.3 MB, not 8.3.
        """
        if not self.has_selection(doc):
            return None
        sel = doc.selection()
        w, h = self.canvas_size(doc)
        x0, y0 = max(0, sel.x()), max(0, sel.y())
        x1, y1 = min(w, sel.x() + sel.width()), min(h, sel.y() + sel.height())
        if x1 <= x0 or y1 <= y0:
            return None
        data = bytes(sel.pixelData(x0, y0, x1 - x0, y1 - y0))
        if len(data) != (x1 - x0) * (y1 - y0):
            return None
        return BoxedMask((x0, y0, x1 - x0, y1 - y0), data)

    def read_pixels(self, doc: Any, window: Rect) -> Tuple[Optional[bytes], PixelFormat, Optional[bytes]]:
        """``(raw, fmt, None)`` for formats :mod:`.pixels` converts, else ``(None, RGBA8, rgba8)``."""
        doc.waitForDone()  # let running strokes land in the projection first
        fmt = document_format(doc)
        x, y, w, h = window
        if fmt.supported:
            return bytes(doc.pixelData(x, y, w, h)), fmt, None
        return None, RGBA8, self._rendered_rgba8(doc, window)

    @staticmethod
    def _rendered_rgba8(doc: Any, window: Rect) -> bytes:
        """Krita's colour-managed 8-bit sRGB rendering of the projection, cropped to ``window``."""
        from .qt import QtGui

        cw, ch = int(doc.width()), int(doc.height())
        img = doc.thumbnail(cw, ch).convertToFormat(QtGui.QImage.Format.Format_RGBA8888)
        bits = img.constBits()
        bits.setsize(img.sizeInBytes() if hasattr(img, "sizeInBytes") else img.byteCount())
        raw = bytes(bits)
        stride = img.bytesPerLine()
        if stride != cw * 4:
            raw = b"".join(raw[r * stride:r * stride + cw * 4] for r in range(ch))
        return crop(raw, cw, window, 4)

    # ------------------------------------------------------------------ results

    def insertion_point(self, doc: Any) -> Tuple[Any, Optional[Any]]:
        """(parent, sibling to stack above): just above the active layer, else on top."""
        root = doc.rootNode()
        node = doc.activeNode()
        if node is None:
            return root, None
        if node.type().endswith("mask"):
            node = node.parentNode()
        parent = node.parentNode() if node is not None else None
        if node is None or parent is None:
            return root, None
        return parent, node

    @staticmethod
    def activate(doc: Any, node: Any) -> None:
        """Make ``node`` the active layer (only works in a view, once Krita's layer model caught up)."""
        try:
            doc.setActiveNode(node)
        except Exception:
            pass  # no view (scripting): nothing to activate

    def add_layers(self, doc: Any, prepared: List[PreparedLayer]) -> List[Any]:
        """Add each prepared layer (pixels first, then one undoable add) and return the nodes, first on top."""
        parent, above = self.insertion_point(doc)
        nodes = []
        # Stacked above a sibling, each new layer lands right above it, so the first result
        # ends on top; stacked on top of the parent, the order has to be reversed for that.
        order = list(prepared) if above is not None else list(reversed(prepared))
        for item in order:
            layer = item.plan
            node = doc.createNode(layer.name, "paintlayer")
            if item.rgba8_layer:
                node.setColorSpace("RGBA", "U8", SRGB_PROFILE)
            node.setPixelData(item.data, layer.x, layer.y, layer.width, layer.height)
            node.setVisible(layer.visible)
            parent.addChildNode(node, above)
            nodes.append(node)
        if above is None:
            nodes.reverse()
        return nodes
