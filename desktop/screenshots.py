"""Make the documentation screenshots: ``python -m impasto.desktop.screenshots --out docs``.

Drives a real window (offscreen) against a running daemon with the starter
model, as an artist would: generates a scene the starter knows ("a big red
circle in the center and a small yellow triangle at the top left on a blue
background"), accepts it as a layer, paints a mask over the circle with the
mask brush, inpaints it with another shape and grabs the window with the mask
painted, mid-generation (live preview in place, progress bar) and with the
result staged.  The pictures show what the
starter really paints - rerun this after the starter is retrained.

    IMPASTO_HOME=/tmp/x python -m impasto.backend.cli serve --endpoint tcp://127.0.0.1:7899 &
    python -m impasto.desktop.screenshots --endpoint tcp://127.0.0.1:7899 --out docs
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from . import headless


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--endpoint", required=True)
    parser.add_argument("--out", default="docs")
    parser.add_argument("--model", default="starter")
    parser.add_argument("--scene",
                        default="a big red circle in the center and a small yellow triangle at the top left on a "
                                "blue background")
    parser.add_argument("--prompt", default="a big white square in the center on a blue background")
    parser.add_argument("--seed", type=int, default=3)
    parser.add_argument("--size", type=int, default=384, help="canvas side, px")
    args = parser.parse_args(argv)
    headless.application()
    from .connection import DaemonLink
    from .document import Document
    from .main_window import MainWindow

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    link = DaemonLink(args.endpoint, autostart=False, poll_ms=500)
    window = MainWindow(link, Document(args.size, args.size))
    window.resize(1360, 860)
    window.show()
    link.start()
    if not headless.pump(120, lambda: link.connected and window.panel.model.findData(args.model) >= 0):
        print(f"no daemon with model {args.model!r}: {link.message}", file=sys.stderr)
        return 1
    headless.pump(0.5)
    window.view.fit()
    panel = window.panel
    panel.model.setCurrentIndex(panel.model.findData(args.model))
    # 1. the scene: text to image, accepted as a layer (the model's own sampler, steps and CFG)
    panel.prompt.setPlainText(args.scene)
    panel.set_seed(args.seed)
    panel.generate_button.click()
    if not headless.pump(300, lambda: len(window.staging) > 0):
        print(f"no scene: {panel.status.text()}", file=sys.stderr)
        return 1
    window.staging_bar.accept_button.click()
    headless.pump(0.3)
    window.resize(1360, 860)            # the staging bar widened the window; the pictures keep one size
    headless.pump(0.3)
    window.view.fit()
    # 2. a soft mask over the middle of the picture, painted with the mask brush
    from PySide6.QtCore import QPointF

    c, r = args.size / 2, args.size / 5
    window.select_tool("mask")
    window.size_spin.setValue(int(args.size * 0.45))
    window.hardness_spin.setValue(60)
    headless.drag(window.view, [(p.x(), p.y()) for p in (window.view.to_widget(QPointF(x, y))
                                                         for x, y in ((c - r, c - r / 2), (c + r, c + r / 2),
                                                                      (c, c)))])
    window.tools["mask"].hover(QPointF(c + r * 1.6, c - r * 1.4))
    panel.prompt.setPlainText(args.prompt)
    panel.strength.setValue(1.0)
    panel.set_seed(args.seed + 1)
    headless.pump(0.3)
    window.grab().save(str(out / "canvas-mask.png"))
    window.tools["mask"].hover(None)
    panel.inpaint_button.click()
    mid = lambda: panel.progress.maximum() > 1 and panel.progress.value() >= panel.progress.maximum() // 2  # noqa
    if not headless.pump(300, lambda: mid() and window.view._preview is not None):
        print(f"no progress: {panel.status.text()}", file=sys.stderr)
        return 1
    window.grab().save(str(out / "canvas-generating.png"))
    if not headless.pump(300, lambda: len(window.staging) > 0):
        print(f"no result: {panel.status.text()}", file=sys.stderr)
        return 1
    headless.pump(0.3)
    window.grab().save(str(out / "canvas-staged.png"))
    window.doc.undo.setClean()
    link.close()
    print("wrote", ", ".join(str(out / n) for n in ("canvas-mask.png", "canvas-generating.png", "canvas-staged.png")))
    return 0


if __name__ == "__main__":
    sys.exit(main())
