"""Calibrate a trained control model's output gain, once, in its weights.

    python -m impasto.backend.starter.calibrate_control --model DIR --gain 1.5 --why "..."

A ControlNet adds its residuals to the UNet's skip connections through a last 1x1
"zero" convolution per resolution (``controlnet_down_blocks``, ``controlnet_mid_block``),
scaled by the unit's strength.  A small control model trained for an hour on a CPU can
under-shoot: the shape follows the drawing, but not all the way.  Scaling those last
convolutions' weights and biases by ``gain`` is exactly the same as running every unit
at ``gain`` x its strength (``W x + b`` -> ``gain (W x + b)``), so this is a calibration
of the shipped model, not a new one: strength 0 still leaves the unit out (bit-identical
to no control), and an artist's strength 1 means "the model's calibrated full effect".

The gain is chosen on *tuning* drawings (``bench/starter_control_eval.py --seed 555000001``:
a seed stream never used for the held-out figures) and recorded in the folder's
``impasto.json`` (``output_gain``: the gain, why, and the running product if calibrated
again).  The folder is rewritten atomically (a temporary folder renamed into place), in
the precision it was saved in.
"""
from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path
from typing import Optional, Sequence

import torch

from impasto.backend.engine.model_card import read_card, write_card

OUTPUT_LAYERS = ("controlnet_down_blocks.", "controlnet_mid_block.")


def scale_outputs(controlnet, gain: float) -> int:
    """Multiply the residual outputs' weights and biases by ``gain`` in place; returns the tensors scaled."""
    n = 0
    with torch.no_grad():
        for name, param in controlnet.named_parameters():
            if name.startswith(OUTPUT_LAYERS):
                param.mul_(gain)
                n += 1
    return n


def saved_dtype(folder: Path) -> torch.dtype:
    """The precision the folder's weights were saved in (float16 for the shipped model)."""
    from safetensors import safe_open

    files = sorted(Path(folder).glob("*.safetensors"))
    if not files:
        raise ValueError(f"{folder} holds no safetensors weights")
    with safe_open(str(files[0]), framework="pt") as fh:
        return fh.get_tensor(next(iter(fh.keys()))).dtype


def calibrate(folder: Path, gain: float, why: str = "") -> dict:
    """Rewrite the control model in ``folder`` with its outputs scaled by ``gain``; returns its new ``output_gain``."""
    from diffusers import ControlNetModel

    from .run_tools import replace_folder

    if not (gain > 0):
        raise ValueError(f"gain must be positive, not {gain}")
    folder = Path(folder)
    meta = read_card(folder, required=True)
    dtype = saved_dtype(folder)
    net = ControlNetModel.from_pretrained(str(folder), torch_dtype=torch.float32)
    if scale_outputs(net, gain) == 0:
        raise ValueError(f"{folder} has no ControlNet output layers ({', '.join(OUTPUT_LAYERS)})")
    earlier = meta.get("output_gain") or {}
    record = {"gain": gain, "total": round(float(earlier.get("total", 1.0)) * gain, 6), "why": why,
              "date": time.strftime("%Y-%m-%d", time.gmtime())}
    if earlier:
        record["earlier"] = earlier
    meta["output_gain"] = record
    tmp = folder.with_name(folder.name + ".part")
    shutil.rmtree(tmp, ignore_errors=True)
    net.to(dtype).save_pretrained(str(tmp), safe_serialization=True)
    write_card(tmp, meta)
    for f in tmp.iterdir():
        f.chmod(0o644)          # a shipped asset: readable like the model's other files
    replace_folder(tmp, folder)
    return record


def main(argv: Optional[Sequence[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", type=Path, required=True, help="the control model folder (rewritten in place)")
    ap.add_argument("--gain", type=float, required=True)
    ap.add_argument("--why", default="", help="what the gain was chosen on (kept in impasto.json)")
    args = ap.parse_args(argv)
    print(json.dumps(calibrate(args.model, args.gain, args.why)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
