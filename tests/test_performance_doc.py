"""docs/performance.md is generated from the kept result files: the page and the data cannot drift.

Fast (standard library only, no torch).  When this fails after a bench run, run
``python bench/report.py`` and commit the page together with the new ``bench/results/*.json``.
"""
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))

import report  # noqa: E402
import results_io  # noqa: E402

REQUIRED = ("name", "date", "command", "machine", "torch_threads", "seeds", "baseline", "figures", "tables")


def test_committed_page_is_what_the_committed_results_generate():
    doc = report.DOC.read_text()
    assert report.markers(doc), "docs/performance.md has no generated blocks"
    regenerated = report.render(doc, report.RESULTS)
    assert regenerated == doc, "docs/performance.md differs from bench/results/*.json: run python bench/report.py"


def test_every_marker_has_a_result_file_with_provenance():
    doc = report.DOC.read_text()
    for name, part in report.markers(doc):
        res = json.loads((report.RESULTS / f"{name}.json").read_text())
        missing = [k for k in REQUIRED if k not in res]
        assert not missing, (name, missing)
        assert res["name"] == name
        assert res["command"].startswith("python bench/"), res["command"]
        assert res["machine"].get("cpu") and res["machine"].get("cores"), res["machine"]
        assert res["baseline"], f"{name}: say what the baseline is"
        assert isinstance(res["seeds"], list), f"{name}: record the seeds ([] if none are drawn)"
        if part not in (None, "provenance"):
            assert part in res["tables"]


def test_every_kept_result_is_published():
    used = {name for name, _ in report.markers(report.DOC.read_text())}
    kept = {p.stem for p in report.RESULTS.glob("*.json")}
    assert kept <= used, f"result files no table uses: {sorted(kept - used)}"


def _doc(tmp_path, body):
    doc = tmp_path / "perf.md"
    doc.write_text(body)
    return doc


def test_generator_refills_only_between_markers_and_tracks_the_data(tmp_path):
    results = tmp_path / "results"
    table = {"caption": "cap", "columns": ["a", "b"], "rows": [["x", 1.5]]}
    results_io.write_result("demo", {"t": [1, 2]}, baseline="nothing", seeds=[3], threads=1, tables={"main": table},
                            argv=["bench/demo.py", "--n", "2"], out_dir=results)
    prose = "# Title\n\nSome prose | with a bar.\n\n"
    body = prose + "<!-- results:demo -->\nstale\n<!-- /results -->\n\nmore prose\n" \
                   "<!-- results:demo:main -->\n<!-- /results -->\n"
    doc = _doc(tmp_path, body)
    assert report.main(["--doc", str(doc), "--results", str(results), "--check"]) == 1  # stale block detected
    assert report.main(["--doc", str(doc), "--results", str(results)]) == 0
    out = doc.read_text()
    assert out.startswith(prose) and "\n\nmore prose\n" in out and "stale" not in out
    assert "| x | 1.5 |" in out and "Seeds: 3" in out and "Torch threads: 1" in out
    assert "python bench/demo.py --n 2" in out and "Baseline: nothing" in out
    assert out.count("| x | 1.5 |") == 2
    assert report.main(["--doc", str(doc), "--results", str(results), "--check"]) == 0
    # a changed figure makes the committed page stale: the check catches the drift
    table["rows"] = [["x", 1.6]]
    results_io.write_result("demo", {"t": [1, 2]}, baseline="nothing", seeds=[3], threads=1, tables={"main": table},
                            argv=["bench/demo.py"], out_dir=results)
    assert report.main(["--doc", str(doc), "--results", str(results), "--check"]) == 1


def test_generator_refuses_a_marker_without_data(tmp_path):
    doc = _doc(tmp_path, "<!-- results:nowhere -->\n<!-- /results -->\n")
    with pytest.raises(report.ReportError):
        report.render(doc.read_text(), tmp_path)
    assert report.main(["--doc", str(doc), "--results", str(tmp_path)]) == 2
    assert doc.read_text() == "<!-- results:nowhere -->\n<!-- /results -->\n"


def test_write_result_rejects_ragged_tables_and_records_the_machine(tmp_path):
    with pytest.raises(ValueError):
        results_io.write_result("bad", {}, baseline="b", tables={"t": {"columns": ["a"], "rows": [[1, 2]]}},
                                out_dir=tmp_path)
    assert not list(tmp_path.glob("*"))  # nothing half-written
    p = results_io.write_result("ok", {"x": 1}, baseline="b", seeds=[], out_dir=tmp_path)
    res = json.loads(p.read_text())
    assert res["machine"]["cores"] >= 1 and res["date"].endswith("UTC") and res["seeds"] == []


def test_report_check_runs_as_a_script():
    r = subprocess.run([sys.executable, str(ROOT / "bench" / "report.py"), "--check"], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
