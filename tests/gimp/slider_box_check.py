"""Run inside the GIMP 3 root folder (GIMP's own Python and GTK 3, under xvfb) by tests/test_gimp_sliders.py:
the dialog's slider box, built from a library listing, rewrites a procedure config's ``concepts`` text."""
import glob
import sys

base = glob.glob(sys.argv[1] + "/**/impasto_gimp/plugin_gimp/slider_box.py", recursive=True)[0]
sys.path.insert(0, base.split("/impasto_gimp/")[0])

import gi  # noqa: E402

gi.require_version("Gtk", "3.0")
from gi.repository import GObject, Gtk  # noqa: E402

from impasto_gimp.plugin_gimp import slider_box  # noqa: E402


class Config(GObject.Object):
    concepts = GObject.Property(type=str, default="mycat:0.8")


cfg = Config()
dialog = Gtk.Dialog()
listing = [{"name": "mycat"}, {"name": "size", "slider": {"mode": "images"}},
           {"name": "warm", "slider": {"mode": "text", "negative": "a magenta", "positive": "a yellow"}}]
assert slider_box.add_slider_box(dialog, cfg, listing) is False          # an idle callback: runs once
frames = [c for c in dialog.get_content_area().get_children() if isinstance(c, Gtk.Frame)]
assert len(frames) == 1 and frames[0].get_label() == "Sliders"
grid = frames[0].get_child()
scales = {grid.child_get_property(w, "top-attach"): w for w in grid.get_children() if isinstance(w, Gtk.Scale)}
labels = sorted(w.get_text() for w in grid.get_children() if isinstance(w, Gtk.Label))
assert sorted(scales) == [0, 1] and labels == sorted(["size", "less", "more", "warm", "a magenta", "a yellow"])
assert (scales[0].get_adjustment().get_lower(), scales[0].get_adjustment().get_upper()) == (-3.0, 3.0)
scales[1].set_value(-1.5)
assert cfg.get_property("concepts") == "mycat:0.8, warm:-1.5", cfg.get_property("concepts")
scales[0].set_value(2.0)
assert cfg.get_property("concepts") == "mycat:0.8, warm:-1.5, size:2", cfg.get_property("concepts")
scales[1].set_value(0.0)
assert cfg.get_property("concepts") == "mycat:0.8, size:2", cfg.get_property("concepts")
empty = Gtk.Dialog()
assert slider_box.add_slider_box(empty, cfg, [{"name": "mycat"}]) is False   # no sliders: no frame
assert not [c for c in empty.get_content_area().get_children() if isinstance(c, Gtk.Frame)]
print("SLIDER-BOX-OK")
