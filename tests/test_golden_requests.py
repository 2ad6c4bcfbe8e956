"""Golden test: one picture, one selection, one set of settings -> byte-identical requests from every front end.

Each front end goes through its *own* glue (Krita's docker planning, GIMP's
procedure fields, the canvas's buttons on a real Qt document, the CLI's
argument parser reading PNG files) and the requests are compared as the
frames that go on the wire (``codec.encode``: JSON header + raw image frames).
A front end that rounds a knob differently, reads a different window or
picks another job kind fails here.
"""
from __future__ import annotations

import os

import numpy as np
import pytest

pytest.importorskip("PySide6")
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from PySide6.QtCore import QRectF  # noqa: E402
from PySide6.QtGui import QPainterPath  # noqa: E402
from PySide6.QtWidgets import QApplication  # noqa: E402

from impasto.backend import cli, cli_edit  # noqa: E402
from impasto.desktop import job_plans, qt_images  # noqa: E402
from impasto.desktop.document import Document  # noqa: E402
from impasto.desktop.history import SelectionCommand  # noqa: E402
from impasto.desktop.settings import GenerationSettings  # noqa: E402
from impasto.plugin_gimp import jobs as gimp_jobs  # noqa: E402
from impasto.plugin_gimp.geometry import Rect as GimpRect  # noqa: E402
from impasto.plugin_krita.impasto_krita import planning as krita  # noqa: E402
from impasto.protocol import codec, region  # noqa: E402
from impasto.protocol.messages import Image  # noqa: E402

W, H = 300, 220
KNOBS = dict(prompt="a red fox in the snow", negative_prompt="blurry", seed=1234, steps=7, cfg_scale=6.5,
             sampler="dpmpp_2m", model="tiny", batch_size=2, mask_blur=6, grow=3, padding=20, fill="blur")
CONCEPT = ("mycat", 0.8)


@pytest.fixture(scope="module")
def qapp():
    return QApplication.instance() or QApplication([])


@pytest.fixture(scope="module")
def scene(qapp, tmp_path_factory):
    """A noisy opaque picture with an anti-aliased ellipse selected, as every front end sees it."""
    rng = np.random.default_rng(7)
    rgba = rng.integers(0, 256, (H, W, 4), dtype=np.uint8)
    rgba[..., 3] = 255
    doc = Document.from_image(qt_images.rgba_from_array(rgba), "golden")
    path = QPainterPath()
    path.addEllipse(QRectF(101.5, 60.25, 83, 57))
    doc.undo.push(SelectionCommand(doc, path))
    selection = qt_images.gray_array(doc.selection_mask())
    assert 0 < int((selection % 255 != 0).sum()), "the selection must have soft edges"
    assert np.array_equal(qt_images.rgba_array(doc.composite()), rgba)
    folder = tmp_path_factory.mktemp("golden")
    from PIL import Image as PILImage

    PILImage.fromarray(rgba, "RGBA").save(folder / "picture.png")
    PILImage.fromarray(selection, "L").save(folder / "mask.png")
    return dict(doc=doc, rgba=rgba, selection=selection, folder=folder)


def wire(request) -> list:
    request.job = "golden"
    return [bytes(f) for f in codec.encode(request)]


# --------------------------------------------------------------------------- each front end's own path


def krita_request(scene, strength: float, selected: bool):
    s = krita.Settings(**KNOBS, strength=strength, preview=False,
                       concepts=[{"name": CONCEPT[0], "weight": CONCEPT[1], "enabled": True},
                                 {"name": "unticked", "weight": 1.0, "enabled": False}])
    sel = scene["selection"].tobytes() if selected else None
    read = krita.read_plan(s, W, H, sel)
    x, y, w, h = read.window
    rgba = np.ascontiguousarray(scene["rgba"][y:y + h, x:x + w]).tobytes() if read.needs_pixels else None
    window_sel = np.ascontiguousarray(scene["selection"][y:y + h, x:x + w]).tobytes() if selected else None
    snap = krita.CanvasSnapshot(W, H, read.window, selection=window_sel, mask_info=read.mask_info, rgba=rgba)
    return krita.plan_job(snap, s).request


def gimp_request(scene, action: str, strength: float, selected: bool):
    f = gimp_jobs.JobFields(**KNOBS, strength=strength, preview=False, concepts=f"{CONCEPT[0]}:{CONCEPT[1]}")
    canvas = GimpRect(0, 0, W, H)
    if action == "generate":
        return gimp_jobs.txt2img_request(f, W, H)
    if not selected:
        return gimp_jobs.img2img_request(f, Image(W, H, scene["rgba"].tobytes()))
    ys, xs = np.nonzero(scene["selection"])
    bounds = GimpRect(int(xs.min()), int(ys.min()), int(xs.max() - xs.min() + 1), int(ys.max() - ys.min() + 1))
    sent = gimp_jobs.edit_window(f, canvas, bounds, action)
    crop = lambda a: np.ascontiguousarray(a[sent.y:sent.bottom, sent.x:sent.right]).tobytes()  # noqa: E731
    return gimp_jobs.edit_request(f, Image(sent.width, sent.height, crop(scene["rgba"])),
                                  Image(sent.width, sent.height, crop(scene["selection"]), "gray8"),
                                  canvas=canvas, sent=sent, action=action)


def canvas_request(scene, action: str, strength: float, selected: bool):
    doc = scene["doc"]
    if not selected:
        doc = Document.from_image(qt_images.rgba_from_array(scene["rgba"]), "golden, nothing selected")
    s = GenerationSettings(**KNOBS, strength=strength, preview=False).set_concepts([CONCEPT])
    return job_plans.plan(doc, s, action).request


def cli_request(scene, command: str, strength: float):
    folder = scene["folder"]
    argv = {"generate": ["generate", KNOBS["prompt"], "--size", f"{W}x{H}"],
            "img2img": ["img2img", str(folder / "picture.png"), KNOBS["prompt"]],
            "edit": ["edit", str(folder / "picture.png"), str(folder / "mask.png"), KNOBS["prompt"]]}[command]
    argv += ["--negative", KNOBS["negative_prompt"], "--seed", str(KNOBS["seed"]), "--steps", str(KNOBS["steps"]),
             "--cfg", str(KNOBS["cfg_scale"]), "--sampler", KNOBS["sampler"], "--model", KNOBS["model"],
             "--batch", str(KNOBS["batch_size"]), "--concept", f"{CONCEPT[0]}:{CONCEPT[1]}"]
    if command != "generate":
        argv += ["--strength", str(strength)]
    if command == "edit":
        argv += ["--mask-blur", str(KNOBS["mask_blur"]), "--grow", str(KNOBS["grow"]),
                 "--padding", str(KNOBS["padding"]), "--fill", KNOBS["fill"]]
    args = cli.build_parser().parse_args(argv)
    picture = lambda: cli_edit.read_picture(args.image)  # noqa: E731
    if command == "generate":
        return cli.plan(args, args.size, "generate").request
    if command == "img2img":
        image = picture()
        return cli.plan(args, (image.width, image.height), "refine", rgba=image.data).request
    return cli_edit.edit_plan(args, picture(), cli_edit.read_mask(args.mask)).request


# --------------------------------------------------------------------------- the golden comparisons


def assert_same(requests: dict) -> None:
    frames = {name: wire(req) for name, req in requests.items()}
    first_name, first = next(iter(frames.items()))
    for name, got in frames.items():
        assert got[0] == first[0], f"{name}'s header differs from {first_name}'s:\n{got[0]!r}\n{first[0]!r}"
        assert got == first, f"{name}'s image frames differ from {first_name}'s"


def test_refine_selection_is_one_edit_job_everywhere(scene):
    requests = {
        "krita": krita_request(scene, 0.6, True),            # the slider below 100 % with a selection
        "gimp": gimp_request(scene, "refine", 0.6, True),     # Filters > Impasto > Refine with a selection
        "canvas": canvas_request(scene, "refine", 0.6, True),  # the Refine button with a selection
        "cli": cli_request(scene, "edit", 0.6),
    }
    assert_same(requests)
    req = requests["krita"]
    assert req.kind == "edit" and req.strength == 0.6 and req.concepts == [CONCEPT] and req.priority == "front"
    # only the planner's window was sent, and it holds the selection with its grow + blur + padding
    x0, y0, x1, y1 = region.send_window(region.mask_box(scene["selection"].tobytes(), W, H), (W, H),
                                        KNOBS["padding"], KNOBS["grow"], KNOBS["mask_blur"])
    assert (req.init_image.width, req.init_image.height) == (x1 - x0, y1 - y0) and (x1 - x0) * (y1 - y0) < W * H
    assert req.mask.data == np.ascontiguousarray(scene["selection"][y0:y1, x0:x1]).tobytes()


def test_inpaint_selection_is_the_same_job_everywhere(scene):
    assert_same({
        "krita": krita_request(scene, 1.0, True),             # 100 % with a selection: Inpaint selection
        "gimp": gimp_request(scene, "inpaint", 1.0, True),
        "canvas": canvas_request(scene, "inpaint", 1.0, True),
        "cli": cli_request(scene, "edit", 1.0),
    })


def test_refine_of_the_whole_picture_is_the_same_job_everywhere(scene):
    requests = {
        "krita": krita_request(scene, 0.45, False),
        "gimp": gimp_request(scene, "refine", 0.45, False),
        "canvas": canvas_request(scene, "refine", 0.45, False),
        "cli": cli_request(scene, "img2img", 0.45),
    }
    assert_same(requests)
    assert requests["cli"].kind == "img2img" and requests["cli"].init_image.data == scene["rgba"].tobytes()


def test_generate_is_the_same_job_everywhere(scene):
    requests = {
        "krita": krita_request(scene, 1.0, False),
        "gimp": gimp_request(scene, "generate", 1.0, False),
        "canvas": canvas_request(scene, "generate", 1.0, False),
        "cli": cli_request(scene, "generate", 1.0),
    }
    assert_same(requests)
    assert requests["canvas"].kind == "txt2img" and (requests["canvas"].width, requests["canvas"].height) == (W, H)
