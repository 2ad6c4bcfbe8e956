"""Runs INSIDE real GIMP 3 (``gimp-console-3.0 --batch-interpreter python-fu-eval -b - < this``).

Drives the installed Impasto plug-in the way a script would - PDB lookup,
config, non-interactive run - against a daemon outside the chroot, and
dumps what the outer pytest (tests/test_gimp_real.py) asserts on:

* ``result.json``: statuses, error messages, the layer stack (names,
  offsets, sizes, masks), the selection's bounds;
* raw pixel files (``*.rgba`` R'G'B'A u8, ``*.gray`` Y u8, row-major) of the
  layers and masks before and after, the new layers and their masks, and
  the visible composite.

Only GIMP's own Python here: no numpy, no Pillow.  Parameters come from
``$IMPASTO_GIMP_TEST_DIR/params.json`` (a folder inside the chroot);
everything is written to its ``out/``.  Any exception is recorded, never lost.
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


def run(name, image, drawables, _key=None, **values):
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
    if _key:
        REPORT[_key] = step           # kept apart from the numbered steps the tests index
    else:
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


def main():
    try:
        import zmq  # noqa: F401
        REPORT["gimp_python_has_pyzmq"] = True
    except ImportError:
        REPORT["gimp_python_has_pyzmq"] = False
    for mod in ("numpy", "PIL"):
        try:
            __import__(mod)
            REPORT[f"gimp_python_has_{mod}"] = True
        except ImportError:
            REPORT[f"gimp_python_has_{mod}"] = False
    REPORT["gimp_version"] = Gimp.version()
    P = PARAMS
    step, _ = run("impasto-settings", None, None, endpoint=P["endpoint"], auto_start=False, transport="auto")
    REPORT["settings_file"] = open(os.path.join(Gimp.directory(), "impasto-settings.json")).read()
    # the fill menu's words and hover help, as GIMP's dialog shows them (the client core's table)
    spec = Gimp.get_pdb().lookup_procedure("impasto-inpaint").find_argument("fill")
    choice = Gimp.param_spec_choice_get_choice(spec)
    REPORT["fill_choices"] = {nick: [choice.get_label(nick), choice.get_help(nick)] for nick in choice.list_nicks()}

    W, H = P["image"]
    image = Gimp.Image.new(W, H, Gimp.ImageBaseType.RGB)
    bg = Gimp.Layer.new(image, "background", W, H, Gimp.ImageType.RGBA_IMAGE, 100.0, Gimp.LayerMode.NORMAL)
    image.insert_layer(bg, None, 0)
    write(bg, "R'G'B'A u8", bytes([200, 190, 170, 255]) * (W * H))
    px, py, pw, ph = P["paint"]
    paint = Gimp.Layer.new(image, "paint", pw, ph, Gimp.ImageType.RGBA_IMAGE, 100.0, Gimp.LayerMode.NORMAL)
    image.insert_layer(paint, None, 0)
    paint.set_offsets(px, py)
    write(paint, "R'G'B'A u8", pattern(pw, ph))
    # The artist's own layer mask: white but for a black square in the layer's corner.
    user_mask = paint.create_mask(Gimp.AddMaskType.WHITE)
    paint.add_mask(user_mask)
    m = bytearray(b"\xff" * (pw * ph))
    for y in range(12):
        m[y * pw:y * pw + 12] = b"\0" * 12
    write(user_mask, "Y u8", bytes(m))

    ex, ey, ew, eh = P["ellipse"]
    image.select_ellipse(Gimp.ChannelOps.REPLACE, ex, ey, ew, eh)
    Gimp.Selection.feather(image, P["feather"])
    ok, non_empty, x1, y1, x2, y2 = Gimp.Selection.bounds(image)
    REPORT["selection_bounds"] = [x1, y1, x2 - x1, y2 - y1]
    dump("selection.gray", read(image.get_selection(), "Y u8"))
    dump("paint_before.rgba", read(paint, "R'G'B'A u8"))
    dump("paint_mask_before.gray", read(user_mask, "Y u8"))
    dump("background_before.rgba", read(bg, "R'G'B'A u8"))
    dump("composite_before.rgba", composite(image))
    REPORT["layers_before"] = describe(image)

    # 1. Inpaint the selection: no blur, so the layer mask must be the selection itself.
    step, ret = run("impasto-inpaint", image, [paint], **P["inpaint"])
    if ret and ret[1] is not None:
        new = ret[1]
        step["layer_id"] = new.get_id()
        step["seed"] = ret[2]
        dump("inpaint_layer.rgba", read(new, "R'G'B'A u8"))
        dump("inpaint_mask.gray", read(new.get_mask(), "Y u8"))
    REPORT["layers_after_inpaint"] = describe(image)
    dump("composite_after_inpaint.rgba", composite(image))
    dump("selection_after.gray", read(image.get_selection(), "Y u8"))
    # Save Result of the inpaint layer: the whole inpainted picture as shown now, with its parameters
    from gi.repository import Gio

    if ret and ret[1] is not None:
        run("impasto-save-result", image, [ret[1]], _key="save_inpaint",
            file=Gio.File.new_for_path(OUT + "/saved_inpaint"))          # no extension: .png is added
    save_report()

    # 2. Refine the selection (img2img "only masked"), feathered and grown, two pictures.
    step, ret = run("impasto-refine", image, [paint], **P["refine_selection"])
    REPORT["layers_after_refine_selection"] = describe(image)
    for layer in image.get_layers():
        if layer.get_name().startswith("Impasto refine"):
            dump(f"refine_sel_{layer.get_id()}.gray", read(layer.get_mask(), "Y u8"))
    save_report()

    # 3. Refine the whole layer (no selection).
    Gimp.Selection.none(image)
    step, ret = run("impasto-refine", image, [paint], **P["refine_layer"])
    if ret and ret[1] is not None:
        step["layer_id"] = ret[1].get_id()
        step["has_mask"] = ret[1].get_mask() is not None
    REPORT["layers_after_refine_layer"] = describe(image)

    # 4. Inpaint with nothing selected: a clear error, no new layer.
    count = len(image.get_layers())
    step, _ = run("impasto-inpaint", image, [paint], **P["inpaint"])
    step["layers_added"] = len(image.get_layers()) - count

    # 5. A bad field: an invalid concept name fails before anything is sent.
    image.select_ellipse(Gimp.ChannelOps.REPLACE, ex, ey, ew, eh)
    count = len(image.get_layers())
    step, _ = run("impasto-inpaint", image, [paint], **dict(P["inpaint"], concepts="bad/name:0.5"))
    step["layers_added"] = len(image.get_layers()) - count
    Gimp.Selection.none(image)

    # 6. Generate into the image, and with no image open (a new image).
    step, ret = run("impasto-generate", image, [paint], **P["generate"])
    if ret and ret[1] is not None:
        dump("generate_layer.rgba", read(ret[1], "R'G'B'A u8"))
    REPORT["layers_after_generate"] = describe(image)
    step, ret = run("impasto-generate", None, [], **P["generate_new_image"])
    if ret and ret[0] is not None:
        step["new_image"] = {"width": ret[0].get_width(), "height": ret[0].get_height(),
                             "layers": describe(ret[0])}

    # Save Result of the generated layer (re-run by `impasto generate --from` outside), and of a layer
    # Impasto did not add (refused with a sentence)
    generated = [l for l in image.get_layers() if l.get_name().startswith("Impasto generate")]
    if generated:
        run("impasto-save-result", image, generated[:1], _key="save_generate",
            file=Gio.File.new_for_path(OUT + "/saved_generate.png"))
    run("impasto-save-result", image, [paint], _key="save_refused", file=Gio.File.new_for_path(OUT + "/paint.png"))
    REPORT["save_refused_wrote"] = os.path.exists(OUT + "/paint.png")
    # the parameters live in a persistent parasite: an XCF save and reopen keeps them
    try:
        xcf = Gio.File.new_for_path(OUT + "/kept.xcf")
        Gimp.file_save(Gimp.RunMode.NONINTERACTIVE, image, xcf, None)
        reopened = Gimp.file_load(Gimp.RunMode.NONINTERACTIVE, xcf)
        kept = [l for l in reopened.get_layers() if l.get_name().startswith("Impasto generate")]
        parasite = kept[0].get_parasite("impasto-parameters") if kept else None
        REPORT["xcf_parameters"] = bytes(parasite.get_data()).decode("utf-8") if parasite else ""
        reopened.delete()
    except Exception:
        REPORT["errors"].append(traceback.format_exc())

    # 7. Generate steered by a control layer chosen in the dialog (the paint layer, read in the image's window)
    step, ret = run("impasto-generate", image, [paint], **dict(P["generate"], control_layer=paint,
                                                              control_type="scribble", control_strength=0.9))
    if ret and ret[1] is not None:
        step["layer_name"] = ret[1].get_name()
        dump("control_generate_layer.rgba", read(ret[1], "R'G'B'A u8"))
    count = len(image.get_layers())
    step, _ = run("impasto-generate", image, [paint], **dict(P["generate"], control_type="canny"))
    step["layers_added"] = len(image.get_layers()) - count   # a control type with no layer: a sentence, no layer

    dump("paint_after.rgba", read(paint, "R'G'B'A u8"))
    dump("paint_mask_after.gray", read(paint.get_mask(), "Y u8"))
    dump("background_after.rgba", read(bg, "R'G'B'A u8"))
    REPORT["done"] = True


try:
    main()
except Exception:
    REPORT["errors"].append(traceback.format_exc())
save_report()
