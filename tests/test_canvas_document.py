"""The canvas's document side, no daemon: tools, undo, selections, project files, image files, job plans."""
from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
import zipfile
import zlib

import numpy as np
import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from PySide6.QtCore import QPointF, QRect, QRectF, Qt  # noqa: E402
from PySide6.QtGui import QColor, QImage, QPainterPath  # noqa: E402

from impasto.desktop import headless, image_io, job_plans, project_file, qt_images  # noqa: E402
from impasto.desktop.document import Document  # noqa: E402
from impasto.desktop.history import SelectionCommand  # noqa: E402
from impasto.desktop.settings import GenerationSettings  # noqa: E402
from impasto.desktop.staging import StagingArea  # noqa: E402
from impasto.desktop.tools import (  # noqa: E402
    BrushSettings,
    BrushTool,
    EraserTool,
    LassoSelectTool,
    MaskBrushTool,
    MaskEraserTool,
    RectSelectTool,
)
from impasto.protocol.messages import Image as WireImage  # noqa: E402
from impasto.protocol.messages import Patch, Result  # noqa: E402

NONE = Qt.KeyboardModifier.NoModifier


@pytest.fixture(scope="module", autouse=True)
def qapp():
    return headless.application()


def rgba(doc: Document, layer_index: int = -1) -> np.ndarray:
    return qt_images.rgba_array(doc.layers[layer_index].image)


def stroke(tool, points, modifiers=NONE):
    tool.press(QPointF(*points[0]), modifiers)
    for p in points[1:]:
        tool.move(QPointF(*p))
    tool.release(QPointF(*points[-1]))


# --------------------------------------------------------------------------- painting and undo


def test_brush_stroke_paints_its_path_in_colour_and_undo_redo_restore_exactly():
    doc = Document(80, 60)
    before = rgba(doc)
    brush = BrushSettings(size=10, hardness=1.0, color=QColor(200, 30, 40))
    stroke(BrushTool(doc, brush), [(10, 30), (40, 30), (70, 30)])
    after = rgba(doc)
    assert tuple(after[30, 40]) == (200, 30, 40, 255)          # on the path: the brush colour
    assert tuple(after[30, 10]) == (200, 30, 40, 255)
    assert tuple(after[5, 40]) == (255, 255, 255, 255)          # far from it: untouched white
    assert tuple(after[30, 40 + 8]) == (200, 30, 40, 255)       # a segment, not dots
    assert doc.undo.count() == 1                                # one stroke = one undo step
    doc.undo.undo()
    assert np.array_equal(rgba(doc), before)
    doc.undo.redo()
    assert np.array_equal(rgba(doc), after)


def test_soft_brush_does_not_build_up_where_dabs_overlap_and_opacity_is_per_stroke():
    doc = Document(100, 40)
    brush = BrushSettings(size=20, hardness=0.0, opacity=0.5, color=QColor(0, 0, 0))
    stroke(BrushTool(doc, brush), [(10, 20), (90, 20)])
    px = rgba(doc)
    centre = px[20, 30:70, 0].astype(int)
    assert centre.min() >= 120 and centre.max() <= 145          # ~50 % grey along the whole stroke, no darker spots
    assert px[20 - 9, 50, 0] > centre.max()                     # soft: lighter towards the edge


def test_eraser_makes_transparent_pixels():
    doc = Document(40, 40)
    stroke(EraserTool(doc, BrushSettings(size=8, hardness=1.0)), [(20, 5), (20, 35)])
    px = rgba(doc)
    assert px[20, 20, 3] == 0 and px[20, 2, 3] == 255


def test_soft_mask_brush_feathers_and_mask_eraser_removes_and_both_undo():
    doc = Document(100, 100)
    brush = BrushSettings(mask_size=40, mask_hardness=0.2)
    stroke(MaskBrushTool(doc, brush), [(50, 50)])
    m = doc.mask_array()
    assert m[50, 50] == 255
    assert 0 < m[50, 50 + 15] < 255                             # soft falloff inside the radius
    assert m[50, 50 + 25] == 0
    assert layer_untouched(doc)
    stroke(MaskEraserTool(doc, brush), [(50, 50)])
    assert doc.mask_array()[50, 50] == 0
    doc.undo.undo()
    assert np.array_equal(doc.mask_array(), m)
    doc.undo.undo()
    assert not doc.has_mask()


def layer_untouched(doc: Document) -> bool:
    return bool((rgba(doc) == 255).all())


def test_cancelled_stroke_restores_pixels_and_leaves_no_undo_step():
    doc = Document(50, 50)
    tool = BrushTool(doc, BrushSettings(size=10, color=QColor(0, 0, 0)))
    tool.press(QPointF(10, 10), NONE)
    tool.move(QPointF(40, 40))
    assert not layer_untouched(doc)
    tool.cancel()
    assert layer_untouched(doc) and doc.undo.count() == 0


# --------------------------------------------------------------------------- selections


def test_rectangle_selection_add_subtract_deselect_and_undo():
    doc = Document(100, 100)
    tool = RectSelectTool(doc, BrushSettings())
    stroke(tool, [(10, 10), (40, 40)])
    assert doc.selection_bounds() == QRect(10, 10, 30, 30)
    stroke(tool, [(60, 60), (90, 80)], Qt.KeyboardModifier.ShiftModifier)
    assert doc.selection.contains(QPointF(20, 20)) and doc.selection.contains(QPointF(70, 70))
    stroke(tool, [(0, 0), (25, 100)], Qt.KeyboardModifier.AltModifier)
    assert not doc.selection.contains(QPointF(20, 20)) and doc.selection.contains(QPointF(30, 30))
    stroke(tool, [(50, 5), (50, 5)])                             # a click deselects
    assert not doc.has_selection()
    doc.undo.undo()
    assert doc.selection.contains(QPointF(30, 30))
    sel = qt_images.gray_array(doc.selection_mask())
    assert sel[30, 30] == 255 and sel[20, 20] == 0 and sel[5, 5] == 0


def test_lasso_selection_follows_the_drawn_shape_and_is_clipped_to_the_canvas():
    doc = Document(100, 100)
    stroke(LassoSelectTool(doc, BrushSettings()), [(50, 10), (120, 90), (-20, 90), (50, 10)])
    assert doc.selection.contains(QPointF(50, 60))
    assert not doc.selection.contains(QPointF(10, 20))          # outside the triangle
    assert doc.selection_bounds().right() <= 99 and doc.selection_bounds().left() >= 0


# --------------------------------------------------------------------------- project file


def make_project(tmp_path):
    doc = Document(64, 48)
    stroke(BrushTool(doc, BrushSettings(size=6, hardness=1.0, color=QColor(0, 0, 255))), [(5, 5), (60, 40)])
    stroke(MaskBrushTool(doc, BrushSettings(mask_size=20)), [(32, 24)])
    path = QPainterPath()
    path.addRect(QRectF(8, 8, 20, 10))
    doc.undo.push(SelectionCommand(doc, path))
    stroke(BrushTool(doc, BrushSettings(size=6, hardness=1.0, color=QColor(255, 0, 0))), [(5, 40), (60, 5)])
    doc.undo.undo()                                               # the red stroke is on the redo side
    file = tmp_path / "work.impasto"
    project_file.save_project(doc, file, {"prompt": "a red circle", "steps": 7})
    return doc, file


def test_project_round_trip_keeps_layers_mask_selection_settings_and_history(tmp_path):
    doc, file = make_project(tmp_path)
    assert not doc.is_modified()
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".part")]
    loaded, settings, warnings = project_file.load_project(file)
    assert warnings == []
    assert settings["prompt"] == "a red circle" and settings["steps"] == 7
    assert (loaded.width, loaded.height) == (64, 48)
    assert np.array_equal(rgba(loaded), rgba(doc))
    assert np.array_equal(loaded.mask_array(), doc.mask_array())
    assert loaded.selection_bounds() == QRect(8, 8, 20, 10)
    assert loaded.undo.count() == 4 and loaded.undo.index() == 3 and not loaded.is_modified()
    loaded.undo.redo()                                            # the red stroke comes back
    assert tuple(rgba(loaded)[40, 5][:3]) == (255, 0, 0)
    for _ in range(4):
        loaded.undo.undo()
    assert layer_untouched(loaded) and not loaded.has_mask() and not loaded.has_selection()


def test_project_with_damaged_history_opens_its_picture_and_warns(tmp_path):
    doc, file = make_project(tmp_path)
    with zipfile.ZipFile(file) as zf:
        manifest = json.loads(zf.read("manifest.json"))
        blobs = {n: zf.read(n) for n in zf.namelist() if n != "manifest.json"}
    manifest["history"]["commands"][0]["before"] = "pixels/missing.png"
    with zipfile.ZipFile(file, "w") as zf:
        zf.writestr("manifest.json", json.dumps(manifest))
        for n, data in blobs.items():
            zf.writestr(n, data)
    loaded, _settings, warnings = project_file.load_project(file)
    assert len(warnings) == 1 and "history" in warnings[0]
    assert np.array_equal(rgba(loaded), rgba(doc)) and loaded.undo.count() == 0


@pytest.mark.parametrize("content", [b"", b"not a zip at all", b"PK\x03\x04broken"])
def test_damaged_project_is_a_typed_error(tmp_path, content):
    file = tmp_path / "bad.impasto"
    file.write_bytes(content)
    with pytest.raises(project_file.ProjectFileError) as err:
        project_file.load_project(file)
    assert "bad.impasto" in str(err.value)


def test_failed_save_leaves_the_previous_file_intact(tmp_path, monkeypatch):
    doc, file = make_project(tmp_path)
    original = file.read_bytes()
    stroke(BrushTool(doc, BrushSettings(size=30)), [(30, 30)])

    def refuse(*_a):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", refuse)
    with pytest.raises(OSError):
        project_file.save_project(doc, file)
    assert file.read_bytes() == original
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".part")]
    assert doc.is_modified()


# --------------------------------------------------------------------------- image files


def png_with_header(width: int, height: int) -> bytes:
    """A PNG whose header declares ``width`` x ``height`` but whose data is a few bytes."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 6, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


def test_read_image_refuses_damaged_and_oversize_files_with_readable_messages(tmp_path):
    good = tmp_path / "good.png"
    img = QImage(30, 20, QImage.Format.Format_RGB32)
    img.fill(QColor(10, 20, 30))
    img.save(str(good))
    assert image_io.read_image(good).size().width() == 30
    truncated = tmp_path / "truncated.png"
    truncated.write_bytes(good.read_bytes()[:40])
    garbage = tmp_path / "garbage.png"
    garbage.write_bytes(b"\x00\x01 this is not a picture" * 10)
    huge = tmp_path / "huge.png"
    huge.write_bytes(png_with_header(100_000, 100_000))
    for path, words in ((truncated, "damaged"), (garbage, "not an image"), (huge, "100000×100000")):
        with pytest.raises(image_io.ImageFileError) as err:
            image_io.read_image(path)
        assert path.name in str(err.value) and words in str(err.value)


# --------------------------------------------------------------------------- job plans and staging


def _window_mask(plan):
    m = plan.request.mask
    return np.frombuffer(m.data, np.uint8).reshape(m.height, m.width)


def test_inpaint_plan_needs_a_mask_or_selection_and_sends_the_right_mask():
    doc = Document(256, 256)
    with pytest.raises(job_plans.PlanError) as err:
        job_plans.plan_inpaint(doc, GenerationSettings(prompt="x"))
    assert "mask brush" in str(err.value)
    path = QPainterPath()
    path.addRect(QRectF(96, 96, 16, 16))
    doc.undo.push(SelectionCommand(doc, path))
    plan = job_plans.plan_inpaint(doc, GenerationSettings(prompt="x", padding=4, mask_blur=2))
    ox, oy = plan.target.left(), plan.target.top()
    mask = _window_mask(plan)
    assert plan.target != doc.rect() and plan.target.contains(QRect(96, 96, 16, 16))   # only a window is sent
    assert mask[100 - oy, 100 - ox] == 255 and mask[0, 0] == 0
    assert plan.request.kind == "edit" and plan.request.padding == 4
    assert plan.preview_rect == QRect(90, 90, 28, 28)              # box + blur + padding
    stroke(MaskBrushTool(doc, BrushSettings(mask_size=8, mask_hardness=1.0)), [(200, 200)])
    plan = job_plans.plan_inpaint(doc, GenerationSettings(prompt="x"))
    ox, oy = plan.target.left(), plan.target.top()
    mask = _window_mask(plan)
    assert mask[200 - oy, 200 - ox] == 255                          # a painted mask wins over the selection
    assert not plan.target.contains(QRect(96, 96, 16, 16)) or mask[100 - oy, 100 - ox] == 0


def test_refine_of_a_selection_is_the_planners_edit_job():
    """Refine selection is the same edit job as in Krita and GIMP (outside pixels come back untouched)."""
    doc = Document(64, 64)
    path = QPainterPath()
    path.addEllipse(QRectF(8, 8, 32, 24))
    doc.undo.push(SelectionCommand(doc, path))
    plan = job_plans.plan_refine(doc, GenerationSettings(prompt="x", mask_blur=0, strength=0.4))
    assert plan.request.kind == "edit" and plan.request.strength == pytest.approx(0.4)
    assert plan.request.mask_blur == 0 and plan.target.contains(QRect(8, 8, 32, 24))
    mask = _window_mask(plan)
    assert mask[20 - plan.target.top(), 24 - plan.target.left()] == 255
    patch = np.zeros((24, 32, 4), np.uint8)
    patch[..., 0], patch[..., 3] = 255, 255
    full = np.zeros((plan.request.init_image.height, plan.request.init_image.width, 4), np.uint8)
    result = Result(images=[WireImage(full.shape[1], full.shape[0], full.tobytes())], seeds=[5],
                    patches=[Patch(8 - plan.target.left(), 8 - plan.target.top(), WireImage(32, 24, patch.tobytes()))])
    (cand,) = job_plans.candidates_from_result(plan, result)
    assert cand.rect == QRect(8, 8, 32, 24) and cand.seed == 5


def test_bad_values_are_reported_with_their_field_before_sending():
    with pytest.raises(job_plans.PlanError) as err:
        job_plans.plan_generate(Document(64, 64), GenerationSettings(cfg_scale=99))
    assert err.value.field == "cfg_scale"


def test_generate_asks_for_the_canvas_size():
    plan = job_plans.plan_generate(Document(640, 480), GenerationSettings(prompt="x"))
    assert (plan.request.width, plan.request.height) == (640, 480) and plan.request.kind == "txt2img"


def test_preview_of_an_inpaint_region_takes_the_previews_aspect_on_the_canvas():
    from impasto.protocol.region import fit_aspect

    canvas = (0, 0, 200, 100)
    assert fit_aspect((50, 20, 90, 60), 128, 64, canvas) == (30, 20, 110, 60)
    assert fit_aspect((0, 0, 40, 40), 64, 128, canvas) == (0, 0, 40, 80)


def test_inpaint_results_land_as_patches_and_accepting_is_one_undoable_layer():
    doc = Document(64, 64)
    stroke(MaskBrushTool(doc, BrushSettings(mask_size=10, mask_hardness=1.0)), [(30, 30)])
    plan = job_plans.plan_inpaint(doc, GenerationSettings(prompt="x", seed=3))
    patch = np.zeros((12, 12, 4), np.uint8)
    patch[..., 1], patch[..., 3] = 255, 200
    full = np.full((64, 64, 4), 255, np.uint8)
    result = Result(images=[WireImage(64, 64, full.tobytes())] * 2, seeds=[3, 4],
                    patches=[Patch(24, 24, WireImage(12, 12, patch.tobytes()))] * 2)
    cands = job_plans.candidates_from_result(plan, result)
    assert [c.rect for c in cands] == [QRect(24, 24, 12, 12)] * 2 and [c.seed for c in cands] == [3, 4]
    staging = StagingArea()
    staging.add(cands)
    staging.next()
    assert staging.current().seed == 4
    staging.next()
    assert staging.current().seed == 3                              # wraps around
    layer = staging.accept_current(doc)
    assert len(doc.layers) == 2 and doc.layers[-1] is layer and len(staging) == 1
    assert layer.info["seed"] == 3 and layer.info["settings"]["prompt"] == "x"
    px = qt_images.rgba_array(layer.image)
    assert px[30, 30, 3] == 200 and px[5, 5, 3] == 0
    doc.undo.undo()
    assert len(doc.layers) == 1
    doc.undo.redo()
    assert doc.layers[-1].id == layer.id
    assert doc.mask_array()[30, 30] == 255



PAINT_A_LOT = """
import os
os.environ["QT_QPA_PLATFORM"] = "offscreen"
from impasto.desktop import headless
headless.application()
from PySide6.QtCore import QPointF, Qt
from impasto.desktop.document import Document
from impasto.desktop.tools import BrushSettings, BrushTool
doc = Document(64, 64)
tool = BrushTool(doc, BrushSettings(size=4))
for i in range(40):
    tool.press(QPointF(1, 1), Qt.KeyboardModifier.NoModifier)
    for x in range(60):
        tool.move(QPointF(x, (x * 7 + i) % 64))
    tool.release(QPointF(60, 60))
print("painted", doc.undo.count())
"""


def test_a_long_painting_session_does_not_kill_the_interpreter():
    """PySide6 6.12.0 on Python 3.11 drops a reference to None per void call (see desktop/qt_compat.py).

    Forty strokes of sixty mouse moves make tens of thousands of such calls: enough to free ``None``
    and abort CPython when nothing protects it.  Run in a child process, which is what would die.
    """
    proc = subprocess.run([sys.executable, "-c", PAINT_A_LOT], capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0 and "painted 40" in proc.stdout, proc.stderr[-2000:]
