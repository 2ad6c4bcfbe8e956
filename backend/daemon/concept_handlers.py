"""The daemon's answers about the concept library: list, rename, delete, import, export.

These are control requests, answered on the I/O thread at once (file work of
a second or less: a rename is one directory rename, an import parses one LoRA
file's bytes, an export serialises one), never queued behind a long training.

The daemon never opens a path a request names: an import carries the LoRA
file's bytes (the client read the file) and an export answers with the bytes
(the client writes them, atomically).  The only files touched are the
library's own, under IMPASTO_HOME.  Every failure is a typed error naming the
field; the library's own writes are atomic.
"""
from __future__ import annotations

import logging
import re

from impasto.protocol.messages import (
    TRIGGER_RE,
    Blob,
    ConceptAction,
    Concepts,
    Done,
    ErrorCode,
    ListConcepts,
    ProtocolError,
    check_name,
)

log = logging.getLogger("impasto.daemon")

ACTIONS = ("rename", "delete", "import", "export")
_FILENAME = re.compile(r"[^/\\\x00-\x1f]{1,255}")


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


def on_action(daemon, identity: bytes, msg: ConceptAction) -> None:
    if msg.action not in ACTIONS:
        raise _bad("action", f"{msg.action!r} is not one of {', '.join(ACTIONS)}")
    if msg.file is not None and msg.action != "import":
        raise _bad("file", f"only import carries a file, not {msg.action}")
    info = {"action": msg.action}
    out = _RUN[msg.action](daemon, msg)
    blob = out.pop("file", None)
    info.update(out)
    daemon._send(identity, Done(ref=msg.ref, info=info, file=blob))


def _rename(daemon, msg: ConceptAction) -> dict:
    concept = _library().rename(msg.name, msg.new_name)
    return {"name": concept.name, "old_name": msg.name, "concept": concept.to_wire()}


def _delete(daemon, msg: ConceptAction) -> dict:
    _library().delete(msg.name)
    return {"name": msg.name}


def _import(daemon, msg: ConceptAction) -> dict:
    from impasto.backend.concepts.library import new_meta
    from impasto.backend.concepts.lora_io import read_lora_bytes

    check_name(msg.name, "name")
    if msg.trigger and not TRIGGER_RE.fullmatch(msg.trigger.strip()):
        raise _bad("trigger", f"{msg.trigger!r} must be one word of letters, digits, _ or -")
    if msg.file is None:
        raise _bad("file", "import needs the LoRA file's bytes (the client reads the file and sends them)")
    msg.file.check("file", daemon.limits.max_concept_bytes)
    filename = msg.filename or "imported.safetensors"
    if not _FILENAME.fullmatch(filename) or filename in (".", ".."):
        raise _bad("filename", f"{msg.filename!r} must be a bare file name (no folders)")
    library = _library()
    if library.find(msg.name) is not None:
        raise _bad("name", f"a concept named {msg.name!r} already exists: delete or rename it first")
    tensors, hints = read_lora_bytes(msg.file.data, filename)
    trigger = msg.trigger.strip() or hints["trigger"]
    meta = new_meta(
        trigger=trigger, class_noun=hints["class_noun"], method=hints["method"], rank=hints["rank"],
        steps=hints["steps"], base_model=hints["base_model"], base_fingerprint=hints["base_fingerprint"],
        base_arch=hints["base_arch"], text_encoder=hints["text_encoder"],
        trigger_embedding=hints["trigger_embedding"], source="imported",
        imported_from=filename, layout=hints["layout"], modules=hints["modules"],
        **({"slider": hints["slider"]} if hints.get("slider") else {}),   # an exported slider stays a slider
    )
    from impasto.backend.engine.fewstep import for_lora

    preset = for_lora([msg.name, filename.rsplit(".", 1)[0]] + list(hints.get("titles", [])))
    if preset:   # an LCM-LoRA, Hyper-SD or Lightning LoRA: its sampler, steps and CFG travel in the listing
        meta["recommended"] = preset
    concept = library.save(msg.name, tensors, meta)
    notes = []
    if not trigger:
        notes.append("no trigger word known: the concept works on any prompt (a style), or import it again "
                     "with its trigger word")
    log.info("imported %s (%d bytes) as concept %r (%s layout, %d layers)", filename, len(msg.file.data), msg.name,
             hints["layout"], hints["modules"])
    return {"name": concept.name, "concept": concept.to_wire(), "layout": hints["layout"], "notes": notes}


def _export(daemon, msg: ConceptAction) -> dict:
    from impasto.backend.concepts.lora_io import kohya_file_bytes

    library = _library()
    concept = library.get(msg.name)
    data = kohya_file_bytes(concept.name, library.load_weights(concept), concept.meta)
    return {"name": concept.name, "bytes": len(data), "format": "kohya",
            "filename": f"{concept.name}.safetensors", "file": Blob(data=data)}


_RUN = {"rename": _rename, "delete": _delete, "import": _import, "export": _export}
