"""Run a bench that writes its own ``--json`` and keep the result with its provenance.

For benches that do not (yet) call ``results_io.write_result`` themselves: this runs the bench
as a child process, reads the JSON it wrote, and keeps it as ``bench/results/NAME.json`` with the
command (this whole command line, which reproduces the file), machine, load, torch threads,
seeds, baseline and date.  The page's table then comes from a builder in
``bench/report_tables.py``.

    python bench/keep.py NAME --baseline "what the ratios compare with" --seeds 1 2 5 [--threads 1] \\
        -- python bench/some_bench.py --model {tiny} --json {json}

``{json}`` is replaced by a temporary file the bench writes; ``{tiny}`` by the tiny test model,
built for the run in a temporary folder (``backend/tiny_model.py``).  The bench's own figures
are kept unchanged under ``figures``.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from results_io import _load, write_result  # noqa: E402


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if "--" not in argv:
        print("usage: keep.py NAME --baseline TEXT --seeds N... -- COMMAND... {json}", file=sys.stderr)
        return 2
    cut = argv.index("--")
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("name")
    ap.add_argument("--baseline", required=True)
    ap.add_argument("--seeds", type=int, nargs="*", required=True, help="every seed the bench uses ([] = none)")
    ap.add_argument("--threads", type=int, default=None,
                    help="torch threads of the run (default: the bench JSON's 'threads', else OMP_NUM_THREADS)")
    ap.add_argument("--note", action="append", default=[])
    ap.add_argument("--out-dir", type=Path, default=None, help="default bench/results")
    args = ap.parse_args(argv[:cut])
    command = argv[cut + 1:]
    if not command or not any("{json}" in c for c in command):
        print("the command must write its JSON to {json}", file=sys.stderr)
        return 2
    tmp = Path(tempfile.mkdtemp(prefix="impasto-keep-"))
    try:
        out = tmp / "result.json"
        subst = {"{json}": str(out)}
        if any("{tiny}" in c for c in command):
            from impasto.backend.tiny_model import build_tiny_model

            subst["{tiny}"] = str(build_tiny_model(tmp / "tiny"))
        real = []
        for c in command:
            for k, v in subst.items():
                c = c.replace(k, v)
            real.append(c)
        if real[0] in ("python", "python3"):
            real[0] = sys.executable
        load = _load()
        rc = subprocess.call(real, cwd=HERE.parent)
        if rc != 0:
            print(f"the bench failed (exit {rc}); nothing kept", file=sys.stderr)
            return rc
        figures = json.loads(out.read_text())
        threads = args.threads
        if threads is None:
            threads = figures.get("threads") if isinstance(figures, dict) else None
        if threads is None and os.environ.get("OMP_NUM_THREADS"):
            threads = int(os.environ["OMP_NUM_THREADS"])
        write_result(args.name, figures, baseline=args.baseline, seeds=args.seeds, threads=threads,
                     argv=[str(HERE / "keep.py"), *argv], load_at_start=load,
                     notes=[f"bench run as: {' '.join(command)}"] + args.note, out_dir=args.out_dir)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
