"""Prompt weighting as artists type it (A1111 syntax) and prompts longer than CLIP's window.

Syntax (the one AUTOMATIC1111, Forge and ComfyUI users already write):

* ``(words)`` multiplies the attention of ``words`` by 1.1, ``((words))`` by 1.21;
* ``[words]`` divides it by 1.1;
* ``(words:1.3)`` sets a factor of 1.3 (nested inside other brackets, factors multiply);
* ``\\(`` ``\\)`` ``\\[`` ``\\]`` ``\\\\`` are literal characters; a ``)`` or ``]`` with nothing open is
  literal too, and a bracket never closed weights the rest of the prompt (as in A1111);
* ``BREAK`` (capitals, a word of its own) ends the current 75-token chunk.

Long prompts are never cut: the tokens are laid out in chunks of 75 (a full
chunk breaks after its last comma when that comma is within the last 20
tokens), each chunk is wrapped in BOS ... EOS and padded to the window (77) like the
pipeline pads, encoded on its own, and the chunks are concatenated along the
sequence.  The negative prompt is padded with empty chunks to the same count.
A chunk's hidden states are scaled token by token by their weights and then
rescaled so the chunk's mean is what it was (A1111's rule: weights shift
emphasis without changing the overall magnitude).  SDXL runs this for both
text encoders (penultimate hidden states, concatenated on features) and takes
the pooled embedding from the second encoder's first chunk.

Why hand-written and not ``compel``: compel's syntax is its own (``word++``,
``(words)1.3``, ``.and()``, ``.blend()``) and it has no A1111 mode; its
down-weighting masks tokens instead of scaling them and it knows no ``BREAK``,
so prompts pasted from A1111 would mean something else (see docs/prompts.md).

A prompt without any of this (and within one chunk) never comes here: the
runners hand the plain strings to diffusers as before, so such prompts paint
the same bits as they always did (:func:`plain`).
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Dict, List, Optional, Tuple

import torch

from impasto.protocol.messages import ErrorCode

from .errors import EngineError

CHUNK = 75            # tokens per chunk, BOS and EOS excluded, for CLIP's 77-token window
UP = 1.1              # ( ... )
DOWN = 1 / 1.1        # [ ... ]
COMMA_LOOKBACK = 20   # a full chunk breaks after a comma this close to its end
BREAK = "BREAK"
MAX_CHUNKS = 20       # 1500 tokens: far past any real prompt; bounds a job's text-encoder passes and memory
BREAK_RUN = object()   # the marker while parsing: never scaled by an enclosing group

_TOKEN = re.compile(r"""
    \\[\\()\[\]]              # an escaped bracket or backslash
  | \(|\[                     # an opening bracket
  | :\s*([+-]?(?:\d+\.?\d*|\.\d+))\s*\)   # ":1.3)" closes a weighted group
  | \)|\]                     # a closing bracket
  | [^\\()\[\]:]+             # plain text
  | :                         # a colon that is no weight
  | \\                        # a lone backslash
""", re.X)
_BREAK_SPLIT = re.compile(r"\s*\bBREAK\b\s*")


def parse(text: str) -> List[Tuple[str, float]]:
    """``text`` as (piece, weight) runs; ``(BREAK, -1.0)`` marks a chunk break.

    ``parse("a (red:1.5) [dog] BREAK x")`` ->
    ``[("a ", 1.0), ("red", 1.5), (" ", 1.0), ("dog", 0.909...), ("BREAK", -1), ("x", 1.0)]``.
    """
    runs: List[List] = []          # [text, weight] pairs; weights of open groups are applied on close
    open_round: List[int] = []     # index into runs where each open "(" starts
    open_square: List[int] = []

    def scale(start: int, factor: float) -> None:
        for run in runs[start:]:
            if run[0] is not BREAK_RUN:
                run[1] *= factor

    for m in _TOKEN.finditer(text):
        tok = m.group(0)
        if tok.startswith("\\") and len(tok) == 2:
            runs.append([tok[1], 1.0])
        elif tok == "(":
            open_round.append(len(runs))
        elif tok == "[":
            open_square.append(len(runs))
        elif m.group(1) is not None and open_round:
            scale(open_round.pop(), float(m.group(1)))
        elif m.group(1) is not None:           # ":1.3)" with no "(" open: literal text
            runs.append([tok, 1.0])
        elif tok == ")" and open_round:
            scale(open_round.pop(), UP)
        elif tok == "]" and open_square:
            scale(open_square.pop(), DOWN)
        else:
            pieces = _BREAK_SPLIT.split(tok)
            for i, piece in enumerate(pieces):
                if i:
                    runs.append([BREAK_RUN, -1.0])
                if piece:
                    runs.append([piece, 1.0])
    for start in open_round:       # never closed: weights the rest (A1111 does the same)
        scale(start, UP)
    for start in open_square:
        scale(start, DOWN)
    merged: List[List] = []
    for piece, weight in runs:
        if piece is BREAK_RUN:
            merged.append([BREAK, -1.0])
        elif merged and merged[-1][0] != BREAK and merged[-1][1] == weight:
            merged[-1][0] += piece
        else:
            merged.append([piece, weight])
    if not merged:
        merged = [["", 1.0]]
    return [(p, w) for p, w in merged]


@dataclass
class Chunk:
    ids: List[int]
    weights: List[float]


def chunk_size(tokenizer) -> int:
    """Tokens per chunk: the tokenizer's window less BOS and EOS (75 for CLIP; 22 for the starter's 24)."""
    window = tokenizer.model_max_length
    return window - 2 if 3 <= window <= 4096 else CHUNK


def chunks(tokenizer, text: str) -> List[Chunk]:
    """``text`` laid out as window-long chunks ``[BOS, up to 75 tokens, EOS, pad...]`` with per-token weights.

    A full chunk breaks after its last comma when that comma is among its
    last 20 tokens (A1111's rule; scaled to 20/75 of a shorter window).
    """
    size = chunk_size(tokenizer)
    lookback = COMMA_LOOKBACK if size == CHUNK else max(1, size * COMMA_LOOKBACK // CHUNK)
    done: List[Chunk] = []
    ids: List[int] = []
    weights: List[float] = []
    last_comma = -1
    comma = tokenizer.convert_tokens_to_ids(",</w>")
    if comma == tokenizer.unk_token_id:   # a vocabulary without a comma token (the tiny test models)
        comma = None

    def close(keep_from: Optional[int] = None) -> None:
        nonlocal ids, weights, last_comma
        body_ids, body_w = ids, weights
        rest_ids, rest_w = [], []
        if keep_from is not None:
            body_ids, rest_ids = ids[:keep_from], ids[keep_from:]
            body_w, rest_w = weights[:keep_from], weights[keep_from:]
        pad = size - len(body_ids)
        done.append(Chunk([tokenizer.bos_token_id] + body_ids + [tokenizer.eos_token_id]
                          + [tokenizer.pad_token_id] * pad, [1.0] + body_w + [1.0] * (pad + 1)))
        ids, weights, last_comma = rest_ids, rest_w, -1

    for piece, weight in parse(text):
        if piece == BREAK and weight == -1.0:
            close()
            continue
        for tok in tokenizer(piece, add_special_tokens=False, truncation=False).input_ids:
            if len(ids) == size:
                if last_comma >= 0 and size - last_comma <= lookback:
                    close(keep_from=last_comma + 1)
                else:
                    close()
            ids.append(tok)
            weights.append(weight)
            if comma is not None and tok == comma:
                last_comma = len(ids) - 1
    if ids or not done:
        close()
    return done


def plain(tokenizer, text: str) -> bool:
    """True when ``text`` has no weighting syntax and fits one chunk: diffusers' own encoding is exact for it."""
    if parse(text) != [(text, 1.0)]:
        return False
    return len(tokenizer(text, add_special_tokens=False, truncation=False).input_ids) <= chunk_size(tokenizer)


def _weighted(z: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Scale token hidden states by their weights, keeping the chunk's mean (A1111's rule)."""
    if bool((weights == 1.0).all()):
        return z
    before = z.float().mean()
    w = z.float() * weights[None, :, None]
    after = w.mean()
    if float(after.abs()) < 1e-12:   # a mean of zero has no scale to restore
        return w.to(z.dtype)
    return (w * (before / after)).to(z.dtype)


def _encode(encoder, chunk_list: List[Chunk], device, penultimate: bool) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
    """Hidden states (1, window x chunks, D) of one text encoder, and its pooled output of the first chunk."""
    outs, pooled = [], None
    for i, ch in enumerate(chunk_list):
        ids = torch.tensor([ch.ids], device=device)
        mask = None
        if getattr(encoder.config, "use_attention_mask", False):
            mask = torch.ones_like(ids)
        out = encoder(ids, attention_mask=mask, output_hidden_states=penultimate)
        z = out.hidden_states[-2] if penultimate else out[0]
        outs.append(_weighted(z, torch.tensor(ch.weights, device=device, dtype=torch.float32)))
        if i == 0 and out[0].ndim == 2:     # CLIPTextModelWithProjection: text_embeds
            pooled = out[0]
    return torch.cat(outs, dim=1), pooled


def _pad_to(chunk_list: List[Chunk], n: int, tokenizer) -> List[Chunk]:
    return chunk_list + chunks(tokenizer, "") * (n - len(chunk_list))


def _max_chars(tokenizer) -> int:
    return MAX_CHUNKS * chunk_size(tokenizer) * 30   # generous: a CLIP token is rarely over 10 characters


def needed(pipe, prompt: str, negative: str) -> bool:
    """Whether the prompts need this module (weights, BREAK, escapes or more than one chunk)."""
    if max(len(prompt), len(negative or "")) > _max_chars(pipe.tokenizer):
        return True   # embeddings() says why it refuses
    return not (plain(pipe.tokenizer, prompt) and plain(pipe.tokenizer, negative or ""))


def chunk_count(pipe, text: str) -> int:
    """How many window-long chunks ``text`` takes (the most of either text encoder's)."""
    toks = [pipe.tokenizer] + ([pipe.tokenizer_2] if getattr(pipe, "text_encoder_2", None) is not None else [])
    return max(len(chunks(tok, text)) for tok in toks)


@torch.no_grad()
def embeddings(pipe, prompt: str, negative: str, batch: int, min_chunks: int = 1) -> Dict[str, torch.Tensor]:
    """``prompt_embeds`` / ``negative_prompt_embeds`` (+ the pooled pair for SDXL) for ``batch`` pictures.

    ``min_chunks`` pads both prompts to at least that many chunks, so two
    prompts encoded apart (Prompt-to-Prompt's original and edit) line up.
    """
    device = pipe._execution_device
    sdxl = getattr(pipe, "text_encoder_2", None) is not None
    pairs = [(pipe.tokenizer, pipe.text_encoder)] + ([(pipe.tokenizer_2, pipe.text_encoder_2)] if sdxl else [])
    for field, text in (("prompt", prompt), ("negative_prompt", negative or "")):
        if len(text) > _max_chars(pipe.tokenizer):   # checked before tokenizing megabytes
            raise EngineError(ErrorCode.BAD_FIELD, f"{field}: {len(text)} characters; at most "
                              f"{_max_chars(pipe.tokenizer)} ({MAX_CHUNKS} chunks) are read", field)
    pos = [chunks(tok, prompt) for tok, _ in pairs]
    neg = [chunks(tok, negative or "") for tok, _ in pairs]
    for field, lists in (("prompt", pos), ("negative_prompt", neg)):
        if max(len(c) for c in lists) > MAX_CHUNKS:
            raise EngineError(ErrorCode.BAD_FIELD, f"{field}: {max(len(c) for c in lists)} chunks of "
                              f"{chunk_size(pairs[0][0])} tokens; at most {MAX_CHUNKS} are read", field)
    n = max([len(c) for c in pos + neg] + [min_chunks])
    pos = [_pad_to(c, n, tok) for c, (tok, _) in zip(pos, pairs)]
    neg = [_pad_to(c, n, tok) for c, (tok, _) in zip(neg, pairs)]
    zero_negative = sdxl and not negative and getattr(pipe.config, "force_zeros_for_empty_prompt", False)

    def encode(chunk_lists):
        zs, pooled = [], None
        for (tok, enc), cl in zip(pairs, chunk_lists):
            if enc is None:
                continue
            z, p = _encode(enc, cl, device, penultimate=sdxl)
            zs.append(z)
            pooled = p if p is not None else pooled
        return torch.cat(zs, dim=-1), pooled

    z, pooled = encode(pos)
    if zero_negative:   # diffusers' SDXL rule for an empty negative prompt
        nz, npooled = torch.zeros_like(z), torch.zeros_like(pooled)
    else:
        nz, npooled = encode(neg)
    out = {"prompt_embeds": z.repeat(batch, 1, 1), "negative_prompt_embeds": nz.repeat(batch, 1, 1)}
    if sdxl:
        out["pooled_prompt_embeds"] = pooled.repeat(batch, 1)
        out["negative_pooled_prompt_embeds"] = npooled.repeat(batch, 1)
    return out
