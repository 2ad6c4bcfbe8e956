"""Concept import/export on the client's side: the client reads and writes the files.

Why: the daemon never opens a path a request names (a request could
otherwise make it read or overwrite any file its user can reach).  So an
import reads the LoRA file here and sends its bytes; an export receives the
bytes and writes them here, atomically (temporary name in the same folder,
fsync, rename), so a crash never leaves half a file under the artist's name.

Standard library only (vendored into the plugins with the rest of protocol/).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Optional

from . import atomic
from .messages import Blob, Done, ErrorCode, Limits, ProtocolError


def read_concept_file(path: os.PathLike, limit: Optional[int] = None) -> Blob:
    """The bytes of a LoRA file to import; typed ``bad_field`` errors naming ``file``."""
    path = Path(path).expanduser()
    limit = Limits().max_concept_bytes if limit is None else limit
    try:
        size = path.stat().st_size
        if not path.is_file():
            raise ProtocolError(ErrorCode.BAD_FIELD, f"file: {str(path)!r} is not a file", "file")
        if size > limit:
            raise ProtocolError(ErrorCode.BAD_FIELD, f"file: {path.name} is {size} bytes, over the cap of "
                                f"{limit} bytes", "file")
        return Blob(data=path.read_bytes())
    except OSError as exc:
        raise ProtocolError(ErrorCode.BAD_FIELD, f"file: cannot read {str(path)!r}: {exc.strerror or exc}",
                            "file") from None


def write_atomic(path: os.PathLike, data: bytes) -> int:
    """Write ``data`` to ``path`` atomically; returns the byte count (a typed ``bad_field`` naming ``path``)."""
    try:
        return atomic.write_atomic(path, data)
    except OSError as exc:
        raise ProtocolError(ErrorCode.BAD_FIELD, f"path: could not write {str(path)!r}: {exc.strerror or exc}",
                            "path") from None


def import_concept(client: Any, path: os.PathLike, name: str, trigger: str = "", timeout: float = 120.0) -> Done:
    """Send the LoRA file at ``path`` (on this machine) to the daemon's library as ``name``."""
    blob = read_concept_file(path)
    return client.concept_action("import", name, timeout=timeout, trigger=trigger, file=blob,
                                 filename=Path(path).name)


def export_concept(client: Any, name: str, path: os.PathLike, timeout: float = 120.0) -> Path:
    """Write concept ``name`` as a kohya ``.safetensors`` at ``path`` (a folder: ``path/NAME.safetensors``)."""
    path = Path(path).expanduser()
    if path.is_dir():
        path = path / f"{name}.safetensors"
    if not path.parent.is_dir():
        raise ProtocolError(ErrorCode.BAD_FIELD, f"path: folder {str(path.parent)!r} does not exist", "path")
    done = client.concept_action("export", name, timeout=timeout)
    if done.file is None:
        raise ProtocolError(ErrorCode.BAD_MESSAGE, "the daemon's export answer carried no file")
    write_atomic(path, done.file.data)
    return path
