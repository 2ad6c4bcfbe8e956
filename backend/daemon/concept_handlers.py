"""The daemon's answers about the concept library: list, rename, delete, import, export.

These are control requests, answered on the I/O thread at once (file work of
a second or less: a rename is one directory rename, an import or export reads
and writes one LoRA file), never queued behind a long training.  Paths of
import and export are on the daemon's machine - the daemon is local to the
artist - and must be absolute, so they never depend on the daemon's working
folder.  Every failure is a typed error naming the field; the library's own
writes are atomic.
"""
from __future__ import annotations

import logging
import re
from pathlib import Path

from impasto.protocol.messages import ConceptAction, Concepts, Done, ErrorCode, ListConcepts, ProtocolError

log = logging.getLogger("impasto.daemon")

ACTIONS = ("rename", "delete", "import", "export")
_TRIGGER = re.compile(r"^[A-Za-z0-9_\-]{1,32}$")


def register(daemon) -> None:
    """Add the concept handlers to ``daemon.handlers``."""
    daemon.handlers[ListConcepts.TYPE] = lambda identity, msg: on_list(daemon, identity, msg)
    daemon.handlers[ConceptAction.TYPE] = lambda identity, msg: on_action(daemon, identity, msg)


def _library():
    from impasto.backend.concepts.library import ConceptLibrary

    return ConceptLibrary()


def on_list(daemon, identity: bytes, msg: ListConcepts) -> None:
    concepts = [c.to_wire() for c in _library().list()]
    daemon._send(identity, Concepts(ref=msg.ref, concepts=concepts))


def _bad(field: str, message: str) -> ProtocolError:
    return ProtocolError(ErrorCode.BAD_FIELD, f"{field}: {message}", field)


def _path(msg: ConceptAction) -> Path:
    if not msg.path:
        raise _bad("path", f"{msg.action} needs a file path on the daemon's machine")
    path = Path(msg.path).expanduser()
    if not path.is_absolute():
        raise _bad("path", f"{msg.path!r} must be an absolute path (the daemon has its own working folder)")
    return path


def on_action(daemon, identity: bytes, msg: ConceptAction) -> None:
    if msg.action not in ACTIONS:
        raise _bad("action", f"{msg.action!r} is not one of {', '.join(ACTIONS)}")
    info = {"action": msg.action}
    info.update(_RUN[msg.action](msg))
    daemon._send(identity, Done(ref=msg.ref, info=info))


def _rename(msg: ConceptAction) -> dict:
    concept = _library().rename(msg.name, msg.new_name)
    return {"name": concept.name, "old_name": msg.name, "concept": concept.to_wire()}


def _delete(msg: ConceptAction) -> dict:
    _library().delete(msg.name)
    return {"name": msg.name}


def _import(msg: ConceptAction) -> dict:
    from impasto.backend.concepts.library import new_meta
    from impasto.backend.concepts.lora_io import read_lora_file
    from impasto.protocol.messages import check_name

    check_name(msg.name, "name")
    if msg.trigger and not _TRIGGER.match(msg.trigger.strip()):
        raise _bad("trigger", f"{msg.trigger!r} must be one word of letters, digits, _ or -")
    path = _path(msg)
    library = _library()
    if library.find(msg.name) is not None:
        raise _bad("name", f"a concept named {msg.name!r} already exists: delete or rename it first")
    tensors, hints = read_lora_file(path)
    trigger = msg.trigger.strip() or hints["trigger"]
    meta = new_meta(
        trigger=trigger, class_noun=hints["class_noun"], method=hints["method"], rank=hints["rank"],
        steps=hints["steps"], base_model=hints["base_model"], base_fingerprint=hints["base_fingerprint"],
        base_arch=hints["base_arch"], text_encoder=hints["text_encoder"],
        trigger_embedding=hints["trigger_embedding"], source="imported",
        imported_from=path.name, layout=hints["layout"], modules=hints["modules"],
    )
    concept = library.save(msg.name, tensors, meta)
    notes = []
    if not trigger:
        notes.append("no trigger word known: the concept works on any prompt (a style), or import it again "
                     "with its trigger word")
    log.info("imported %s as concept %r (%s layout, %d layers)", path, msg.name, hints["layout"], hints["modules"])
    return {"name": concept.name, "concept": concept.to_wire(), "layout": hints["layout"], "notes": notes}


def _export(msg: ConceptAction) -> dict:
    from impasto.backend.concepts.lora_io import write_kohya_file

    library = _library()
    concept = library.get(msg.name)
    path = _path(msg)
    if path.is_dir():
        path = path / f"{concept.name}.safetensors"
    if not path.parent.is_dir():
        raise _bad("path", f"folder {str(path.parent)!r} does not exist")
    size = write_kohya_file(path, concept.name, library.load_weights(concept), concept.meta)
    return {"name": concept.name, "path": str(path), "bytes": size, "format": "kohya"}


_RUN = {"rename": _rename, "delete": _delete, "import": _import, "export": _export}
