"""``bench/gpu.py --dry-run``: the GPU benchmark's own code, on the CPU with tiny models, end to end.

The GPU run is rare (a lent machine, minutes of budget); this keeps the script
from rotting between runs: every stage (model building, both daemons, raw
pipelines, the cancel and preview measures, the 4096-px edit's code path,
both training loops, the report) runs here with tiny SD1.5 / SDXL models.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parent.parent / "bench" / "gpu.py"


def test_gpu_bench_dry_run_runs_every_stage(tmp_path):
    out, md = tmp_path / "gpu.json", tmp_path / "gpu.md"
    env = dict(os.environ, OMP_NUM_THREADS="1", IMPASTO_HOME=str(tmp_path / "home"))
    # as on a GPU machine: no IMPASTO_SECRET_FILE (the tests' conftest sets one; with it, a script whose
    # client looked for the daemons' secret in the wrong home still got in)
    env.pop("IMPASTO_SECRET_FILE", None)
    proc = subprocess.run([sys.executable, str(SCRIPT), "--dry-run", "--json", str(out), "--md", str(md)],
                          env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(out.read_text())
    assert report["dry_run"] is True and report["machine"]["gpu"] is None
    for family in ("sd15", "sdxl"):
        r = report["families"][family]
        assert r["raw"]["its"] > 0 and r["default"]["its"] > 0 and r["fast"]["its"] > 0, family
        assert r["default"]["first_preview_step"] >= 1 and r["default"]["first_preview_s"] > 0
        assert r["default"]["cancel_extra_steps"] >= 1      # the step in flight when the cancel lands runs
        assert "channels_last" in r["fast"]["fast_path"] and "channels_last" not in r["default"]["fast_path"]
    assert report["edit"]["total_s"] > 0 and report["edit"]["region"][2] < report["edit"]["canvas"]
    t = report["training"]
    assert t["impasto"]["s_per_step"] > 0 and t["recipe"]["s_per_step"] > 0
    assert t["impasto"]["batch"] == t["recipe"]["batch"]
    assert md.read_text().startswith("**DRY RUN on the CPU")


def test_gpu_bench_refuses_to_run_without_a_gpu_unless_dry():
    import torch

    if torch.cuda.is_available():
        return
    proc = subprocess.run([sys.executable, str(SCRIPT)], capture_output=True, text=True, timeout=300)
    assert proc.returncode != 0 and "--dry-run" in proc.stderr
