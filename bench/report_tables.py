"""Tables for result files that a bench wrote in its own format (not through ``results_io``).

``bench/report.py`` imports this module when a marker names a result file without a ``tables``
entry.  Publishing such a file is one function here, no change to the bench::

    from report import tables_for

    @tables_for("overhead")                       # bench/results/overhead.json
    def overhead(res):
        return {"main": {
            "caption": f"{res['runs']} runs each, interleaved, medians.",
            "columns": ["measure", "figure", "target"],
            "rows": [["in-process diffusers (baseline)", f"{res['inprocess_median_s'] * 1000:.0f} ms", ""],
                     ["through the daemon", f"{res['daemon_median_s'] * 1000:.0f} ms", ""],
                     ["overhead", f"{res['overhead_pct']:+.1f} %", "<= 1 %"]]}}

The file must still say how it was measured (``command``, ``machine``, ``date``, ``torch_threads``,
``seeds`` or ``seed``, ``baseline``): the provenance lines are read from those keys, and
``tests/test_performance_doc.py`` fails while one is missing.  Writing through
``results_io.write_result`` from the bench gives all of them for free.
"""
from __future__ import annotations

from report import tables_for  # noqa: F401  (used by the builders added here)
