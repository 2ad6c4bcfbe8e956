"""The docs' benchmark tables are generated from the kept result files: pages and data cannot drift.

Fast (standard library only, no torch).  When this fails after a bench run, run
``python bench/report.py`` and commit the page together with the new ``bench/results/*.json``.
A new result file needs a ``<!-- results:NAME -->`` block in a page (see bench/report.py).
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

REQUIRED = ("date", "command", "machine", "torch_threads", "baseline")


def test_committed_pages_are_what_the_committed_results_generate():
    assert report.DOC in report.pages(), "docs/performance.md has no generated blocks"
    for page in report.pages():
        doc = page.read_text()
        assert report.render(doc, report.RESULTS) == doc, \
            f"{page} differs from bench/results/*.json: run python bench/report.py"


def test_every_marker_has_a_result_file_with_provenance():
    for page in report.pages():
        for name, part in report.markers(page.read_text()):
            res = json.loads((report.RESULTS / f"{name}.json").read_text())
            missing = [k for k in REQUIRED if k not in res]
            assert not missing, f"bench/results/{name}.json does not record {missing}"
            assert res["command"].startswith("python "), res["command"]
            assert res["machine"], f"{name}: say which machine"
            assert res["baseline"], f"{name}: say what the baseline is (or 'none' and why)"
            assert report.seeds_of(res) is not None, f"{name}: record the seeds ([] if none are drawn)"
            if part not in (None, "provenance"):
                assert part in report.tables_of(name, res)


def test_every_kept_result_is_published():
    used = {name for page in report.pages() for name, _ in report.markers(page.read_text())}
    kept = {p.stem for p in report.RESULTS.glob("*.json")}
    assert kept <= used, f"result files no generated block uses (add a marker to a page): {sorted(kept - used)}"


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


def test_foreign_result_file_published_through_a_builder(tmp_path):
    """A bench's own JSON (no tables) is rendered by a registered builder; missing provenance says so."""
    (tmp_path / "own.json").write_text(json.dumps({"command": "python bench/own.py", "seed": 4,
                                                   "median_s": 0.25}))
    report.TABLE_BUILDERS["own"] = lambda res: {"t": {"columns": ["median"], "rows": [[f"{res['median_s']} s"]]}}
    try:
        out = report.render("<!-- results:own -->\n<!-- /results -->\n", tmp_path)
    finally:
        del report.TABLE_BUILDERS["own"]
    assert "| 0.25 s |" in out and "Seeds: 4" in out and "Baseline: not recorded" in out
    assert "Machine: not recorded" in out


def test_keep_wraps_a_benchs_own_json_with_provenance(tmp_path):
    import keep

    bench = "import json, sys; json.dump({'threads': 2, 'median_s': 0.5, 'runs': [1, 2]}, open(sys.argv[1], 'w'))"
    rc = keep.main(["wrapped", "--baseline", "the plain call", "--seeds", "3", "4", "--out-dir", str(tmp_path), "--",
                    "python", "-c", bench, "{json}"])
    assert rc == 0
    res = json.loads((tmp_path / "wrapped.json").read_text())
    assert res["figures"] == {"threads": 2, "median_s": 0.5, "runs": [1, 2]}
    assert res["torch_threads"] == 2 and res["seeds"] == [3, 4] and res["baseline"] == "the plain call"
    assert res["command"].startswith("python bench/keep.py wrapped") and res["machine"]["cores"] >= 1
    out = report.render("<!-- results:wrapped:figures -->\n<!-- /results -->\n", tmp_path)
    assert "| `median_s` | 0.5 |" in out and "| `threads` | 2 |" in out and "runs" not in out.split("Raw result")[1]
    assert "Seeds: 3, 4" in out
    # a failing bench keeps nothing
    assert keep.main(["broken", "--baseline", "b", "--seeds", "--out-dir", str(tmp_path), "--",
                      "python", "-c", "raise SystemExit(3)", "{json}"]) == 3
    assert not (tmp_path / "broken.json").exists()


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
