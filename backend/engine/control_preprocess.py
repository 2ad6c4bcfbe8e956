"""Preprocessors: what a control layer's pixels become before a control model sees them.

The ones that need no downloaded weights run here, in numpy (no OpenCV in
the package): every one takes the layer as an HxWx4 RGBA uint8 array and
returns an HxWx3 uint8 control map, white marks on black, as ControlNet's
training maps are.

* ``raw``: the layer as it is (transparency over black) - a map the artist
  made or a depth / pose picture from another tool;
* ``canny``: Canny edges as OpenCV finds them (3x3 Sobel, L1 gradient, thin
  to the ridge, hysteresis between A1111's low / high thresholds 100 / 200);
* ``scribble``: a painted layer thresholded to strokes - on a layer with
  transparency every painted pixel (alpha >= 50 %) is a stroke, on an opaque
  one every dark pixel (luminance < 50 %);
* ``softedge``: the gradient magnitude of the blurred picture, normalised
  (soft, wide edges, HED-like);
* ``lineart``: the layer as it is, inverted to white lines on black (an opaque
  drawing: 255 - luminance; a layer with transparency: its coverage).

``depth`` runs a depth estimator the artist put in the models folder
(``annotators/depth/``: a transformers depth-estimation folder such as
Intel/dpt-hybrid-midas or Depth-Anything-V2-Small-hf; loaded once, kept),
normalised to near = white, as MiDaS maps are.  ``pose`` runs a ViTPose
keypoint estimator the artist put in ``annotators/pose/`` (and, when present, a
person detector in ``annotators/person/``) and draws the figures as the
OpenPose skeleton maps pose ControlNets were trained on (:mod:`.control_pose`).
Without the weights both are a typed error saying which weights and where, or
to send a map made elsewhere as ``raw``.
"""
from __future__ import annotations

from collections import deque
from pathlib import Path
from typing import Callable, Dict, Optional

import numpy as np
from PIL import Image

from impasto.protocol.messages import ErrorCode

from .errors import EngineError

CANNY_LOW, CANNY_HIGH = 100.0, 200.0


def _luminance(rgba: np.ndarray, background: float = 255.0) -> np.ndarray:
    """Luminance 0..255 (float) of the layer flattened over ``background``."""
    rgb = rgba[..., :3].astype(np.float32)
    a = rgba[..., 3:4].astype(np.float32) / 255.0
    flat = rgb * a + background * (1.0 - a)
    return flat @ np.array([0.299, 0.587, 0.114], np.float32)


def _has_transparency(rgba: np.ndarray) -> bool:
    return bool(rgba[..., 3].min() < 255)


def _gray3(values: np.ndarray) -> np.ndarray:
    v = np.clip(values, 0, 255).astype(np.uint8)
    return np.repeat(v[..., None], 3, axis=2)


def _blur(gray: np.ndarray, sigma: float) -> np.ndarray:
    """Separable Gaussian blur in float (PIL blurs only 8-bit modes), edges repeated."""
    r = max(1, int(3 * sigma + 0.5))
    x = np.arange(-r, r + 1, dtype=np.float32)
    k = np.exp(-0.5 * (x / sigma) ** 2)
    k /= k.sum()
    out = gray.astype(np.float32)
    for axis in (0, 1):
        pad = [(0, 0), (0, 0)]
        pad[axis] = (r, r)
        p = np.pad(out, pad, mode="edge")
        n = out.shape[axis]
        out = sum(k[i] * np.take(p, np.arange(i, i + n), axis=axis) for i in range(2 * r + 1))
    return out


def _sobel(gray: np.ndarray):
    p = np.pad(gray, 1, mode="edge")
    gx = (p[:-2, 2:] + 2 * p[1:-1, 2:] + p[2:, 2:]) - (p[:-2, :-2] + 2 * p[1:-1, :-2] + p[2:, :-2])
    gy = (p[2:, :-2] + 2 * p[2:, 1:-1] + p[2:, 2:]) - (p[:-2, :-2] + 2 * p[:-2, 1:-1] + p[:-2, 2:])
    return gx, gy


def raw(rgba: np.ndarray) -> np.ndarray:
    rgb = rgba[..., :3].astype(np.float32) * (rgba[..., 3:4].astype(np.float32) / 255.0)
    return np.clip(rgb + 0.5, 0, 255).astype(np.uint8)


def canny(rgba: np.ndarray, low: float = CANNY_LOW, high: float = CANNY_HIGH) -> np.ndarray:
    gray = _luminance(rgba)               # as OpenCV's Canny: no blur of its own, 3x3 Sobel at full gain
    gx, gy = _sobel(gray)
    mag = np.abs(gx) + np.abs(gy)         # OpenCV's default L1 gradient: the thresholds mean what they mean there
    # thin to the ridge: keep a pixel that is the largest along its gradient direction (4 directions)
    angle = (np.rad2deg(np.arctan2(gy, gx)) + 180.0) % 180.0
    p = np.pad(mag, 1)
    h, w = mag.shape
    c = p[1:-1, 1:-1]
    neighbours = {
        0: (p[1:-1, :-2], p[1:-1, 2:]),      # horizontal gradient: left / right
        45: (p[:-2, 2:], p[2:, :-2]),
        90: (p[:-2, 1:-1], p[2:, 1:-1]),
        135: (p[:-2, :-2], p[2:, 2:]),
    }
    bins = np.select([(angle < 22.5) | (angle >= 157.5), angle < 67.5, angle < 112.5], [0, 45, 90], 135)
    keep = np.zeros((h, w), bool)
    for b, (n1, n2) in neighbours.items():
        sel = bins == b
        keep |= sel & (c > n1) & (c >= n2)   # strict on one side (as OpenCV): a sharp step gives one line
    thin = np.where(keep, mag, 0.0)
    strong, weak = thin >= high, thin >= low
    # hysteresis: weak pixels 8-connected to a strong one
    out = strong.copy()
    queue = deque(zip(*np.nonzero(strong)))
    while queue:
        y, x = queue.popleft()
        for dy in (-1, 0, 1):
            for dx in (-1, 0, 1):
                yy, xx = y + dy, x + dx
                if 0 <= yy < h and 0 <= xx < w and weak[yy, xx] and not out[yy, xx]:
                    out[yy, xx] = True
                    queue.append((yy, xx))
    return _gray3(out * 255.0)


def scribble(rgba: np.ndarray) -> np.ndarray:
    if _has_transparency(rgba):
        strokes = rgba[..., 3] >= 128
    else:
        strokes = _luminance(rgba) < 128
    return _gray3(strokes * 255.0)


def softedge(rgba: np.ndarray) -> np.ndarray:
    gray = _blur(_luminance(rgba), 2.0)
    gx, gy = _sobel(gray)
    mag = np.hypot(gx, gy)
    top = float(mag.max())
    if top <= 0:
        return _gray3(np.zeros_like(mag))
    soft = np.power(mag / top, 0.5) * 255.0     # lift faint edges, as HED's soft maps look
    return _gray3(_blur(soft, 1.0))


def lineart(rgba: np.ndarray) -> np.ndarray:
    if _has_transparency(rgba):
        lum = rgba[..., :3].astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)
        # a transparent layer's lines are where it is painted; light lines on it still count as lines
        return _gray3(rgba[..., 3].astype(np.float32) * np.maximum(1.0 - lum / 255.0, 0.5) * 2.0)
    return _gray3(255.0 - _luminance(rgba))


PREPROCESSORS: Dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "raw": raw, "canny": canny, "scribble": scribble, "softedge": softedge, "lineart": lineart,
}
# control types whose maps need estimator weights: what the artist must install
NEEDS_WEIGHTS = {
    "depth": "a depth estimator (e.g. the transformers folder of Intel/dpt-hybrid-midas or "
             "depth-anything/Depth-Anything-V2-Small-hf)",
    "pose": "a ViTPose keypoint estimator (the transformers folder of e.g. usyd-community/vitpose-base-simple; "
            "optionally a person detector such as PekingU/rtdetr_r50vd_coco_o365 in annotators/person for "
            "several figures) to draw the OpenPose skeleton map",
}


_ESTIMATORS: Dict[str, tuple] = {}     # folder -> (modification time, processor, model): loaded once


def estimator_dir(kind: str, models_dir: Optional[Path]) -> Path:
    return Path(models_dir or "models") / "annotators" / kind


def depth(rgba: np.ndarray, folder: Path, device=None) -> np.ndarray:
    """A depth map (near = white) from the transformers depth estimator in ``folder``."""
    import torch
    from transformers import AutoImageProcessor, AutoModelForDepthEstimation

    key = str(folder)
    stamp = (folder / "config.json").stat().st_mtime_ns
    held = _ESTIMATORS.get(key)
    if held is None or held[0] != stamp:
        processor = AutoImageProcessor.from_pretrained(key, local_files_only=True)
        model = AutoModelForDepthEstimation.from_pretrained(key, local_files_only=True).eval()
        held = _ESTIMATORS[key] = (stamp, processor, model)
    _, processor, model = held
    model = model.to(device or "cpu")
    rgb = Image.fromarray(_flat_rgb(rgba), "RGB")
    with torch.no_grad():
        inputs = processor(images=rgb, return_tensors="pt").to(device or "cpu")
        pred = model(**inputs).predicted_depth
        pred = torch.nn.functional.interpolate(pred[:, None].float(), size=rgba.shape[:2], mode="bicubic",
                                               align_corners=False)[0, 0].cpu().numpy()
    lo, hi = float(pred.min()), float(pred.max())
    norm = (pred - lo) / (hi - lo) * 255.0 if hi > lo else np.zeros_like(pred)
    return _gray3(norm)


def _flat_rgb(rgba: np.ndarray) -> np.ndarray:
    """The layer flattened over white (what an estimator of photographs expects to see)."""
    a = rgba[..., 3:4].astype(np.float32) / 255.0
    return np.clip(rgba[..., :3].astype(np.float32) * a + 255.0 * (1.0 - a) + 0.5, 0, 255).astype(np.uint8)


def preprocess(kind: str, rgba: np.ndarray, field: str, models_dir: Optional[Path] = None,
               device=None) -> np.ndarray:
    """The control map for a layer (HxWx4 RGBA uint8) -> HxWx3 uint8; typed errors name ``field``."""
    fn = PREPROCESSORS.get(kind)
    if fn is not None:
        return fn(np.ascontiguousarray(rgba))
    if kind == "depth" and (estimator_dir(kind, models_dir) / "config.json").is_file():
        try:
            return depth(np.ascontiguousarray(rgba), estimator_dir(kind, models_dir), device)
        except Exception as exc:
            raise EngineError(ErrorCode.BAD_FIELD, f"{field}: the depth estimator in "
                              f"{estimator_dir(kind, models_dir)} failed: {exc}", field) from exc
    if kind == "pose" and (estimator_dir(kind, models_dir) / "config.json").is_file():
        from .control_pose import pose

        try:
            return pose(Image.fromarray(_flat_rgb(np.ascontiguousarray(rgba)), "RGB"),
                        estimator_dir(kind, models_dir), estimator_dir("person", models_dir), device or "cpu")
        except Exception as exc:
            raise EngineError(ErrorCode.BAD_FIELD, f"{field}: the pose estimator in "
                              f"{estimator_dir(kind, models_dir)} failed: {exc}", field) from exc
    if kind in NEEDS_WEIGHTS:
        fix = f"put one in {estimator_dir(kind, models_dir)}"
        raise EngineError(ErrorCode.BAD_FIELD,
                          f"{field}: the {kind} preprocessor needs {NEEDS_WEIGHTS[kind]}: {fix}; or make the "
                          f"{kind} map with another tool and send it with type raw", field)
    raise EngineError(ErrorCode.BAD_FIELD, f"{field}: unknown control type {kind!r}", field)
