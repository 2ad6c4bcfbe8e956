"""``impasto install-gimp``: the plug-in folder GIMP 3 gets, and that it runs on a bare Python."""
from __future__ import annotations

import json
import os
import py_compile
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from impasto.backend import cli, cli_install

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
def profile(tmp_path) -> Path:
    return tmp_path / "GIMP profile" / "3.0"     # a space in the path, as on Windows and macOS


def test_install_writes_entry_and_vendored_packages(profile):
    dest = cli_install.install_gimp(profile)
    assert dest == profile / "plug-ins" / "impasto"
    entry = dest / "impasto.py"
    raw = entry.read_bytes()
    assert raw.startswith(b"#!/usr/bin/env python3\n")
    assert cli_install.is_executable(entry)
    for pkg, src in (("protocol", REPO / "protocol"), ("plugin_gimp", REPO / "plugin_gimp")):
        copied = sorted(p.name for p in (dest / "impasto_gimp" / pkg).glob("*.py"))
        assert copied == sorted(p.name for p in src.glob("*.py"))
        for name in copied:
            data = (dest / "impasto_gimp" / pkg / name).read_bytes()
            assert b"\r" not in data, f"{pkg}/{name} has CR line endings"
            assert data == (src / name).read_bytes().replace(b"\r\n", b"\n")
    assert b"\r" not in raw
    assert (dest / "impasto_gimp" / "__init__.py").is_file()
    for path in dest.rglob("*.py"):
        py_compile.compile(str(path), cfile=str(path) + "c-test", doraise=True)
        os.unlink(str(path) + "c-test")
    # nothing but the plug-in folder in plug-ins/ (no staging leftovers)
    assert [p.name for p in (profile / "plug-ins").iterdir()] == ["impasto"]


def test_vendored_code_imports_only_relatively():
    """The copy must never reach for an ``impasto`` package installed elsewhere."""
    for folder in (REPO / "protocol", REPO / "plugin_gimp"):
        for path in folder.glob("*.py"):
            text = path.read_text()
            assert not re.search(r"^\s*(from|import)\s+impasto(\.|\s|$)", text, re.M), path


def test_reinstall_replaces_the_old_folder(profile):
    dest = cli_install.install_gimp(profile)
    (dest / "impasto_gimp" / "plugin_gimp" / "stale_module.py").write_text("raise SystemExit('old')\n")
    cli_install.install_gimp(profile)
    assert not (dest / "impasto_gimp" / "plugin_gimp" / "stale_module.py").exists()
    assert [p.name for p in (profile / "plug-ins").iterdir()] == ["impasto"]


def test_cli_install_and_uninstall(profile, capsys):
    assert cli.main(["install-gimp", "--profile", str(profile)]) == 0
    out = capsys.readouterr().out
    assert str(profile / "plug-ins" / "impasto") in out and "Filters > Impasto" in out
    assert (profile / "plug-ins" / "impasto" / "impasto.py").is_file()
    assert cli.main(["install-gimp", "--profile", str(profile), "--uninstall"]) == 0
    assert not (profile / "plug-ins" / "impasto").exists()
    assert cli.main(["install-gimp", "--profile", str(profile), "--uninstall"]) == 0
    assert "not installed" in capsys.readouterr().out


def test_cli_install_into_unwritable_place_is_a_clear_error(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("")
    assert cli.main(["install-gimp", "--profile", str(blocker / "sub")]) == 1
    assert "cannot write the GIMP plug-in" in capsys.readouterr().err


def test_default_profile_per_os(tmp_path):
    home = tmp_path
    assert cli_install.gimp_profile("linux", {}, home) == home / ".config" / "GIMP" / "3.0"
    assert cli_install.gimp_profile("linux", {"XDG_CONFIG_HOME": "/x"}, home) == Path("/x/GIMP/3.0")
    assert cli_install.gimp_profile("win32", {"APPDATA": "C:/Users/a/AppData/Roaming"}, home) == \
        Path("C:/Users/a/AppData/Roaming") / "GIMP" / "3.0"
    assert cli_install.gimp_profile("darwin", {}, home) == \
        home / "Library" / "Application Support" / "GIMP" / "3.0"
    assert cli_install.gimp_profile("linux", {"GIMP3_DIRECTORY": "/g"}, home) == Path("/g")
    flatpak = home / ".var" / "app" / "org.gimp.GIMP" / "config" / "GIMP" / "3.0"
    flatpak.mkdir(parents=True)
    assert cli_install.gimp_profile("linux", {}, home) == flatpak
    (home / ".config" / "GIMP" / "3.0").mkdir(parents=True)
    assert cli_install.gimp_profile("linux", {}, home) == home / ".config" / "GIMP" / "3.0"


BARE_PYTHON_JOB = textwrap.dedent('''
    import json, sys
    sys.path.insert(0, sys.argv[1])
    endpoint = sys.argv[2]
    out = {}
    for mod in ("zmq", "numpy", "PIL"):
        try:
            __import__(mod)
            out[mod] = True
        except ImportError:
            out[mod] = False
    from impasto_gimp.plugin_gimp import daemon_link, geometry, jobs, results, settings
    from impasto_gimp.plugin_gimp.job_runner import JobFlow
    from impasto_gimp.protocol.messages import Image
    out["impasto_imported"] = any(m == "impasto" or m.startswith("impasto.") for m in sys.modules)
    w, h = 96, 80
    img = bytes([(x * 5 + y) & 255 for y in range(h) for x in range(w) for _ in range(3)] + [])
    rgba = bytearray(w * h * 4)
    rgba[0::4], rgba[1::4], rgba[2::4] = img[0::3], img[1::3], img[2::3]
    rgba[3::4] = b"\\xff" * (w * h)
    sel = geometry.Rect(30, 20, 24, 18)
    mask = bytearray(w * h)
    for y in range(sel.y, sel.bottom):
        mask[y * w + sel.x:y * w + sel.right] = b"\\xff" * sel.width
    f = jobs.JobFields(prompt="a red fox", model="tiny", steps=2, seed=3, mask_blur=0, padding=4)
    sent = jobs.edit_window(f, geometry.Rect(0, 0, w, h), sel)
    from impasto_gimp.plugin_gimp import pixels
    req = jobs.edit_request(f, Image(sent.width, sent.height, pixels.crop(bytes(rgba), w, h, 4, sent)),
                            Image(sent.width, sent.height, pixels.crop(bytes(mask), w, h, 1, sent), "gray8"),
                            canvas=geometry.Rect(0, 0, w, h), sent=sent)
    s = settings.PluginSettings(endpoint=endpoint, auto_start=False)
    clients = []
    def connect(status):
        c = daemon_link.connect(s, status)
        clients.append(c.transport)
        return c
    outcome = JobFlow(connect, req, lambda t: None, lambda p: None, lambda o: None).run_blocking(timeout=120)
    out["transport"] = clients
    out["ok"] = outcome.ok
    out["error"] = outcome.error
    if outcome.ok:
        plans = results.edit_layers(outcome.result, sent, pixels.crop(bytes(mask), w, h, 1, sent))
        out["place"] = plans[0].place.as_tuple()
    print(json.dumps(out))
''')


def test_installed_plugin_runs_on_a_bare_python(profile, daemon, tmp_path):
    """GIMP's Windows Python has no pyzmq/numpy/Pillow: the installed code must do a real edit without them.

    ``python -S`` leaves out site-packages (so no pyzmq, numpy, Pillow, nor this repo's ``impasto``);
    the plug-in's own folder is all it gets.
    """
    dest = cli_install.install_gimp(profile)
    script = tmp_path / "bare.py"
    script.write_text(BARE_PYTHON_JOB)
    env = {"PATH": os.environ.get("PATH", ""), "HOME": str(tmp_path)}
    # the daemon's secret where the plug-in looks for it: ~/.impasto (docs/security.md)
    from impasto.protocol import credentials

    credentials.write_private(tmp_path / ".impasto" / credentials.SECRET_NAME, credentials.read_secret() + b"\n")
    proc = subprocess.run([sys.executable, "-S", str(script), str(dest), daemon.endpoint], env=env,
                          capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["zmq"] is False and out["numpy"] is False and out["PIL"] is False
    assert out["impasto_imported"] is False
    assert out["transport"] == ["ZmtpDealer"]
    assert out["ok"], out["error"]
    x, y, w, h = out["place"]
    assert (x, y, w, h) == (30, 20, 24, 18)     # no blur, no grow: the layer sits exactly on the selection


def test_the_impasto_command_has_install_gimp(profile, tmp_path):
    """Through the real entry point (``impasto`` imports the installers itself)."""
    env = dict(os.environ, HOME=str(tmp_path))
    proc = subprocess.run([sys.executable, "-m", "impasto.backend.cli", "install-gimp", "--profile", str(profile)],
                          env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert (profile / "plug-ins" / "impasto" / "impasto.py").is_file()
