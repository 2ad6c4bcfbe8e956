"""Saving results as files an artist keeps: never lost, never overwritten, carrying their settings.

* Without a name, results go to ``IMPASTO_HOME/outputs/DATE/NNNNN-SEED.png``;
  numbers are handed out under a folder lock and each name is claimed with
  ``O_EXCL``, so two ``impasto`` runs at once never write the same file.
* A name the artist gave is never overwritten unless they say ``--force``.
* The extension picks the format (PNG, JPEG, WebP); anything else is refused
  *before* the job runs, so no minutes of work end in a refused write.
* Every picture carries the A1111 ``parameters`` text (:mod:`impasto.protocol.parameters`):
  PNG as a text chunk, JPEG / WebP as the EXIF UserComment, as A1111 writes them.

Writes are atomic (a temporary file renamed into place).
"""
from __future__ import annotations

import datetime
import os
import re
import time
from pathlib import Path
from typing import List, Optional

from impasto.protocol.launcher import impasto_home
from impasto.protocol.parameters import KEYWORD, read_user_comment, user_comment

FORMATS = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".webp": "WEBP"}
EXIF_IFD, USER_COMMENT = 0x8769, 0x9286


class PictureError(Exception):
    """A file name or picture that cannot be used; ``str()`` is the sentence for the artist."""


def picture_format(path: Path) -> str:
    fmt = FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise PictureError(f"{path.name}: the extension picks the format; use .png, .jpg or .webp "
                           f"(got {path.suffix or 'none'!r})")
    return fmt


def outputs_dir(day: Optional[datetime.date] = None) -> Path:
    return impasto_home() / "outputs" / (day or datetime.date.today()).isoformat()


_NUMBERED = re.compile(r"^(\d{5,})-")


class _FolderLock:
    """A lock any process can take (mkdir is atomic everywhere); a lock older than 30 s is stale."""

    def __init__(self, folder: Path):
        self.path = folder / ".numbering.lock"

    def __enter__(self):
        deadline = time.monotonic() + 30
        while True:
            try:
                os.mkdir(self.path)
                return self
            except FileExistsError:
                try:
                    if time.time() - self.path.stat().st_mtime > 30:
                        os.rmdir(self.path)
                        continue
                except OSError:
                    pass
                if time.monotonic() > deadline:
                    raise PictureError(f"{self.path} is held by another run; remove it if none is running")
                time.sleep(0.02)

    def __exit__(self, *exc):
        try:
            os.rmdir(self.path)
        except OSError:
            pass


def claim_numbered(seeds: List[int], folder: Optional[Path] = None, ext: str = ".png") -> List[Path]:
    """New, empty, claimed files ``NNNNN-SEED.ext`` (consecutive numbers after the folder's highest)."""
    folder = folder or outputs_dir()
    folder.mkdir(parents=True, exist_ok=True)
    paths: List[Path] = []
    with _FolderLock(folder):
        used = [int(m.group(1)) for m in (_NUMBERED.match(p.name) for p in folder.iterdir()) if m]
        number = max(used, default=0) + 1
        for seed in seeds:
            while True:
                path = folder / f"{number:05d}-{seed}{ext}"
                number += 1
                try:
                    os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644))
                    paths.append(path)
                    break
                except FileExistsError:
                    continue
    return paths


def named_paths(out: str, count: int) -> List[Path]:
    """``-o NAME``'s files: NAME, or NAME-1, NAME-2 ... for a batch."""
    path = Path(out)
    if count == 1:
        return [path]
    return [path.with_name(f"{path.stem}-{i + 1}{path.suffix}") for i in range(count)]


def check_named(out: str, count: int, force: bool) -> List[Path]:
    """The files ``-o`` will write, refused before the job when the format is unknown or a file exists."""
    paths = named_paths(out, count)
    picture_format(paths[0])
    if not force:
        taken = [str(p) for p in paths if p.exists()]
        if taken:
            raise PictureError(f"{', '.join(taken)} already exists: choose another -o name, or add --force "
                               f"to overwrite")
    return paths


def save_picture(pil, path: Path, parameters: str = "") -> Path:
    """Write ``pil`` to ``path`` (format from the extension) with ``parameters`` embedded; atomic."""
    from PIL import PngImagePlugin

    fmt = picture_format(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if fmt == "JPEG" and pil.mode != "RGB":
        pil = pil.convert("RGB")
    kwargs = {}
    if parameters:
        if fmt == "PNG":
            info = PngImagePlugin.PngInfo()
            info.add_text(KEYWORD, parameters)       # Pillow picks tEXt or iTXt as A1111's does
            kwargs["pnginfo"] = info
        else:
            exif = pil.getexif()
            exif.get_ifd(EXIF_IFD)[USER_COMMENT] = user_comment(parameters)
            kwargs["exif"] = exif.tobytes()
    if fmt == "JPEG":
        kwargs["quality"] = 95
    elif fmt == "WEBP":
        kwargs["lossless"] = True
    tmp = path.with_name(f".{path.name}.{os.getpid()}.part")
    try:
        pil.save(tmp, format=fmt, **kwargs)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


def read_parameters(path: Path) -> Optional[str]:
    """The A1111 text a picture carries (PNG chunk, or JPEG/WebP EXIF UserComment), or None."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            text = getattr(img, "text", {}).get(KEYWORD) if hasattr(img, "text") else None
            if text is None:
                text = img.info.get(KEYWORD)
            if text is None:
                raw = img.getexif().get_ifd(EXIF_IFD).get(USER_COMMENT)
                if isinstance(raw, bytes) and raw:
                    text = read_user_comment(raw)
                elif isinstance(raw, str) and raw:
                    text = raw
    except (OSError, UnidentifiedImageError) as exc:
        raise PictureError(f"{path}: not a picture Impasto can read ({exc})") from None
    return text
