"""``impasto slider ...``: train and list Concept Sliders.

``impasto slider train NAME`` makes a slider in one of two ways:

* from prompts (no pictures): ``--target "a person" --positive "a smiling person"
  --negative "a frowning person"`` (``--preserve`` phrases keep what must not change);
* from picture pairs that differ only in the attribute: ``--pairs DIR`` (``DIR/low``
  and ``DIR/high``) or ``--low DIR --high DIR``; pictures pair up by file name
  (else in sorted order), a ``NAME.txt`` next to a low-end picture is the pair's
  caption (else ``--target``).

The result is a concept in the library marked as a slider; generate with it at a
signed weight: ``impasto generate "..." --concept NAME:-1.5``.  Like every
sub-command but ``serve`` this is a protocol client: no torch here.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import List, Tuple

from impasto.protocol.messages import SLIDER_FALLBACKS, SLIDER_WEIGHT_RANGE, Image as WireImage, TrainSlider
from impasto.protocol import sliders

from impasto.backend import cli as _cli  # noqa: E402
from impasto.backend import cli_concepts as _concepts

CliError, connect, run_job, save_result = _cli.CliError, _cli.connect, _cli.run_job, _cli.save_result

# What a slider training is made of: kept when it starts, so `slider train NAME --resume` needs nothing else.
KEYS = ("target", "positive", "negative", "preserve", "guidance", "base_pictures", "pairs", "low", "high", "steps",
        "rank", "lr", "resolution", "seed", "model", "sample_every", "checkpoint_every")
DEFAULTS: dict = {}


def _settings_file(name: str) -> Path:
    from impasto.protocol.launcher import impasto_home

    return impasto_home() / "train-settings" / f"slider-{name}.json"


def _remember(args) -> None:
    path = _settings_file(args.name)
    data = {k: getattr(args, k) for k in KEYS}
    for k in ("pairs", "low", "high"):
        if data[k]:
            data[k] = str(Path(data[k]).expanduser().resolve())
    _concepts.keep_settings(path, data)


def _recall(args) -> None:
    try:
        saved = json.loads(_settings_file(args.name).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        raise CliError(f"no saved settings for a slider training named {args.name!r}: give its options as when "
                       "it started") from None
    for key in KEYS:
        if key in saved and getattr(args, key) == DEFAULTS.get(key):
            setattr(args, key, saved[key])


def _folder_pictures(folder: Path, what: str) -> List[Path]:
    if not folder.is_dir():
        raise CliError(f"{what}: {folder} is not a folder")
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in _concepts.PICTURE_SUFFIXES)
    if not files:
        raise CliError(f"{what}: no pictures in {folder} ({', '.join(_concepts.PICTURE_SUFFIXES)})")
    return files


def pair_files(low: Path, high: Path) -> List[Tuple[Path, Path]]:
    """Low/high picture files paired by file name (stem), else in sorted order; a CliError when they don't pair."""
    lows, highs = _folder_pictures(low, "--low"), _folder_pictures(high, "--high")
    by_stem = {p.stem: p for p in highs}
    if all(p.stem in by_stem for p in lows) and len(lows) == len(highs):
        return [(p, by_stem[p.stem]) for p in lows]
    if len(lows) != len(highs):
        raise CliError(f"{len(lows)} low-end and {len(highs)} high-end pictures: give pairs (same file names, or the "
                       "same count in the same order)")
    return list(zip(lows, highs))


def _read(path: Path) -> WireImage:
    from PIL import Image, ImageOps, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            im.load()
            rgba = ImageOps.exif_transpose(im).convert("RGBA")
    except (UnidentifiedImageError, OSError) as exc:
        raise CliError(f"cannot read {path} ({exc.__class__.__name__}): fix or remove it") from None
    return WireImage(width=rgba.width, height=rgba.height, data=rgba.tobytes(), format="rgba8")


def build_request(args) -> TrainSlider:
    """The TrainSlider the options describe (pictures read here; only bytes travel)."""
    common = dict(name=args.name, target=args.target or "", steps=args.steps, rank=args.rank,
                  learning_rate=args.lr, resolution=args.resolution, seed=args.seed, model=args.model or "",
                  sample_every=args.sample_every, checkpoint_every=args.checkpoint_every, resume=args.resume,
                  preview=False, preserve=list(args.preserve or []))
    low, high = args.low, args.high
    if args.pairs:
        if low or high:
            raise CliError("give --pairs DIR or --low DIR --high DIR, not both")
        low, high = str(Path(args.pairs) / "low"), str(Path(args.pairs) / "high")
    if low or high:
        if not (low and high):
            raise CliError("an image-pair slider needs both --low DIR and --high DIR (or --pairs DIR)")
        if args.positive or args.negative:
            raise CliError("--positive/--negative make a text slider: leave them out with picture pairs")
        pairs = pair_files(Path(low).expanduser(), Path(high).expanduser())
        sidecars = [p.with_suffix(".txt") for p, _ in pairs]
        captions: List[str] = []
        if all(s.is_file() for s in sidecars):
            captions = [" ".join(s.read_text(encoding="utf-8", errors="replace").split()) for s in sidecars]
        return TrainSlider(mode="images", images=[_read(p) for p, _ in pairs],
                           images_high=[_read(p) for _, p in pairs], captions=captions, **common)
    missing = [f"--{k}" for k in ("target", "positive", "negative") if not getattr(args, k)]
    if missing:
        raise CliError(f"a text slider needs {', '.join(missing)} (or picture pairs: --pairs DIR / --low --high)")
    return TrainSlider(mode="text", positive=args.positive, negative=args.negative, guidance=args.guidance,
                       base_pictures=args.base_pictures, **common)


def cmd_train(args) -> int:
    if args.resume:
        _recall(args)
    req = build_request(args)
    if not args.resume:
        _remember(args)
    client = connect(args, spawn=not args.no_spawn)
    try:
        try:
            result = run_job(client, req, quiet=args.quiet)
        except CliError as exc:
            if "cancel" in str(exc):
                print(f"stopped: continue later with `impasto slider train {args.name} --resume`", file=sys.stderr)
            raise
    finally:
        client.close()
    concept = result.info.get("concept", {})
    if args.output and result.images:
        save_result(result, args.output)
    for w in result.warnings:
        print(f"warning: {w}", file=sys.stderr)
    took = result.timings.get("train", 0.0)
    print(f"slider {concept.get('name', args.name)!r} saved ({req.mode}): {result.steps_run} steps "
          f"({took:.1f} s training), final loss {_concepts._loss(result.info.get('final_loss'))}")
    if result.info.get("resumed_from"):
        print(f"resumed from step {result.info['resumed_from']}")
    weights = result.info.get("sample_weights", [])
    for w, path in zip(weights, concept.get("samples", [])):
        print(f"sample at {sliders.format_weight(w)}: {path}")
    lo, hi = SLIDER_WEIGHT_RANGE
    print(f"use it: impasto generate \"{req.target or (req.captions[0] if req.captions else '...')}\" "
          f"--concept {args.name}:-1.5   (weights {lo:+g}..{hi:+g}; 0 = off)")
    return 0


def cmd_list(args) -> int:
    client = connect(args, spawn=not args.no_spawn)
    try:
        reply = client.concepts()
    finally:
        client.close()
    found = [c for c in reply.concepts if sliders.is_slider(c)]
    if args.json:
        print(json.dumps(found, indent=2))
        return 0
    if not found:
        print("no sliders yet: make one with `impasto slider train NAME`")
        return 0
    for c in found:
        print(f"{c['name']:<20} {sliders.describe(c)}")
    return 0


def register(sub, add_common) -> None:
    slider = sub.add_parser("slider", help="Concept Sliders: a LoRA dialled with a signed weight (-3..+3)")
    ssub = slider.add_subparsers(dest="slider_command", required=True)
    p = ssub.add_parser(
        "train", help="make a slider from a prompt pair or from picture pairs",
        description="Text slider: --target, --positive and --negative prompts (no pictures). Image-pair slider: "
                    "--pairs DIR (DIR/low, DIR/high) or --low DIR --high DIR, pictures that differ only in the "
                    "attribute. Use it with --concept NAME:WEIGHT, WEIGHT from -3 to +3.")
    p.add_argument("name")
    p.add_argument("--target", default="", metavar="PROMPT", help="what the slider acts on, e.g. 'a person'")
    p.add_argument("--positive", default="", metavar="PROMPT", help="the +1 end, e.g. 'a smiling person'")
    p.add_argument("--negative", default="", metavar="PROMPT", help="the -1 end, e.g. 'a frowning person'")
    p.add_argument("--preserve", action="append", default=None, metavar="PHRASE",
                   help="appended to all three prompts in turn: what must not change (repeatable)")
    p.add_argument("--guidance", type=float, default=0.0,
                   help=f"strength of the prompt difference (default {SLIDER_FALLBACKS['guidance']:g})")
    p.add_argument("--base-pictures", type=int, default=TrainSlider().base_pictures,
                   help="pictures of the target the base model draws to train on (text sliders)")
    p.add_argument("--pairs", default=None, metavar="DIR", help="picture pairs: DIR/low and DIR/high")
    p.add_argument("--low", default=None, metavar="DIR", help="the -1 end of each pair")
    p.add_argument("--high", default=None, metavar="DIR", help="the +1 end of each pair")
    p.add_argument("--steps", type=int, default=0,
                   help=f"training steps (default: the model's recommendation, else {SLIDER_FALLBACKS['steps']})")
    p.add_argument("--rank", type=int, default=0,
                   help=f"LoRA rank (default: the model's recommendation, else {SLIDER_FALLBACKS['rank']})")
    p.add_argument("--lr", type=float, default=0.0, help="learning rate (default: the model's recommendation, else "
                                                         f"{SLIDER_FALLBACKS['learning_rate']:g})")
    p.add_argument("--resolution", type=int, default=0, help="training size in px (default: the model's own)")
    p.add_argument("--sample-every", type=int, default=TrainSlider().sample_every, metavar="N")
    p.add_argument("--checkpoint-every", type=int, default=TrainSlider().checkpoint_every, metavar="N")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--model", default="", help="base model (default: the daemon's default)")
    p.add_argument("--resume", action="store_true", help="continue a stopped slider training from its checkpoint")
    p.add_argument("-o", "--output", default=None, metavar="PNG", help="also write the -1/0/+1 samples here")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    _concepts._client_options(p)
    p.set_defaults(func=cmd_train)
    DEFAULTS.update({a.dest: a.default for a in p._actions if a.dest in KEYS})

    p = ssub.add_parser("list", help="the sliders in the library")
    p.add_argument("--json", action="store_true", help="everything, as JSON")
    _concepts._client_options(p)
    p.set_defaults(func=cmd_list)


_cli.EXTRA_COMMANDS.append(register)
