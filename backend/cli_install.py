"""``impasto install-krita``: copy the Krita plugin into Krita's resource folder.

What lands in ``<profile>/`` (Krita's resource folder, ``--profile`` or the
platform default):

* ``pykrita/impasto.desktop`` - what Krita's Python Plugin Manager lists;
* ``pykrita/impasto_krita/`` - the plugin package, with the protocol package
  vendored as ``vendor/impasto_protocol`` (Krita's Python cannot see this
  environment) and ``install.json``: the command that runs *this* Impasto,
  so the docker can start the daemon by itself;
* ``actions/impasto_krita.action`` - the actions' default shortcuts.

The package is staged next to its destination and swapped in with renames,
so an interrupted install never leaves a half-copied plugin, and
reinstalling over an older version is the upgrade path.

This module is about Krita only.  GIMP's installer lives in
``impasto.backend.install_gimp``; it is imported at the bottom so both
sub-commands register whichever module the CLI loads first.
"""
from __future__ import annotations

import json
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Dict, List
from impasto.backend import cli as _cli
EXIT_OK, EXIT_FAIL, CliError = _cli.EXIT_OK, _cli.EXIT_FAIL, _cli.CliError

PLUGIN_PACKAGE = "impasto_krita"
DESKTOP_FILE = "impasto.desktop"
IGNORE = shutil.ignore_patterns("__pycache__", "*.pyc", "*.pyo", ".*")


def plugin_source() -> Path:
    import impasto.plugin_krita as plugin

    return Path(plugin.__file__).resolve().parent


def protocol_source() -> Path:
    import impasto.protocol as protocol

    return Path(protocol.__file__).resolve().parent


def default_profiles() -> List[Path]:
    """Krita's resource folder candidates on this platform, the usual one first."""
    home = Path.home()
    if sys.platform.startswith("win"):
        appdata = os.environ.get("APPDATA") or str(home / "AppData" / "Roaming")
        return [Path(appdata) / "krita"]
    if sys.platform == "darwin":
        return [home / "Library" / "Application Support" / "krita"]
    data = os.environ.get("XDG_DATA_HOME") or str(home / ".local" / "share")
    return [Path(data) / "krita", home / ".var" / "app" / "org.kde.krita" / "data" / "krita"]  # native, Flatpak


def default_profile() -> Path:
    candidates = default_profiles()
    for path in candidates:
        if path.is_dir():
            return path
    return candidates[0]


def _write_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def _replace_dir(staged: Path, dest: Path) -> None:
    """Swap ``staged`` into ``dest`` with renames (the old copy is removed afterwards)."""
    old = None
    if dest.exists():
        old = dest.with_name(f".{dest.name}.old-{os.getpid()}-{int(time.time())}")
        os.replace(dest, old)
    try:
        os.replace(staged, dest)
    except OSError:
        if old is not None:
            os.replace(old, dest)  # put the previous version back
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def install_info(endpoint: str = "", auto_start: bool = True, models_dir: str = "") -> Dict[str, object]:
    from impasto.protocol.messages import PROTOCOL_VERSION

    env = {k: os.environ[k] for k in ("IMPASTO_HOME",) if os.environ.get(k)}
    return {
        "version": _version(),
        "protocol": PROTOCOL_VERSION,
        "daemon_command": [sys.executable, "-m", "impasto.backend.cli"],
        "daemon_env": env,
        "endpoint": endpoint,
        "auto_start": auto_start,
        "models_dir": models_dir,
        "installed": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "source": str(plugin_source()),
    }


def _version() -> str:
    try:
        from importlib.metadata import version

        return version("impasto")
    except Exception:
        return "0.1.0"


def install_krita(profile: Path, endpoint: str = "", auto_start: bool = True, models_dir: str = "") -> Dict[str, Path]:
    """Install (or upgrade) the plugin under ``profile``; returns the paths written."""
    src = plugin_source()
    package_src = src / PLUGIN_PACKAGE
    if not (package_src / "__init__.py").is_file() or not (src / DESKTOP_FILE).is_file():
        raise CliError(f"the Krita plugin sources are missing from {src}: reinstall Impasto", EXIT_FAIL)
    from impasto.plugin_krita.impasto_krita.actions import ACTION_FILE, action_xml

    pykrita = profile / "pykrita"
    dest = pykrita / PLUGIN_PACKAGE
    try:
        pykrita.mkdir(parents=True, exist_ok=True)
        staged = pykrita / f".{PLUGIN_PACKAGE}.new-{os.getpid()}"
        if staged.exists():
            shutil.rmtree(staged)
        shutil.copytree(package_src, staged, ignore=IGNORE)
        vendor = staged / "vendor"
        shutil.copytree(protocol_source(), vendor / "impasto_protocol", ignore=IGNORE)
        (vendor / "__init__.py").write_text('"""Packages the plugin carries (copied by impasto install-krita)."""\n',
                                            encoding="utf-8")
        info = install_info(endpoint, auto_start, models_dir)
        (staged / "install.json").write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
        _replace_dir(staged, dest)
        desktop = pykrita / DESKTOP_FILE
        _write_atomic(desktop, (src / DESKTOP_FILE).read_text(encoding="utf-8"))
        action = profile / "actions" / ACTION_FILE
        _write_atomic(action, action_xml())
    except OSError as exc:
        raise CliError(f"could not install the Krita plugin into {profile}: {exc}", EXIT_FAIL) from None
    return {"package": dest, "desktop": desktop, "actions": action}


def uninstall_krita(profile: Path) -> List[Path]:
    from impasto.plugin_krita.impasto_krita.actions import ACTION_FILE

    removed = []
    for path in (profile / "pykrita" / PLUGIN_PACKAGE, profile / "pykrita" / DESKTOP_FILE,
                 profile / "actions" / ACTION_FILE):
        if path.is_dir():
            shutil.rmtree(path)
            removed.append(path)
        elif path.exists():
            path.unlink()
            removed.append(path)
    return removed


ENABLE_STEPS = """\
To enable it:
  1. (Re)start Krita.
  2. Settings > Configure Krita > Python Plugin Manager: tick "Impasto", press OK.
  3. Restart Krita, then open the docker with Settings > Dockers > Impasto.
Shortcuts: Ctrl+Shift+Return generates / inpaints the selection, Ctrl+Shift+X cancels
(Settings > Configure Krita > Keyboard Shortcuts > Scripts to change them)."""


def cmd_install_krita(args) -> int:
    profile = Path(args.profile).expanduser() if args.profile else default_profile()
    if args.uninstall:
        removed = uninstall_krita(profile)
        if not removed:
            print(f"the Impasto Krita plugin is not installed in {profile}")
        for path in removed:
            print(f"removed {path}")
        return EXIT_OK
    models_dir = str(Path(args.models_dir).expanduser().resolve()) if args.models_dir else ""
    paths = install_krita(profile, endpoint=args.endpoint or "", auto_start=not args.no_autostart,
                          models_dir=models_dir)
    print(f"installed the Impasto Krita plugin into {profile}")
    for what, path in paths.items():
        print(f"  {what:<8} {path}")
    if args.no_autostart:
        print("the docker will not start the daemon: run `impasto serve` before painting")
    else:
        print(f"the docker starts the daemon when needed with: {sys.executable} -m impasto.backend.cli serve")
    print(ENABLE_STEPS)
    return EXIT_OK


def register(subparsers, add_common) -> None:
    p = subparsers.add_parser("install-krita", help="install the Krita plugin (docker + shortcuts)")
    p.add_argument("--profile", default=None,
                   help="Krita's resource folder (default: " + str(default_profiles()[0]) + ")")
    p.add_argument("--no-autostart", action="store_true",
                   help="do not let the docker start the daemon (run `impasto serve` yourself)")
    p.add_argument("--models-dir", default=None, help="models folder for a daemon the docker starts")
    p.add_argument("--uninstall", action="store_true", help="remove the plugin instead")
    p.set_defaults(func=cmd_install_krita)


if register not in _cli.EXTRA_COMMANDS:
    _cli.EXTRA_COMMANDS.append(register)

# GIMP's installer has its own module; the CLI only auto-imports this one, so load it here and
# make sure its sub-command lands in the running CLI's list too.
try:
    from impasto.backend import install_gimp as _gimp  # noqa: E402
except ModuleNotFoundError as _exc:
    if _exc.name != "impasto.backend.install_gimp":
        raise
else:
    if getattr(_gimp, "register", None) is not None and _gimp.register not in _cli.EXTRA_COMMANDS:
        _cli.EXTRA_COMMANDS.append(_gimp.register)
