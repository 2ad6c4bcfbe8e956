"""One small JSON per published benchmark figure, so every number in docs/performance.md can be traced.

A benchmark ends with::

    from results_io import write_result          # bench/ is on sys.path when a bench runs as a script
    write_result("zmtp_transfer", figures,
                 seeds=[0], baseline="pyzmq DEALER (copy=False for large frames), same run",
                 settings={"size_mib": 64, "runs": 9},
                 tables={"main": {"columns": [...], "rows": [[...], ...]}})

and ``bench/results/zmtp_transfer.json`` then holds, next to the bench's own ``figures`` (raw
timings included: they are small), what a skeptic needs to re-check them: the exact command, the
machine (CPU model, cores, load average before and after), torch's thread count, the seeds, the
baseline and the date.  ``python bench/report.py`` renders the ``tables`` into the page between
``<!-- results:NAME -->`` markers; the prose around them is never touched.

Why tables live in the JSON: the bench that measured a number is the one place that knows what it
means, so it formats its own rows from its own figures; the page is then a pure function of the kept
files (``tests/test_performance_doc.py`` checks that it is).

Standard library only (torch's version and thread count are read if torch is already imported).
"""
from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

from impasto.protocol.atomic import write_atomic

RESULTS_DIR = Path(__file__).resolve().parent / "results"
REPO = Path(__file__).resolve().parent.parent
SCHEMA = 1


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _load() -> Optional[float]:
    try:
        return round(os.getloadavg()[0], 2)
    except (OSError, AttributeError):
        return None


def _git_commit() -> Optional[str]:
    try:
        out = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], cwd=REPO, capture_output=True, text=True,
                             timeout=10)
        # the result files and the page they feed do not make the measured code dirty
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", ".",
                                ":(exclude)bench/results", ":(exclude)docs/performance.md"], cwd=REPO,
                               capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    if out.returncode != 0:
        return None
    return out.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")


def machine(load_at_start: Optional[float] = None) -> Dict[str, Any]:
    """What ran the benchmark: enough to tell two machines (or two loads of one machine) apart."""
    info: Dict[str, Any] = {
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "arch": platform.machine(),
        "os": platform.platform(terse=True),
        "python": platform.python_version(),
        "load_avg_1min_start": load_at_start,
        "load_avg_1min_end": _load(),
    }
    torch = sys.modules.get("torch")
    if torch is not None:
        info["torch"] = torch.__version__
        info["gpu"] = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    else:  # a bench run as a child (keep.py) or one without torch: the installed version, no import
        try:
            from importlib.metadata import version

            info["torch"] = version("torch")
        except Exception:
            pass
    return info


def command(argv: Optional[Sequence[str]] = None) -> str:
    """The command line that reproduces the run, from the repository root."""
    argv = list(sys.argv if argv is None else argv)
    script = Path(argv[0]).resolve() if argv else None
    if script is not None and script.exists():
        try:
            argv[0] = str(script.relative_to(REPO))
        except ValueError:
            pass
    return "python " + " ".join(shlex.quote(a) for a in argv)


_START_LOAD = _load()  # this module is imported at the start of a bench: the load it started under


def write_result(name: str, figures: Dict[str, Any], *, baseline: str, seeds: Optional[List[int]] = None,
                 threads: Optional[int] = None, settings: Optional[Dict[str, Any]] = None,
                 tables: Optional[Dict[str, Dict[str, Any]]] = None, notes: Optional[List[str]] = None,
                 argv: Optional[Sequence[str]] = None, out_dir: Optional[Path] = None,
                 load_at_start: Optional[float] = None) -> Path:
    """Write ``bench/results/<name>.json`` atomically and return its path.

    * ``figures``: the bench's measurements (medians, ratios, the raw per-run times).
    * ``baseline``: what the ratios compare against, in words ("" when a figure has none).
    * ``seeds``: every seed the run used ([] if it draws no random numbers).
    * ``threads``: torch's intra-op threads; read from torch when it is imported and None is given.
    * ``tables``: ``{table_name: {"columns": [...], "rows": [[cell, ...], ...], "caption": "..."}}``,
      cells as they should read on the page (the bench formats its own numbers).
    * ``load_at_start``: the 1-minute load average when the measurement began; by default the one
      when this module was first imported (import it at the top of the bench).
    """
    if not name or "/" in name or name.startswith("."):
        raise ValueError(f"bad result name {name!r}")
    torch = sys.modules.get("torch")
    if threads is None and torch is not None:
        threads = torch.get_num_threads()
    for tname, table in (tables or {}).items():
        cols = table.get("columns") or []
        for row in table.get("rows") or []:
            if len(row) != len(cols):
                raise ValueError(f"table {tname!r}: row {row!r} has {len(row)} cells for {len(cols)} columns")
    record = {
        "schema": SCHEMA,
        "name": name,
        "date": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "command": command(argv),
        "git_commit": _git_commit(),
        "machine": machine(_START_LOAD if load_at_start is None else round(load_at_start, 2)),
        "torch_threads": threads,
        "env_threads": {k: os.environ[k] for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS") if k in os.environ},
        "seeds": list(seeds) if seeds is not None else None,
        "baseline": baseline,
        "settings": settings or {},
        "figures": figures,
        "tables": tables or {},
        "notes": list(notes or []),
    }
    out_dir = Path(out_dir) if out_dir is not None else RESULTS_DIR
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{name}.json"
    write_atomic(path, (json.dumps(record, indent=1, default=_jsonable) + "\n").encode("utf-8"))
    print(f"result written: {path}")
    return path


def _jsonable(x):
    """numpy scalars/arrays and Paths, without importing numpy here."""
    if hasattr(x, "tolist"):
        return x.tolist()
    if isinstance(x, Path):
        return str(x)
    raise TypeError(f"not JSON serialisable: {type(x).__name__}")


def read_result(name: str, results_dir: Optional[Path] = None) -> Dict[str, Any]:
    path = (Path(results_dir) if results_dir is not None else RESULTS_DIR) / f"{name}.json"
    return json.loads(path.read_text())
