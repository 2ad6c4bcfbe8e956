"""``impasto-canvas``: the standalone painting window.

    impasto-canvas [FILE] [--endpoint tcp://127.0.0.1:7877] [--no-autostart] [--models-dir DIR]

Opens FILE (a ``.impasto`` project or a picture) or a blank canvas, connects
to the local daemon - starting ``impasto serve`` detached when none answers,
unless ``--no-autostart`` - and runs until the window closes.  The daemon
keeps running afterwards: Krita and GIMP share it.
"""
from __future__ import annotations

import argparse
import sys
from typing import Optional, Sequence

APP_NAME = "Impasto canvas"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="impasto-canvas", description="Impasto's standalone canvas")
    p.add_argument("file", nargs="?", help="a .impasto project or a picture to open")
    p.add_argument("--endpoint", default=None, help="daemon endpoint (default: $IMPASTO_ENDPOINT or the local one)")
    p.add_argument("--no-autostart", action="store_true", help="never start a daemon, only connect to one")
    p.add_argument("--models-dir", default=None, help="models folder for a daemon this window starts")
    return p


def create_window(args: argparse.Namespace):
    """The window and its daemon link, for ``main`` and for tests (no event loop started)."""
    from .connection import DaemonLink
    from .main_window import MainWindow

    link = DaemonLink(args.endpoint, autostart=not args.no_autostart, models_dir=args.models_dir)
    window = MainWindow(link)
    if args.file:
        window.open_path(args.file)
    link.start()
    return window


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        from PySide6.QtWidgets import QApplication
    except ImportError:
        print("impasto-canvas needs PySide6: pip install 'impasto[desktop]'", file=sys.stderr)
        return 1
    app = QApplication.instance() or QApplication(sys.argv[:1])
    app.setApplicationName(APP_NAME)
    app.setOrganizationName("Impasto")
    window = create_window(args)
    window.show()
    return app.exec()


if __name__ == "__main__":
    sys.exit(main())
