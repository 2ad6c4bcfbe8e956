"""Framing: a message is one JSON header frame plus one raw frame per image.

Header::

    {"v": 1, "type": "generate", "prompt": "...",
     "init_image": {"$frame": 1, "width": 640, "height": 480, "format": "rgba8"}, ...}

Every :class:`~.messages.Image` inside the message (at any depth) is replaced by
a ``{"$frame": k, ...}`` reference and its bytes travel as frame ``k``.  No
base64, no temp files: a 4096x4096 RGBA layer is one 64 MiB frame.

Decoding checks every field against the dataclass annotations, so a string
where a number belongs is a typed :class:`~.messages.ProtocolError` naming the
field, never a crash deep in the engine.
"""
from __future__ import annotations

import dataclasses
import json
import sys
import typing
from typing import Any, Dict, List, Sequence, Union

from .messages import MESSAGE_TYPES, PROTOCOL_VERSION, Blob, ErrorCode, Image, ProtocolError

_HINTS: Dict[type, Dict[str, Any]] = {}
MAX_HEADER = 1 << 20  # 1 MiB of JSON is already absurd for a header
MAX_STRING = 64 * 1024  # characters in one string field (a prompt is far shorter)
MAX_DEPTH = 32  # JSON nesting of a header; the deepest legal message nests 4 levels


def _hints(cls: type) -> Dict[str, Any]:
    if cls not in _HINTS:
        module = sys.modules[cls.__module__]
        _HINTS[cls] = typing.get_type_hints(cls, vars(module))
    return _HINTS[cls]


# --------------------------------------------------------------------------- encode


def encode(msg: Any) -> List[bytes]:
    """Turn a message dataclass into ``[header, *image_frames]``."""
    frames: List[Any] = [b""]
    header = {"v": PROTOCOL_VERSION, "type": msg.TYPE}
    header.update(_to_json(msg, frames))
    frames[0] = json.dumps(header, separators=(",", ":"), allow_nan=False).encode("utf-8")
    return frames


def _to_json(value: Any, frames: List[Any]) -> Any:
    if isinstance(value, Image):
        frames.append(value.data)
        return {"$frame": len(frames) - 1, "width": value.width, "height": value.height, "format": value.format}
    if isinstance(value, Blob):
        frames.append(value.data)
        return {"$frame": len(frames) - 1, "size": len(value.data)}
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        # a field marked ``omit_empty`` is left out while empty, so a reader that predates it still decodes
        return {f.name: _to_json(getattr(value, f.name), frames) for f in dataclasses.fields(value)
                if not (f.metadata.get("omit_empty") and not getattr(value, f.name))}
    if isinstance(value, (list, tuple)):
        return [_to_json(v, frames) for v in value]
    if isinstance(value, dict):
        return {str(k): _to_json(v, frames) for k, v in value.items()}
    return value


# --------------------------------------------------------------------------- decode


def decode(frames: Sequence[Union[bytes, bytearray, memoryview]]) -> Any:
    """Parse ``[header, *image_frames]`` into a message dataclass.

    Raises :class:`ProtocolError` with ``bad_message`` for framing problems,
    ``version_mismatch`` for another protocol version, ``bad_field`` for a
    field of the wrong type.
    """
    if not frames:
        raise ProtocolError(ErrorCode.BAD_MESSAGE, "empty message: expected a JSON header frame")
    raw = bytes(frames[0])
    if len(raw) > MAX_HEADER:
        raise ProtocolError(ErrorCode.BAD_MESSAGE, f"header frame of {len(raw)} bytes is over {MAX_HEADER}")
    depth = _nesting(raw)
    if depth > MAX_DEPTH:
        raise ProtocolError(ErrorCode.BAD_MESSAGE, f"header nests {depth} levels deep, over {MAX_DEPTH}")
    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise ProtocolError(ErrorCode.BAD_MESSAGE, f"header frame is not JSON: {exc}") from None
    if not isinstance(header, dict):
        raise ProtocolError(ErrorCode.BAD_MESSAGE, "header frame must be a JSON object")
    version = header.pop("v", None)
    if isinstance(version, bool) or not isinstance(version, int) or version != PROTOCOL_VERSION:
        raise ProtocolError(
            ErrorCode.VERSION_MISMATCH,
            f"protocol version {version!r} is not supported: this side speaks version {PROTOCOL_VERSION}",
            "v",
        )
    kind = header.pop("type", None)
    cls = MESSAGE_TYPES.get(kind) if isinstance(kind, str) else None
    if cls is None:
        raise ProtocolError(ErrorCode.BAD_MESSAGE, f"unknown message type {kind!r}", "type")
    used: set = set()
    msg = _from_json(cls, header, frames, used, "")
    if len(used) != len(frames) - 1:
        raise ProtocolError(
            ErrorCode.BAD_MESSAGE,
            f"{len(frames) - 1} binary frames sent but the header references {len(used)}",
        )
    return msg


def _nesting(raw: bytes) -> int:
    """Deepest bracket nesting of a JSON text, outside strings (checked before parsing, so a
    hostile header cannot drive the parser into a RecursionError)."""
    if raw.count(b"[") + raw.count(b"{") <= MAX_DEPTH:
        return 0  # cannot nest deeper than it has brackets
    depth = deepest = 0
    in_str = escaped = False
    for b in raw:
        if in_str:
            if escaped:
                escaped = False
            elif b == 0x5C:  # backslash
                escaped = True
            elif b == 0x22:
                in_str = False
        elif b == 0x22:
            in_str = True
        elif b in (0x5B, 0x7B):
            depth += 1
            if depth > deepest:
                deepest = depth
                if deepest > MAX_DEPTH:
                    return deepest
        elif b in (0x5D, 0x7D):
            depth -= 1
    return deepest


def _from_json(tp: Any, value: Any, frames: Sequence, used: set, path: str) -> Any:
    origin = typing.get_origin(tp)
    name = path or "message"
    if tp is Any or tp is object:
        return value
    if origin is Union:
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if value is None:
            return None
        return _from_json(args[0], value, frames, used, path)
    if tp is Image:
        return _image(value, frames, used, name)
    if tp is Blob:
        return _blob(value, frames, used, name)
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise _bad(name, f"expected an object, got {type(value).__name__}")
        hints = _hints(tp)
        known = {f.name for f in dataclasses.fields(tp)}
        unknown = sorted(str(k) for k in value if k not in known)
        if unknown:
            where = f"{path}.{unknown[0]}" if path else unknown[0]
            raise _bad(where, f"{tp.__name__} has no field {unknown[0]!r}")
        kwargs = {}
        for f in dataclasses.fields(tp):
            if f.name in value:
                sub = f"{path}.{f.name}" if path else f.name
                kwargs[f.name] = _from_json(hints[f.name], value[f.name], frames, used, sub)
        return tp(**kwargs)
    if origin in (list, List):
        if not isinstance(value, list):
            raise _bad(name, f"expected a list, got {type(value).__name__}")
        (item,) = typing.get_args(tp) or (Any,)
        return [_from_json(item, v, frames, used, f"{path}[{i}]") for i, v in enumerate(value)]
    if origin in (tuple, typing.Tuple):
        args = typing.get_args(tp)
        if not isinstance(value, (list, tuple)) or len(value) != len(args):
            raise _bad(name, f"expected a list of {len(args)} items")
        return tuple(_from_json(a, v, frames, used, f"{path}[{i}]") for i, (a, v) in enumerate(zip(args, value)))
    if origin in (dict, Dict):
        if not isinstance(value, dict):
            raise _bad(name, f"expected an object, got {type(value).__name__}")
        return dict(value)
    if tp is bool:
        if not isinstance(value, bool):
            raise _bad(name, f"expected true/false, got {_short(value)}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise _bad(name, f"expected an integer, got {_short(value)}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise _bad(name, f"expected a number, got {_short(value)}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise _bad(name, f"expected a string, got {_short(value)}")
        if len(value) > MAX_STRING:
            raise _bad(name, f"{len(value)} characters are over the cap of {MAX_STRING}")
        if "\x00" in value:
            raise _bad(name, "must not contain NUL characters")
        return value
    return value


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _image(value: Any, frames: Sequence, used: set, name: str) -> Image:
    if not isinstance(value, dict) or "$frame" not in value:
        raise _bad(name, "expected an image reference {$frame, width, height, format}")
    k, w, h, fmt = value.get("$frame"), value.get("width"), value.get("height"), value.get("format", "rgba8")
    if not all(isinstance(v, int) and not isinstance(v, bool) for v in (k, w, h)):
        raise _bad(name, "$frame, width and height must be integers")
    if not isinstance(fmt, str):
        raise _bad(name, f"format must be a string such as 'rgba8', got {_short(fmt)}")
    if set(value) - {"$frame", "width", "height", "format"}:
        raise _bad(name, "an image reference holds only $frame, width, height and format")
    img = Image(width=w, height=h, data=_frame(k, frames, used, name), format=fmt)
    img.check(name)
    return img


def _frame(k: Any, frames: Sequence, used: set, name: str) -> bytes:
    if isinstance(k, bool) or not isinstance(k, int):
        raise _bad(name, "$frame must be an integer")
    if not 1 <= k < len(frames):
        raise ProtocolError(
            ErrorCode.BAD_MESSAGE, f"{name}: references frame {k} but only {len(frames) - 1} binary frames came", name
        )
    if k in used:
        raise ProtocolError(ErrorCode.BAD_MESSAGE, f"{name}: frame {k} is referenced twice", name)
    used.add(k)
    return frames[k] if isinstance(frames[k], bytes) else bytes(frames[k])


def _blob(value: Any, frames: Sequence, used: set, name: str) -> Blob:
    if not isinstance(value, dict) or "$frame" not in value or set(value) - {"$frame", "size"}:
        raise _bad(name, "expected a file reference {$frame, size}")
    data = _frame(value.get("$frame"), frames, used, name)
    size = value.get("size", len(data))
    if size != len(data) or isinstance(size, bool):
        raise _bad(name, f"declares {size!r} bytes but its frame holds {len(data)}")
    return Blob(data=data)


def _bad(name: str, message: str) -> ProtocolError:
    return ProtocolError(ErrorCode.BAD_FIELD, f"{name}: {message}", name)
