"""The concept library: ``IMPASTO_HOME/concepts/NAME/``, one folder a concept.

A concept folder holds

* ``weights.safetensors`` - LoRA weights with diffusers/peft keys
  (``unet.<module>.lora_A.weight`` / ``lora_B.weight``, ``text_encoder.<module>...``),
  ``lora_alpha == rank`` everywhere (imported files have their alpha folded
  into ``lora_B``), so every reader applies them the same way;
* ``concept.json`` - what the artist and the engine need to know: trigger word,
  class noun, base model name and fingerprint, method, rank, steps, creation
  time, sample images;
* ``samples/`` - pictures made with the concept right after training.

The folder name *is* the concept's name, so a rename is one atomic directory
rename.  Saves are atomic too: everything is written (and fsynced) into a
hidden ``.tmp-*`` folder that is renamed into place at the end; a replaced
concept is first moved aside to ``.trash-*``.  A crash at any point leaves
either the old concept or the new one visible, never half of one; leftovers
are cleaned (or put back) the next time the library is opened.
"""
from __future__ import annotations

import errno
import io
import json
import logging
import os
import shutil
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional

from impasto.protocol.messages import ErrorCode, check_name

from impasto.backend.engine.errors import EngineError

log = logging.getLogger("impasto.concepts")

WEIGHTS_FILE = "weights.safetensors"
META_FILE = "concept.json"
SAMPLES_DIR = "samples"
FORMAT_VERSION = 1
STALE_SECONDS = 60.0  # a hidden .tmp/.trash folder older than this belongs to no running save

_locks: Dict[str, threading.RLock] = {}
_recovered: set = set()
_locks_guard = threading.Lock()


def default_root() -> Path:
    from impasto.backend.engine.models import impasto_home

    return impasto_home() / "concepts"


def now_iso() -> str:
    return datetime.now(timezone.utc).replace(microsecond=0).isoformat()


# --------------------------------------------------------------------------- low-level writes


def _write_file(path: Path, data: bytes) -> None:
    """Write and fsync one file.  Every byte the library writes goes through here
    (tests replace it to simulate a full disk)."""
    with open(path, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(str(path), os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _disk_message(exc: OSError) -> str:
    if exc.errno == errno.ENOSPC:
        return "the disk is full"
    if exc.errno == errno.EDQUOT:
        return "the disk quota is exceeded"
    if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return "the concepts folder is not writable"
    return exc.strerror or str(exc)


def png_bytes(img) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


# --------------------------------------------------------------------------- records


@dataclass
class ConceptInfo:
    """One concept as found on disk (``meta`` is its ``concept.json``)."""

    name: str
    path: Path
    meta: Dict[str, Any]

    @property
    def id(self) -> str:
        return str(self.meta.get("id", ""))

    @property
    def trigger(self) -> str:
        return str(self.meta.get("trigger", ""))

    @property
    def weights_path(self) -> Path:
        return self.path / WEIGHTS_FILE

    def sample_paths(self) -> List[Path]:
        return [self.path / s for s in self.meta.get("samples", []) if (self.path / s).is_file()]

    def to_wire(self) -> Dict[str, Any]:
        """The dict a ``Concepts`` reply carries for this concept."""
        out = {k: v for k, v in self.meta.items() if k not in ("format",)}
        out["name"] = self.name
        out["path"] = str(self.path)
        out["samples"] = [str(p) for p in self.sample_paths()]
        if "recommended" not in out and self.meta.get("source") == "imported":   # imported before presets: by name
            from impasto.backend.engine.fewstep import for_lora

            preset = for_lora([self.name, str(self.meta.get("imported_from", "")).rsplit(".", 1)[0]])
            if preset:
                out["recommended"] = preset
        try:
            out["size_bytes"] = self.weights_path.stat().st_size
        except OSError:
            out["size_bytes"] = 0
        return out


def new_meta(**fields: Any) -> Dict[str, Any]:
    """Metadata with the fields every concept has, overridden by ``fields``."""
    meta: Dict[str, Any] = {
        "format": FORMAT_VERSION,
        "id": uuid.uuid4().hex,
        "trigger": "",
        "class_noun": "",
        "method": "lora",
        "rank": 0,
        "steps": 0,
        "base_model": "",
        "base_fingerprint": "",
        "base_arch": "",
        "created": now_iso(),
        "source": "trained",
        "text_encoder": False,
        "samples": [],
    }
    meta.update(fields)
    return meta


# --------------------------------------------------------------------------- the library


class ConceptLibrary:
    """All concepts under one folder.  Thread-safe within a process."""

    def __init__(self, root: Optional[Path] = None):
        self.root = Path(root) if root is not None else default_root()
        key = str(self.root.resolve()) if self.root.exists() else str(self.root)
        with _locks_guard:
            self.lock = _locks.setdefault(key, threading.RLock())
        if key not in _recovered:
            with self.lock:
                self.recover()
            _recovered.add(key)

    # ---------------------------------------------------------------- reading

    def _folders(self) -> Iterable[Path]:
        if not self.root.is_dir():
            return []
        return [p for p in self.root.iterdir() if p.is_dir() and not p.name.startswith(".")]

    def _read(self, folder: Path) -> Optional[ConceptInfo]:
        try:
            meta = json.loads((folder / META_FILE).read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            log.warning("ignoring %s: unreadable %s (%s)", folder, META_FILE, exc)
            return None
        if not isinstance(meta, dict) or not (folder / WEIGHTS_FILE).is_file():
            log.warning("ignoring %s: no weights", folder)
            return None
        return ConceptInfo(name=folder.name, path=folder, meta=meta)

    def list(self) -> List[ConceptInfo]:
        with self.lock:
            found = [self._read(f) for f in self._folders()]
        return sorted((c for c in found if c is not None), key=lambda c: c.name.lower())

    def names(self) -> List[str]:
        return [c.name for c in self.list()]

    def find(self, name: str) -> Optional[ConceptInfo]:
        """The concept called ``name`` (exactly), or None."""
        check_name(name)
        with self.lock:
            folder = self.root / name
            if not folder.is_dir() or folder.name != name:
                return None
            return self._read(folder)

    def get(self, name: str, field: str = "name") -> ConceptInfo:
        """The concept called ``name``; a typed ``unknown_concept`` error otherwise."""
        check_name(name, field)
        info = self.find(name)
        if info is None:
            known = ", ".join(self.names()) or "the library is empty"
            raise EngineError(ErrorCode.UNKNOWN_CONCEPT,
                              f"{field}: no concept named {name!r} in the library ({known})", field)
        return info

    def load_weights(self, info: ConceptInfo) -> Dict[str, Any]:
        from safetensors.torch import load_file

        with self.lock:
            try:
                return load_file(str(info.weights_path))
            except Exception as exc:  # damaged file: a typed error, not a crash
                raise EngineError(ErrorCode.INTERNAL, f"concept {info.name!r}: weights unreadable: {exc}",
                                  "concepts") from exc

    def _collision(self, name: str, ignore: Optional[str] = None) -> Optional[str]:
        """An existing concept whose name equals ``name`` ignoring case (file systems
        on macOS and Windows would merge their folders)."""
        low = name.lower()
        for f in self._folders():
            if f.name.lower() == low and f.name != ignore:
                return f.name
        return None

    # ---------------------------------------------------------------- writing

    def save(self, name: str, tensors: Dict[str, Any], meta: Dict[str, Any], samples: Iterable[Any] = (),
             replace: bool = False) -> ConceptInfo:
        """Write a concept atomically; returns it as stored.

        ``replace`` allows overwriting a concept of the same name (retraining);
        the old one stays visible until the new one is complete.
        """
        from safetensors.torch import save as st_save

        check_name(name)
        meta = dict(meta)
        samples = list(samples)
        meta["samples"] = [f"{SAMPLES_DIR}/sample-{i}.png" for i in range(len(samples))]
        with self.lock:
            other = self._collision(name, ignore=name)
            if other is not None:
                raise EngineError(ErrorCode.BAD_FIELD, f"name: {name!r} clashes with the existing concept {other!r} "
                                  "(names differ only in case)", "name")
            target = self.root / name
            if target.exists() and not replace:
                raise EngineError(ErrorCode.BAD_FIELD, f"name: a concept named {name!r} already exists: "
                                  "delete or rename it first", "name")
            tmp = self.root / f".tmp-{name}-{uuid.uuid4().hex[:8]}"
            trash: Optional[Path] = None
            try:
                self.root.mkdir(parents=True, exist_ok=True)
                tmp.mkdir()
                clean = {k: v.detach().to("cpu").contiguous() for k, v in tensors.items()}
                st_meta = {"format": "impasto-lora", "alpha": "rank", "trigger": str(meta.get("trigger", "")),
                           "base_model": str(meta.get("base_model", ""))}
                _write_file(tmp / WEIGHTS_FILE, st_save(clean, metadata=st_meta))
                if samples:
                    (tmp / SAMPLES_DIR).mkdir()
                    for rel, img in zip(meta["samples"], samples):
                        _write_file(tmp / rel, png_bytes(img))
                    _fsync_dir(tmp / SAMPLES_DIR)
                _write_file(tmp / META_FILE, json.dumps(meta, indent=2, sort_keys=True).encode("utf-8"))
                _fsync_dir(tmp)
                if target.exists():
                    trash = self.root / f".trash-{name}-{uuid.uuid4().hex[:8]}"
                    os.rename(target, trash)
                os.rename(tmp, target)
                _fsync_dir(self.root)
            except OSError as exc:
                shutil.rmtree(tmp, ignore_errors=True)
                if trash is not None and trash.exists() and not target.exists():
                    os.rename(trash, target)  # put the old concept back
                    trash = None
                raise EngineError(ErrorCode.INTERNAL, f"could not save concept {name!r}: {_disk_message(exc)} "
                                  f"({self.root}); the library is unchanged", "name") from exc
            if trash is not None:
                shutil.rmtree(trash, ignore_errors=True)
            info = self._read(target)
            assert info is not None
            return info

    def rename(self, old: str, new: str) -> ConceptInfo:
        check_name(new, "new_name")
        with self.lock:
            info = self.get(old)
            if new == old:
                return info
            other = self._collision(new, ignore=old)
            if other is not None:
                raise EngineError(ErrorCode.BAD_FIELD, f"new_name: a concept named {other!r} already exists",
                                  "new_name")
            try:
                os.rename(info.path, self.root / new)
                _fsync_dir(self.root)
            except OSError as exc:
                raise EngineError(ErrorCode.INTERNAL, f"could not rename {old!r}: {_disk_message(exc)}",
                                  "name") from exc
            renamed = self._read(self.root / new)
            assert renamed is not None
            return renamed

    def delete(self, name: str) -> None:
        with self.lock:
            info = self.get(name)
            gone = self.root / f".deleted-{name}-{uuid.uuid4().hex[:8]}"
            try:
                os.rename(info.path, gone)  # gone from listings at once, atomically
                _fsync_dir(self.root)
            except OSError as exc:
                raise EngineError(ErrorCode.INTERNAL, f"could not delete {name!r}: {_disk_message(exc)}",
                                  "name") from exc
            shutil.rmtree(gone, ignore_errors=True)

    # ---------------------------------------------------------------- crash recovery

    def recover(self, stale_seconds: float = STALE_SECONDS) -> None:
        """Finish what a crashed save, replace or delete left behind.

        ``stale_seconds``: hidden folders younger than this may be another
        process's save in flight and are left alone; the daemon passes 0 at
        start, when it is the library's only writer.

        * ``.tmp-NAME-*``: a save that never completed -> removed;
        * ``.trash-NAME-*`` with metadata while ``NAME`` is missing: a replace
          that crashed between its two renames -> the old concept is put back;
        * any other ``.trash-*`` and every ``.deleted-*``: removed.
        """
        if not self.root.is_dir():
            return
        now = time.time()
        for p in sorted(self.root.iterdir()):
            if not p.is_dir() or not p.name.startswith((".tmp-", ".trash-", ".deleted-")):
                continue
            try:
                if now - p.stat().st_mtime < stale_seconds:
                    continue  # possibly another process's save in flight
            except OSError:
                continue
            if p.name.startswith(".trash-"):
                name = p.name[len(".trash-"):].rsplit("-", 1)[0]
                target = self.root / name
                if not target.exists() and (p / META_FILE).is_file() and (p / WEIGHTS_FILE).is_file():
                    try:
                        os.rename(p, target)
                        log.warning("restored concept %r left aside by an interrupted save", name)
                        continue
                    except OSError:
                        pass
            shutil.rmtree(p, ignore_errors=True)
