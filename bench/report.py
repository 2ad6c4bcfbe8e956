"""Fill the generated tables of the docs from the kept result files in bench/results/.

A page (docs/performance.md, or any docs/*.md) is prose written by people plus generated blocks::

    <!-- results:zmtp_transfer -->              provenance lines + every table of zmtp_transfer.json
    ...generated, do not edit...
    <!-- /results -->

    <!-- results:zmtp_transfer:png -->          one table only (its "png" entry)
    <!-- results:zmtp_transfer:provenance -->   the provenance lines only
    <!-- results:overhead:figures -->           "figure | value" for every number/text in its figures
                                                (no table code at all: the quickest way to publish)

Everything between a marker and its ``<!-- /results -->`` is replaced; everything outside is left
byte for byte.

Adding a figure:

1. the bench writes its JSON with ``results_io.write_result(name, figures, baseline=..., seeds=...,
   tables={...})`` (the bench formats its own rows from its own numbers);
2. a marker pair goes where the table belongs;
3. ``python bench/report.py`` fills it; commit the JSON and the page together.

A result file written some other way (a bench's own ``--json``, kept with its provenance by
``bench/keep.py``) can be published without touching the bench: add a function to
``bench/report_tables.py`` that builds its tables from its figures (``@tables_for("name")``).  Its provenance is read from the usual keys where present
(``command``, ``machine``, ``date``, ``torch_threads``, ``seeds``/``seed``, ``baseline``) and
shown as "not recorded" where not; ``tests/test_performance_doc.py`` insists on them.

    python bench/report.py            # rewrite every docs/*.md that has generated blocks (atomically)
    python bench/report.py --check    # exit 1 and show a diff if a page differs from the files
    python bench/report.py --list     # which markers use which files, and files no marker uses
    python bench/report.py --doc docs/performance.md   # one page only

``tests/test_performance_doc.py`` runs the check, so the pages and the data cannot drift apart.
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
from typing import Any, Callable, Dict, List, Optional, Tuple

HERE = Path(__file__).resolve().parent
DOCS = HERE.parent / "docs"
DOC = DOCS / "performance.md"
RESULTS = HERE / "results"

MARKER = re.compile(r"<!-- results:([A-Za-z0-9_.-]+)(?::([A-Za-z0-9_.-]+))? -->\n(.*?)<!-- /results -->",
                    re.DOTALL)

Tables = Dict[str, Dict[str, Any]]
TABLE_BUILDERS: Dict[str, Callable[[Dict[str, Any]], Tables]] = {}


def tables_for(name: str):
    """Register a function that builds the tables of result file ``name`` from its contents."""
    def register(fn: Callable[[Dict[str, Any]], Tables]):
        TABLE_BUILDERS[name] = fn
        return fn
    return register


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


def _ranges(seeds: List[Any]) -> str:
    """[7, 0, 1, 2, 3] -> "7, 0–3": runs of 3+ consecutive integers as a range, order kept."""
    out: List[str] = []
    i = 0
    while i < len(seeds):
        j = i
        while (j + 1 < len(seeds) and isinstance(seeds[j], int) and isinstance(seeds[j + 1], int)
               and seeds[j + 1] == seeds[j] + 1):
            j += 1
        if j - i >= 2:
            out.append(f"{seeds[i]}–{seeds[j]}")
        else:
            out.extend(str(s) for s in seeds[i:j + 1])
        i = j + 1
    return ", ".join(out)


def seeds_of(res: Dict[str, Any]) -> Optional[List[Any]]:
    if isinstance(res.get("seeds"), list):
        return res["seeds"]
    if "seed" in res and res["seed"] is not None:
        return [res["seed"]]
    return None


def _machine_text(m: Any) -> str:
    if isinstance(m, str):
        return m
    if not isinstance(m, dict) or not m:
        return "not recorded"
    hw = f"{m.get('cpu', '?')}, {m.get('cores', '?')} cores"
    if m.get("gpu"):
        hw += f", GPU {m['gpu']}"
    sw = f"Python {m.get('python', '?')}" + (f", torch {m['torch']}" if m.get("torch") else "")
    text = f"{hw} ({sw})"
    a, b = m.get("load_avg_1min_start"), m.get("load_avg_1min_end")
    if a is not None or b is not None:
        text += f", load average {a} at the start, {b} at the end"
    return text


def _other_load(res: Dict[str, Any]) -> str:
    """A bench's own ``load_average_1_5_15: {before: [...], after: [...]}``, when its machine is a string."""
    la = res.get("load_average_1_5_15")
    if isinstance(res.get("machine"), dict) or not isinstance(la, dict):
        return ""
    before, after = la.get("before") or [None], la.get("after") or [None]
    return f", load average {before[0]} at the start, {after[0]} at the end"


def render_provenance(name: str, res: Dict[str, Any]) -> str:
    seeds = seeds_of(res)
    seeds_txt = "none drawn" if seeds == [] else ("not recorded" if seeds is None else _ranges(seeds))
    threads = res.get("torch_threads", "not recorded")
    if threads is None:
        threads = "n/a (no torch)"
    lines = [
        f"*Measured {res.get('date', '(date not recorded)')} with `{res.get('command', '(command not recorded)')}`"
        + (f" (commit {res['git_commit']})" if res.get("git_commit") else "") + ".*",
        f"*Machine: {_machine_text(res.get('machine'))}{_other_load(res)}. Torch threads: {threads}. "
        f"Seeds: {seeds_txt}.*",
        f"*Baseline: {res.get('baseline') or 'not recorded'}. Raw result: `bench/results/{name}.json`.*",
    ]
    return "\n".join(lines) + "\n"


def load_result(name: str, results_dir: Path) -> Dict[str, Any]:
    path = results_dir / f"{name}.json"
    if not path.is_file():
        raise ReportError(f"marker results:{name} but no {path}")
    try:
        return json.loads(path.read_text())
    except ValueError as e:
        raise ReportError(f"{path}: {e}") from None


def tables_of(name: str, res: Dict[str, Any]) -> Tables:
    if res.get("tables"):
        return res["tables"]
    _load_builders()
    if name in TABLE_BUILDERS:
        return TABLE_BUILDERS[name](res)
    return {}


def figures_table(res: Dict[str, Any]) -> Dict[str, Any]:
    """Every scalar of the result's figures (the whole file when it has no ``figures``), flattened
    with dotted names; lists and nulls are left to the JSON."""
    rows: List[List[Any]] = []

    def walk(prefix: str, x: Any) -> None:
        if isinstance(x, dict):
            for k, v in x.items():
                walk(f"{prefix}.{k}" if prefix else str(k), v)
        elif isinstance(x, (int, float, str, bool)) and not isinstance(x, list):
            rows.append([f"`{prefix}`", x])

    figures = res.get("figures", res)
    walk("", {k: v for k, v in figures.items() if k not in PROVENANCE_KEYS} if isinstance(figures, dict) else {})
    return {"columns": ["figure", "value"], "rows": rows}


PROVENANCE_KEYS = ("schema", "name", "bench", "date", "command", "git_commit", "machine", "torch_threads",
                   "env_threads", "seeds", "seed", "baseline", "settings", "tables", "notes")


def render_block(name: str, part: Optional[str], results_dir: Path) -> str:
    res = load_result(name, results_dir)
    if part == "provenance":
        return render_provenance(name, res)
    if part == "figures":
        return render_provenance(name, res) + "\n" + render_table(figures_table(res))
    tables = tables_of(name, res)
    if part is not None:
        if part not in tables:
            raise ReportError(f"marker results:{name}:{part} but {name}.json has tables {sorted(tables)}")
        return render_table(tables[part])
    if not tables:
        raise ReportError(f"{name}.json has no tables (write them with results_io.write_result, "
                          "or add a builder to bench/report_tables.py)")
    return "\n".join([render_provenance(name, res)] + [render_table(t) for t in tables.values()])


def render(doc: str, results_dir: Path = RESULTS) -> str:
    """The page with every generated block refilled from ``results_dir``."""
    def fill(m: "re.Match[str]") -> str:
        name, part = m.group(1), m.group(2)
        head = f"<!-- results:{name}" + (f":{part}" if part else "") + " -->\n"
        return head + render_block(name, part, results_dir) + "<!-- /results -->"

    return MARKER.sub(fill, doc)


def markers(doc: str) -> List[Tuple[str, Optional[str]]]:
    return [(m.group(1), m.group(2)) for m in MARKER.finditer(doc)]


def pages(docs_dir: Path = DOCS) -> List[Path]:
    """Every page under docs/ with at least one generated block."""
    return [p for p in sorted(docs_dir.rglob("*.md")) if markers(p.read_text(encoding="utf-8"))]


_builders_loaded = False


def _load_builders() -> None:
    global _builders_loaded
    if _builders_loaded:
        return
    _builders_loaded = True
    if str(HERE) not in sys.path:
        sys.path.insert(0, str(HERE))
    try:
        import report_tables
    except ImportError as e:
        if e.name != "report_tables":
            raise
        return
    for name, fn in report_tables.BUILDERS.items():
        TABLE_BUILDERS.setdefault(name, fn)


def _write_atomic(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(text)
    os.replace(tmp, path)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--doc", type=Path, action="append", default=None,
                    help="a page to fill (repeatable; default: every docs/*.md with generated blocks)")
    ap.add_argument("--results", type=Path, default=RESULTS)
    ap.add_argument("--check", action="store_true", help="do not write; exit 1 if a page is out of date")
    ap.add_argument("--list", action="store_true", help="show markers and unused result files")
    args = ap.parse_args(argv)
    docs = args.doc or pages()
    if args.list:
        used = set()
        for doc in docs:
            for name, part in markers(doc.read_text(encoding="utf-8")):
                used.add(name)
                print(f"{doc}: results:{name}" + (f":{part}" if part else "") + f"  <- {args.results / (name + '.json')}")
        for p in sorted(args.results.glob("*.json")):
            if p.stem not in used:
                print(f"(no marker uses {p})")
        return 0
    stale = 0
    for doc in docs:
        text = doc.read_text(encoding="utf-8")
        try:
            new = render(text, args.results)
        except ReportError as e:
            print(f"report: {doc}: {e}", file=sys.stderr)
            return 2
        n = len(markers(text))
        if new == text:
            print(f"{doc}: up to date with {args.results} ({n} generated blocks)")
        elif args.check:
            stale += 1
            sys.stdout.writelines(difflib.unified_diff(text.splitlines(True), new.splitlines(True),
                                                       str(doc), "regenerated"))
        else:
            _write_atomic(doc, new)
            print(f"{doc}: {n} generated blocks refilled")
    return 1 if stale else 0


if __name__ == "__main__":
    sys.exit(main())
