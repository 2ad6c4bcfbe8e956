"""``impasto install-krita``: what lands in Krita's folder, and that it runs on a bare Python."""
from __future__ import annotations

import json
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from impasto.backend import cli, cli_install

ROOT = Path(__file__).resolve().parents[1]


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "impasto.backend.cli", *args], capture_output=True, text=True,
                          timeout=120)


def test_install_writes_plugin_vendored_protocol_and_shortcuts(tmp_path):
    profile = tmp_path / "krita"
    proc = run_cli("install-krita", "--profile", str(profile))
    assert proc.returncode == 0, proc.stderr
    assert "Python Plugin Manager" in proc.stdout and str(profile) in proc.stdout
    pkg = profile / "pykrita" / "impasto_krita"
    desktop = (profile / "pykrita" / "impasto.desktop").read_text()
    assert "X-KDE-Library=impasto_krita" in desktop and "ServiceTypes=Krita/PythonPlugin" in desktop
    # the protocol travels verbatim, as a sibling of the plugin (the source tree's layout, as for GIMP)
    for src in (ROOT / "protocol").glob("*.py"):
        assert (pkg / "protocol" / src.name).read_bytes() == src.read_bytes().replace(b"\r\n", b"\n")
    for src in (ROOT / "plugin_krita" / "impasto_krita").glob("*.py"):
        assert (pkg / "plugin_krita" / "impasto_krita" / src.name).is_file()
    assert not list(pkg.rglob("__pycache__"))
    assert (pkg / "Manual.html").is_file()  # the Plugin Manager's X-Krita-Manual
    info = json.loads((pkg / "plugin_krita" / "impasto_krita" / "install.json").read_text())
    assert info["daemon_command"] == [sys.executable, "-m", "impasto.backend.cli"]
    assert info["auto_start"] is True
    actions = ET.parse(profile / "actions" / "impasto_krita.action").getroot()
    shortcuts = {a.get("name"): a.findtext("shortcut") for a in actions.iter("Action")}
    assert shortcuts == {"impasto_generate": "Ctrl+Shift+Return", "impasto_cancel": "Ctrl+Shift+X"}


def test_installed_plugin_imports_without_the_backend_numpy_pil_or_torch(tmp_path):
    """Krita's Python has none of them: the installed copy must stand on the standard library."""
    profile = tmp_path / "krita"
    assert cli.main(["install-krita", "--profile", str(profile)]) == 0
    pykrita = profile / "pykrita"
    code = (
        "import sys; sys.path.insert(0, sys.argv[1]);"
        "import impasto_krita;"
        "from impasto_krita.plugin_krita.impasto_krita import pixels, masks, planning, placement, session, config,"
        " wording, krita_host, actions;"
        "from impasto_krita import protocol;"
        "c = session.Client('tcp://127.0.0.1:9'); c.close();"
        "print(protocol.__file__);"
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'numpy', 'PIL', 'torch', 'impasto'}))"
    )
    proc = subprocess.run([sys.executable, "-c", code, str(pykrita)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.strip().splitlines()
    assert lines[0].startswith(str(pykrita / "impasto_krita" / "protocol"))
    assert lines[1] == "[]"


def test_reinstall_replaces_the_old_copy_and_uninstall_removes_it(tmp_path, capsys):
    profile = tmp_path / "krita"
    assert cli.main(["install-krita", "--profile", str(profile), "--no-autostart"]) == 0
    pkg = profile / "pykrita" / "impasto_krita"
    plugin = pkg / "plugin_krita" / "impasto_krita"
    (plugin / "stale.py").write_text("old")
    (plugin / "pixels.py").write_text("broken")
    assert json.loads((plugin / "install.json").read_text())["auto_start"] is False
    assert cli.main(["--endpoint", "tcp://127.0.0.1:7999", "install-krita", "--profile", str(profile)]) == 0
    assert not (plugin / "stale.py").exists()
    assert (plugin / "pixels.py").read_text() != "broken"
    info = json.loads((plugin / "install.json").read_text())
    assert info["endpoint"] == "tcp://127.0.0.1:7999" and info["auto_start"] is True
    assert sorted(p.name for p in (profile / "pykrita").iterdir()) == ["impasto.desktop", "impasto_krita"]
    capsys.readouterr()
    assert cli.main(["install-krita", "--profile", str(profile), "--uninstall"]) == 0
    assert not pkg.exists() and not (profile / "pykrita" / "impasto.desktop").exists()
    assert not (profile / "actions" / "impasto_krita.action").exists()
    assert "removed" in capsys.readouterr().out


def test_unwritable_profile_is_a_clear_error(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    assert cli.main(["install-krita", "--profile", str(blocker)]) == cli.EXIT_FAIL
    assert "could not install the Krita plugin" in capsys.readouterr().err


@pytest.mark.parametrize("platform,expected", [
    ("linux", ".local/share/krita"), ("win32", "Roaming/krita"), ("darwin", "Library/Application Support/krita"),
])
def test_default_profile_per_platform(monkeypatch, tmp_path, platform, expected):
    monkeypatch.setattr(cli_install.sys, "platform", platform)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("XDG_DATA_HOME", raising=False)
    monkeypatch.setenv("APPDATA", str(tmp_path / "AppData" / "Roaming"))
    assert cli_install.krita_profiles()[0].as_posix().endswith(expected)


def test_flatpak_krita_is_used_when_it_is_the_only_one(monkeypatch, tmp_path):
    monkeypatch.setattr(cli_install.sys, "platform", "linux")
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("XDG_DATA_HOME", raising=False)
    flatpak = tmp_path / ".var" / "app" / "org.kde.krita" / "data" / "krita"
    flatpak.mkdir(parents=True)
    assert cli_install.krita_profile() == flatpak
    (tmp_path / ".local" / "share" / "krita").mkdir(parents=True)
    assert cli_install.krita_profile() == tmp_path / ".local" / "share" / "krita"
