"""The ``pose`` preprocessor: ViTPose keypoints drawn as the OpenPose skeleton map pose ControlNets read.

The drawing is checked pixel by pixel on known keypoints; the estimator path runs a real (tiny, random)
transformers ViTPose and DETR person detector from a models folder, through ``preprocess`` and the engine.
"""
from __future__ import annotations

import shutil

import numpy as np
import pytest
from PIL import Image as PILImage

from impasto.backend.engine import control_pose
from impasto.backend.engine.control_pose import COLOURS, LIMBS, draw, openpose_points


def coco_figure() -> np.ndarray:
    """A standing figure in COCO-17 order, every point seen (x, y, score)."""
    pts = {0: (50, 20), 1: (47, 17), 2: (53, 17), 3: (44, 19), 4: (56, 19), 5: (40, 35), 6: (60, 35),
           7: (35, 55), 8: (65, 55), 9: (32, 75), 10: (68, 75), 11: (43, 75), 12: (57, 75),
           13: (42, 100), 14: (58, 100), 15: (41, 120), 16: (59, 120)}
    return np.array([[x, y, 0.9] for _, (x, y) in sorted(pts.items())], np.float32)


def test_openpose_order_and_neck():
    coco = coco_figure()
    op = openpose_points(coco)
    assert op.shape == (18, 3)
    assert tuple(op[1, :2]) == (50, 35)                       # the neck: the shoulders' middle
    assert tuple(op[2, :2]) == (60, 35) and tuple(op[5, :2]) == (40, 35)   # right shoulder is COCO 6
    assert tuple(op[10, :2]) == (59, 120) and tuple(op[17, :2]) == (44, 19)
    coco[5, 2] = 0.1                                         # one shoulder unseen: no neck
    assert openpose_points(coco)[1, 2] == 0


def test_the_map_draws_sticks_and_dots_in_openpose_colours():
    op = openpose_points(coco_figure())
    m = draw([op], 140, 100)
    assert m.shape == (140, 100, 3) and m.dtype == np.uint8
    assert tuple(m[20, 50]) == COLOURS[0]                    # the nose's dot, red
    assert tuple(m[120, 59]) == COLOURS[10]                  # right ankle's dot
    # the middle of the right upper arm (limb 2: points 2-3): its colour at 60 %
    k = LIMBS.index((2, 3))
    (x0, y0), (x1, y1) = op[2, :2], op[3, :2]
    assert tuple(m[int((y0 + y1) / 2), int((x0 + x1) / 2)]) == tuple(int(c * 0.6) for c in COLOURS[k])
    assert m[5:12, 5:12].max() == 0 and m[135:, :].max() == 0   # black elsewhere
    unseen = op.copy()
    unseen[4, 2] = 0.0                                       # the right wrist unseen: no dot, no forearm
    m2 = draw([unseen], 140, 100)
    assert m2[75, 68].max() == 0 and tuple(m[75, 68]) == COLOURS[4]


@pytest.fixture
def pose_models(tmp_path):
    from impasto.backend.tooling.tiny_model import build_tiny_pose_estimator

    build_tiny_pose_estimator(tmp_path / "annotators" / "pose")
    return tmp_path


def figure_layer(h=96, w=72) -> np.ndarray:
    rgba = np.zeros((h, w, 4), np.uint8)
    rgba[10:86, 30:42] = (40, 40, 40, 255)
    return rgba


def test_pose_runs_a_vitpose_estimator_from_the_models_folder(pose_models, monkeypatch):
    from impasto.backend.engine.control_preprocess import preprocess

    monkeypatch.setattr(control_pose, "MIN_SCORE", 0.0)      # a random estimator is never sure: draw every point
    m = preprocess("pose", figure_layer(), "control[0].type", pose_models)
    assert m.shape == (96, 72, 3) and m.max() > 0
    figures = control_pose.keypoints(PILImage.fromarray(figure_layer()[..., :3]), pose_models / "annotators" / "pose",
                                     [[0.0, 0.0, 72.0, 96.0]])
    assert len(figures) == 1 and figures[0].shape == (18, 3)
    seen = figures[0][figures[0][:, 2] > 0]
    assert len(seen) > 0 and (seen[:, 0] >= 0).all() and (seen[:, 0] < 72).all()     # points past the edge are dropped
    assert (seen[:, 1] >= 0).all() and (seen[:, 1] < 96).all()
    # unsure points are left out, as OpenPose leaves out joints it cannot see
    monkeypatch.setattr(control_pose, "MIN_SCORE", 2.0)
    assert preprocess("pose", figure_layer(), "control[0].type", pose_models).max() == 0


def test_a_person_detector_gives_one_figure_per_person(pose_models, monkeypatch):
    from impasto.backend.tooling.tiny_model import build_tiny_person_detector

    folder = pose_models / "annotators" / "person"
    build_tiny_person_detector(folder)
    rgb = PILImage.fromarray(figure_layer()[..., :3])
    monkeypatch.setattr(control_pose, "MIN_PERSON_SCORE", 0.0)
    boxes = control_pose.person_boxes(rgb, folder)
    for x, y, w, h in boxes:
        assert -1 <= x and -1 <= y and x + w <= 73 and y + h <= 97 and w >= 2 and h >= 2
    assert len(control_pose.keypoints(rgb, pose_models / "annotators" / "pose", boxes)) == len(boxes)
    monkeypatch.setattr(control_pose, "MIN_PERSON_SCORE", 1.01)
    assert control_pose.person_boxes(rgb, folder) == []        # nobody found: an empty (black) map, not the whole layer


def test_a_detector_without_people_and_a_broken_estimator_are_typed_errors(pose_models):
    import json

    from impasto.backend.engine.control_preprocess import preprocess
    from impasto.backend.tooling.tiny_model import build_tiny_person_detector
    from impasto.protocol.messages import ErrorCode, ProtocolError

    folder = pose_models / "annotators" / "person"
    build_tiny_person_detector(folder)
    cfg = json.loads((folder / "config.json").read_text())
    cfg["id2label"], cfg["label2id"] = {"0": "dog", "1": "cat"}, {"dog": 0, "cat": 1}
    (folder / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ProtocolError) as err:
        preprocess("pose", figure_layer(), "control[0].type", pose_models)
    assert err.value.code == ErrorCode.BAD_FIELD and "person" in err.value.message
    assert err.value.field == "control[0].type"
    shutil.rmtree(folder)
    (pose_models / "annotators" / "pose" / "model.safetensors").write_bytes(b"not weights")
    (pose_models / "annotators" / "pose" / "config.json").touch()
    with pytest.raises(ProtocolError) as err:
        preprocess("pose", figure_layer(), "control[0].type", pose_models)
    assert "pose estimator" in err.value.message
