"""Concepts inside a resident model: peft LoRA adapters, loaded once, switched per job.

Each concept becomes one named peft adapter in the model's UNet (and text
encoder(s), when it has text-encoder weights: SDXL has two, ``text_encoder``
and ``text_encoder_2``), injected with
``inject_adapter_in_model`` + ``set_peft_model_state_dict`` the first time a
job asks for it.  Later jobs only *switch*: ``set_adapter`` + ``set_scale`` on
every LoRA layer, microseconds of Python, no weight I/O, the base weights
untouched.  With no concept (or only weight-0 concepts) the adapters are
disabled, so the model computes exactly ``base_layer(x)``: bit-identical to a
model that never saw a concept.

State is kept per :class:`LoadedModel` (a weak map): a model that is unloaded
takes its adapters with it.
"""
from __future__ import annotations

import logging
import re
import time
import warnings
import weakref
from collections import Counter
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Tuple

import torch

from impasto.protocol.messages import ErrorCode

from impasto.backend.engine.errors import EngineError

from . import hotswap
from . import trigger_embedding as trig
from .lora_io import COMPONENTS, split_components

log = logging.getLogger("impasto.concepts")

MAX_RESIDENT = 16          # adapters kept in memory per model (least recently used go first)
TRAIN_ADAPTER = "impasto_train"


@dataclass
class Resident:
    adapter: str
    concept_id: str
    name: str
    components: Tuple[str, ...]
    last_used: float = 0.0
    load_seconds: float = 0.0
    trigger_note: str = ""       # why a trigger embedding the concept has is not used in this model
    hot: Optional[Dict[str, Tuple[torch.Tensor, torch.Tensor]]] = None  # compiled UNet: its pairs for the hot slot


@dataclass
class ModelConcepts:
    """What concepts one loaded model holds and how its parameters were before."""

    resident: Dict[str, Resident] = field(default_factory=dict)        # concept id -> adapter
    grad_flags: Dict[str, List[bool]] = field(default_factory=dict)    # component -> requires_grad before peft
    counter: int = 0
    active: Dict[str, float] = field(default_factory=dict)
    loads: int = 0                                                     # adapters loaded from disk so far
    triggers: Optional[trig.TriggerEmbeddings] = None                  # the token-embedding hook, once needed
    fused: Optional[Dict[str, float]] = None                           # adapters folded into the base weights
    ends: Dict[str, float] = field(default_factory=dict)               # adapter -> share of the steps it acts for
    fused_saved: List[Tuple[object, torch.Tensor]] = field(default_factory=list)  # (layer, its own weight)
    stripped: List[Tuple[object, str, object]] = field(default_factory=list)     # (parent, name, tuner layer)


_STATE: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def state_for(loaded) -> ModelConcepts:
    st = _STATE.get(loaded)
    if st is None:
        st = ModelConcepts()
        _STATE[loaded] = st
    return st


def component(loaded, comp: str):
    """The live module of ``comp`` (a compiled UNet's own module, not its ``torch.compile`` wrapper)."""
    model = getattr(loaded.base, comp, None)
    return hotswap.unwrap(model) if model is not None else None


TEXT_MODEL = "text_model."


def live_name(model, comp: str, module: str) -> str:
    """Library (ecosystem) module name -> the name inside this model.

    LoRA files and the library say ``text_model.encoder.layers.0...`` (the
    CLIPTextModel layout of transformers 4); transformers 5 dropped the
    ``text_model`` level.  Both are accepted.
    """
    if comp.startswith("text_encoder") and module.startswith(TEXT_MODEL) and not hasattr(model, "text_model"):
        return module[len(TEXT_MODEL):]
    return module


def canonical_name(model, comp: str, module: str) -> str:
    """The inverse of :func:`live_name`: the name stored in the library and in files."""
    if comp.startswith("text_encoder") and not module.startswith(TEXT_MODEL) and not hasattr(model, "text_model"):
        return TEXT_MODEL + module
    return module


def tuner_layers(model) -> List:
    from peft.tuners.tuners_utils import BaseTunerLayer

    return [m for m in model.modules() if isinstance(m, BaseTunerLayer)]


def _remember_grad_flags(st: ModelConcepts, comp: str, model) -> None:
    if comp not in st.grad_flags:
        st.grad_flags[comp] = [p.requires_grad for p in model.parameters()]


# --------------------------------------------------------------------------- injection


def lora_config(ranks: Dict[str, int], targets: Optional[List[str]] = None):
    """A peft LoraConfig for exact module names with per-module ranks, alpha = rank."""
    from peft import LoraConfig

    common = Counter(ranks.values()).most_common(1)[0][0]
    pattern = {re.escape(m): r for m, r in ranks.items() if r != common}
    return LoraConfig(r=common, lora_alpha=common, target_modules=targets or sorted(ranks),
                      rank_pattern=pattern, alpha_pattern=dict(pattern), lora_dropout=0.0, bias="none")


def check_fit(model, comp: str, modules: Dict[str, Tuple[torch.Tensor, torch.Tensor]], concept: str,
              model_name: str, field: str) -> None:
    """Every LoRA pair must land on a Linear / Conv2d of matching shape; typed error otherwise."""
    named = dict(model.named_modules())
    for module, (a, b) in modules.items():
        target = named.get(live_name(model, comp, module))
        base = getattr(target, "base_layer", target)
        if base is None:
            raise EngineError(ErrorCode.BAD_FIELD, f"{field}: concept {concept!r} does not fit model {model_name!r}: "
                              f"it has no {comp} layer {module!r} (made for another architecture?)", field)
        if isinstance(base, torch.nn.Linear):
            ok = a.dim() == 2 and a.shape[1] == base.in_features and b.shape[0] == base.out_features
        elif isinstance(base, torch.nn.Conv2d):
            ok = a.dim() == 4 and a.shape[1] == base.in_channels and b.shape[0] == base.out_channels and \
                tuple(a.shape[2:]) in (tuple(base.kernel_size), (1, 1))
        else:
            ok = False
        if not ok:
            raise EngineError(ErrorCode.BAD_FIELD, f"{field}: concept {concept!r} does not fit model {model_name!r}: "
                              f"{comp} layer {module!r} has another shape (made for another architecture?)", field)


def _fit_linear_pairs(model, modules):
    """kohya stores 1x1 convolutions as 4-D and linear projections as 2-D; adapt either way."""
    named = dict(model.named_modules())
    out = {}
    for module, (a, b) in modules.items():
        base = getattr(named[module], "base_layer", named[module])
        if isinstance(base, torch.nn.Linear) and a.dim() == 4:
            a, b = a.flatten(1), b.flatten(1)
        elif isinstance(base, torch.nn.Conv2d) and a.dim() == 2:
            a, b = a[:, :, None, None], b[:, :, None, None]
        out[module] = (a, b)
    return out


def inject(loaded, adapter: str, comp: str, modules: Dict[str, Tuple[torch.Tensor, torch.Tensor]],
           dtype: Optional[torch.dtype] = None) -> None:
    """Put one adapter with the given weights into ``comp`` (kept on the model's device)."""
    from peft import inject_adapter_in_model, set_peft_model_state_dict

    unfuse(loaded)     # peft must see its own layers in the module tree (fused: stripped out)
    model = component(loaded, comp)
    st = state_for(loaded)
    _remember_grad_flags(st, comp, model)
    modules = _fit_linear_pairs(model, {live_name(model, comp, m): ab for m, ab in modules.items()})
    ranks = {m: int(a.shape[0]) for m, (a, _) in modules.items()}
    device = loaded.choice.device
    dtype = dtype or loaded.choice.dtype
    sd = {}
    for m, (a, b) in modules.items():
        sd[f"{m}.lora_A.weight"] = a.to(device=device, dtype=dtype)
        sd[f"{m}.lora_B.weight"] = b.to(device=device, dtype=dtype)
    with warnings.catch_warnings():  # peft warns whenever a model gets a second adapter: that is the point here
        warnings.filterwarnings("ignore", message=".*Already found a `peft_config`")
        inject_adapter_in_model(lora_config(ranks), model, adapter_name=adapter, low_cpu_mem_usage=True)
    result = set_peft_model_state_dict(model, sd, adapter_name=adapter, low_cpu_mem_usage=True)
    if getattr(result, "unexpected_keys", None):
        raise EngineError(ErrorCode.INTERNAL, f"adapter {adapter}: unexpected keys {result.unexpected_keys[:3]}",
                          "concepts")
    for layer in tuner_layers(model):
        if adapter in getattr(layer, "lora_A", {}):
            for p in (layer.lora_A[adapter].weight, layer.lora_B[adapter].weight):
                if p.is_meta:
                    raise EngineError(ErrorCode.INTERNAL, f"adapter {adapter}: weights missing", "concepts")
    # peft marks only adapters trainable on injection: the base's flags are put back as they were
    flags = st.grad_flags[comp]
    base_params = [p for n, p in model.named_parameters() if "lora_" not in n]
    if len(base_params) == len(flags):
        for p, f in zip(base_params, flags):
            p.requires_grad_(f)


def remove_adapter(loaded, adapter: str) -> None:
    unfuse(loaded)
    for comp in COMPONENTS:
        model = component(loaded, comp)
        if model is None:
            continue
        for layer in tuner_layers(model):
            if adapter in layer.lora_A:
                layer.delete_adapter(adapter)
        cfg = getattr(model, "peft_config", None)
        if isinstance(cfg, dict):
            cfg.pop(adapter, None)
    st = state_for(loaded)
    if st.triggers is not None:
        st.triggers.entries.pop(adapter, None)
        st.triggers.active.pop(adapter, None)


def unload_all(loaded) -> None:
    """Take every adapter out: the model's modules and flags are exactly as loaded."""
    from diffusers.utils.peft_utils import recurse_remove_peft_layers

    unfuse(loaded)
    st = state_for(loaded)
    for comp in COMPONENTS:
        model = component(loaded, comp)
        if model is None:
            continue
        if comp == "unet" and hotswap.active(model):   # the compiled UNet keeps its (zeroed) hot slot
            hotswap.remove_others(model)
        elif tuner_layers(model):
            recurse_remove_peft_layers(model)
        if "peft_config" in model.__dict__ and not (comp == "unet" and hotswap.active(model)):
            del model.__dict__["peft_config"]
        flags = st.grad_flags.pop(comp, None)
        if flags is not None:
            params = list(model.parameters())
            if len(params) == len(flags):
                for p, f in zip(params, flags):
                    p.requires_grad_(f)
    if st.triggers is not None:
        st.triggers.remove()
        st.triggers = None
    st.resident.clear()
    st.active = {}
    st.ends = {}


# --------------------------------------------------------------------------- concepts


def ensure_loaded(loaded, info, weights_loader, field: str) -> Resident:
    """The adapter of concept ``info`` in this model, loading it on first use."""
    st = state_for(loaded)
    res = st.resident.get(info.id)
    if res is not None:
        res.name = info.name
        res.last_used = time.monotonic()
        return res
    t0 = time.perf_counter()
    tensors = weights_loader(info)
    vectors = tensors.pop(trig.KEY, None)
    parts = split_components(tensors)
    for comp, modules in parts.items():
        model = component(loaded, comp)
        if model is None:
            raise EngineError(ErrorCode.BAD_FIELD, f"{field}: model {loaded.entry.name!r} has no {comp}", field)
        check_fit(model, comp, modules, info.name, loaded.entry.name, field)
    _evict(loaded, keep=MAX_RESIDENT - 1)
    st.counter += 1
    adapter = f"concept{st.counter}"
    hot = None
    unet = component(loaded, "unet")
    if "unet" in parts and hotswap.active(unet):
        pairs = _fit_linear_pairs(unet, parts["unet"])
        if hotswap.fits(unet, pairs):   # compiled UNet: swapped into the hot slot, no new modules
            dev, dt = loaded.choice.device, loaded.choice.dtype
            hot = {m: (a.to(dev, dt), b.to(dev, dt)) for m, (a, b) in pairs.items()}
            parts = {c: m for c, m in parts.items() if c != "unet"}
        else:
            log.warning("concept %r does not fit the compiled UNet's hot slot: loaded as an adapter (recompiles)",
                        info.name)
    try:
        for comp, modules in parts.items():
            inject(loaded, adapter, comp, modules)
    except Exception:
        remove_adapter(loaded, adapter)
        raise
    note = _load_trigger(loaded, adapter, info.trigger, vectors) if vectors is not None else ""
    res = Resident(adapter=adapter, concept_id=info.id, name=info.name,
                   components=tuple(parts) + (("unet",) if hot is not None else ()),
                   last_used=time.monotonic(), load_seconds=time.perf_counter() - t0, trigger_note=note, hot=hot)
    st.resident[info.id] = res
    st.loads += 1
    log.info("concept %r loaded as adapter %s in %.3f s", info.name, adapter, res.load_seconds)
    return res


def trigger_hook(loaded) -> Optional[trig.TriggerEmbeddings]:
    """The model's token-embedding hook (installed on first use), or None without a text encoder."""
    te = component(loaded, "text_encoder")
    if te is None:
        return None
    st = state_for(loaded)
    st.triggers = trig.for_text_encoder(te, st.triggers)
    return st.triggers


def _load_trigger(loaded, adapter: str, trigger: str, vectors: torch.Tensor) -> str:
    """Register a concept's trigger vectors with the hook -> '' or why they can't be used here."""
    hook = trigger_hook(loaded)
    tok = getattr(loaded.base, "tokenizer", None)
    if hook is None or tok is None:
        return "the model has no text encoder"
    ids = trig.trigger_token_ids(tok, trigger)
    delta = hook.delta_from_vectors(ids, vectors)
    if delta is None:
        return (f"its trigger embedding ({vectors.shape[0]} tokens) does not fit this model's tokenizer, "
                f"which spells {trigger!r} with {len(ids)}")
    hook.entries[adapter] = trig.Entry(ids=ids, delta=delta)
    return ""


def _evict(loaded, keep: int) -> None:
    st = state_for(loaded)
    while len(st.resident) > keep:
        oldest = min(st.resident.values(), key=lambda r: r.last_used)
        remove_adapter(loaded, oldest.adapter)
        del st.resident[oldest.concept_id]


def set_active(loaded, weights: Dict[str, float], fuse: bool = False,
               ends: Optional[Dict[str, float]] = None) -> None:
    """Switch the model to exactly these adapters at these weights ({} = none, base model).

    The only per-job cost of concepts: walks the LoRA layers once.  ``fuse`` (live jobs) then
    folds them into the base weights (:func:`fuse`); the next job that wants anything else gets
    the model's own weights back first.  ``ends`` (adapter -> a share of the steps below 1) are
    adapters that stop acting part way through the schedule (:func:`end_schedule`); the weights
    set here are whole again at the next job's switch.
    """
    st = state_for(loaded)
    if st.fused is not None:
        if fuse and st.fused == weights:
            return                      # the stream of live jobs goes on: already folded in
        unfuse(loaded)
    names = list(weights)
    unet = component(loaded, "unet")
    if unet is not None and hotswap.active(unet):   # compiled UNet: its concepts are tensors written in place
        hotswap.switch(unet, {r.adapter: r.hot for r in st.resident.values() if r.hot is not None}, weights)
    for comp in COMPONENTS:
        model = component(loaded, comp)
        if model is None:
            continue
        for layer in tuner_layers(model):
            if hotswap.HOT in layer.lora_A:
                continue   # switched above
            if not names:
                if not layer.disable_adapters:
                    layer.enable_adapters(False)
                continue
            switched_on = layer.disable_adapters
            if switched_on:
                layer.enable_adapters(True)
            if switched_on or list(layer.active_adapters) != names:
                layer.set_adapter(names, inference_mode=True)   # absent names are skipped by the layer
            for name, w in weights.items():
                layer.set_scale(name, float(w))
    st.active = dict(weights)
    st.ends = {a: float(f) for a, f in (ends or {}).items() if a in weights and f < 1.0}
    if st.triggers is not None:
        st.triggers.active = dict(weights)
    if fuse and weights:
        _fuse(loaded)


def end_schedule(loaded) -> Optional[Callable[[int, int], None]]:
    """``(steps done, steps in all) -> None`` that switches off each active adapter with an end
    (:func:`set_active`'s ``ends``) once its share of the steps has run; None when none has one.

    Why: a picture-pair slider decides the layout in the noisy steps; left on to the end it
    also writes its own fine detail (speckles, wavy outlines at high weights), which the base
    model draws cleaner (``docs/performance.md``, Concept Sliders).  Folded-in (live) and
    compiled-UNet (hot-swapped) adapters keep the whole schedule: their weights cannot be
    switched between steps here."""
    st = state_for(loaded)
    ends = st.ends      # only active adapters: set_active (and the reset) keep it so
    if not ends or st.fused is not None:
        return None
    unet = component(loaded, "unet")
    if unet is None or hotswap.active(unet):
        return None
    layers = [layer for layer in tuner_layers(unet) if any(a in layer.scaling for a in ends)]
    for layer in layers:     # whole again: a job that denoises twice (Prompt-to-Prompt) starts each pass on
        for adapter in ends:
            layer.set_scale(adapter, float(st.active[adapter]))

    def at_step(done: int, total: int) -> None:
        for adapter, share in ends.items():
            if done == max(1, round(share * total)):
                for layer in layers:
                    layer.set_scale(adapter, 0.0)

    return at_step


def _fuse(loaded) -> None:
    """Fold the active adapters into the base layers' weights and switch the adapters off.

    Why: an unfused peft adapter costs a second (low-rank) path through every layer it is on:
    ~30 % of a 4-step live job with the starter's LCM-LoRA on 129 layers.  Live jobs come in
    streams with the same adapters, so they run on fused weights; a layer's own weight tensor is
    kept aside untouched (not subtracted back), so :func:`unfuse` restores it bit for bit.  The
    pictures differ from unfused ones only in float rounding.  Not on a compiled UNet (its hot
    slot is already one fixed-rank path).

    Then every tuner layer that adds nothing (folded in, or holding none of the active
    adapters) leaves the module tree: its base layer takes its place (:func:`_strip`).  A
    switched-off peft layer still costs a Python call and its checks per forward - 129 layers
    of the starter's UNet, 1-3 ms of its ~17 ms call at one thread (measured, same process).
    """
    st = state_for(loaded)
    unet = component(loaded, "unet")
    if unet is not None and hotswap.active(unet):
        return
    names = list(st.active)
    saved = []
    with torch.no_grad():
        for comp in COMPONENTS:
            model = component(loaded, comp)
            if model is None:
                continue
            for layer in tuner_layers(model):
                here = [n for n in names if n in layer.lora_A]
                if not here or layer.disable_adapters:
                    continue
                weight = layer.get_base_layer().weight
                delta = layer.get_delta_weight(here[0])
                for n in here[1:]:
                    delta = delta + layer.get_delta_weight(n)
                saved.append((layer, weight.data))
                weight.data = weight.data + delta.to(weight.dtype)
                layer.enable_adapters(False)
    st.fused, st.fused_saved = dict(st.active), saved
    st.stripped = [entry for comp in COMPONENTS if component(loaded, comp) is not None
                   for entry in _strip(component(loaded, comp), names)]


def _strip(model, names: List[str]) -> List[Tuple[object, str, object]]:
    """Put each tuner layer that adds nothing to ``model``'s output out of its module tree.

    Returns (parent, attribute, tuner layer) for :func:`_unstrip`.  The base layer object is
    the very module the tuner layer wrapped: its output is unchanged, bit for bit.
    """
    from peft.tuners.tuners_utils import BaseTunerLayer

    out = []
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, BaseTunerLayer) and (
                    child.disable_adapters or not any(n in getattr(child, "lora_A", {}) for n in names)):
                setattr(parent, name, child.get_base_layer())
                out.append((parent, name, child))
    return out


def _unstrip(stripped: List[Tuple[object, str, object]]) -> None:
    for parent, name, layer in reversed(stripped):
        setattr(parent, name, layer)


def unfuse(loaded) -> None:
    """The base layers' own weights back (the very tensors), adapters switched on as they were."""
    st = state_for(loaded)
    if st.fused is None:
        return
    _unstrip(st.stripped)
    st.stripped = []
    with torch.no_grad():
        for layer, own in st.fused_saved:
            layer.get_base_layer().weight.data = own
            layer.enable_adapters(True)
    st.fused, st.fused_saved = None, []


# --------------------------------------------------------------------------- training


UNET_TARGETS = {
    "lora": ["to_q", "to_k", "to_v", "to_out.0"],          # self- and cross-attention, as diffusers' script
    "custom_diffusion": ["attn2.to_k", "attn2.to_v"],      # cross-attention K/V only (Custom Diffusion)
}
#: LyCORIS' LoCon layer set for a LoRA concept (a model's ``concept_training.unet_layers = "locon"``): the
#: attention projections plus each transformer's in/out projections and feed-forward and each resnet's two
#: 3x3 convolutions - where a small UNet draws outlines (docs/performance.md, "a recipe that learns a shape")
LOCON_TARGETS = UNET_TARGETS["lora"] + ["proj_in", "proj_out", "ff.net.0.proj", "ff.net.2", "conv1", "conv2"]
TEXT_ENCODER_TARGETS = ["q_proj", "k_proj", "v_proj", "out_proj"]


def unet_targets(method: str, layers: str = "attention") -> List[str]:
    """The UNet layers a concept of ``method`` trains; ``layers`` (a model's default) widens a LoRA to LoCon."""
    if method == "lora" and layers == "locon":
        return list(LOCON_TARGETS)
    return list(UNET_TARGETS[method])


def inject_training(loaded, comp: str, targets: List[str], rank: int, seed: int) -> List[torch.nn.Parameter]:
    """A fresh trainable adapter (diffusers' init: A gaussian, B zero) -> its fp32 parameters.

    Seeded, and without touching the global random state.
    """
    from peft import LoraConfig, inject_adapter_in_model

    model = component(loaded, comp)
    st = state_for(loaded)
    _remember_grad_flags(st, comp, model)
    config = LoraConfig(r=rank, lora_alpha=rank, init_lora_weights="gaussian", target_modules=targets,
                        lora_dropout=0.0, bias="none")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        inject_adapter_in_model(config, model, adapter_name=TRAIN_ADAPTER)
    params = []
    for n, p in model.named_parameters():
        if f".{TRAIN_ADAPTER}." in n:
            p.data = p.data.float()       # master weights in fp32, also under fp16 autocast
            p.requires_grad_(True)
            params.append(p)
        else:
            p.requires_grad_(False)
    for layer in tuner_layers(model):
        if TRAIN_ADAPTER in layer.lora_A:
            layer.enable_adapters(True)
            layer.set_adapter([TRAIN_ADAPTER])
    return params


def inject_training_trigger(loaded, trigger: str) -> Optional[torch.nn.Parameter]:
    """A trainable trigger embedding (zero change to start) -> its fp32 parameter; None
    when the model has no text encoder or the trigger is empty."""
    hook = trigger_hook(loaded)
    ids = trig.trigger_token_ids(loaded.base.tokenizer, trigger) if hook is not None else []
    if not ids:
        return None
    table = hook.table.weight
    delta = torch.nn.Parameter(torch.zeros(len(ids), table.shape[1], device=table.device, dtype=torch.float32))
    hook.entries[TRAIN_ADAPTER] = trig.Entry(ids=ids, delta=delta)
    hook.active = {TRAIN_ADAPTER: 1.0}
    return delta


TRIGGER_DELTA_KEY = trig.KEY + "_delta"   # checkpoints only: the exact delta, so a resume is bit-identical


def _training_trigger(loaded) -> Tuple[Optional[trig.TriggerEmbeddings], Optional[trig.Entry]]:
    """The hook and the training's trigger entry (None, None when the training has none)."""
    hook = state_for(loaded).triggers
    entry = hook.entries.get(TRAIN_ADAPTER) if hook is not None else None
    return hook, entry


def training_trigger_state(loaded, checkpoint: bool = False) -> Dict[str, torch.Tensor]:
    """The trained trigger vectors with their library key (absolute rows, as an A1111 embedding)."""
    hook, entry = _training_trigger(loaded)
    if entry is None:
        return {}
    delta = entry.delta.detach().float()
    out = {trig.KEY: (hook.base_rows(entry.ids) + delta).cpu().clone()}
    if checkpoint:
        out[TRIGGER_DELTA_KEY] = delta.cpu().clone()
    return out


@torch.no_grad()
def cap_training_trigger(loaded, max_norm: float) -> None:
    """Shorten trigger rows longer than ``max_norm`` (their direction kept)."""
    hook, entry = _training_trigger(loaded)
    if entry is None:
        return
    base = hook.base_rows(entry.ids)
    rows = base + entry.delta
    scale = (max_norm / rows.norm(dim=1, keepdim=True).clamp_min(1e-12)).clamp(max=1.0)
    if bool((scale < 1).any()):
        entry.delta.copy_(rows * scale - base)


def load_training_trigger(loaded, tensors: Dict[str, torch.Tensor]) -> None:
    hook, entry = _training_trigger(loaded)
    delta = tensors.get(TRIGGER_DELTA_KEY)
    if entry is None or delta is None or tuple(delta.shape) != tuple(entry.delta.shape):
        raise EngineError(ErrorCode.BAD_FIELD, "resume: the checkpoint does not match this training "
                          "(trigger embedding)", "resume")
    with torch.no_grad():
        entry.delta.copy_(delta)


def training_state_dict(loaded, comp: str) -> Dict[str, torch.Tensor]:
    """The training adapter's weights with library keys (``comp.module.lora_A.weight``)."""
    from peft import get_peft_model_state_dict

    model = component(loaded, comp)
    sd = get_peft_model_state_dict(model, adapter_name=TRAIN_ADAPTER)
    out = {}
    for key, v in sd.items():
        module, _, kind = key.rpartition(".lora_")
        out[f"{comp}.{canonical_name(model, comp, module)}.lora_{kind}"] = v.detach().float().cpu().clone()
    return out


def load_training_state(loaded, comp: str, tensors: Dict[str, torch.Tensor]) -> None:
    from peft import set_peft_model_state_dict

    model = component(loaded, comp)
    prefix = comp + "."
    sd = {}
    for key, v in tensors.items():
        if key.startswith(prefix) and ".lora_" in key:
            module, _, kind = key[len(prefix):].rpartition(".lora_")
            sd[f"{live_name(model, comp, module)}.lora_{kind}"] = v
    with torch.no_grad():
        result = set_peft_model_state_dict(model, sd, adapter_name=TRAIN_ADAPTER)
    if getattr(result, "unexpected_keys", None):
        raise EngineError(ErrorCode.BAD_FIELD, f"resume: the checkpoint does not match this training "
                          f"({result.unexpected_keys[0]})", "resume")
