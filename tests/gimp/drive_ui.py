"""Runs INSIDE real GIMP 3 with a display (Xvfb): the plug-in's interactive side.

The procedures run INTERACTIVE end to end: procedure dialog
(GimpUi.ProcedureDialog built from the arguments, daemon info label filled
from a worker thread), then the progress window following the job through
GLib.idle_add, then the layers.  Nothing in the shipped plug-in answers its
own dialogs: the test drives them from outside with X events (xdotool, see
tests/test_gimp_real.py) - OK on each dialog, and Cancel on the progress
window of the last run (a Refine), which must then end as cancelled with no
layer added.  Results go to ``$IMPASTO_GIMP_TEST_DIR/out/ui.json``.
"""
import json
import os
import time
import traceback

import gi

gi.require_version("Gimp", "3.0")
from gi.repository import Gimp  # noqa: E402

BASE = os.environ.get("IMPASTO_GIMP_TEST_DIR", "/impasto-test")
OUT = BASE + "/out"
os.makedirs(OUT, exist_ok=True)
PARAMS = json.load(open(BASE + "/params.json"))
REPORT = {"steps": [], "errors": []}


def save():
    with open(OUT + "/ui.json.part", "w") as fh:
        json.dump(REPORT, fh, indent=1, default=str)
    os.replace(OUT + "/ui.json.part", OUT + "/ui.json")


def run(name, image, drawables, mode, **values):
    proc = Gimp.get_pdb().lookup_procedure(name)
    config = proc.create_config()
    config.set_property("run-mode", mode)
    config.set_property("image", image)
    if drawables:
        config.set_core_object_array("drawables", drawables)
    for key, value in values.items():
        config.set_property(key.replace("_", "-"), value)
    t0 = time.monotonic()
    result = proc.run(config)
    status = result.index(0)
    step = {"procedure": name, "mode": int(mode), "status": status.value_nick,
            "seconds": round(time.monotonic() - t0, 3)}
    if status != Gimp.PDBStatusType.SUCCESS:
        step["error"] = Gimp.get_pdb().get_last_error()
    REPORT["steps"].append(step)
    save()
    return step



def main():
    P = PARAMS
    REPORT["display"] = os.environ.get("DISPLAY")
    # Settings, interactive: the dialog shows the saved values and saves what it holds on OK.
    run("impasto-settings", None, None, Gimp.RunMode.NONINTERACTIVE, endpoint=P["endpoint"], auto_start=False)
    run("impasto-settings", None, None, Gimp.RunMode.INTERACTIVE)
    REPORT["settings_file"] = open(os.path.join(Gimp.directory(), "impasto-settings.json")).read()
    image = Gimp.Image.new(160, 120, Gimp.ImageBaseType.RGB)
    layer = Gimp.Layer.new(image, "paint", 160, 120, Gimp.ImageType.RGB_IMAGE, 100.0, Gimp.LayerMode.NORMAL)
    image.insert_layer(layer, None, 0)
    layer.fill(Gimp.FillType.WHITE)
    run("impasto-generate", image, [layer], Gimp.RunMode.INTERACTIVE, **P["ui_job"], width=96, height=64)
    image.select_ellipse(Gimp.ChannelOps.REPLACE, 40, 30, 60, 40)
    run("impasto-inpaint", image, [layer], Gimp.RunMode.INTERACTIVE, **P["ui_job"])
    REPORT["layers"] = [(l.get_name(), l.get_width(), l.get_height(), l.get_mask() is not None)
                        for l in image.get_layers()]
    # the test presses the progress window's Cancel while this job waits behind a long one
    run("impasto-refine", image, [layer], Gimp.RunMode.INTERACTIVE, **P["ui_job"])
    REPORT["layers_after_cancel"] = [l.get_name() for l in image.get_layers()]
    # Save Result through its dialog (the file chooser holds the file set here; the test presses OK)
    from gi.repository import Gio

    generated = [l for l in image.get_layers() if l.get_name().startswith("Impasto generate")]
    run("impasto-save-result", image, generated[:1], Gimp.RunMode.INTERACTIVE,
        file=Gio.File.new_for_path(OUT + "/ui_saved.png"))
    data = open(OUT + "/ui_saved.png", "rb").read() if os.path.exists(OUT + "/ui_saved.png") else b""
    REPORT["ui_saved"] = {"png": data[:8] == b"\x89PNG\r\n\x1a\n", "parameters": b"tEXtparameters\x00" in data,
                          "seed": b"Seed: %d," % P["ui_job"]["seed"] in data}
    REPORT["done"] = True


try:
    main()
except Exception:
    REPORT["errors"].append(traceback.format_exc())
save()
