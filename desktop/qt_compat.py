"""Keeps ``None``, ``True`` and ``False`` alive under a Qt binding that drops references to them.

PySide6-Essentials 6.12.0 (an abi3 wheel that installs on Python 3.10-3.15)
returns ``None`` from every void method, and ``True`` from ``Signal.emit()``,
without owning a reference: on Python 3.11 each such call takes one
reference away from the singleton.  ``None`` starts a small process with
about five thousand; the canvas makes dozens of void calls per mouse move,
so after a few seconds of painting CPython aborts with "Fatal Python error:
none_dealloc" (or ``bool_dealloc``).  Python 3.12 made these singletons
immortal (PEP 683), which hides the bug there; PySide6 6.11.x does not have
it.  Measured here: 1000 ``QWidget.setEnabled`` calls cost ``None`` 1000
references on 6.12.0 and none on 6.11.3.

:func:`install` probes the binding once and, only when it drops references,
gives the three singletons the same treatment Python 3.12 gives them: a
reference count so large that no number of dropped references can bring it
to zero.  They are never freed anyway, so nothing else changes.  The
package's ``__init__`` imports this module, so it runs before any canvas
module makes a Qt call.  The real fix is a binding without the bug (pin PySide6 != 6.12.0).
"""
from __future__ import annotations

import ctypes
import sys

from PySide6.QtCore import QObject, QRect, Signal

IMMORTAL_BOOST = 1 << 40   # ~10^12 references: more than any process can drop


class _Probe(QObject):
    ping = Signal()


def binding_drops_singletons(calls: int = 64) -> bool:
    """True when void calls or emits made from Python take references from None / True."""
    rect, probe = QRect(), _Probe()
    none_before, true_before = sys.getrefcount(None), sys.getrefcount(True)
    for _ in range(calls):
        rect.translate(0, 0)          # a void method: returns None
        probe.ping.emit()             # returns True
    lost_none = none_before - sys.getrefcount(None)
    lost_true = true_before - sys.getrefcount(True)
    return lost_none >= calls // 2 or lost_true >= calls // 2


def _boost(obj: object) -> None:
    ctypes.c_ssize_t.from_address(id(obj)).value += IMMORTAL_BOOST  # ob_refcnt is PyObject's first field


_installed = False
SINGLETONS_PROTECTED = False


def install() -> bool:
    """Probe once per process; protect the singletons if needed.  True when protection was applied."""
    global _installed, SINGLETONS_PROTECTED
    if _installed:
        return SINGLETONS_PROTECTED
    _installed = True
    if sys.version_info >= (3, 12) or sys.implementation.name != "cpython":
        return False  # immortal singletons already / not CPython's object layout
    if binding_drops_singletons():
        for obj in (None, True, False):
            _boost(obj)
        SINGLETONS_PROTECTED = True
    return SINGLETONS_PROTECTED


install()
