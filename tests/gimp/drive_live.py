"""Runs INSIDE real GIMP 3: the plug-in's "Repaint Now" (live painting on demand), for tests/test_gimp_live.py.

A standalone copy of drive_plugin.py's small helpers (GIMP runs this file on
its own, copied into the root folder), then: repaint the picture, paint a
stroke, repaint again (the one live layer is replaced, its pixels change),
repaint inside a selection (a masked layer on the selection's region).
"""
import json
import os
import time
import traceback

import gi

gi.require_version("Gimp", "3.0")
gi.require_version("Gegl", "0.4")
from gi.repository import Gegl, Gimp  # noqa: E402

BASE = os.environ.get("IMPASTO_GIMP_TEST_DIR", "/impasto-test")
OUT = BASE + "/out"
os.makedirs(OUT, exist_ok=True)
PARAMS = json.load(open(BASE + "/params.json"))
REPORT = {"steps": [], "errors": []}


def save_report():
    tmp = OUT + "/result.json.part"
    with open(tmp, "w") as fh:
        json.dump(REPORT, fh, indent=1, default=str)
    os.replace(tmp, OUT + "/result.json")


def dump(name, data):
    with open(f"{OUT}/{name}", "wb") as fh:
        fh.write(bytes(data))


def read(drawable, fmt, x=0, y=0, w=None, h=None):
    w = drawable.get_width() if w is None else w
    h = drawable.get_height() if h is None else h
    buf = drawable.get_buffer()
    return bytes(buf.get(Gegl.Rectangle.new(x, y, w, h), 1.0, fmt, Gegl.AbyssPolicy.NONE))


def write(drawable, fmt, data):
    buf = drawable.get_buffer()
    buf.set(Gegl.Rectangle.new(0, 0, drawable.get_width(), drawable.get_height()), fmt, data)
    buf.flush()


def describe(image):
    out = []
    for i, layer in enumerate(image.get_layers()):
        _ok, x, y = layer.get_offsets()
        mask = layer.get_mask()
        out.append({"name": layer.get_name(), "index": i, "x": x, "y": y, "width": layer.get_width(),
                    "height": layer.get_height(), "has_mask": mask is not None, "id": layer.get_id(),
                    "composite_space": int(layer.get_composite_space())})
    return out


def composite(image):
    dup = image.duplicate()
    merged = dup.merge_visible_layers(Gimp.MergeType.CLIP_TO_IMAGE)
    data = read(merged, "R'G'B'A u8")
    dup.delete()
    return data


def run(name, image, drawables, **values):
    proc = Gimp.get_pdb().lookup_procedure(name)
    if proc is None:
        raise RuntimeError(f"procedure {name} is not registered: the plug-in did not load")
    config = proc.create_config()
    config.set_property("run-mode", Gimp.RunMode.NONINTERACTIVE)
    if image is not None or "image" in [p.name for p in config.list_properties()]:
        config.set_property("image", image)
    if drawables:
        config.set_core_object_array("drawables", drawables)
    for key, value in values.items():
        config.set_property(key.replace("_", "-"), value)
    t0 = time.monotonic()
    result = proc.run(config)
    status = result.index(0)
    step = {"procedure": name, "status": status.value_nick if hasattr(status, "value_nick") else str(status),
            "seconds": round(time.monotonic() - t0, 3)}
    if status != Gimp.PDBStatusType.SUCCESS:
        step["error"] = Gimp.get_pdb().get_last_error()
    returned = [result.index(i) for i in range(1, result.length())]
    REPORT["steps"].append(step)
    save_report()
    return step, returned


def pattern(w, h):
    """Deterministic, busy RGBA so any change shows."""
    data = bytearray(w * h * 4)
    i = 0
    for y in range(h):
        for x in range(w):
            data[i] = (x * 7 + y * 3) & 255
            data[i + 1] = (x * x + 5 * y) & 255
            data[i + 2] = (x ^ y) & 255
            data[i + 3] = 255
            i += 4
    return bytes(data)


def live_layers(image):
    return [l for l in image.get_layers() if l.get_name() == "Impasto live"]


def main():
    P = PARAMS
    run("impasto-settings", None, None, endpoint=P["endpoint"], auto_start=False, transport="auto")
    W, H = P["image"]
    image = Gimp.Image.new(W, H, Gimp.ImageBaseType.RGB)
    paint = Gimp.Layer.new(image, "paint", W, H, Gimp.ImageType.RGBA_IMAGE, 100.0, Gimp.LayerMode.NORMAL)
    image.insert_layer(paint, None, 0)
    write(paint, "R'G'B'A u8", pattern(W, H))
    job = P["job"]

    step, ret = run("impasto-repaint-now", image, [paint], **job)
    REPORT["after_first"] = describe(image)
    first = live_layers(image)
    if first:
        dump("live1.rgba", read(first[0], "R'G'B'A u8"))
    # a stroke: a red bar across the picture
    stroke = bytearray(pattern(W, H))
    for y in range(20, 30):
        for x in range(5, W - 5):
            i = (y * W + x) * 4
            stroke[i:i + 4] = bytes([230, 20, 20, 255])
    write(paint, "R'G'B'A u8", bytes(stroke))
    step, ret = run("impasto-repaint-now", image, [paint], **job)
    REPORT["after_second"] = describe(image)
    second = live_layers(image)
    if second:
        dump("live2.rgba", read(second[0], "R'G'B'A u8"))
    sx, sy, sw, sh = P["select"]
    image.select_rectangle(Gimp.ChannelOps.REPLACE, sx, sy, sw, sh)
    step, ret = run("impasto-repaint-now", image, [paint], **job)
    REPORT["after_selection"] = describe(image)
    REPORT["done"] = True


try:
    main()
except Exception:
    REPORT["errors"].append(traceback.format_exc())
save_report()
