"""The ``pose`` preprocessor: a figure's keypoints drawn as an OpenPose skeleton map.

Pose ControlNets (``control_v11p_sd15_openpose``, the SDXL OpenPose models) were
trained on maps drawn one way: 18 body keypoints (OpenPose's COCO-18 order, the
neck being the middle of the shoulders), each limb a coloured stick, each joint
a coloured dot, on black.  What finds the keypoints is secondary; any estimator
of the 17 COCO keypoints gives them.  Impasto runs the one that needs no code
of its own beyond ``transformers``: **ViTPose** (``VitPoseForPoseEstimation``,
e.g. the ``usyd-community/vitpose-base-simple`` folder), which the artist puts in
the models folder as ``annotators/pose/``.

ViTPose is top-down: it reads one figure per box.  With a person detector in
``annotators/person/`` (any transformers object-detection folder whose labels
include ``person``, e.g. RT-DETR or DETR trained on COCO) every detected person
is posed; without one the whole layer is one figure's box - a pose layer is
usually one figure.  Keypoints below :data:`MIN_SCORE` (or outside the
picture) are left out, as OpenPose leaves out joints it cannot see.

Both networks are loaded once per folder (reloaded when the folder's
``config.json`` changes) and kept, as the depth estimator is.
"""
from __future__ import annotations

import colorsys
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
from PIL import Image, ImageDraw

MIN_SCORE = 0.3          # a keypoint less sure than this is not drawn
MIN_PERSON_SCORE = 0.5   # a detection less sure than this is not a person

# OpenPose's 18 body points from COCO's 17 (index into COCO; None = the neck, between the shoulders)
COCO_FOR_OPENPOSE: Tuple[Optional[int], ...] = (0, None, 6, 8, 10, 5, 7, 9, 12, 14, 16, 11, 13, 15, 2, 1, 4, 3)
# the sticks between OpenPose points, in the order (and so the colours) the pose models were trained on
LIMBS: Tuple[Tuple[int, int], ...] = (
    (1, 2), (1, 5), (2, 3), (3, 4), (5, 6), (6, 7), (1, 8), (8, 9), (9, 10),
    (1, 11), (11, 12), (12, 13), (1, 0), (0, 14), (14, 16), (0, 15), (15, 17))
# 18 fully saturated hues 20 degrees apart, red first: point i and limb i take colour i
COLOURS: Tuple[Tuple[int, int, int], ...] = tuple(
    tuple(int(round(c * 255)) for c in colorsys.hsv_to_rgb(i / 18.0, 1.0, 1.0)) for i in range(18))

_HELD: Dict[str, tuple] = {}   # folder -> (config.json mtime, processor, model)


def _load(folder: Path, kind: str):
    """(processor, model) for a transformers folder, loaded once and kept."""
    from transformers import AutoImageProcessor, AutoModelForObjectDetection, VitPoseForPoseEstimation

    key = str(folder)
    stamp = (folder / "config.json").stat().st_mtime_ns
    held = _HELD.get(key)
    if held is None or held[0] != stamp:
        processor = AutoImageProcessor.from_pretrained(key, local_files_only=True)
        cls = VitPoseForPoseEstimation if kind == "pose" else AutoModelForObjectDetection
        model = cls.from_pretrained(key, local_files_only=True).eval()
        held = _HELD[key] = (stamp, processor, model)
    return held[1], held[2]


def person_boxes(rgb: Image.Image, folder: Optional[Path], device="cpu") -> List[List[float]]:
    """Boxes (x, y, w, h) of the people in the picture; the whole picture when no detector is installed."""
    whole = [[0.0, 0.0, float(rgb.width), float(rgb.height)]]
    if folder is None or not (folder / "config.json").is_file():
        return whole
    import torch

    processor, model = _load(folder, "person")
    person_ids = {int(i) for i, name in model.config.id2label.items() if str(name).lower() == "person"}
    if not person_ids:
        raise ValueError(f"the detector in {folder} has no 'person' label")
    model = model.to(device)
    with torch.no_grad():
        out = model(**processor(images=rgb, return_tensors="pt").to(device))
    found = processor.post_process_object_detection(out, threshold=MIN_PERSON_SCORE,
                                                    target_sizes=[(rgb.height, rgb.width)])[0]
    boxes = []
    for (x0, y0, x1, y1), label in zip(found["boxes"].tolist(), found["labels"].tolist()):
        if int(label) in person_ids and x1 - x0 >= 2 and y1 - y0 >= 2:
            boxes.append([x0, y0, x1 - x0, y1 - y0])
    return boxes


def keypoints(rgb: Image.Image, folder: Path, boxes: List[List[float]], device="cpu") -> List[np.ndarray]:
    """Per figure, an (18, 3) array of OpenPose points: x, y in pixels and a score (0 = not seen)."""
    import torch

    if not boxes:
        return []
    processor, model = _load(folder, "pose")
    if int(model.config.num_labels) < 17:
        raise ValueError(f"the pose estimator in {folder} has {model.config.num_labels} keypoints; "
                         "a COCO body estimator has 17")
    model = model.to(device)
    with torch.no_grad():
        out = model(**processor(rgb, boxes=[boxes], return_tensors="pt").to(device))
    people = processor.post_process_pose_estimation(out, boxes=[boxes])[0]
    figures = []
    for person in people:
        coco = np.zeros((17, 3), np.float32)
        points, scores = person["keypoints"].cpu().numpy(), person["scores"].cpu().numpy()
        for label, xy, score in zip(person["labels"].tolist(), points, scores):
            inside = 0 <= xy[0] < rgb.width and 0 <= xy[1] < rgb.height   # ViTPose may guess past the edge
            if 0 <= int(label) < 17 and inside:
                coco[int(label)] = (xy[0], xy[1], score)
        figures.append(openpose_points(coco))
    return figures


def openpose_points(coco: np.ndarray) -> np.ndarray:
    """COCO-17 (x, y, score) -> OpenPose-18; the neck is the shoulders' middle when both are seen."""
    out = np.zeros((18, 3), np.float32)
    for i, src in enumerate(COCO_FOR_OPENPOSE):
        if src is not None:
            out[i] = coco[src]
        elif min(coco[5, 2], coco[6, 2]) >= MIN_SCORE:
            out[i] = ((coco[5, 0] + coco[6, 0]) / 2, (coco[5, 1] + coco[6, 1]) / 2, min(coco[5, 2], coco[6, 2]))
    return out


def draw(figures: Sequence[np.ndarray], height: int, width: int) -> np.ndarray:
    """The skeleton map (HxWx3 uint8): sticks then dots, in OpenPose's colours, on black."""
    canvas = Image.new("RGB", (width, height), (0, 0, 0))
    pen = ImageDraw.Draw(canvas)
    stick = max(2, round(min(width, height) / 128))
    dot = max(2, round(min(width, height) / 128))
    for points in figures:
        seen = points[:, 2] >= MIN_SCORE
        for (a, b), colour in zip(LIMBS, COLOURS):
            if seen[a] and seen[b]:
                # the pose models' training maps draw sticks at 60 % over black
                pen.line([tuple(points[a, :2]), tuple(points[b, :2])], tuple(int(c * 0.6) for c in colour),
                         width=2 * stick)
        for i, colour in enumerate(COLOURS):
            if seen[i]:
                x, y = points[i, :2]
                pen.ellipse([x - dot, y - dot, x + dot, y + dot], fill=colour)
    return np.asarray(canvas, dtype=np.uint8).copy()


def pose(rgb: Image.Image, pose_dir: Path, person_dir: Optional[Path], device="cpu") -> np.ndarray:
    """The OpenPose-style map of every figure in ``rgb`` (black when no figure is found)."""
    figures = keypoints(rgb, pose_dir, person_boxes(rgb, person_dir, device), device)
    return draw(figures, rgb.height, rgb.width)
