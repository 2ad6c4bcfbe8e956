"""The artist's pictures and captions, made ready for training.

Pictures arrive in any size and aspect ratio (a phone photo next to a
cropped scan): each is composited over white (diffusion sees no alpha),
scaled so its shorter side is the training resolution and centre-cropped to a
square.  Captions follow DreamBooth: ``"a <trigger> <class noun>"`` when the
artist gives none; a caption without the trigger gets it put in front (the
concept would otherwise never bind to its word).  The class prompts of prior
preservation are the same captions with the trigger taken out.
"""
from __future__ import annotations

import hashlib
import re
from typing import List, Sequence, Tuple

import numpy as np
import torch
from PIL import Image

from impasto.protocol.messages import ErrorCode, Image as WireImage

from impasto.backend.engine.errors import EngineError
from impasto.backend.engine.images import from_wire, to_rgb

MIN_IMAGES = 3


def fit_square(img: Image.Image, size: int) -> Image.Image:
    """Scale the shorter side to ``size`` and centre-crop to ``size`` x ``size``."""
    w, h = img.size
    scale = size / min(w, h)
    nw, nh = max(size, round(w * scale)), max(size, round(h * scale))
    img = img.resize((nw, nh), Image.LANCZOS if scale < 1 else Image.BICUBIC)
    left, top = (nw - size) // 2, (nh - size) // 2
    return img.crop((left, top, left + size, top + size))


def to_tensor(img: Image.Image) -> torch.Tensor:
    """RGB PIL -> (3, H, W) float in [-1, 1], the range the VAE encodes."""
    arr = np.asarray(img.convert("RGB"), dtype=np.float32) / 127.5 - 1.0
    return torch.from_numpy(arr).permute(2, 0, 1).contiguous()


@torch.no_grad()
def encode(vae, pictures: Sequence[Image.Image], device, batch: int = 4) -> Tuple[torch.Tensor, torch.Tensor]:
    """The VAE's latent distribution of each picture (mean, std; float32), a few pictures at a time.

    Training samples from these once-computed distributions every step instead of encoding again.
    """
    means, stds = [], []
    for i in range(0, len(pictures), batch):
        px = torch.stack([to_tensor(p) for p in pictures[i:i + batch]]).to(device, vae.dtype)
        dist = vae.encode(px).latent_dist
        means.append(dist.mean.float())
        stds.append(dist.std.float())
    return torch.cat(means), torch.cat(stds)


def check_count(images: Sequence[WireImage]) -> None:
    if len(images) < MIN_IMAGES:
        raise EngineError(ErrorCode.BAD_FIELD, f"images: {len(images)} picture{'s' if len(images) != 1 else ''} "
                          f"{'is' if len(images) == 1 else 'are'} too few: give {MIN_IMAGES}-20 pictures of the "
                          "concept", "images")


def prepare_images(images: Sequence[WireImage], resolution: int, warnings: List[str]) -> List[Image.Image]:
    check_count(images)
    out = []
    small = []
    for i, wire in enumerate(images):
        pil = to_rgb(from_wire(wire))
        if min(pil.size) < resolution // 2:
            small.append(f"images[{i}] ({pil.width}x{pil.height})")
        out.append(fit_square(pil, resolution))
    if small:
        warnings.append(f"{', '.join(small)} smaller than half the training size of {resolution} px: upscaled, "
                        "the concept may come out soft")
    return out


def images_digest(images: Sequence[WireImage]) -> str:
    h = hashlib.sha256()
    for img in images:
        h.update(f"{img.width}x{img.height}{img.format}".encode())
        h.update(img.data)
    return h.hexdigest()[:16]


def _has_word(text: str, word: str) -> bool:
    return re.search(rf"(?<![\w-]){re.escape(word)}(?![\w-])", text, re.IGNORECASE) is not None


def instance_captions(captions: Sequence[str], n: int, trigger: str, class_noun: str,
                      warnings: List[str]) -> List[str]:
    default = " ".join(w for w in ("a", trigger, class_noun.strip()) if w)
    if not captions:
        return [default] * n
    out = []
    missing = []
    for i, cap in enumerate(captions):
        cap = " ".join(cap.split()) or default
        if not _has_word(cap, trigger):
            missing.append(i)
            cap = f"{trigger} {cap}"
        out.append(cap)
    if missing:
        warnings.append(f"captions {missing} lacked the trigger word {trigger!r}: it was put in front")
    return out


def class_prompts(captions: Sequence[str], trigger: str, class_noun: str) -> List[str]:
    """Unique prompts for prior-preservation images: the captions without the trigger.

    ``"a zxq shape on blue"`` -> ``"a shape on blue"``; a trigger standing
    alone (``"zxq on blue"``) is replaced by the class noun (``"shape on blue"``).
    """
    seen: List[str] = []
    word = rf"(?<![\w-]){re.escape(trigger)}(?![\w-])"
    for cap in captions:
        if class_noun and re.search(word + rf"\s+{re.escape(class_noun)}(?![\w-])", cap, re.IGNORECASE):
            text = re.sub(word + r"\s+", "", cap, flags=re.IGNORECASE)
        else:
            text = re.sub(word, class_noun, cap, flags=re.IGNORECASE)
        text = re.sub(r"\s+([,.;:])", r"\1", " ".join(text.split())).strip(" ,;:")
        if not text or text.lower() in ("a", "an", "the"):
            text = f"a {class_noun}".strip()
        if text not in seen:
            seen.append(text)
    return seen


def neighbour_prompts(prompts: Sequence[str], class_noun: str, vocabulary: Sequence[str], exclude: Sequence[str],
                      count: int, seed: int) -> List[str]:
    """Class prompts with the class noun swapped for other words the model knows.

    DreamBooth's prior keeps "a dog" a dog, but nothing holds "a cat": the
    LoRA learns "not the word dog -> my concept" as readily as "the trigger ->
    my concept".  A few prompts around the class ("a red circle on blue" next
    to "a red shape on blue"), drawn by the base model like the class pictures,
    pin the neighbourhood down.  Words come from the tokenizer's whole-word
    entries (letters only, 3+ characters); a seeded sample of (word, class
    prompt) pairs.
    """
    if not class_noun or count <= 0 or not prompts:
        return []
    skip = {w.lower() for w in exclude} | {class_noun.lower()}
    words = sorted({w for w in vocabulary if w.isalpha() and len(w) >= 3 and w.lower() not in skip})
    if not words:
        return []
    import random

    noun = re.compile(rf"(?<![\w-]){re.escape(class_noun)}(?![\w-])", re.IGNORECASE)
    combos = [(w, p) for w in words for p in prompts]
    out = []
    for word, prompt in random.Random(seed).sample(combos, min(count, len(combos))):
        text = noun.sub(word, prompt, count=1)
        if text not in out and text not in prompts:
            out.append(text)
    return out


def vocabulary_words(tokenizer) -> List[str]:
    """Whole words a CLIP BPE tokenizer has as single tokens."""
    return [t[:-4] for t in tokenizer.get_vocab() if t.endswith("</w>")]


def split_counts(total: int, parts: int) -> List[int]:
    """``total`` spread as evenly as possible over ``parts`` buckets."""
    return [total // parts + (1 if i < total % parts else 0) for i in range(parts)]


def pair_counts(prompts: Sequence[str], total: int) -> List[Tuple[str, int]]:
    return [(p, c) for p, c in zip(prompts, split_counts(total, len(prompts))) if c > 0]
