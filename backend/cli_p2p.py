"""``impasto generate "NEW PROMPT" --p2p-from PICTURE``: edit a saved picture by editing its prompt.

Prompt-to-Prompt (the daemon's ``backend/engine/p2p.py``): the picture is
repainted from its own seed and settings - read from the A1111 parameters it
carries - with the new prompt, and the daemon keeps its layout.  Why a module
of its own: ``cli.py`` only wires the flags; what an edit is (the original,
the checks, the words of a refusal) is the client core's
(``protocol/prompt_edit.py``), shared with the canvas and Krita.
"""
from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path

from impasto.protocol import prompt_edit
from impasto.protocol.errors import CLI as CLI_WORDS
from impasto.protocol.errors import PlanError, where_to_set

from . import pictures


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The edit's flags on ``impasto generate``."""
    d = prompt_edit.DEFAULT
    p.add_argument("--p2p-from", dest="p2p_from", default=None, metavar="PICTURE",
                   help="edit PICTURE by its prompt (Prompt-to-Prompt): repaint it from its own seed and settings "
                        "with the new prompt (positional or --prompt), keeping its layout")
    p.add_argument("--prompt", dest="prompt_option", default=None, metavar="PROMPT",
                   help="the prompt (same as the positional one)")
    p.add_argument("--cross-replace", type=float, default=None, metavar="FRACTION",
                   help=f"--p2p-from: fraction of the steps the new words look where the old ones did "
                        f"(default {d.cross_replace:g}; lower lets the new words reshape more)")
    p.add_argument("--self-replace", type=float, default=None, metavar="FRACTION",
                   help=f"--p2p-from: fraction of the steps the picture's own layout is copied "
                        f"(default: every step when only colour words change, else "
                        f"{prompt_edit.LAYOUT_DEFAULT:g})")
    p.add_argument("--reweight", default=None, metavar="WORD:FACTOR",
                   help="--p2p-from: more (FACTOR > 1) or less (< 1) of one word of the prompt, same layout")
    p.add_argument("--whole-picture", dest="whole_picture", action="store_true", default=None,
                   help="--p2p-from: let the edit change the whole picture (default: only where the changed "
                        "words look; everything else stays as it was)")


def refuse_strays(args, error) -> None:
    """The edit's own flags without ``--p2p-from`` mean nothing: say so instead of ignoring them."""
    for flag, name in (("--cross-replace", "cross_replace"), ("--self-replace", "self_replace"),
                       ("--reweight", "reweight"), ("--whole-picture", "whole_picture")):
        if _given(args, name):
            raise error(f"{flag} belongs to a prompt edit: add --p2p-from PICTURE")


def _given(args, name):
    return getattr(args, name, None) is not None


def run(args, cli) -> int:
    """Plan, run and save the edit (``cli`` is the ``impasto.backend.cli`` module: its job running and saving)."""
    for flag, name in (("--from", "from_picture"), ("--seed", "seed"), ("--size", "size"), ("--batch", "batch")):
        if _given(args, name):
            raise cli.CliError(f"{flag} does not go with --p2p-from: an edit is painted from the picture's own "
                               f"seed and size, one picture at a time")
    path = Path(args.p2p_from)
    try:
        text = pictures.read_parameters(path)
    except pictures.PictureError as exc:
        raise cli.CliError(str(exc)) from None
    if not text:
        raise cli.CliError(f"{path} carries no parameters (no A1111 'parameters' text in it), so there is no "
                           f"prompt and seed to edit")
    try:
        original = prompt_edit.original_from_parameters(text)
        reweight_word, reweight = prompt_edit.parse_reweight(args.reweight) if args.reweight else ("", 1.0)
    except PlanError as exc:
        raise cli.CliError(f"{path}: {exc.message}" if exc.field != "p2p.reweight_word" else exc.message) from None
    if original.note:
        print(f"note: {original.note}", file=sys.stderr)
    new_prompt = args.prompt_option or args.prompt
    if not new_prompt and not reweight_word:
        raise cli.CliError(f"give the new prompt: impasto generate \"NEW PROMPT\" --p2p-from {path} (the picture's "
                           f"is \"{original.settings.prompt}\")")
    settings = replace(original.settings, concepts=[dict(c) for c in original.settings.concepts])
    for name, value in (("negative_prompt", args.negative), ("steps", args.steps), ("cfg_scale", args.cfg),
                        ("sampler", args.sampler), ("model", args.model)):
        if value is not None:
            setattr(settings, name, value)
    if args.concept is not None:
        settings.set_concepts(args.concept)
    settings.preview = False
    d = prompt_edit.DEFAULT
    try:
        plan = prompt_edit.plan_prompt_edit(
            original, new_prompt or original.settings.prompt,
            d.cross_replace if args.cross_replace is None else args.cross_replace,
            d.self_replace if args.self_replace is None else args.self_replace,
            reweight_word, reweight, settings=settings, local=not args.whole_picture)
    except PlanError as exc:
        raise cli.CliError(exc.message + where_to_set(exc.field, CLI_WORDS)) from None
    if args.output:
        cli.check_output(args, 1)
    result = cli.run_request(args, plan.request)
    cli.save_result(result, args.output, args)
    return cli.EXIT_OK
