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
