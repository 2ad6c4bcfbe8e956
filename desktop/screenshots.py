"""Make the documentation screenshots: ``python -m impasto.desktop.screenshots --out docs``.

Drives a real window (offscreen) against a running daemon: paints a small
scene with the real tools, masks the sun, inpaints it and grabs the window
with the mask painted, mid-generation (live preview in place, progress bar)
and with the result staged.  Rerun it after a better default model lands:
the pictures show whatever that model paints.

    IMPASTO_HOME=/tmp/x python -m impasto.backend.cli serve --endpoint tcp://127.0.0.1:7899 --models-dir DIR &
    python -m impasto.desktop.screenshots --endpoint tcp://127.0.0.1:7899 --out docs
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from . import headless


def paint_scene(window) -> None:
    """A sky, hills and a sun, painted through the brush tool as an artist would (mouse drags)."""
    from PySide6.QtCore import QPointF
    from PySide6.QtGui import QColor

    doc, view = window.doc, window.view

    def drag(points):
        headless.drag(view, [(p.x(), p.y()) for p in (view.to_widget(QPointF(x, y)) for x, y in points)])

    window.select_tool("brush")
    for color, size, hardness, rows in (
        (QColor(120, 170, 230), 90, 30, range(20, 260, 60)),      # sky
        (QColor(90, 150, 80), 90, 40, range(280, 400, 50)),        # hills
    ):
        window.brush.color = color
        window.size_spin.setValue(size)
        window.hardness_spin.setValue(hardness)
        for y in rows:
            drag([(-40, y), (doc.width * 0.5, y + 12), (doc.width + 40, y - 8)])
    window.brush.color = QColor(250, 200, 60)
    window.size_spin.setValue(70)
    window.hardness_spin.setValue(90)
    drag([(360, 110), (362, 112)])
    window.brush.color = QColor(60, 100, 50)
    window.size_spin.setValue(14)
    window.hardness_spin.setValue(80)
    drag([(80, 330), (110, 300), (140, 320), (170, 290), (210, 330)])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--endpoint", required=True)
    parser.add_argument("--out", default="docs")
    parser.add_argument("--model", default="")
    parser.add_argument("--prompt", default="a yellow star on a blue background")
    parser.add_argument("--steps", type=int, default=24)
    args = parser.parse_args(argv)
    headless.application()
    from .connection import DaemonLink
    from .document import Document
    from .main_window import MainWindow

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    link = DaemonLink(args.endpoint, autostart=False, poll_ms=500)
    window = MainWindow(link, Document(512, 400))
    window.resize(1360, 860)
    window.show()
    link.start()
    if not headless.pump(120, lambda: link.connected):
        print(f"no daemon: {link.message}", file=sys.stderr)
        return 1
    headless.pump(0.5)
    window.view.fit()
    paint_scene(window)
    window.select_tool("mask")
    window.size_spin.setValue(110)
    window.hardness_spin.setValue(20)
    from PySide6.QtCore import QPointF

    headless.drag(window.view, [(p.x(), p.y()) for p in (window.view.to_widget(QPointF(x, y))
                                                         for x, y in ((340, 100), (380, 120), (360, 130)))])
    window.tools["mask"].hover(QPointF(420, 170))
    panel = window.panel
    panel.prompt.setPlainText(args.prompt)
    panel.negative.setPlainText("blurry")
    panel.steps.setValue(args.steps)
    panel.strength.setValue(0.9)
    panel.set_seed(1234)
    if args.model:
        panel.model.addItem(args.model, args.model)
        panel.model.setCurrentIndex(panel.model.count() - 1)
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
