"""Runs INSIDE the GIMP root folder with its own python3 (GTK 3): saves one X window as a PNG.

``python3 grab_window.py WINDOW_ID OUT.png`` with DISPLAY set.  The real-GIMP UI test calls it on the
Generate dialog as an artist sees it (Xvfb has no window manager, so no frame), for docs/gimp.md.
Reads the window's pixels from the X server the way a screenshot tool does: nothing in GIMP helps.
"""
import sys

import gi

gi.require_version("Gdk", "3.0")
gi.require_version("GdkX11", "3.0")
from gi.repository import Gdk, GdkX11  # noqa: E402

Gdk.init([])
display = Gdk.Display.get_default()
window = GdkX11.X11Window.foreign_new_for_display(display, int(sys.argv[1]))
width, height = window.get_width(), window.get_height()
pixbuf = Gdk.pixbuf_get_from_window(window, 0, 0, width, height)
if pixbuf is None:
    sys.exit(f"could not read window {sys.argv[1]} ({width}x{height})")
pixbuf.savev(sys.argv[2], "png", [], [])
print(width, height)
