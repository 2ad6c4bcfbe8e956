"""``impasto concept ...``: train, list, rename, delete, import and export personal concepts.

Every sub-command is a protocol client of the daemon (which owns the library
and the model); import reads the LoRA file here and sends its bytes, export
receives the bytes and writes the file here, atomically: the daemon never
opens a path a request names.  Pictures for training are read here, in any
format Pillow opens, and travel as raw RGBA; a ``NAME.txt`` next to a picture
(kohya's convention) is its caption.

This module must stay light: no torch, no engine import (the CLI is a client).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import List, Tuple

from impasto.protocol import ProtocolError
from impasto.protocol.atomic import write_atomic
from impasto.protocol.messages import TRAIN_FALLBACKS, TRAIN_METHODS, Image as WireImage, Train

PICTURE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff", ".gif")


from impasto.backend import cli as _cli  # noqa: E402
CliError, connect, run_job, save_result = _cli.CliError, _cli.connect, _cli.run_job, _cli.save_result


# --------------------------------------------------------------------------- reading pictures


def read_pictures(folder: str) -> Tuple[List[WireImage], List[str], List[str]]:
    """(pictures, captions or [], notes) from a folder; unreadable files are a CliError."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    root = Path(folder).expanduser()
    if not root.is_dir():
        raise CliError(f"--images: {folder} is not a folder")
    files = sorted(p for p in root.iterdir() if p.is_file() and p.suffix.lower() in PICTURE_SUFFIXES)
    if not files:
        raise CliError(f"--images: no pictures in {folder} ({', '.join(PICTURE_SUFFIXES)})")
    pictures, bad = [], []
    for path in files:
        try:
            with Image.open(path) as im:
                im.load()
                rgba = ImageOps.exif_transpose(im).convert("RGBA")
        except (UnidentifiedImageError, OSError) as exc:
            bad.append(f"{path.name} ({exc.__class__.__name__})")
            continue
        pictures.append(WireImage(width=rgba.width, height=rgba.height, data=rgba.tobytes(), format="rgba8"))
    if bad:
        raise CliError(f"--images: cannot read {', '.join(bad)}: fix or remove {'them' if len(bad) > 1 else 'it'}")
    notes = []
    sidecars = [p.with_suffix(".txt") for p in files]
    have = [s.is_file() for s in sidecars]
    captions: List[str] = []
    if all(have):
        captions = [" ".join(s.read_text(encoding="utf-8", errors="replace").split()) for s in sidecars]
    elif any(have):
        notes.append(f"only {sum(have)} of {len(files)} pictures have a caption file: captions ignored")
    return pictures, captions, notes


# --------------------------------------------------------------------------- commands


# The options a training is made of: saved when it starts, so `concept train NAME --resume` needs nothing else.
TRAIN_KEYS = ("images", "trigger", "class_noun", "method", "steps", "rank", "lr", "resolution", "prior",
              "class_images", "text_encoder", "trigger_embedding", "gradient_checkpointing", "sample_every",
              "checkpoint_every", "seed", "model")
TRAIN_DEFAULTS: dict = {}        # the parser's defaults (filled by register): "not given" on a --resume


def _train_file(name: str) -> Path:
    from impasto.protocol.launcher import impasto_home

    return impasto_home() / "train-settings" / f"{name}.json"


def keep_settings(path: Path, data: dict) -> None:
    """Write a starting training's options to ``path`` (atomically) for a later ``--resume``; a note if it can't."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(path, json.dumps(data, indent=1).encode("utf-8"))
    except OSError as exc:
        print(f"note: the training's settings could not be kept for --resume ({exc})", file=sys.stderr)


def remember_training(args) -> None:
    """Write the options of a training that starts, for a later ``--resume``."""
    data = {k: getattr(args, k) for k in TRAIN_KEYS}
    data["images"] = str(Path(args.images).expanduser().resolve())
    keep_settings(_train_file(args.name), data)


def recall_training(args) -> None:
    """``--resume``: the options not given on the command line are the ones the training started with."""
    try:
        saved = json.loads(_train_file(args.name).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        saved = {}
    for key in TRAIN_KEYS:
        if key in saved and getattr(args, key) == TRAIN_DEFAULTS.get(key):
            setattr(args, key, saved[key])
    missing = [f"--{k}" for k in ("images", "trigger") if not getattr(args, k)]
    if missing:
        raise CliError(f"no saved settings for a training named {args.name!r}: give {' and '.join(missing)} "
                       f"as when it started")


def cmd_train(args) -> int:
    if args.resume:
        recall_training(args)
    elif not args.images or not args.trigger:
        raise CliError("a training needs --images DIR and --trigger WORD")
    else:
        remember_training(args)
    pictures, captions, notes = read_pictures(args.images)
    for n in notes:
        print(f"note: {n}", file=sys.stderr)
    req = Train(
        name=args.name, images=pictures, captions=captions, trigger=args.trigger, class_noun=args.class_noun,
        method=args.method, rank=args.rank, steps=args.steps, learning_rate=args.lr, resolution=args.resolution,
        prior_preservation=args.prior, class_images=args.class_images, seed=args.seed, model=args.model or "",
        sample_every=args.sample_every, checkpoint_every=args.checkpoint_every, resume=args.resume,
        preview=False, train_text_encoder=args.text_encoder, trigger_embedding=args.trigger_embedding, gradient_checkpointing=args.gradient_checkpointing,
    )
    client = connect(args, spawn=not args.no_spawn)
    try:
        try:
            result = run_job(client, req, quiet=args.quiet)
        except CliError as exc:
            if "cancel" in str(exc):
                print(f"stopped: continue later with `impasto concept train {args.name} --resume`",
                      file=sys.stderr)
            raise
    finally:
        client.close()
    concept = result.info.get("concept", {})
    if args.output and result.images:
        save_result(result, args.output)     # warnings were printed by run_job, as they came
    took = result.timings.get("train", 0.0)
    print(f"concept {concept.get('name', args.name)!r} saved: trigger {concept.get('trigger')!r}, "
          f"{result.steps_run} steps ({took:.1f} s training), final loss {_loss(result.info.get('final_loss'))}")
    if result.info.get("resumed_from"):
        print(f"resumed from step {result.info['resumed_from']}")
    print(f"samples: {', '.join(concept.get('samples', []))}")
    print(f"use it: impasto generate \"a {args.trigger} {args.class_noun}\" --concept {args.name}:0.8")
    return 0


def cmd_list(args) -> int:
    client = connect(args, spawn=not args.no_spawn)
    try:
        reply = client.concepts()
    finally:
        client.close()
    if args.json:
        print(json.dumps(reply.concepts, indent=2))
        return 0
    if not reply.concepts:
        print("no concepts yet: train one with `impasto concept train` or import a LoRA with `impasto concept import`")
        return 0
    print(f"{'NAME':<20} {'TRIGGER':<14} {'CLASS':<10} {'METHOD':<16} {'RANK':>4} {'STEPS':>5}  {'BASE MODEL':<14} "
          f"{'SOURCE':<8} CREATED")
    for c in reply.concepts:
        print(f"{c['name']:<20} {c.get('trigger') or '-':<14} {c.get('class_noun') or '-':<10} "
              f"{c.get('method', ''):<16} {c.get('rank', 0):>4} {c.get('steps', 0):>5}  "
              f"{c.get('base_model') or '?':<14} {c.get('source', ''):<8} {c.get('created', '')}")
    return 0


def _action(args, action: str, name: str, **fields):
    client = connect(args, spawn=not args.no_spawn)
    try:
        return client.concept_action(action, name, **fields)
    except ProtocolError as exc:
        raise CliError(f"{exc.message} [{exc.code}]") from None
    finally:
        client.close()


def cmd_rename(args) -> int:
    _action(args, "rename", args.name, new_name=args.new_name)
    print(f"renamed {args.name!r} to {args.new_name!r}")
    return 0


def cmd_delete(args) -> int:
    _action(args, "delete", args.name)
    print(f"deleted {args.name!r}")
    return 0


def cmd_import(args) -> int:
    from impasto.protocol.concept_files import read_concept_file

    path = Path(args.file).expanduser().resolve()
    try:
        blob = read_concept_file(path)  # this side reads the file: the daemon never opens a path
    except ProtocolError as exc:
        raise CliError(exc.message, 1) from None
    done = _action(args, "import", args.name, trigger=args.trigger or "", file=blob, filename=path.name)
    concept = done.info.get("concept", {})
    print(f"imported {path.name} as {args.name!r} ({done.info.get('layout')} keys, rank {concept.get('rank')}, "
          f"trigger {concept.get('trigger') or '-'!r})")
    rec = concept.get("recommended")
    if isinstance(rec, dict) and rec.get("preset"):   # a few-step LoRA (backend/engine/fewstep_presets.json)
        print(f"few-step LoRA ({rec['preset']}): with it on, unset settings become {rec.get('sampler')}, "
              f"{rec.get('steps')} steps, CFG {rec.get('cfg_scale')}")
    for n in done.info.get("notes", []):
        print(f"note: {n}", file=sys.stderr)
    return 0


def cmd_export(args) -> int:
    from impasto.protocol.concept_files import write_atomic

    path = Path(args.output).expanduser().resolve()
    if path.is_dir():
        path = path / f"{args.name}.safetensors"
    if not path.parent.is_dir():
        raise CliError(f"folder {str(path.parent)!r} does not exist", 1)
    done = _action(args, "export", args.name)
    if done.file is None:
        raise CliError("the daemon's export answer carried no file", 1)
    try:
        size = write_atomic(path, done.file.data)  # this side writes, atomically
    except ProtocolError as exc:
        raise CliError(exc.message, 1) from None
    print(f"{path}  ({size} bytes, kohya format: A1111, ComfyUI and kohya load it)")
    return 0


# --------------------------------------------------------------------------- parser


def _client_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--no-spawn", action="store_true", help="fail instead of starting a daemon")
    p.add_argument("--models-dir", default=None, help="models folder for a daemon this command starts")


def _loss(value) -> str:
    """The summary's loss in the progress bar's words (mean of the last steps, 4 decimals)."""
    if not isinstance(value, (int, float)):
        return "n/a"
    return f"{value:.4f} (mean of the last {_cli.LOSS_WINDOW} steps, as the progress bar shows)"


def register(sub, add_common) -> None:
    concept = sub.add_parser("concept", help="personal concepts (LoRA): train, list, rename, delete, import, export")
    csub = concept.add_subparsers(dest="concept_command", required=True)

    defaults = Train()
    p = csub.add_parser("train", help="teach a character, object or style from 3-20 pictures",
                        description="Train concept NAME from the pictures in --images (a NAME.txt next to a "
                                    "picture is its caption). Prompts then call it with its trigger word.")
    p.add_argument("name")
    p.add_argument("--images", default=None, metavar="DIR", help="folder of 3-20 pictures of the concept "
                                                                 "(required, except with --resume)")
    p.add_argument("--trigger", default=None, metavar="WORD",
                   help="a rare made-up word that will mean your concept, e.g. zwx")
    p.add_argument("--class", dest="class_noun", default="", metavar="NOUN",
                   help="what it is in general (dog, person, mug, style): keeps the model's idea of the class")
    p.add_argument("--method", choices=TRAIN_METHODS, default=defaults.method,
                   help="lora: UNet attention (default); custom_diffusion: cross-attention K/V only (smaller)")
    p.add_argument("--steps", type=int, default=0,
                   help=f"training steps (default: the model's recommendation, else {TRAIN_FALLBACKS['steps']})")
    p.add_argument("--rank", type=int, default=0,
                   help=f"LoRA rank (default: the model's recommendation, else {TRAIN_FALLBACKS['rank']})")
    p.add_argument("--lr", type=float, default=0.0,
                   help=f"learning rate (default: the model's recommendation, else {TRAIN_FALLBACKS['learning_rate']:g})")
    p.add_argument("--resolution", type=int, default=0, help="training size in px (default: the model's own)")
    p.add_argument("--prior", action=argparse.BooleanOptionalAction, default=True,
                   help="prior preservation with class pictures from the base model (default on)")
    p.add_argument("--class-images", type=int, default=defaults.class_images,
                   help=f"class pictures for prior preservation (default {defaults.class_images})")
    p.add_argument("--text-encoder", action=argparse.BooleanOptionalAction, default=None,
                   help="also train a LoRA on the text encoder (changes how every prompt is read; "
                        "default: the model's recommendation, else off)")
    p.add_argument("--trigger-embedding", action=argparse.BooleanOptionalAction, default=True,
                   help="learn the trigger word's own embedding (default on; acts only where the trigger is written)")
    p.add_argument("--gradient-checkpointing", action="store_true", help="less GPU memory, slower steps")
    p.add_argument("--sample-every", type=int, default=defaults.sample_every, metavar="N")
    p.add_argument("--checkpoint-every", type=int, default=defaults.checkpoint_every, metavar="N")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--model", default="", help="base model (default: the daemon's default)")
    p.add_argument("--resume", action="store_true",
                   help="continue a stopped training of NAME from its checkpoint, with the settings it started "
                        "with (options given here override them)")
    p.add_argument("-o", "--output", default=None, metavar="PNG", help="also write the sample pictures here")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    _client_options(p)
    p.set_defaults(func=cmd_train)
    TRAIN_DEFAULTS.update({a.dest: a.default for a in p._actions if a.dest in TRAIN_KEYS})

    p = csub.add_parser("list", help="the concepts in the library")
    p.add_argument("--json", action="store_true", help="everything, as JSON")
    _client_options(p)
    p.set_defaults(func=cmd_list)

    p = csub.add_parser("rename", help="rename a concept")
    p.add_argument("name")
    p.add_argument("new_name")
    _client_options(p)
    p.set_defaults(func=cmd_rename)

    p = csub.add_parser("delete", help="delete a concept")
    p.add_argument("name")
    _client_options(p)
    p.set_defaults(func=cmd_delete)

    p = csub.add_parser("import", help="add a LoRA file (kohya/A1111/ComfyUI or diffusers) to the library")
    p.add_argument("file", help=".safetensors LoRA file")
    p.add_argument("--name", required=True, help="concept name in the library")
    p.add_argument("--trigger", default="", metavar="WORD", help="its trigger word (from its download page)")
    _client_options(p)
    p.set_defaults(func=cmd_import)

    p = csub.add_parser("export", help="write a concept as a kohya-format LoRA (.safetensors)")
    p.add_argument("name")
    p.add_argument("-o", "--output", required=True, metavar="FILE", help="file (or folder) to write")
    _client_options(p)
    p.set_defaults(func=cmd_export)


_cli.EXTRA_COMMANDS.append(register)
