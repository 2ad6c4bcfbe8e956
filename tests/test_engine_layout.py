"""The engine's shape: the I/O thread never loads torch, runners don't import each other in a cycle.

Both are structural properties a later edit can silently break (one eager
import in ``engine/__init__`` and the daemon's I/O thread stalls seconds on
its first models request), so they are checked here, not by reading code.
"""
from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ENGINE = Path(__file__).resolve().parent.parent / "backend" / "engine"

IO_THREAD = r"""
import json, sys, tempfile, os
home = tempfile.mkdtemp()
os.environ["IMPASTO_HOME"] = home
from impasto.backend.daemon import server, concept_handlers  # the request handlers
from impasto.backend.daemon import worker, jobs  # noqa: F401 (imported by the server anyway)
from impasto.backend.engine.models import ModelRegistry
from impasto.backend.engine import EngineError, JobHooks, Cancelled  # what the worker names
entries = ModelRegistry(tempfile.mkdtemp()).scan()  # the models request
concepts = concept_handlers._library().list()        # the concepts request
print(json.dumps({"torch": "torch" in sys.modules, "diffusers": "diffusers" in sys.modules,
                  "models": len(entries), "concepts": len(concepts)}))
"""


def test_daemon_request_handlers_never_import_torch():
    env = dict(os.environ)
    out = subprocess.run([sys.executable, "-c", IO_THREAD], capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout.strip().splitlines()[-1])
    assert report["torch"] is False and report["diffusers"] is False, report


def _engine_imports(path: Path):
    """Module-level and function-level imports of sibling engine modules (``from .x``, ``from impasto...engine.x``)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level == 1 and node.module:
                out.add(node.module.split(".")[0])
            elif node.level == 1:
                out.update(a.name for a in node.names)
            elif node.module and node.module.startswith("impasto.backend.engine."):
                out.add(node.module.split(".")[3])
    return out


def test_engine_modules_import_each_other_without_a_cycle():
    modules = {p.stem for p in ENGINE.glob("*.py") if p.stem != "__init__"}
    graph = {m: _engine_imports(ENGINE / f"{m}.py") & modules for m in modules}
    assert graph["img2img"] >= {"edit"} and "img2img" not in graph["edit"]  # one direction only
    assert "engine" not in set().union(*(graph[m] for m in modules if m != "engine")), \
        "a runner imports the facade: register it in runners.JOB_RUNNERS instead"
    state = {}

    def visit(node, stack):
        state[node] = "open"
        for nxt in sorted(graph[node]):
            if state.get(nxt) == "open":
                pytest.fail("import cycle: " + " -> ".join(stack + [node, nxt]))
            if nxt not in state:
                visit(nxt, stack + [node])
        state[node] = "done"

    for m in sorted(modules):
        if m not in state:
            visit(m, [])


def test_every_job_kind_resolves_to_a_runner_and_unknown_kinds_are_typed_errors():
    from impasto.backend.engine import EngineError
    from impasto.backend.engine.runners import JOB_RUNNERS, runner_for

    for kind in ("txt2img", "img2img", "edit", "train"):
        assert callable(runner_for(kind)), kind
    assert set(JOB_RUNNERS) >= {"txt2img", "img2img", "edit", "train"}
    with pytest.raises(EngineError) as err:
        runner_for("upscale")
    assert err.value.field == "type"


def test_dead_helpers_are_gone():
    from impasto.backend.concepts import lora_io
    from impasto.backend.engine import masks

    assert not hasattr(masks, "latent_cells") and not hasattr(lora_io, "library_tensors")


def test_the_resident_model_answers_without_a_rescan_until_the_disk_changes(tiny_model, tmp_path):
    import shutil

    from impasto.backend.engine import Engine

    models = tmp_path / "models"
    models.mkdir()
    shutil.copytree(tiny_model, models / "tiny")
    engine = Engine(models)
    scans = []
    real = engine.registry.scan
    engine.registry.scan = lambda: scans.append(1) or real()
    loaded = engine.model("tiny")
    assert len(scans) == 1
    assert engine.model("tiny") is loaded and len(scans) == 1              # nothing changed: no scan
    before = len(scans)
    (models / "another").mkdir()                                            # the folder changed: rescan
    assert engine.model("tiny") is loaded and len(scans) == before + 1
    shutil.rmtree(models / "tiny")                                          # the model is gone: a typed error
    from impasto.backend.engine import EngineError

    with pytest.raises(EngineError):
        engine.model("tiny")
