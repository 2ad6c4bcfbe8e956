"""The command line as the README uses it (subprocesses, real daemon)."""
import subprocess
import sys

import numpy as np
from PIL import Image

from conftest import free_port


def impasto(env, *args, timeout=300):
    return subprocess.run([sys.executable, "-m", "impasto.backend.cli", *args], env=env, capture_output=True,
                          text=True, timeout=timeout)


def test_generate_writes_png_at_asked_size(daemon, tmp_path):
    out = tmp_path / "cat.png"
    r = impasto(daemon.env, "generate", "a red circle", "-o", str(out), "--model", "tiny", "--size", "72x40",
                "--steps", "3", "--seed", "42", "--sampler", "dpmpp_2m_karras", "--no-spawn")
    assert r.returncode == 0, r.stderr
    assert "seed 42" in r.stdout
    img = Image.open(out)
    assert img.size == (72, 40)
    assert "3/3" in r.stderr  # the progress bar reached the end


def test_generate_batch_names_files_and_seeds(daemon, tmp_path):
    out = tmp_path / "b.png"
    r = impasto(daemon.env, "generate", "a cat", "-o", str(out), "--model", "tiny", "--size", "64x64",
                "--steps", "2", "--seed", "7", "--batch", "2", "--no-spawn", "-q")
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "b-1.png").exists() and (tmp_path / "b-2.png").exists()
    assert "seed 7" in r.stdout and "seed 8" in r.stdout
    a = np.asarray(Image.open(tmp_path / "b-1.png"))
    b = np.asarray(Image.open(tmp_path / "b-2.png"))
    assert (a != b).any()


def test_no_spawn_fails_clearly_without_daemon(tmp_path):
    import os

    env = dict(os.environ, IMPASTO_ENDPOINT=f"tcp://127.0.0.1:{free_port()}", IMPASTO_HOME=str(tmp_path))
    r = impasto(env, "generate", "x", "-o", str(tmp_path / "x.png"), "--no-spawn", timeout=60)
    assert r.returncode == 3
    assert "no Impasto daemon answers" in r.stderr and "Traceback" not in r.stderr
    r = impasto(env, "status", timeout=60)
    assert r.returncode == 3 and "impasto serve" in r.stderr


def test_bad_request_is_one_readable_line(daemon, tmp_path):
    r = impasto(daemon.env, "generate", "x", "-o", str(tmp_path / "x.png"), "--model", "tiny", "--steps", "500",
                "--no-spawn")
    assert r.returncode == 1
    assert "steps" in r.stderr.lower() and "Traceback" not in r.stderr
    assert "Set it with --steps." in r.stderr                       # the flag the artist set, not a field
    r = impasto(daemon.env, "generate", "x", "-o", str(tmp_path / "x.png"), "--model", "tiny", "--cfg", "99",
                "--batch", "1", "--no-spawn")
    assert r.returncode == 1 and "Set it with --cfg." in r.stderr and "cfg_scale" not in r.stderr


def test_generate_spawns_a_daemon_when_none_answers(models_dir, tmp_path):
    import os

    endpoint = f"tcp://127.0.0.1:{free_port()}"
    env = dict(os.environ, IMPASTO_ENDPOINT=endpoint, IMPASTO_HOME=str(tmp_path / "home"),
               IMPASTO_MODELS_DIR=str(models_dir))
    out = tmp_path / "s.png"
    try:
        r = impasto(env, "generate", "a red circle", "-o", str(out), "--model", "tiny", "--size", "64x64",
                    "--steps", "2", "-q")
        assert r.returncode == 0, r.stderr
        assert "starting the Impasto daemon" in r.stderr
        assert out.exists()
        st = impasto(env, "status", timeout=60)
        assert st.returncode == 0 and "loaded model  tiny" in st.stdout
        models = impasto(env, "models", timeout=60)
        assert "tiny" in models.stdout and "sd15" in models.stdout
    finally:
        impasto(env, "stop", timeout=60)


# --------------------------------------------------------------------------- outputs and parameters (issue 19)


def _home_env(daemon, tmp_path):
    """The shared daemon's env with this test's own IMPASTO_HOME (its outputs folder)."""
    return dict(daemon.env, IMPASTO_HOME=str(tmp_path / "home"))


def test_without_o_results_are_numbered_and_never_overwritten(daemon, tmp_path):
    env = _home_env(daemon, tmp_path)
    args = ("generate", "a red circle", "--model", "tiny", "--size", "32x32", "--steps", "2", "--seed", "5",
            "--no-spawn", "-q")
    first, second = impasto(env, *args), impasto(env, *args)
    assert first.returncode == 0 and second.returncode == 0, first.stderr + second.stderr
    written = sorted((tmp_path / "home" / "outputs").glob("*/*.png"))
    assert [p.name for p in written] == ["00001-5.png", "00002-5.png"]
    assert str(written[0]) in first.stdout and str(written[1]) in second.stdout
    assert not (tmp_path / "out.png").exists()


def test_numbering_is_safe_for_concurrent_runs(tmp_path):
    """Two processes claiming names at once never get the same file or the same number."""
    import os

    code = ("from impasto.backend.pictures import claim_numbered; from pathlib import Path; import sys\n"
            "for i in range(15): print(claim_numbered([int(sys.argv[1])], Path(sys.argv[2]))[0].name)")
    procs = [subprocess.Popen([sys.executable, "-c", code, str(seed), str(tmp_path)], stdout=subprocess.PIPE,
                              text=True, env=dict(os.environ)) for seed in (1, 2)]
    names = [line for p in procs for line in p.communicate(timeout=120)[0].split()]
    assert len(names) == 30 and len(set(names)) == 30
    numbers = [n.split("-")[0] for n in names]
    assert len(set(numbers)) == 30, "two runs were handed the same number"


def test_o_refuses_to_overwrite_without_force_and_refuses_unknown_formats(daemon, tmp_path):
    out = tmp_path / "keep.png"
    out.write_bytes(b"the artist's earlier picture")
    common = ("--model", "tiny", "--size", "32x32", "--steps", "2", "--seed", "1", "--no-spawn", "-q")
    r = impasto(daemon.env, "generate", "x", "-o", str(out), *common)
    assert r.returncode == 1 and "already exists" in r.stderr and "--force" in r.stderr
    assert out.read_bytes() == b"the artist's earlier picture"
    r = impasto(daemon.env, "generate", "x", "-o", str(out), "--force", *common)
    assert r.returncode == 0, r.stderr
    assert Image.open(out).format == "PNG"
    r = impasto(daemon.env, "generate", "x", "-o", str(tmp_path / "x.gif"), *common)
    assert r.returncode == 1 and ".png, .jpg or .webp" in r.stderr and not (tmp_path / "x.gif").exists()


def test_extension_picks_the_format_and_every_format_carries_parameters(daemon, tmp_path):
    from impasto.backend.pictures import read_parameters

    for ext, fmt in ((".jpg", "JPEG"), (".webp", "WEBP"), (".png", "PNG")):
        out = tmp_path / f"pic{ext}"
        r = impasto(daemon.env, "generate", "a red circle", "--negative", "blurry", "-o", str(out), "--model",
                    "tiny", "--size", "40x32", "--steps", "2", "--seed", "77", "--cfg", "6.5", "--sampler", "euler",
                    "--no-spawn", "-q")
        assert r.returncode == 0, r.stderr
        assert Image.open(out).format == fmt
        text = read_parameters(out)
        assert text == ("a red circle\nNegative prompt: blurry\n"
                        "Steps: 2, Sampler: Euler, CFG scale: 6.5, Seed: 77, Size: 40x32, Model: tiny"), (ext, text)


def test_png_parameters_chunk_is_the_a1111_one(daemon, tmp_path):
    """The raw PNG holds a tEXt chunk keyed ``parameters``, what A1111's PNG Info and Civitai read."""
    from impasto.protocol.parameters import parse_parameters, png_text

    out = tmp_path / "a.png"
    r = impasto(daemon.env, "generate", "a blue square", "-o", str(out), "--model", "tiny", "--size", "32x32",
                "--steps", "3", "--seed", "9", "--sampler", "dpmpp_2m_karras", "--no-spawn", "-q")
    assert r.returncode == 0, r.stderr
    raw = out.read_bytes()
    assert b"tEXtparameters\x00a blue square\nSteps: 3, Sampler: DPM++ 2M Karras" in raw
    params = parse_parameters(png_text(raw))
    assert (params.settings.sampler, params.settings.seed, params.size) == ("dpmpp_2m_karras", 9, (32, 32))


def test_from_picture_reproduces_it_bit_for_bit_and_takes_overrides(daemon, tmp_path):
    import numpy as np

    first = tmp_path / "first.png"
    r = impasto(daemon.env, "generate", "a green triangle", "--negative", "noise", "-o", str(first), "--model",
                "tiny", "--size", "48x32", "--steps", "3", "--cfg", "4", "--sampler", "ddim", "--no-spawn", "-q")
    assert r.returncode == 0, r.stderr               # seed -1: the daemon picked one, the PNG records it
    again = tmp_path / "again.png"
    r = impasto(daemon.env, "generate", "--from", str(first), "-o", str(again), "--no-spawn", "-q")
    assert r.returncode == 0, r.stderr
    a, b = np.asarray(Image.open(first)), np.asarray(Image.open(again))
    assert a.shape == b.shape == (32, 48, 3) and np.array_equal(a, b)
    assert Image.open(first).text["parameters"] == Image.open(again).text["parameters"]
    other = tmp_path / "other.png"
    r = impasto(daemon.env, "generate", "--from", str(first), "--steps", "2", "-o", str(other), "--no-spawn", "-q")
    assert r.returncode == 0, r.stderr
    text = Image.open(other).text["parameters"]
    assert "Steps: 2," in text and "a green triangle" in text and "Negative prompt: noise" in text
    r = impasto(daemon.env, "generate", "--from", str(tmp_path / "missing.png"), "--no-spawn", "-q")
    assert r.returncode == 1 and "Traceback" not in r.stderr


def test_unset_settings_are_the_models_recommendation(daemon, tmp_path):
    """The starter's impasto.json recommends sampler/steps/CFG: `models` shows it, `generate` uses it."""
    import json

    from impasto.backend.engine.models import starter_dir
    from impasto.protocol.settings import Recommendation

    if starter_dir() is None:
        import pytest

        pytest.fail("the starter model is not installed (backend/assets/starter)")
    meta = json.loads((starter_dir() / "impasto.json").read_text())
    rec = Recommendation.from_model({"native_size": meta["native_size"], "recommended": meta["recommended"]})
    assert rec.from_model_file
    listing = impasto(daemon.env, "models", "--no-spawn")
    assert rec.label() in listing.stdout, listing.stdout
    # its shipped few-step LoRA, with the settings live painting switches to (one pair of brackets)
    assert "live painting: few-step LoRA starter-lcm-lora (LCM quadratic, 4, " in listing.stdout, listing.stdout
    out = tmp_path / "s.png"
    r = impasto(daemon.env, "generate", "a red circle on a blue background", "-o", str(out), "--model", "starter",
                "--seed", "3", "--no-spawn", "-q")
    assert r.returncode == 0, r.stderr
    text = Image.open(out).text["parameters"]
    label = {"ddim": "DDIM", "euler_a": "Euler a", "euler": "Euler"}.get(rec.sampler, rec.sampler)
    assert f"Steps: {rec.steps}, Sampler: {label}, CFG scale: {rec.cfg_scale:g}," in text
    assert Image.open(out).size == (rec.native_size, rec.native_size)   # no --size: the model's native size


def test_generation_far_from_native_size_says_what_it_did(daemon, tmp_path):
    out = tmp_path / "big.png"
    r = impasto(daemon.env, "generate", "a red circle on a blue background", "-o", str(out), "--model", "starter",
                "--size", "256x256", "--steps", "2", "--seed", "3", "--no-spawn", "-q")
    assert r.returncode == 0, r.stderr
    import json

    from impasto.backend.engine.models import starter_dir

    side = json.loads((starter_dir() / "impasto.json").read_text())["native_size"]
    assert f"size changed: painted at {side}x{side}" in r.stderr and "resized to 256x256" in r.stderr


def test_daemon_log_records_each_job_and_each_refusal(daemon, tmp_path):
    import re

    from impasto.protocol import Client, JobFailed
    from impasto.protocol.messages import Generate

    r = impasto(daemon.env, "generate", "a red circle", "-o", str(tmp_path / "l.png"), "--model", "tiny", "--size",
                "32x40", "--steps", "2", "--seed", "1", "--no-spawn", "-q")
    assert r.returncode == 0, r.stderr
    log = daemon.log_path.read_text(errors="replace")
    assert re.search(r"job \S+ client=impasto-cli kind=txt2img size=32x40 steps=2 seconds=\d+\.\d\d outcome=done",
                     log), log[-2000:]
    with Client(daemon.endpoint, name="log-test") as client:
        client.hello()
        job = client.submit(Generate(prompt="x", model="tiny", steps=500))
        try:
            job.wait(timeout=30)
            raise AssertionError("500 steps was accepted")
        except JobFailed:
            pass
    log = daemon.log_path.read_text(errors="replace")
    assert re.search(r"refused generate from log-test: \[\w+\] .*steps", log), log[-2000:]


def test_a_queued_job_says_waiting_n_ahead(daemon, tmp_path):
    import threading

    from impasto.protocol import Client, JobCancelled
    from impasto.protocol.messages import Generate

    with Client(daemon.endpoint, name="busy-test") as client:
        client.hello()
        long_job = client.submit(Generate(prompt="long", model="tiny", steps=200, width=256, height=256, seed=1))
        stopper = threading.Timer(8.0, long_job.cancel)
        stopper.start()
        try:
            r = impasto(daemon.env, "generate", "a red circle", "-o", str(tmp_path / "w.png"), "--model", "tiny",
                        "--size", "32x32", "--steps", "2", "--seed", "1", "--no-spawn")
        finally:
            stopper.cancel()
            long_job.cancel()
            try:
                long_job.wait(timeout=60)
            except (JobCancelled, Exception):
                pass
    assert r.returncode == 0, r.stderr
    assert "waiting (1 ahead)" in r.stderr, r.stderr


def test_models_dir_of_a_running_daemon_is_not_silently_ignored(daemon, tmp_path):
    other = tmp_path / "my-models"
    other.mkdir()
    r = impasto(daemon.env, "models", "--models-dir", str(other), "--no-spawn")
    assert r.returncode == 0 and "already running uses the models folder" in r.stderr and str(other) in r.stderr
    r = impasto(daemon.env, "generate", "x", "-o", str(tmp_path / "m.png"), "--model", "tiny", "--size", "32x32",
                "--steps", "2", "--models-dir", str(other), "--no-spawn", "-q")
    assert r.returncode == 0 and "impasto stop" in r.stderr
    same = impasto(daemon.env, "models", "--models-dir", daemon.env["IMPASTO_MODELS_DIR"], "--no-spawn")
    assert "already running" not in same.stderr


def test_progress_bar_agrees_with_the_training_summary_and_never_reads_0_of_n_prepare():
    """The bar shows the mean loss of the last LOSS_WINDOW steps - the trainer's final loss."""
    import io
    import statistics

    from impasto.backend.cli import LOSS_WINDOW, ProgressBar
    from impasto.protocol.messages import Progress

    losses = [1.0 / (i + 1) + (i % 3) * 0.01 for i in range(50)]
    final = round(statistics.fmean(losses[-20:]), 6)          # what backend/concepts/train.py reports
    for tty in (True, False):
        out = io.StringIO()
        bar = ProgressBar(out, tty=tty)
        bar.update(Progress(step=0, total=800, stage="prepare"))
        assert "0/800" not in out.getvalue() and "prepare ..." in out.getvalue()
        for i, loss in enumerate(losses):
            bar.update(Progress(step=i + 1, total=50, stage="train", loss=loss))
        bar.close()
        last = out.getvalue().strip().replace("\n", "\r").split("\r")[-1]
        assert LOSS_WINDOW == 20 and f"loss {final:.4f}" in last, (tty, last, final)
    # not a terminal (a log file): a line at a stage's start, its first step and each tenth; no carriage returns
    assert "\r" not in out.getvalue()
    lines = out.getvalue().splitlines()
    assert lines[0] == "prepare ..." and lines[1].startswith("1/50 train loss") and len(lines) == 2 + 10, lines
    assert lines[2].startswith("5/50 train loss") and lines[-1].startswith("50/50 train loss"), lines


def test_concept_train_resume_needs_only_the_name(daemon, tmp_path):
    """Stopped with Ctrl-C, `concept train NAME --resume` continues with the settings it started with."""
    import os
    import signal
    import time

    pics = tmp_path / "pics"
    pics.mkdir()
    rng = np.random.default_rng(3)
    for i in range(3):
        Image.fromarray(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)).save(pics / f"p{i}.png")
    env = dict(daemon.env, PYTHONUNBUFFERED="1")
    proc = subprocess.Popen([sys.executable, "-m", "impasto.backend.cli", "concept", "train", "r-cli", "--images",
                             str(pics), "--trigger", "zwx", "--steps", "150", "--rank", "4", "--resolution", "32",
                             "--checkpoint-every", "5", "--no-prior", "--model", "tiny", "--no-spawn"],
                            env=env, stderr=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                            # Ctrl-C as a terminal delivers it: a shell's background job (CI started with `&`)
                            # ignores SIGINT, the child would inherit that and Python would install no handler
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    import re

    seen = ""
    t0 = time.monotonic()
    timeline = []       # (seconds, what arrived): says, when this fails, whether the output came late
    try:
        while proc.poll() is None:
            chunk = os.read(proc.stderr.fileno(), 65536).decode(errors="replace")
            seen += chunk
            timeline.append((round(time.monotonic() - t0, 3), chunk[-70:]))
            steps = [int(n) for n in re.findall(r"(\d+)/150 train", seen)]   # a pipe: a line each tenth
            if steps and max(steps) >= 12:
                timeline.append((round(time.monotonic() - t0, 3), "SIGINT sent"))
                os.kill(proc.pid, signal.SIGINT)
                break
        rest_out, rest_err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    err = seen + rest_err
    timeline.append((round(time.monotonic() - t0, 3), f"exit {proc.returncode}; after the signal: {rest_err[:200]!r}"))
    assert proc.returncode == 130, (timeline[:5] + ["..."] + timeline[-5:], err[-1500:])
    assert "impasto concept train r-cli --resume" in err
    r = impasto(daemon.env, "concept", "train", "r-cli", "--resume", "--no-spawn", "-q")
    assert r.returncode == 0, r.stderr
    assert "'r-cli' saved" in r.stdout and "150 steps" in r.stdout and "trigger 'zwx'" in r.stdout
    assert re.search(r"resumed from step (1[0-9]|[2-9][0-9])\b", r.stdout), r.stdout   # not started over
    r = impasto(daemon.env, "concept", "train", "never-started", "--resume", "--no-spawn", "-q")
    assert r.returncode == 1 and "--images" in r.stderr and "--trigger" in r.stderr


def test_a_prompt_longer_than_the_text_encoder_window_is_reported(daemon, tmp_path):
    words = " ".join(f"word{i}" for i in range(120))
    r = impasto(daemon.env, "generate", f"a red circle {words}", "-o", str(tmp_path / "long.png"), "--model", "tiny",
                "--size", "32x32", "--steps", "2", "--seed", "1", "--no-spawn", "-q")
    assert r.returncode == 0, r.stderr
    assert "warning: prompt longer than the text encoder's window: read in" in r.stderr, r.stderr
    assert "nothing cut" in r.stderr
    short = impasto(daemon.env, "generate", "a red circle", "-o", str(tmp_path / "short.png"), "--model", "tiny",
                    "--size", "32x32", "--steps", "2", "--seed", "1", "--no-spawn", "-q")
    assert "text encoder's window" not in short.stderr


def test_help_shows_the_model_default():
    import json
    import os

    from impasto.backend.engine.models import starter_dir
    from impasto.protocol.settings import Recommendation

    meta = json.loads((starter_dir() / "impasto.json").read_text())
    r = impasto(dict(os.environ), "generate", "--help", timeout=60)
    assert r.returncode == 0
    flat = " ".join(r.stdout.split())
    assert Recommendation.from_model(meta).label() in flat and "--force" in flat and "--from" in flat
