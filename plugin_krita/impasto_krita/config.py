"""Where the daemon is and how to start it: install-time defaults, then the artist's overrides.

``impasto install-krita`` writes ``install.json`` next to this module with
the command that runs *its* Impasto (``/path/to/python -m
impasto.backend.cli``) and the endpoint, so a fresh install can start the
daemon by itself.  The Connection section of the docker overrides them;
those overrides and the form are kept through a :class:`SettingsStore`
(Krita's own settings inside Krita, a dict in tests).
"""
from __future__ import annotations

import json
import os
import shlex
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Dict, List, Optional

from ...protocol.transport import default_endpoint

INSTALL_FILE = Path(__file__).with_name("install.json")
SETTINGS_GROUP = "impasto"


class SettingsStore:
    """Key -> string storage; Krita's ``readSetting``/``writeSetting`` in Krita."""

    def get(self, key: str) -> Optional[str]:
        raise NotImplementedError

    def set(self, key: str, value: str) -> None:
        raise NotImplementedError


class MemoryStore(SettingsStore):
    def __init__(self, values: Optional[Dict[str, str]] = None):
        self.values = dict(values or {})

    def get(self, key: str) -> Optional[str]:
        return self.values.get(key)

    def set(self, key: str, value: str) -> None:
        self.values[key] = value


class KritaStore(SettingsStore):
    """Krita's settings file (kritarc), group ``impasto``."""

    def __init__(self, krita_instance):
        self.app = krita_instance

    def get(self, key: str) -> Optional[str]:
        value = self.app.readSetting(SETTINGS_GROUP, key, "")
        return value or None

    def set(self, key: str, value: str) -> None:
        self.app.writeSetting(SETTINGS_GROUP, key, value)


@dataclass
class ConnectionConfig:
    endpoint: str = ""
    daemon_command: List[str] = field(default_factory=list)  # e.g. ["/venv/bin/python", "-m", "impasto.backend.cli"]
    auto_start: bool = True
    models_dir: str = ""
    daemon_env: Dict[str, str] = field(default_factory=dict)  # e.g. IMPASTO_HOME recorded at install
    start_timeout: float = 180.0

    @property
    def effective_endpoint(self) -> str:
        return self.endpoint or default_endpoint()

    @property
    def can_start(self) -> bool:
        return self.auto_start and bool(self.daemon_command)

    def command_text(self) -> str:
        return join_command(self.daemon_command)


def split_command(text: str) -> List[str]:
    """A command line typed by the artist -> argv (Windows paths keep their backslashes)."""
    text = (text or "").strip()
    if not text:
        return []
    try:
        return shlex.split(text, posix=os.name != "nt")
    except ValueError:
        return text.split()


def join_command(argv: List[str]) -> str:
    if os.name == "nt":
        return " ".join(f'"{a}"' if " " in a else a for a in argv)
    return " ".join(shlex.quote(a) for a in argv)


def read_install_info(path: Path = INSTALL_FILE) -> Dict[str, object]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def load_connection(store: SettingsStore, install: Optional[Dict[str, object]] = None) -> ConnectionConfig:
    """What the artist saved in the docker, else the install's choice, else ``$IMPASTO_ENDPOINT`` / the default.

    An empty endpoint means "``$IMPASTO_ENDPOINT`` or tcp://127.0.0.1:7877",
    resolved when connecting (:attr:`ConnectionConfig.effective_endpoint`).
    """
    info = read_install_info() if install is None else install
    cfg = ConnectionConfig()
    if isinstance(info.get("endpoint"), str):
        cfg.endpoint = info["endpoint"]  # type: ignore[assignment]
    cmd = info.get("daemon_command")
    if isinstance(cmd, list) and all(isinstance(a, str) for a in cmd):
        cfg.daemon_command = list(cmd)
    if isinstance(info.get("auto_start"), bool):
        cfg.auto_start = info["auto_start"]  # type: ignore[assignment]
    if isinstance(info.get("models_dir"), str):
        cfg.models_dir = info["models_dir"]  # type: ignore[assignment]
    env = info.get("daemon_env")
    if isinstance(env, dict):
        cfg.daemon_env = {str(k): str(v) for k, v in env.items()}
    try:
        saved = json.loads(store.get("connection") or "{}")
    except ValueError:
        saved = {}
    if isinstance(saved, dict):
        if isinstance(saved.get("endpoint"), str):
            cfg.endpoint = saved["endpoint"]
        if isinstance(saved.get("daemon_command"), list):
            cfg.daemon_command = [str(a) for a in saved["daemon_command"]]
        if isinstance(saved.get("auto_start"), bool):
            cfg.auto_start = saved["auto_start"]
    return cfg


def save_connection(store: SettingsStore, cfg: ConnectionConfig) -> None:
    data = asdict(cfg)
    for key in ("start_timeout", "models_dir", "daemon_env"):
        data.pop(key, None)
    store.set("connection", json.dumps(data))
