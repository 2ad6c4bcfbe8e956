"""Prompt-to-Prompt edits: change words of a picture's prompt, keep its layout.

After Hertz et al., "Prompt-to-Prompt Image Editing with Cross Attention
Control" (2022).  A picture's layout is decided early in the denoise, in the
cross-attention maps that say which pixels each word of the prompt looks at.
So the edit and the original are painted side by side in one batch from the
same seed's noise, and for the first ``cross_replace`` of the steps the
edit's words are made to look where the original's words looked:

* **token alignment** (:func:`align`): the two prompts' token sequences are
  diffed; a token kept from the original takes the original's map, a
  replaced span (a swapped word, also of a different token count: each new
  token gets an equal share of the old span's maps, so the span's total
  attention is the same) takes the replaced span's maps, a token that is new
  (an added word) keeps its own map, as the paper's refinement does;
* **re-weighting** (the paper's "attention re-weighting"): the columns of
  one word of the new prompt are multiplied by a factor in those steps;
* **self-attention injection** for the first ``self_replace`` of the steps
  (unset: every step when the edit only changes colour words, else 0.4 -
  :func:`impasto.protocol.prompt_edit.auto_layout`):
  the edit's pixels attend to each other as the original's did (the
  original's queries and keys, the edit's values), which holds shapes in
  place.  Only in layers of at most :data:`SELF_MAX_AREA` of the latent's
  positions, as the paper's code does: the finest layers carry texture, not
  layout, and copying them there copies the original's details.

Only the conditional half of a classifier-free-guidance batch is edited (the
unconditional branch has no words to align), again as the paper does.

Why attention processors installed per job: the edit needs the attention
probabilities, which diffusers' fused SDPA never materialises, and it must
not touch any other job.  :func:`installed` swaps every attention layer's
processor for an :class:`EditProcessor` and a step counter onto the UNet,
and puts the model's own processors back in ``finally`` - after a finished,
failed or cancelled job alike (``tests/test_p2p.py`` checks the next job
paints the same bits as before).  The batch is ordered edits first, so the
previews (which show a batch's first picture) show the edit.
"""
from __future__ import annotations

import difflib
import time
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import Dict, Iterator, List, Sequence

import torch
import torch.nn.functional as F
from PIL import Image

from impasto.protocol.messages import ErrorCode
from impasto.protocol.prompt_edit import layout_of

from . import prompts
from .common import job_seeds, picture_size
from .denoise import decode, denoise, generators
from .errors import EngineError
from .gpu import configure_vae
from .hooks import JobHooks
from .images import to_rgba_array
from .runners import Output

__all__ = ["run", "align", "TokenMap", "installed", "Controller", "EditProcessor", "LocalBlend"]

#: self-attention is injected only in layers with at most this fraction of the latent's positions
#: (SD1.5 at 512 px: the 32x32 layers and coarser, as in the paper's code)
SELF_MAX_AREA = 0.25


# --------------------------------------------------------------------------- token alignment


@dataclass
class TokenMap:
    """How the edit's cross-attention columns are made from the original's.

    ``edited = alpha * (source @ mapper) + (1 - alpha) * own``, then times
    ``equalizer``; all over the K key positions of the (chunked) prompt.
    """

    mapper: torch.Tensor     # (K, K): source key -> target key weight
    alpha: torch.Tensor      # (K,): 1 where the target token takes the original's map, 0 where it keeps its own
    equalizer: torch.Tensor  # (K,): the re-weighting factor of each target token (1 elsewhere)
    kept: int                # target tokens mapped one to one (BOS, EOS and padding included)
    swapped: int             # target tokens made from a replaced span
    new: int                 # target tokens with no counterpart (their own maps)
    changed_src: List[int] = field(default_factory=list)  # key positions of the original's words replaced or removed
    changed_tgt: List[int] = field(default_factory=list)  # key positions of the edit's words that replace or add


def align(source: Sequence[int], target: Sequence[int]) -> TokenMap:
    """The token map between two equally long (padded) token sequences."""
    k = len(target)
    if len(source) != k:
        raise ValueError(f"token sequences differ in length: {len(source)} and {k}")
    mapper = torch.zeros(k, k)
    alpha = torch.zeros(k)
    kept = swapped = new = 0
    changed_src: List[int] = []
    changed_tgt: List[int] = []
    ops = difflib.SequenceMatcher(None, list(source), list(target), autojunk=False).get_opcodes()
    for tag, i1, i2, j1, j2 in ops:
        if tag == "equal":
            for d in range(i2 - i1):
                mapper[i1 + d, j1 + d] = 1.0
            alpha[j1:j2] = 1.0
            kept += j2 - j1
        elif tag == "replace":   # each new token gets an equal share of the old span: the span's total is kept
            mapper[i1:i2, j1:j2] = 1.0 / (j2 - j1)
            alpha[j1:j2] = 1.0
            swapped += j2 - j1
        elif tag == "insert":
            new += j2 - j1
        if tag != "equal":
            changed_src.extend(range(i1, i2))     # replace / delete: the original's words that go
            changed_tgt.extend(range(j1, j2))     # replace / insert: the edit's words that come
    return TokenMap(mapper, alpha, torch.ones(k), kept, swapped, new, changed_src, changed_tgt)


def token_ids(tokenizer, text: str, n_chunks: int) -> List[int]:
    """The key positions' token ids of ``text`` laid out as :mod:`.prompts` encodes it, ``n_chunks`` long."""
    cl = prompts.chunks(tokenizer, text)
    cl = cl + prompts.chunks(tokenizer, "") * (n_chunks - len(cl))
    return [i for c in cl for i in c.ids]


def word_positions(tokenizer, ids: Sequence[int], word: str) -> List[int]:
    """Key positions of every occurrence of ``word``'s tokens in ``ids`` (empty when it is not there)."""
    want = tokenizer(word.strip(), add_special_tokens=False, truncation=False).input_ids
    if not want:
        return []
    found: List[int] = []
    for i in range(len(ids) - len(want) + 1):
        if list(ids[i:i + len(want)]) == list(want):
            found.extend(range(i, i + len(want)))
    return found


# --------------------------------------------------------------------------- the local blend


class LocalBlend:
    """The paper's local editing: only where the changed words look does the edit differ from the original.

    The cross-attention maps of the changed words (the original's words that go and the edit's
    words that come; summed over those words, averaged over heads, every cross-attention layer
    brought to the latent's size and added up over the steps so far) become a mask: dilated by
    one latent pixel, each picture's map stretched between its own minimum and maximum, above
    :data:`THRESHOLD`, the original's and the edit's masks joined.  After each step from
    :data:`START` of the schedule on, the edit's latents outside the mask are set to the
    original's - the background and every unchanged thing stay the original's exactly, and a
    swapped colour cannot spill.  The paper's dilation (3x3) and start (after the first 20 % of
    the steps); not its normalisation (over the maximum) and threshold (0.3): a word's map on a
    small model has a high floor everywhere (the starter's colour word: 0.45-0.76 of its peak
    over the whole picture), which that rule keeps whole.  Min-max was picked by looking at one
    picture's map (a teardrop's colour swap: 40 % of the picture masked, the object inside), with
    0.5 above it; 0.3 since 2026-12-04, on the tuning split (``bench/p2p_edit.py --tune``, 48 colour
    swaps on training triples, the fine-tuned starter, CFG 3, layout held): 0.3 kept the shape in
    91.7 %, as the whole-picture edit did, 0.5 in 87.5 %, 0.7 in 70.8 % - the fine-tuned starter's
    objects grow past a tighter mask's edge.
    """

    THRESHOLD = 0.3
    START = 0.2
    DILATION = 3          # the max-pool window over the latent: 3 = one latent pixel (8 px) each way

    def __init__(self, tmap: TokenMap, pairs: int, lat_h: int, lat_w: int, steps: int):
        self.src = torch.tensor(tmap.changed_src, dtype=torch.long)
        self.tgt = torch.tensor(tmap.changed_tgt, dtype=torch.long)
        self.pairs, self.size = pairs, (lat_h, lat_w)
        self.start = int(round(self.START * steps))
        self.acc = None          # (2 * pairs, 1, lat_h, lat_w): the edits' maps, then the originals'
        self.blended = 0
        self.area = 0.0

    def collect(self, edit: torch.Tensor, source: torch.Tensor) -> None:
        """One cross-attention layer's probabilities of the conditional half, (pairs, heads, S, K) each."""
        lat_h, lat_w = self.size
        s = edit.shape[2]
        scale = (lat_h * lat_w / s) ** 0.5
        hs, ws = int(round(lat_h / scale)), int(round(lat_w / scale))
        if hs * ws != s:
            return
        dev = edit.device
        maps = torch.cat([edit[..., self.tgt.to(dev)].sum(-1).mean(1) if len(self.tgt) else
                          torch.zeros(edit.shape[0], s, device=dev),
                          source[..., self.src.to(dev)].sum(-1).mean(1) if len(self.src) else
                          torch.zeros(source.shape[0], s, device=dev)]).float()
        maps = F.interpolate(maps.view(-1, 1, hs, ws), size=self.size, mode="bilinear", align_corners=False)
        self.acc = maps if self.acc is None else self.acc + maps

    def mask(self) -> torch.Tensor:
        m = F.max_pool2d(self.acc, self.DILATION, stride=1, padding=self.DILATION // 2)
        lo = m.amin(dim=(2, 3), keepdim=True)
        m = (m - lo) / (m.amax(dim=(2, 3), keepdim=True) - lo).clamp_min(1e-12)
        m = (m > self.THRESHOLD).float()
        return torch.maximum(m[: self.pairs], m[self.pairs:])

    def __call__(self, steps_done: int, latents: torch.Tensor):
        if steps_done <= self.start or self.acc is None:
            return None
        m = self.mask().to(device=latents.device)
        self.blended += 1
        self.area = float(m.mean())
        edit, original = latents[: self.pairs], latents[self.pairs:]
        return torch.cat([torch.where(m > 0, edit, original), original])


# --------------------------------------------------------------------------- the attention edit


class Controller:
    """The job's edit: which step it is, and what each attention layer does at that step.

    The batch is ``groups`` (CFG: unconditional, conditional) of ``2 * pairs``
    pictures: the ``pairs`` edits, then the ``pairs`` originals.
    """

    def __init__(self, tmap: TokenMap, pairs: int, cross_steps: int, self_steps: int, self_max_tokens: int,
                 blend: "LocalBlend" = None):
        self.tmap = tmap
        self.blend = blend
        self.pairs = pairs
        self.cross_steps = cross_steps
        self.self_steps = self_steps
        self.self_max_tokens = self_max_tokens
        self.step = -1
        self.edited_calls = {"cross": 0, "self": 0}
        self._dev = None

    def pre_hook(self, module, args):
        """Forward pre-hook on the UNet: one UNet call is one denoise step (CFG runs both halves in one)."""
        self.step += 1

    def _maps(self, like: torch.Tensor):
        if self._dev != (like.device,):
            self.tmap = replace(self.tmap, mapper=self.tmap.mapper.to(like.device),
                                alpha=self.tmap.alpha.to(like.device), equalizer=self.tmap.equalizer.to(like.device))
            self._dev = (like.device,)
        return self.tmap

    def attend(self, q, k, v, mask, scale: float, cross: bool) -> torch.Tensor:
        """Attention of (B, heads, S, d) queries over keys/values, edited for the edit's half."""
        b, n = q.shape[0], self.pairs
        if b % (2 * n):   # not this job's batch layout: never guess
            return F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        groups = b // (2 * n)
        editing = 0 <= self.step < self.cross_steps
        if cross and (editing or self.blend is not None) and k.shape[2] == self.tmap.mapper.shape[0]:
            logits = (q.float() @ k.float().transpose(-1, -2)) * scale
            if mask is not None:
                logits = logits + mask.float()
            probs = logits.softmax(-1)
            view = probs.view(groups, 2, n, *probs.shape[1:])
            if editing:
                tm = self._maps(q)
                own, src = view[-1, 0], view[-1, 1]
                mapped = src @ tm.mapper
                view[-1, 0] = (mapped * tm.alpha + own * (1 - tm.alpha)) * tm.equalizer
                self.edited_calls["cross"] += 1
            if self.blend is not None:
                self.blend.collect(view[-1, 0], view[-1, 1])
            return (probs.to(v.dtype) @ v)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        if not cross and 0 <= self.step < self.self_steps and q.shape[2] <= self.self_max_tokens and mask is None:
            qv, kv, vv, ov = (t.view(groups, 2, n, *t.shape[1:]) for t in (q, k, v, out))
            g = groups - 1
            ov[g, 0] = F.scaled_dot_product_attention(qv[g, 1], kv[g, 1], vv[g, 0])
            self.edited_calls["self"] += 1
        return out


class EditProcessor:
    """diffusers' SDPA attention processor with the attention itself handed to the :class:`Controller`.

    The projections, norms and reshapes are diffusers' ``AttnProcessor2_0``
    steps, so a layer computes what it computed before wherever the
    controller edits nothing.
    """

    def __init__(self, controller: Controller):
        self.controller = controller

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, temb=None,
                 *args, **kwargs):
        residual = hidden_states
        if attn.spatial_norm is not None:
            hidden_states = attn.spatial_norm(hidden_states, temb)
        ndim = hidden_states.ndim
        if ndim == 4:
            batch, channel, height, width = hidden_states.shape
            hidden_states = hidden_states.view(batch, channel, height * width).transpose(1, 2)
        cross = encoder_hidden_states is not None
        batch, seq, _ = hidden_states.shape if not cross else encoder_hidden_states.shape
        if attention_mask is not None:
            attention_mask = attn.prepare_attention_mask(attention_mask, seq, batch)
            attention_mask = attention_mask.view(batch, attn.heads, -1, attention_mask.shape[-1])
        if attn.group_norm is not None:
            hidden_states = attn.group_norm(hidden_states.transpose(1, 2)).transpose(1, 2)
        query = attn.to_q(hidden_states)
        context = hidden_states
        if cross:
            context = attn.norm_encoder_hidden_states(encoder_hidden_states) if attn.norm_cross else encoder_hidden_states
        key, value = attn.to_k(context), attn.to_v(context)
        head_dim = key.shape[-1] // attn.heads
        query = query.view(batch, -1, attn.heads, head_dim).transpose(1, 2)
        key = key.view(batch, -1, attn.heads, head_dim).transpose(1, 2)
        value = value.view(batch, -1, attn.heads, head_dim).transpose(1, 2)
        if attn.norm_q is not None:
            query = attn.norm_q(query)
        if attn.norm_k is not None:
            key = attn.norm_k(key)
        out = self.controller.attend(query, key, value, attention_mask, attn.scale, cross)
        out = out.transpose(1, 2).reshape(batch, -1, attn.heads * head_dim).to(query.dtype)
        out = attn.to_out[1](attn.to_out[0](out))
        if ndim == 4:
            out = out.transpose(-1, -2).reshape(batch, channel, height, width)
        if attn.residual_connection:
            out = out + residual
        return out / attn.rescale_output_factor


@contextmanager
def installed(pipe, controller: Controller) -> Iterator[None]:
    """Edit processors on every attention layer of ``pipe``'s UNet for the ``with`` body, then the model's own.

    A compiled UNet (``IMPASTO_COMPILE``) is swapped for its eager module for
    the job: the compiled graph was traced with the model's own processors.
    """
    compiled = pipe.unet
    unet = getattr(compiled, "_orig_mod", compiled)
    saved = dict(unet.attn_processors)
    handle = unet.register_forward_pre_hook(controller.pre_hook)
    try:
        unet.set_attn_processor({name: EditProcessor(controller) for name in saved})
        if unet is not compiled:
            pipe.unet = unet
        yield
    finally:
        handle.remove()
        unet.set_attn_processor(dict(saved))
        if unet is not compiled:
            pipe.unet = compiled


# --------------------------------------------------------------------------- the job


def _prompt_kwargs(pipe, source: str, target: str, negative: str, pairs: int, cfg: float):
    """Prompts for the batch ``[edit] * pairs + [original] * pairs``, and the chunk count they are laid out in.

    Two plain prompts go to diffusers as strings (so the original is encoded
    exactly as its own job encoded it); otherwise both are encoded by
    :mod:`.prompts`, padded to the same number of chunks.
    """
    too_long = prompts._max_chars(pipe.tokenizer)
    if len(source) > too_long:   # checked before tokenizing: the original's errors name its own field
        raise EngineError(ErrorCode.BAD_FIELD, f"p2p.source_prompt: {len(source)} characters; at most {too_long} "
                          f"({prompts.MAX_CHUNKS} chunks) are read", "p2p.source_prompt")
    plain = not (prompts.needed(pipe, source, negative) or prompts.needed(pipe, target, negative))
    if plain:
        kw = dict(prompt=[target] * pairs + [source] * pairs,
                  negative_prompt=[negative] * (2 * pairs) if negative else None, guidance_scale=cfg)
        return kw, 1
    if prompts.chunk_count(pipe, source) > prompts.MAX_CHUNKS:
        raise EngineError(ErrorCode.BAD_FIELD, f"p2p.source_prompt: more than {prompts.MAX_CHUNKS} chunks of "
                          f"{prompts.chunk_size(pipe.tokenizer)} tokens", "p2p.source_prompt")
    n = max(prompts.chunk_count(pipe, t) for t in (source, target, negative or ""))
    e_t = prompts.embeddings(pipe, target, negative, pairs, min_chunks=n)
    e_s = prompts.embeddings(pipe, source, negative, pairs, min_chunks=n)
    kw = {key: torch.cat([e_t[key], e_s[key]]) for key in e_t}
    return dict(guidance_scale=cfg, **kw), n


def plan_edit(pipe, source: str, target: str, reweight_word: str, reweight: float, n_chunks: int) -> TokenMap:
    """The token map of an edit, with the re-weighting; a typed error when the word is not in the new prompt."""
    tok = pipe.tokenizer
    tmap = align(token_ids(tok, source, n_chunks), token_ids(tok, target, n_chunks))
    if reweight_word.strip():
        where = word_positions(tok, token_ids(tok, target, n_chunks), reweight_word)
        if not where:
            raise EngineError(ErrorCode.BAD_FIELD, f"p2p.reweight_word: {reweight_word!r} is not a word of the new "
                              "prompt", "p2p.reweight_word")
        tmap.equalizer[where] = float(reweight)
    return tmap


def run(engine, loaded, req, hooks: JobHooks) -> Output:
    """Paint ``req.prompt`` as an edit of ``req.p2p.source_prompt``'s picture at ``req.seed``."""
    edit = req.p2p
    if req.seed < 0:
        raise EngineError(ErrorCode.BAD_FIELD, "seed: Prompt-to-Prompt repaints a picture from its own seed: give "
                          "the picture's seed, not -1", "seed")
    if loaded.inpaint_unet:
        raise EngineError(ErrorCode.BAD_FIELD, f"p2p: {loaded.entry.name} is an inpainting model; Prompt-to-Prompt "
                          "edits pictures of a text-to-image model", "p2p")
    seeds = job_seeds(req)
    pairs = len(seeds)
    timings: Dict[str, float] = {}
    info: Dict[str, object] = {}
    w, h = picture_size(req, loaded, hooks, info)   # the size its original was painted at
    pipe = loaded.txt2img
    t0 = time.perf_counter()
    kwargs, n_chunks = _prompt_kwargs(pipe, edit.source_prompt, req.prompt, req.negative_prompt, pairs,
                                      req.cfg_scale)
    tmap = plan_edit(pipe, edit.source_prompt, req.prompt, edit.reweight_word, edit.reweight, n_chunks)
    timings["p2p_plan"] = time.perf_counter() - t0
    cross_steps = int(round(edit.cross_replace * req.steps))
    layout = layout_of(edit, req.prompt)     # unset: held every step for a colour change, else 0.4
    self_steps = int(round(layout * req.steps))
    lat_h, lat_w = h // loaded.base.vae_scale_factor, w // loaded.base.vae_scale_factor
    latent_positions = lat_h * lat_w
    local = edit.local and bool(tmap.changed_src or tmap.changed_tgt)
    blend = LocalBlend(tmap, pairs, lat_h, lat_w, req.steps) if local else None
    ctl = Controller(tmap, pairs, cross_steps, self_steps, max(1, int(latent_positions * SELF_MAX_AREA)), blend)
    if configure_vae(pipe.vae, w, h):
        info["vae_tiled"] = True
    kwargs.update(loaded.size_conditioning(w, h))
    with installed(pipe, ctl):
        latents, steps = denoise(pipe, loaded, req.sampler, hooks, timings, num_inference_steps=req.steps,
                                 width=w, height=h, generator=generators(seeds + seeds), step_end=blend, **kwargs)
    images = decode(pipe, latents[:pairs], timings)
    t0 = time.perf_counter()
    if (w, h) != (req.width, req.height):
        images = [im.resize((req.width, req.height), Image.LANCZOS) for im in images]
    timings["resize"] = time.perf_counter() - t0
    info["p2p"] = {"source_prompt": edit.source_prompt, "cross_steps": cross_steps, "self_steps": self_steps,
                   "layout": layout, "layout_auto": edit.self_replace is None,
                   "tokens_kept": tmap.kept, "tokens_swapped": tmap.swapped, "tokens_new": tmap.new,
                   "reweighted_tokens": int((tmap.equalizer != 1.0).sum()) if edit.reweight_word.strip() else 0,
                   "local": blend is not None}
    if blend is not None:
        info["p2p"].update(blend_steps=blend.blended, blend_area=round(blend.area, 4))
    return Output(images=[to_rgba_array(im) for im in images], seeds=seeds, steps=steps, timings=timings, info=info)
