"""Fill the tables of docs/performance.md from the kept result files in bench/results/.

The page is prose written by people plus generated blocks::

    <!-- results:zmtp_transfer -->          provenance line + every table of zmtp_transfer.json
    ...generated, do not edit...
    <!-- /results -->

    <!-- results:zmtp_transfer:png -->      one table only (its "png" entry)
    <!-- results:zmtp_transfer:provenance -->   the provenance line only

Everything between a marker and its ``<!-- /results -->`` is replaced; everything outside is left
byte for byte.  A result file is written by a bench through ``results_io.write_result``; adding a
new figure to the page is: write the JSON from the bench, put a marker pair where the table goes,
run this script.

    python bench/report.py            # rewrite docs/performance.md in place (atomically)
    python bench/report.py --check    # exit 1 and show a diff if the page differs from the files
    python bench/report.py --list     # which markers use which files, and files no marker uses

``tests/test_performance_doc.py`` runs the check, so the page and the data cannot drift apart.
Standard library only.
"""
from __future__ import annotations

import argparse
import difflib
import json
import os
import re
import sys
import tempfile
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

HERE = Path(__file__).resolve().parent
DOC = HERE.parent / "docs" / "performance.md"
RESULTS = HERE / "results"

MARKER = re.compile(r"<!-- results:([A-Za-z0-9_.-]+)(?::([A-Za-z0-9_.-]+))? -->\n(.*?)<!-- /results -->",
                    re.DOTALL)


class ReportError(Exception):
    """A marker names a result file or table that is not there, or a file is malformed."""


def _cell(x: Any) -> str:
    if x is None:
        return "–"
    if isinstance(x, float):
        return f"{x:g}"
    return str(x).replace("|", "\\|").replace("\n", " ")


def render_table(table: Dict[str, Any]) -> str:
    cols = table["columns"]
    lines = []
    if table.get("caption"):
        lines += [table["caption"].strip(), ""]
    lines.append("| " + " | ".join(_cell(c) for c in cols) + " |")
    lines.append("|" + "|".join("---" for _ in cols) + "|")
    for row in table["rows"]:
        if len(row) != len(cols):
            raise ReportError(f"row {row!r} has {len(row)} cells for {len(cols)} columns")
        lines.append("| " + " | ".join(_cell(c) for c in row) + " |")
    return "\n".join(lines) + "\n"


def _load_range(m: Dict[str, Any]) -> str:
    a, b = m.get("load_avg_1min_start"), m.get("load_avg_1min_end")
    if a is None and b is None:
        return ""
    return f", load average {a} at the start, {b} at the end"


def _ranges(seeds: List[Any]) -> str:
    """[7, 0, 1, 2, 3] -> "7, 0–3": consecutive integers as a range, order kept."""
    out: List[str] = []
    i = 0
    while i < len(seeds):
        j = i
        while (j + 1 < len(seeds) and isinstance(seeds[j], int) and isinstance(seeds[j + 1], int)
               and seeds[j + 1] == seeds[j] + 1):
            j += 1
        out.append(str(seeds[i]) if j - i < 2 else f"{seeds[i]}–{seeds[j]}")
        if 0 < j - i < 2:
            out.extend(str(s) for s in seeds[i + 1:j + 1])
        i = j + 1
    return ", ".join(out)


def render_provenance(name: str, res: Dict[str, Any]) -> str:
    m = res.get("machine", {})
    hw = f"{m.get('cpu', '?')}, {m.get('cores', '?')} cores"
    if m.get("gpu"):
        hw += f", GPU {m['gpu']}"
    sw = f"Python {m.get('python', '?')}" + (f", torch {m['torch']}" if m.get("torch") else "")
    seeds = res.get("seeds")
    seeds_txt = "none drawn" if seeds == [] else ("not recorded" if seeds is None else _ranges(seeds))
    threads = res.get("torch_threads")
    lines = [
        f"*Measured {res.get('date', '?')} with `{res.get('command', '?')}`"
        + (f" (commit {res['git_commit']})" if res.get("git_commit") else "") + ".*",
        f"*Machine: {hw} ({sw}){_load_range(m)}. "
        f"Torch threads: {threads if threads is not None else 'n/a (no torch)'}. Seeds: {seeds_txt}.*",
        f"*Baseline: {res.get('baseline') or 'none'}. Raw result: `bench/results/{name}.json`.*",
    ]
    return "\n".join(lines) + "\n"


def render_block(name: str, part: Optional[str], results_dir: Path) -> str:
    path = results_dir / f"{name}.json"
    if not path.is_file():
        raise ReportError(f"marker results:{name} but no {path}")
    try:
        res = json.loads(path.read_text())
    except ValueError as e:
        raise ReportError(f"{path}: {e}") from None
    tables = res.get("tables") or {}
    if part == "provenance":
        return render_provenance(name, res)
    if part is not None:
        if part not in tables:
            raise ReportError(f"marker results:{name}:{part} but {path.name} has tables {sorted(tables)}")
        return render_table(tables[part])
    out = [render_provenance(name, res)]
    out += [render_table(t) for t in tables.values()]
    return "\n".join(out)


def render(doc: str, results_dir: Path = RESULTS) -> str:
    """The page with every generated block refilled from ``results_dir``."""
    def fill(m: "re.Match[str]") -> str:
        name, part = m.group(1), m.group(2)
        head = f"<!-- results:{name}" + (f":{part}" if part else "") + " -->\n"
        return head + render_block(name, part, results_dir) + "<!-- /results -->"

    return MARKER.sub(fill, doc)


def markers(doc: str) -> List[Tuple[str, Optional[str]]]:
    return [(m.group(1), m.group(2)) for m in MARKER.finditer(doc)]


def _write_atomic(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
    os.replace(tmp, path)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--doc", type=Path, default=DOC)
    ap.add_argument("--results", type=Path, default=RESULTS)
    ap.add_argument("--check", action="store_true", help="do not write; exit 1 if the page is out of date")
    ap.add_argument("--list", action="store_true", help="show markers and unused result files")
    args = ap.parse_args(argv)
    doc = args.doc.read_text()
    if args.list:
        used = set()
        for name, part in markers(doc):
            used.add(name)
            print(f"results:{name}" + (f":{part}" if part else "") + f"  <- {args.results / (name + '.json')}")
        for p in sorted(args.results.glob("*.json")):
            if p.stem not in used:
                print(f"(no marker uses {p})")
        return 0
    try:
        new = render(doc, args.results)
    except ReportError as e:
        print(f"report: {e}", file=sys.stderr)
        return 2
    if args.check:
        if new != doc:
            sys.stdout.writelines(difflib.unified_diff(doc.splitlines(True), new.splitlines(True),
                                                       str(args.doc), "regenerated"))
            return 1
        print(f"{args.doc}: up to date with {args.results} ({len(markers(doc))} generated blocks)")
        return 0
    if new != doc:
        _write_atomic(args.doc, new)
        print(f"{args.doc}: {len(markers(doc))} generated blocks refilled")
    else:
        print(f"{args.doc}: already up to date")
    return 0


if __name__ == "__main__":
    sys.exit(main())
