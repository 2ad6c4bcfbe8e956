"""Tables for result files that a bench wrote in its own format (not through ``results_io``).

``bench/report.py`` imports this module when a marker names a result file without a ``tables``
entry.  Publishing such a file is one function here, no change to the bench::

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

from typing import Any, Callable, Dict

BUILDERS: Dict[str, Callable[[Dict[str, Any]], Dict[str, Dict[str, Any]]]] = {}


def tables_for(name: str):
    """Register the function that builds the tables of ``bench/results/<name>.json``."""
    def register(fn):
        BUILDERS[name] = fn
        return fn
    return register


def _concept_switch(res):
    f = res["figures"]
    return {"main": {
        "caption": f"{f['generation']}, {f['runs']} interleaved runs, two rank-8 concepts on every UNet "
                   f"attention projection; medians.",
        "columns": ["model (CPU)", "LoRA layers", "switch (median)", "generation with a concept (median)",
                    "switch / generation", "generation without a concept (median)", "first use of a concept "
                    "(file + inject)"],
        "rows": [[f["model"], f["lora_layers"], f"{f['switch_s_median'] * 1000:.2f} ms",
                  f"{f['generation_same_concept_s_median']:.3f} s", f"{f['switch_vs_generation_percent']:.2f}%",
                  f"{f['generation_no_concept_s_median']:.3f} s",
                  " / ".join(f"{t:.2f} s" for t in f["first_use_s"])]]}}


# bench/concept_switch.py --json, kept by bench/keep.py (one file per model)
tables_for("concept_switch_starter")(_concept_switch)
tables_for("concept_switch_tiny")(_concept_switch)


@tables_for("overhead")
def _overhead(res):
    """bench/overhead.py --json (its own format: one entry per case in ``cases``)."""
    def ms(s):
        return f"{s * 1000:,.0f} ms".replace(",", " ")

    rows = []
    for c in res["cases"]:
        rows.append([f"{c['model']}, {c['size']}x{c['size']}", ms(c["inprocess_median_s"]), ms(c["daemon_median_s"]),
                     f"{c['ratio_daemon_over_inprocess']:.3f}", f"{c['paired_ratio_median']:.3f}",
                     ms(c["engine_run_median_s"]) if "engine_run_median_s" in c else "not recorded",
                     (f"{c['outside_engine_median_s'] * 1000:.1f} ms" if "outside_engine_median_s" in c
                      else "not recorded"),
                     f"{ms(c['first_preview_s'])} (step {c['first_preview_step']:g})",
                     ", ".join(str(n) for n in c["cancel_extra_steps"])])
    first = res["cases"][0] if res["cases"] else {}
    return {"main": {
        "caption": f"{first.get('runs', '?')} runs per case, {first.get('steps', '?')} steps, {res.get('sampler', '?')}, "
                   f"CFG {res.get('cfg', '?')}, calls interleaved; medians.",
        "columns": ["case", "in-process (median)", "through the daemon (median)", "daemon / in-process",
                    "median of paired ratios", "`Engine.run` inside the daemon (median)",
                    "daemon job outside `Engine.run` (median)", "first preview after submit",
                    "cancel: steps run after the cancel was sent"],
        "rows": rows}}


@tables_for("overhead_repeats")
def _overhead_repeats(res):
    """Earlier runs of bench/overhead.py the same day (console summaries kept by hand)."""
    rows = []
    for run in res["runs"]:
        for c in run["cases"]:
            rows.append([run["started"], f"{c['model']}, {c['size']}x{c['size']}",
                         f"{c['inprocess_median_ms']:.0f} ms", f"{c['daemon_median_ms']:.0f} ms",
                         f"{c['ratio']:.3f}", f"{c['paired_ratio_median']:.3f}"])
    return {"main": {
        "caption": res.get("note", ""),
        "columns": ["run started", "case", "in-process (median)", "through the daemon (median)",
                    "daemon / in-process", "median of paired ratios"],
        "rows": rows}}
