"""The live-mode screenshot of the docs: ``python -m impasto.desktop.live_screenshot --endpoint E --out docs``.

A real window (offscreen) on a daemon with the starter: the scene the starter
knows is generated and kept as a layer, live painting is switched on, a
stroke is painted with the brush, and the window is grabbed once the live
picture for that stroke is shown over the canvas (``canvas-live.png``).
What the picture shows is what the starter really paints at 4 steps.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from . import headless


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--endpoint", required=True)
    ap.add_argument("--out", default="docs")
    ap.add_argument("--model", default="starter")
    ap.add_argument("--scene", default="a red circle on a blue background")
    ap.add_argument("--seed", type=int, default=3)
    ap.add_argument("--strength", type=float, default=0.35, help="low: the stroke stays visible in the repaint")
    args = ap.parse_args(argv)
    headless.application()
    from PySide6.QtCore import QPointF
    from PySide6.QtGui import QColor

    from .connection import DaemonLink
    from .document import Document
    from .main_window import MainWindow

    link = DaemonLink(args.endpoint, autostart=False, poll_ms=500)
    w = MainWindow(link, Document(384, 384))
    w.resize(1360, 860)
    w.show()
    link.start()
    if not headless.pump(120, lambda: link.connected and w.panel.model.findData(args.model) >= 0):
        print(f"no daemon with model {args.model!r}: {link.message}", file=sys.stderr)
        return 1
    w.view.fit()
    w.panel.model.setCurrentIndex(w.panel.model.findData(args.model))
    w.panel.prompt.setPlainText(args.scene)
    w.panel.set_seed(args.seed)
    w.panel.generate_button.click()
    if not headless.pump(300, lambda: len(w.staging) > 0):
        print(f"no scene: {w.panel.status.text()}", file=sys.stderr)
        return 1
    w.staging_bar.accept_button.click()
    headless.pump(0.3)
    w.panel.steps.setValue(4)
    w.panel.strength.setValue(args.strength)
    w.a_live.trigger()
    if not headless.pump(120, lambda: w.live.candidate is not None):
        print("live mode painted nothing", file=sys.stderr)
        return 1
    painted = w.live.session.stats.painted
    w.select_tool("brush")
    w.brush.color = QColor(240, 220, 30)
    w.size_spin.setValue(40)
    pts = [w.view.to_widget(QPointF(x, y)) for x, y in ((60, 300), (190, 250), (330, 300))]
    headless.drag(w.view, [(p.x(), p.y()) for p in pts])
    if not headless.pump(120, lambda: w.live.session.stats.painted > painted and not w.live.session.busy):
        print("no live picture after the stroke", file=sys.stderr)
        return 1
    headless.pump(0.5)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    w.grab().save(str(out / "canvas-live.png"))
    print(out / "canvas-live.png")
    w.live.set_enabled(False)
    w.doc.undo.setClean()      # as screenshots.py: closing must not wait on a "save changes?" dialog nobody sees
    link.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
