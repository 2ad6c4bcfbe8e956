"""``impasto install-gimp``: put the GIMP 3 plug-in where GIMP looks for it.

GIMP 3 runs a plug-in folder ``plug-ins/NAME/`` by executing ``NAME.py``
inside it, with its own Python (on Windows an MSYS2 build that cannot load
pyzmq, numpy or Pillow).  So the installer writes::

    <profile>/plug-ins/impasto/impasto.py          the entry script (python3 shebang, executable)
    <profile>/plug-ins/impasto/impasto_gimp/       the code it imports, standard library + gi only:
        protocol/       a verbatim copy of the wire protocol (pure-Python ZMTP fallback included)
        plugin_gimp/    the plug-in modules

Both packages import each other only relatively, so the copy works under
any top-level name and never picks up an ``impasto`` installed elsewhere.
Files are written with LF line endings (a Windows checkout must not hand
GIMP a CRLF shebang) into a temporary folder that replaces the old plug-in
folder in one rename, so a half-finished install never reaches GIMP.

The profile folder defaults to GIMP 3's per-user folder: ``$GIMP3_DIRECTORY``
when set, else Linux ``$XDG_CONFIG_HOME/GIMP/3.0`` (``~/.config``; the
Flatpak's ``~/.var/app/org.gimp.GIMP/config/GIMP/3.0`` when only that one
exists), Windows ``%APPDATA%\\GIMP\\3.0``, macOS
``~/Library/Application Support/GIMP/3.0``.
"""
from __future__ import annotations

import os
import shutil
import stat
import sys
import tempfile
from pathlib import Path
from typing import Dict, List, Mapping, Optional

PLUGIN_NAME = "impasto"
VENDOR_PACKAGE = "impasto_gimp"
SHEBANG = "#!/usr/bin/env python3"
GIMP_SERIES = "3.0"


def default_profile(platform: str = sys.platform, environ: Optional[Mapping[str, str]] = None,
                    home: Optional[Path] = None) -> Path:
    """GIMP 3's per-user profile folder on this OS (the folder holding ``plug-ins/``)."""
    env = os.environ if environ is None else environ
    home = Path(home) if home is not None else Path.home()
    if env.get("GIMP3_DIRECTORY"):
        return Path(env["GIMP3_DIRECTORY"]).expanduser()
    if platform.startswith("win"):
        appdata = env.get("APPDATA")
        base = Path(appdata) if appdata else home / "AppData" / "Roaming"
        return base / "GIMP" / GIMP_SERIES
    if platform == "darwin":
        return home / "Library" / "Application Support" / "GIMP" / GIMP_SERIES
    config = Path(env["XDG_CONFIG_HOME"]) if env.get("XDG_CONFIG_HOME") else home / ".config"
    native = config / "GIMP" / GIMP_SERIES
    flatpak = home / ".var" / "app" / "org.gimp.GIMP" / "config" / "GIMP" / GIMP_SERIES
    if not native.exists() and flatpak.exists():
        return flatpak
    return native


def plugin_folder(profile: Path) -> Path:
    return Path(profile) / "plug-ins" / PLUGIN_NAME


def _sources() -> Dict[str, Path]:
    """The repository/installed folders the plug-in is built from."""
    import impasto.plugin_gimp
    import impasto.protocol

    return {"protocol": Path(impasto.protocol.__file__).resolve().parent,
            "plugin_gimp": Path(impasto.plugin_gimp.__file__).resolve().parent}


def _write_text(path: Path, text: str, executable: bool = False) -> None:
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    with open(path, "w", encoding="utf-8", newline="\n") as fh:
        fh.write(text)
    mode = 0o755 if executable else 0o644
    os.chmod(path, mode)


def _copy_package(src: Path, dst: Path) -> List[str]:
    dst.mkdir(parents=True)
    written = []
    for file in sorted(src.glob("*.py")):
        _write_text(dst / file.name, file.read_text(encoding="utf-8"))
        written.append(file.name)
    if "__init__.py" not in written:
        raise RuntimeError(f"{src} is not a package (no __init__.py)")
    return written


def build_plugin(target: Path) -> None:
    """Write the complete plug-in folder at ``target`` (which must not exist)."""
    src = _sources()
    entry = (src["plugin_gimp"] / "entry.py").read_text(encoding="utf-8")
    lines = entry.replace("\r\n", "\n").split("\n")
    if lines[0].startswith("#!"):
        lines = lines[1:]
    target.mkdir(parents=True)
    _write_text(target / f"{PLUGIN_NAME}.py", "\n".join([SHEBANG] + lines), executable=True)
    vendor = target / VENDOR_PACKAGE
    vendor.mkdir()
    from impasto.protocol.messages import PROTOCOL_VERSION

    _write_text(vendor / "__init__.py",
                '"""Impasto for GIMP: vendored by `impasto install-gimp` - do not edit, reinstall instead."""\n'
                f"PROTOCOL_VERSION = {PROTOCOL_VERSION}\n")
    _copy_package(src["protocol"], vendor / "protocol")
    _copy_package(src["plugin_gimp"], vendor / "plugin_gimp")


def install(profile: Optional[Path] = None) -> Path:
    """Install (or replace) the plug-in; returns the plug-in folder."""
    profile = Path(profile) if profile is not None else default_profile()
    dest = plugin_folder(profile)
    dest.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".impasto-install-", dir=str(dest.parent)))
    old = None
    try:
        build_plugin(staging / PLUGIN_NAME)
        if dest.exists() or dest.is_symlink():
            old = dest.parent / f".impasto-old-{os.getpid()}"
            if old.exists():
                shutil.rmtree(old)
            os.replace(dest, old)
        os.replace(staging / PLUGIN_NAME, dest)
    except BaseException:
        if old is not None and not dest.exists():
            os.replace(old, dest)   # put the previous install back
            old = None
        raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    return dest


def uninstall(profile: Optional[Path] = None) -> Optional[Path]:
    dest = plugin_folder(Path(profile) if profile is not None else default_profile())
    if not dest.exists():
        return None
    shutil.rmtree(dest)
    return dest


def is_executable(path: Path) -> bool:
    return bool(path.stat().st_mode & stat.S_IXUSR)


# --------------------------------------------------------------------------- CLI


def cmd_install_gimp(args) -> int:
    from impasto.backend.cli import EXIT_OK, CliError

    profile = Path(args.profile).expanduser() if args.profile else default_profile()
    try:
        if args.uninstall:
            removed = uninstall(profile)
            print(f"removed {removed}" if removed else f"the plug-in is not installed in {profile}")
            return EXIT_OK
        dest = install(profile)
    except OSError as exc:
        raise CliError(f"cannot write the GIMP plug-in into {profile}: {exc}") from None
    print(f"installed the Impasto GIMP plug-in in {dest}")
    print("restart GIMP; the procedures are under Filters > Impasto (Settings sets the daemon's endpoint)")
    return EXIT_OK


def register(subparsers, add_common) -> None:
    p = subparsers.add_parser("install-gimp", help="install the GIMP 3 plug-in",
                              description="Copy the Impasto plug-in into GIMP 3's plug-ins folder.")
    p.add_argument("--profile", default=None, metavar="DIR",
                   help=f"GIMP profile folder (default here: {default_profile()})")
    p.add_argument("--uninstall", action="store_true", help="remove the plug-in instead")
    p.set_defaults(func=cmd_install_gimp)


def _register_once() -> None:
    from impasto.backend import cli

    if register not in cli.EXTRA_COMMANDS:
        cli.EXTRA_COMMANDS.append(register)


_register_once()
