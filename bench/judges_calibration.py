"""Calibration of the strict shape judges (``backend/starter/judges.py``), as a result file.

    python bench/judges_calibration.py [--n 30] [--blobs 200] [--seed 0] [--json bench/results/judges_calibration.json]

For every detector: the share of clean renders of each family (64 px at the shipped
starter's sizes, 128 px at the scenes' small and big sizes, random colours, rotation
within +-15 deg) and of shapeless blobs it says yes to.  The test
(``tests/test_starter_judges.py``) asserts the same on a smaller sample.
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=30, help="clean renders per family")
    ap.add_argument("--blobs", type=int, default=200)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)
    from impasto.backend.starter import families as FAM
    from impasto.backend.starter import judges as J

    t0 = time.perf_counter()
    rates = J.calibrate(args.n, args.blobs, args.seed)
    summary = {det: {"own": r[det], "max_other_family": max(v for k, v in r.items() if k not in (det, "blob")),
                     "blob": r["blob"]} for det, r in rates.items()}
    any_blob = sum(r["blob"] for r in rates.values())
    report = {"bench": "judges_calibration", "command": "python bench/judges_calibration.py " + " ".join(argv or sys.argv[1:]),
              "machine": f"{platform.machine()} CPU", "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
              "seed": args.seed, "renders_per_family": args.n, "blobs": args.blobs,
              "min_iou": J.MIN_IOU, "min_iou_by_family": J.MIN_IOU_BY_FAMILY, "margin": J.MARGIN,
              "families": list(FAM.FAMILIES), "summary": summary,
              "blobs_accepted_by_any_detector": round(any_blob, 4), "rates": rates,
              "seconds": round(time.perf_counter() - t0, 1)}
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    for det, s in summary.items():
        print(f"{det:11s} own {s['own']:.3f}  other families max {s['max_other_family']:.3f}  blobs {s['blob']:.3f}")
    return report


if __name__ == "__main__":
    main()
