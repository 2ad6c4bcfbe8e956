"""``impasto install-krita`` and ``impasto install-gimp``: one way to put a plug-in where its host looks.

Both hosts run their own Python, which knows nothing of this environment
(and on Windows / macOS has no pyzmq, numpy or Pillow), so each plug-in
carries the wire protocol with it - vendored the *same* way for both:

    <root>/__init__.py           says what it is (and, for Krita, loads the plug-in)
    <root>/protocol/             the wire protocol, verbatim (standard library only)
    <root>/<plug-in folder>/     the plug-in, at the same path as in the source tree

The root package mirrors the source tree (where the root is ``impasto``), so
the plug-in imports the protocol relatively (``..protocol`` from GIMP's
``plugin_gimp``, ``...protocol`` from Krita's ``plugin_krita/impasto_krita``)
and the copy never picks up an ``impasto`` installed elsewhere.

Krita (``<profile>/``, Krita's resource folder):
``pykrita/impasto_krita/`` (root, with the docker's ``Manual.html``;
``install.json`` beside the plug-in's ``config.py``: the command that runs
*this* Impasto, so the docker can start the daemon), ``pykrita/impasto.desktop`` (what the Python Plugin Manager
lists) and ``actions/impasto_krita.action`` (default shortcuts).

GIMP 3 (``<profile>/plug-ins/impasto/``): ``impasto.py`` (the entry script,
python3 shebang, executable - GIMP runs ``NAME/NAME.py``) and
``impasto_gimp/`` (root).  Python files are written with LF line endings (a
Windows checkout must not hand GIMP a CRLF shebang).

Every install is built in a staging folder next to its destination and
swapped in with renames (:func:`swap_into_place`), so an interrupted install
never leaves a half-copied plug-in and reinstalling is the upgrade path.
"""
from __future__ import annotations

import json
import os
import shutil
import stat
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable, Dict, List, Mapping, Optional

from impasto.backend import cli as _cli
from impasto.protocol.atomic import write_atomic

EXIT_OK, EXIT_FAIL, CliError = _cli.EXIT_OK, _cli.EXIT_FAIL, _cli.CliError
SKIP_NAMES = {"__pycache__"}
SKIP_SUFFIXES = (".pyc", ".pyo")


# --------------------------------------------------------------------------- shared: vendoring and swapping


def source_root() -> Path:
    """The folder holding ``protocol/``, ``plugin_krita/`` and ``plugin_gimp/`` (the ``impasto`` package)."""
    import impasto.protocol as protocol

    return Path(protocol.__file__).resolve().parent.parent


def _copy_file(src: Path, dst: Path) -> None:
    if src.suffix == ".py":
        text = src.read_text(encoding="utf-8").replace("\r\n", "\n").replace("\r", "\n")
        with open(dst, "w", encoding="utf-8", newline="\n") as fh:
            fh.write(text)
    else:
        shutil.copyfile(src, dst)
    os.chmod(dst, 0o644)


def copy_tree(src: Path, dst: Path) -> None:
    """``src`` into the new folder ``dst``: no caches, no dotfiles, Python files with LF endings."""
    if not (src / "__init__.py").is_file():
        raise CliError(f"{src} is not a package (no __init__.py): reinstall Impasto", EXIT_FAIL)
    dst.mkdir(parents=True)
    for item in sorted(src.iterdir()):
        if item.name.startswith(".") or item.name in SKIP_NAMES or item.name.endswith(SKIP_SUFFIXES):
            continue
        if item.is_dir():
            copy_tree(item, dst / item.name)
        elif item.is_file():
            _copy_file(item, dst / item.name)


def vendor(root: Path, plugin: str, doc: str, tail: str = "") -> Path:
    """Build the root package ``root`` (see the module doc) for the plug-in folder ``plugin``; its copy's path."""
    from impasto.protocol.messages import PROTOCOL_VERSION

    src = source_root()
    root.mkdir(parents=True)
    with open(root / "__init__.py", "w", encoding="utf-8", newline="\n") as fh:
        fh.write(f'"""{doc} Vendored by `impasto` - do not edit, reinstall instead."""\n'
                 f"PROTOCOL_VERSION = {PROTOCOL_VERSION}\n{tail}")
    copy_tree(src / "protocol", root / "protocol")
    parts = Path(plugin).parts
    for i in range(1, len(parts)):  # the folders between the root and the plug-in keep their __init__
        (root / Path(*parts[:i])).mkdir(exist_ok=True)
        _copy_file(src / Path(*parts[:i]) / "__init__.py", root / Path(*parts[:i]) / "__init__.py")
    copy_tree(src / plugin, root / plugin)
    return root / plugin


def swap_into_place(dest: Path, build: Callable[[Path], None]) -> Path:
    """``build(staged)`` next to ``dest``, then rename it into place (the previous copy back on failure)."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{dest.name}-install-", dir=str(dest.parent)))
    old: Optional[Path] = None
    try:
        build(staging / dest.name)
        if dest.exists() or dest.is_symlink():
            old = dest.parent / f".{dest.name}-old-{os.getpid()}-{int(time.time())}"
            os.replace(dest, old)
        os.replace(staging / dest.name, dest)
    except BaseException:
        if old is not None and not dest.exists():
            os.replace(old, dest)
            old = None
        raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    return dest


def write_text_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, text.encode("utf-8"))


def remove(paths: List[Path]) -> List[Path]:
    removed = []
    for path in paths:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        elif path.exists() or path.is_symlink():
            path.unlink()
        else:
            continue
        removed.append(path)
    return removed


def _version() -> str:
    try:
        from importlib.metadata import version

        return version("impasto")
    except Exception:
        return "0.1.0"


# --------------------------------------------------------------------------- Krita

KRITA_ROOT = "impasto_krita"          # the .desktop's X-KDE-Library
KRITA_PLUGIN = "plugin_krita/impasto_krita"
DESKTOP_FILE = "impasto.desktop"
KRITA_TAIL = "\nfrom .plugin_krita import impasto_krita as plugin  # noqa: E402,F401  (inside Krita: the docker)\n"


def krita_profiles() -> List[Path]:
    """Krita's resource folder candidates on this platform, the usual one first."""
    home = Path.home()
    if sys.platform.startswith("win"):
        appdata = os.environ.get("APPDATA") or str(home / "AppData" / "Roaming")
        return [Path(appdata) / "krita"]
    if sys.platform == "darwin":
        return [home / "Library" / "Application Support" / "krita"]
    data = os.environ.get("XDG_DATA_HOME") or str(home / ".local" / "share")
    return [Path(data) / "krita", home / ".var" / "app" / "org.kde.krita" / "data" / "krita"]  # native, Flatpak


def krita_profile() -> Path:
    candidates = krita_profiles()
    return next((p for p in candidates if p.is_dir()), candidates[0])


def install_info(endpoint: str = "", auto_start: bool = True, models_dir: str = "") -> Dict[str, object]:
    """``install.json``: how the docker reaches (and starts) *this* Impasto."""
    from impasto.protocol.launcher import own_command
    from impasto.protocol.messages import PROTOCOL_VERSION

    return {
        "version": _version(), "protocol": PROTOCOL_VERSION, "daemon_command": own_command(),
        "daemon_env": {k: os.environ[k] for k in ("IMPASTO_HOME",) if os.environ.get(k)},
        "endpoint": endpoint, "auto_start": auto_start, "models_dir": models_dir,
        "installed": time.strftime("%Y-%m-%dT%H:%M:%S"), "source": str(source_root() / KRITA_PLUGIN),
    }


def install_krita(profile: Path, endpoint: str = "", auto_start: bool = True, models_dir: str = "") -> Dict[str, Path]:
    """Install (or upgrade) the Krita plug-in under ``profile``; the paths written."""
    from impasto.plugin_krita.impasto_krita.actions import ACTION_FILE, action_xml

    pykrita = profile / "pykrita"
    info = install_info(endpoint, auto_start, models_dir)

    def build(root: Path) -> None:
        plugin = vendor(root, KRITA_PLUGIN, "Impasto for Krita (the docker and its copy of the wire protocol).",
                        KRITA_TAIL)
        (plugin / "install.json").write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
        shutil.copyfile(plugin / "Manual.html", root / "Manual.html")  # X-Krita-Manual is read beside the root

    try:
        dest = swap_into_place(pykrita / KRITA_ROOT, build)
        desktop = pykrita / DESKTOP_FILE
        write_text_atomic(desktop, (source_root() / "plugin_krita" / DESKTOP_FILE).read_text(encoding="utf-8"))
        action = profile / "actions" / ACTION_FILE
        write_text_atomic(action, action_xml())
    except OSError as exc:
        raise CliError(f"could not install the Krita plugin into {profile}: {exc}", EXIT_FAIL) from None
    return {"package": dest, "desktop": desktop, "actions": action}


def uninstall_krita(profile: Path) -> List[Path]:
    from impasto.plugin_krita.impasto_krita.actions import ACTION_FILE

    return remove([profile / "pykrita" / KRITA_ROOT, profile / "pykrita" / DESKTOP_FILE,
                   profile / "actions" / ACTION_FILE])


KRITA_STEPS = """\
To enable it:
  1. (Re)start Krita.
  2. Settings > Configure Krita > Python Plugin Manager: tick "Impasto", press OK.
  3. Restart Krita, then open the docker with Settings > Dockers > Impasto.
Shortcuts: Ctrl+Shift+Return generates / inpaints the selection, Ctrl+Shift+X cancels
(Settings > Configure Krita > Keyboard Shortcuts > Scripts to change them)."""


def cmd_install_krita(args) -> int:
    profile = Path(args.profile).expanduser() if args.profile else krita_profile()
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
    print(KRITA_STEPS)
    return EXIT_OK


# --------------------------------------------------------------------------- GIMP 3

GIMP_NAME = "impasto"                 # plug-ins/impasto/impasto.py
GIMP_ROOT = "impasto_gimp"
GIMP_PLUGIN = "plugin_gimp"
SHEBANG = "#!/usr/bin/env python3"
GIMP_SERIES = "3.0"


def gimp_profile(platform: str = sys.platform, environ: Optional[Mapping[str, str]] = None,
                 home: Optional[Path] = None) -> Path:
    """GIMP 3's per-user profile folder (the one holding ``plug-ins/``).

    ``$GIMP3_DIRECTORY`` when set, else Linux ``$XDG_CONFIG_HOME/GIMP/3.0``
    (``~/.config``; the Flatpak's when only that one exists), Windows
    ``%APPDATA%\\GIMP\\3.0``, macOS ``~/Library/Application Support/GIMP/3.0``.
    """
    env = os.environ if environ is None else environ
    home = Path(home) if home is not None else Path.home()
    if env.get("GIMP3_DIRECTORY"):
        return Path(env["GIMP3_DIRECTORY"]).expanduser()
    if platform.startswith("win"):
        appdata = env.get("APPDATA")
        return (Path(appdata) if appdata else home / "AppData" / "Roaming") / "GIMP" / GIMP_SERIES
    if platform == "darwin":
        return home / "Library" / "Application Support" / "GIMP" / GIMP_SERIES
    config = Path(env["XDG_CONFIG_HOME"]) if env.get("XDG_CONFIG_HOME") else home / ".config"
    native = config / "GIMP" / GIMP_SERIES
    flatpak = home / ".var" / "app" / "org.gimp.GIMP" / "config" / "GIMP" / GIMP_SERIES
    return flatpak if not native.exists() and flatpak.exists() else native


def gimp_plugin_folder(profile: Path) -> Path:
    return Path(profile) / "plug-ins" / GIMP_NAME


def build_gimp_plugin(target: Path) -> None:
    """The complete plug-in folder at ``target`` (which must not exist)."""
    target.mkdir(parents=True)
    vendor(target / GIMP_ROOT, GIMP_PLUGIN, "Impasto for GIMP (the plug-in and its copy of the wire protocol).")
    entry = (source_root() / GIMP_PLUGIN / "entry.py").read_text(encoding="utf-8").replace("\r\n", "\n")
    lines = entry.split("\n")
    if lines[0].startswith("#!"):
        lines = lines[1:]
    script = target / f"{GIMP_NAME}.py"
    with open(script, "w", encoding="utf-8", newline="\n") as fh:
        fh.write("\n".join([SHEBANG] + lines))
    os.chmod(script, 0o755)


def install_gimp(profile: Optional[Path] = None) -> Path:
    """Install (or replace) the GIMP plug-in; its folder."""
    return swap_into_place(gimp_plugin_folder(Path(profile) if profile is not None else gimp_profile()),
                           build_gimp_plugin)


def uninstall_gimp(profile: Optional[Path] = None) -> Optional[Path]:
    removed = remove([gimp_plugin_folder(Path(profile) if profile is not None else gimp_profile())])
    return removed[0] if removed else None


def is_executable(path: Path) -> bool:
    return bool(path.stat().st_mode & stat.S_IXUSR)


def cmd_install_gimp(args) -> int:
    profile = Path(args.profile).expanduser() if args.profile else gimp_profile()
    try:
        if args.uninstall:
            removed = uninstall_gimp(profile)
            print(f"removed {removed}" if removed else f"the plug-in is not installed in {profile}")
            return EXIT_OK
        dest = install_gimp(profile)
    except OSError as exc:
        raise CliError(f"cannot write the GIMP plug-in into {profile}: {exc}") from None
    print(f"installed the Impasto GIMP plug-in in {dest}")
    print("restart GIMP; the procedures are under Filters > Impasto (Settings sets the daemon's endpoint)")
    return EXIT_OK


# --------------------------------------------------------------------------- the sub-commands


def register(subparsers, add_common) -> None:
    p = subparsers.add_parser("install-krita", help="install the Krita plugin (docker + shortcuts)")
    p.add_argument("--profile", default=None,
                   help="Krita's resource folder (default: " + str(krita_profiles()[0]) + ")")
    p.add_argument("--no-autostart", action="store_true",
                   help="do not let the docker start the daemon (run `impasto serve` yourself)")
    p.add_argument("--models-dir", default=None, help="models folder for a daemon the docker starts")
    p.add_argument("--uninstall", action="store_true", help="remove the plugin instead")
    p.set_defaults(func=cmd_install_krita)

    p = subparsers.add_parser("install-gimp", help="install the GIMP 3 plug-in",
                              description="Copy the Impasto plug-in into GIMP 3's plug-ins folder.")
    p.add_argument("--profile", default=None, metavar="DIR",
                   help=f"GIMP profile folder (default here: {gimp_profile()})")
    p.add_argument("--uninstall", action="store_true", help="remove the plug-in instead")
    p.set_defaults(func=cmd_install_gimp)


if register not in _cli.EXTRA_COMMANDS:
    _cli.EXTRA_COMMANDS.append(register)
