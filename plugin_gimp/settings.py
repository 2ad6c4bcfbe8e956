"""The plug-in's own settings: where the daemon is and whether to start it.

Shared by every Impasto procedure (GIMP's per-procedure "last values" are
not), stored as JSON in GIMP's profile folder and written atomically so a
crash mid-save never leaves a half-written file.  A missing or unreadable
file means defaults, never a plug-in that refuses to start.
"""
from __future__ import annotations

import json
import os
import re
import tempfile
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import List, Optional, Tuple

FILE_NAME = "impasto-settings.json"
TRANSPORTS = ("auto", "zmtp", "pyzmq")
_ENDPOINT_RE = re.compile(r"^(tcp://[^\s:/]+:\d{1,5}|ipc://\S+)$")


class SettingsError(ValueError):
    """A setting the artist typed is unusable; ``field`` names it."""

    def __init__(self, field: str, message: str):
        super().__init__(f"{field}: {message}")
        self.field = field


@dataclass
class PluginSettings:
    endpoint: str = ""            # "" = $IMPASTO_ENDPOINT or tcp://127.0.0.1:7877
    auto_start: bool = True       # start the daemon when nothing answers
    daemon_command: str = ""      # "" = `impasto serve` found on PATH
    transport: str = "auto"       # auto: pyzmq when GIMP's Python has it, else pure-Python ZMTP
    start_timeout: float = 180.0  # s to wait for a daemon we started (loading a model takes a while)

    def validate(self) -> "PluginSettings":
        if self.endpoint and not _ENDPOINT_RE.match(self.endpoint):
            raise SettingsError("endpoint", f"{self.endpoint!r} must look like tcp://127.0.0.1:7877")
        if self.endpoint.startswith("tcp://"):
            port = int(self.endpoint.rsplit(":", 1)[1])
            if not 0 < port < 65536:
                raise SettingsError("endpoint", f"port {port} is outside 1..65535")
        if self.transport not in TRANSPORTS:
            raise SettingsError("transport", f"{self.transport!r} is not one of {', '.join(TRANSPORTS)}")
        if not 1.0 <= float(self.start_timeout) <= 3600.0:
            raise SettingsError("start_timeout", f"{self.start_timeout} s is outside 1..3600")
        return self


def settings_path(profile_dir: str) -> Path:
    return Path(profile_dir) / FILE_NAME


def load(path: Path) -> Tuple[PluginSettings, List[str]]:
    """The saved settings (defaults where absent) and warnings about what was ignored."""
    warnings: List[str] = []
    try:
        raw = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return PluginSettings(), warnings
    except (OSError, ValueError) as exc:
        return PluginSettings(), [f"{path}: unreadable ({exc}); using defaults"]
    if not isinstance(raw, dict):
        return PluginSettings(), [f"{path}: not a JSON object; using defaults"]
    defaults = PluginSettings()
    values = {}
    for f in fields(PluginSettings):
        if f.name not in raw:
            continue
        value, want = raw[f.name], type(getattr(defaults, f.name))
        if want is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if not isinstance(value, want) or (want is not bool and isinstance(value, bool)):
            warnings.append(f"{path}: {f.name} should be {want.__name__}, not {value!r}; using the default")
            continue
        values[f.name] = value
    settings = PluginSettings(**values)
    try:
        settings.validate()
    except SettingsError as exc:
        warnings.append(f"{path}: {exc}; using defaults for it")
        setattr(settings, exc.field, getattr(defaults, exc.field))
    return settings, warnings


def save(settings: PluginSettings, path: Path) -> None:
    """Validate, then write through a temporary file and an atomic rename."""
    settings.validate()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".impasto-settings-", suffix=".tmp", dir=str(path.parent))
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as fh:
            json.dump(asdict(settings), fh, indent=2, sort_keys=True)
            fh.write("\n")
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def effective_endpoint(settings: PluginSettings, environ: Optional[dict] = None) -> str:
    """The settings' endpoint, else ``$IMPASTO_ENDPOINT``, else the protocol's default."""
    from ..protocol.transport import DEFAULT_ENDPOINT

    env = os.environ if environ is None else environ
    return settings.endpoint or env.get("IMPASTO_ENDPOINT") or DEFAULT_ENDPOINT
