"""The plugin's Krita actions and default shortcuts - one table for Krita and the installer.

Krita reads shortcuts from ``.action`` files in its ``actions`` resource
folder; ``impasto install-krita`` writes ``impasto_krita.action`` from
:func:`action_xml`, so the table below is the only place they are defined.
The defaults were picked from keys Krita 5 leaves free.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Tuple
from xml.sax.saxutils import escape

ACTION_FILE = "impasto_krita.action"


@dataclass(frozen=True)
class ActionSpec:
    name: str
    text: str
    method: str          # the panel method it calls
    shortcut: str
    tooltip: str
    needs_image: bool = True


ACTIONS: Tuple[ActionSpec, ...] = (
    ActionSpec("impasto_generate", "Impasto: Generate / Inpaint Selection", "generate", "Ctrl+Shift+Return",
               "Generate on the canvas, refine it, or inpaint the selection, as set in the Impasto docker"),
    ActionSpec("impasto_cancel", "Impasto: Cancel", "cancel", "Ctrl+Shift+X",
               "Stop the running Impasto job", needs_image=False),
)


def action_xml() -> str:
    rows = []
    for a in ACTIONS:
        rows.append(f"""    <Action name="{a.name}">
      <icon></icon>
      <text>{escape(a.text)}</text>
      <whatsThis>{escape(a.tooltip)}</whatsThis>
      <toolTip>{escape(a.tooltip)}</toolTip>
      <iconText>{escape(a.text.split(": ", 1)[-1])}</iconText>
      <activationFlags>{1 if a.needs_image else 0}</activationFlags>
      <activationConditions>0</activationConditions>
      <shortcut>{escape(a.shortcut)}</shortcut>
      <isCheckable>false</isCheckable>
      <statusTip></statusTip>
    </Action>""")
    body = "\n".join(rows)
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<ActionCollection version="2" name="Scripts">
  <Actions category="Scripts">
    <text>Impasto</text>
{body}
  </Actions>
</ActionCollection>
"""
