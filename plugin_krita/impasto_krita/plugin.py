"""Krita's side of the plugin: the docker, the actions with their shortcuts, shutdown.

Only this module (and :mod:`.krita_host`) imports ``krita``; everything it
wires together is plain Python and Qt that the tests build without Krita.
Shortcuts come from ``impasto_krita.action`` (written by the installer into
Krita's ``actions`` folder from :mod:`.actions`), so artists rebind them under Settings > Configure Krita
> Keyboard Shortcuts like any other action.
"""
from __future__ import annotations

import traceback
import weakref
from typing import Any, Optional

from krita import DockWidget, DockWidgetFactory, DockWidgetFactoryBase, Extension, Krita

from .actions import ACTIONS
from .qt import QtWidgets, Qt

DOCKER_ID = "impasto_docker"
_panels: "weakref.WeakSet[Any]" = weakref.WeakSet()


def build_panel(app: Any, parent: Optional[QtWidgets.QWidget] = None, autoconnect: bool = True) -> Any:
    from .config import KritaStore
    from .krita_host import KritaHost
    from .panel import ImpastoPanel

    panel = ImpastoPanel(KritaHost(app), KritaStore(app), parent=parent, autoconnect=autoconnect)
    _panels.add(panel)
    return panel


class ImpastoDocker(DockWidget):
    def __init__(self) -> None:
        super().__init__()
        self.setWindowTitle("Impasto")
        self.panel = None
        scroll = QtWidgets.QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setFrameShape(QtWidgets.QFrame.Shape.NoFrame)
        scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        try:
            self.panel = build_panel(Krita.instance())
            scroll.setWidget(self.panel)
        except Exception as exc:  # a broken install shows a sentence in the docker, not a dead panel
            traceback.print_exc()
            label = QtWidgets.QLabel(f"Impasto could not start: {exc}\nReinstall with `impasto install-krita`.")
            label.setWordWrap(True)
            scroll.setWidget(label)
        self.setWidget(scroll)

    def canvasChanged(self, canvas: Any) -> None:  # noqa: N802 (Krita's naming)
        if self.panel is not None:
            self.panel._refresh_action_label()


def active_panel() -> Optional[Any]:
    """The panel in the active window (actions are global, dockers are per window)."""
    panels = list(_panels)
    if not panels:
        return None
    window = Krita.instance().activeWindow()
    qwin = window.qwindow() if window is not None else None
    for panel in panels:
        if qwin is not None and panel.window() is qwin:
            return panel
    return panels[0]


class ImpastoExtension(Extension):
    def setup(self) -> None:
        try:
            Krita.instance().notifier().applicationClosing.connect(shutdown_all)
        except Exception:
            pass

    def createActions(self, window: Any) -> None:  # noqa: N802 (Krita's naming)
        for spec in ACTIONS:
            action = window.createAction(spec.name, spec.text, "tools/scripts")
            action.triggered.connect(lambda _checked=False, m=spec.method: _call(m))


def _call(method: str) -> None:
    panel = active_panel()
    if panel is None:
        return  # the docker is closed: Settings > Dockers > Impasto opens it
    getattr(panel, method)()


def shutdown_all() -> None:
    for panel in list(_panels):
        try:
            panel.shutdown()
        except Exception:
            traceback.print_exc()


def register(app: Any) -> None:
    app.addExtension(ImpastoExtension(app))
    app.addDockWidgetFactory(DockWidgetFactory(DOCKER_ID, DockWidgetFactoryBase.DockPosition.DockRight
                                               if hasattr(DockWidgetFactoryBase, "DockPosition")
                                               else DockWidgetFactoryBase.DockRight, ImpastoDocker))
