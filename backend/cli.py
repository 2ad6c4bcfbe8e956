"""``impasto``: the command line.  Every command except ``serve`` is a protocol client.

The tests and the README use exactly these commands, so they are the
contract: change them only together with both.

Just over 500 lines on purpose: the parser (every flag an artist types, with its help)
lives here in one place; the commands' bodies are in ``cli_edit.py``, ``cli_concepts.py``,
``cli_install.py`` and ``cli_security.py``, and planning is the client core's.
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path
from typing import List, Optional, Sequence

from impasto.protocol import launcher, notices, planner, prompt_edit
from impasto.protocol.control import parameters_extra as control_parameters
from impasto.protocol.errors import CLI as CLI_WORDS
from impasto.protocol.errors import PlanError, describe_error, where_to_set
from impasto.protocol.parameters import format_parameters, parse_parameters
from impasto.protocol.settings import Recommendation, Settings
from impasto.protocol import Client, JobCancelled, JobFailed, ProtocolError
from impasto.protocol.messages import SAMPLERS, Accepted, Limits, Progress, Result
from impasto.protocol.transport import default_endpoint

from impasto.backend import cli_p2p, pictures

EXIT_OK, EXIT_FAIL, EXIT_UNAVAILABLE, EXIT_CANCELLED = 0, 1, 3, 130


DEFAULTS = Settings()


class CliError(Exception):
    def __init__(self, message: str, code: int = EXIT_FAIL):
        super().__init__(message)
        self.code = code


# --------------------------------------------------------------------------- helpers


def parse_size(text: str):
    try:
        w, h = text.lower().split("x")
        return int(w), int(h)
    except ValueError:
        raise argparse.ArgumentTypeError(f"size {text!r} must look like 512x512") from None


def parse_concept(text: str):
    name, _, weight = text.rpartition(":")
    if not name:
        return text, 1.0
    try:
        return name, float(weight)
    except ValueError:
        raise argparse.ArgumentTypeError(f"concept {text!r} must look like NAME:WEIGHT, e.g. mycat:0.8") from None


def connect(args, spawn: bool) -> Client:
    """A client whose daemon answers and speaks our version: spawning one if allowed (the one launcher)."""
    endpoint = args.endpoint or default_endpoint()
    hint = "start one with `impasto serve`" + (" (or drop --no-spawn)" if getattr(args, "no_spawn", False) else "")
    try:
        return launcher.connect(endpoint, launcher.own_command() if spawn else None,
                                models_dir=getattr(args, "models_dir", None) or "", hello_timeout=30,
                                status=lambda text: print(text + " ...", file=sys.stderr) if "starting" in text
                                else None, name="impasto-cli", hint=hint)
    except launcher.DaemonUnavailable as exc:
        raise CliError(exc.message, EXIT_UNAVAILABLE) from None
    except ProtocolError as exc:
        raise CliError(exc.message, EXIT_FAIL) from None


LOSS_WINDOW = 20   # the trainer's "final loss" is the mean of its last 20 steps (backend/concepts/train.py)


class ProgressBar:
    """One line on stderr: ``[#####.....] 12/20 denoise``.

    A stage that has not counted a step yet reads ``prepare ...`` (not
    ``0/800 prepare``), and a training loss is shown as the mean of the last
    :data:`LOSS_WINDOW` steps, the figure the summary line reports, so the
    two agree.  When stderr is not a terminal (a log file, a script's pipe)
    there is no bar to redraw: a plain line is written when a stage starts, at
    its first step and at every tenth of it, so a log of an 800-step training
    reads as a dozen lines rather than 800 carriage returns run together.
    """

    def __init__(self, stream=None, width: int = 30, tty: Optional[bool] = None):
        self.stream, self.width, self.active = stream or sys.stderr, width, False
        self.tty = tty if tty is not None else bool(getattr(self.stream, "isatty", lambda: False)())
        self.losses: list = []
        self._logged: tuple = ()

    def update(self, ev: Progress) -> None:
        loss = ""
        if ev.loss is not None and ev.step > 0:
            self.losses = (self.losses + [float(ev.loss)])[-LOSS_WINDOW:]
            loss = f" loss {sum(self.losses) / len(self.losses):.4f}"
        if not self.tty:
            self._log(ev, loss)
            return
        if ev.step <= 0 and ev.stage:
            self.stream.write(f"\r{ev.stage} ...{' ' * 40}")
            self.stream.flush()
            self.active = True
            return
        total = max(ev.total, 1)
        filled = min(self.width, int(self.width * ev.step / total))
        self.stream.write(f"\r[{'#' * filled}{'.' * (self.width - filled)}] {ev.step}/{ev.total} {ev.stage}{loss}  ")
        self.stream.flush()
        self.active = True

    def _log(self, ev: Progress, loss: str) -> None:
        """The non-terminal form: one line at a stage's start, its first step and each tenth of it."""
        tenth = -1 if ev.step <= 0 else min(10, ev.step * 10 // max(ev.total, 1))
        if (ev.stage, tenth) == self._logged or (tenth == -1 and not ev.stage):
            return
        self._logged = (ev.stage, tenth)
        line = f"{ev.stage} ..." if tenth == -1 else f"{ev.step}/{ev.total} {ev.stage}{loss}"
        self.stream.write(line + "\n")
        self.stream.flush()

    def close(self) -> None:
        if self.active:
            self.stream.write("\n")
            self.stream.flush()
            self.active = False


def waiting_line(job) -> str:
    """``waiting (n ahead)`` when the job does not start at once ("" when it runs now).

    The daemon's ``accepted.position`` counts the jobs ahead, the running one included.
    """
    return notices.waiting_words(job.position)


def run_job(client: Client, request, quiet: bool = False) -> Result:
    """Submit, show progress, Ctrl-C cancels; returns the result or raises CliError.

    Warnings are printed the moment the daemon sends them (in progress
    events), and any the result holds that were not sent live after it.
    """
    bar = ProgressBar()
    job = client.submit(request)
    heard = notices.Heard()

    def tell(warnings) -> None:
        fresh = heard.fresh(warnings)
        if fresh:
            bar.close()
        for w in fresh:
            print(f"warning: {w}", file=sys.stderr, flush=True)

    try:
        for ev in job.events():
            if isinstance(ev, Accepted) and not quiet:
                line = waiting_line(job)
                if line:
                    print(line + " ...", file=sys.stderr, flush=True)
            if isinstance(ev, Progress):
                tell(ev.warnings)
                if not quiet and not notices.only_warnings(ev):
                    bar.update(ev)
            if isinstance(ev, Result):
                bar.close()
                tell(ev.warnings)
    except KeyboardInterrupt:
        bar.close()
        print("cancelling ...", file=sys.stderr)
        job.cancel()
        try:
            job.wait(timeout=60)
        except (JobCancelled, JobFailed, TimeoutError):
            pass
        raise CliError("cancelled", EXIT_CANCELLED) from None
    finally:
        bar.close()
    try:
        return job.wait(timeout=5)
    except JobCancelled:
        raise CliError("the job was cancelled", EXIT_CANCELLED) from None
    except JobFailed as exc:
        code = EXIT_UNAVAILABLE if exc.code in ("unavailable", "daemon_restarted") else EXIT_FAIL
        raise CliError(f"{describe_error(exc.code, exc.message, exc.field or '', host=CLI_WORDS)} [{exc.code}]",
                       code) from None


def job_client(args) -> Client:
    """The command's one connection (spawning a daemon unless ``--no-spawn``), opened on first use."""
    client = getattr(args, "_client", None)
    if client is None:
        client = args._client = connect(args, spawn=not getattr(args, "no_spawn", False))
    return client


def close_client(args) -> None:
    client = getattr(args, "_client", None)
    if client is not None:
        args._client = None
        client.close()


def recommendation(args) -> Recommendation:
    """The chosen model's recommendation (its impasto.json, via the daemon's model listing)."""
    rec = getattr(args, "_recommendation", None)
    if rec is None:
        reply = job_client(args).models()
        note = launcher.models_dir_note(getattr(args, "models_dir", None) or "", getattr(reply, "models_dir", ""))
        if note:
            print(f"note: {note}", file=sys.stderr)
        rec = args._recommendation = Recommendation.for_model(reply.models, getattr(args, "model", "") or "",
                                                              reply.default)
        if getattr(args, "concept", None):   # a few-step LoRA (LCM-LoRA, Lightning...) brings its own settings
            rec = args._recommendation = rec.with_concepts(job_client(args).concepts().concepts, args.concept)
        args._model_name = (getattr(args, "model", "") or reply.default)
    return rec


def run_request(args, request) -> Result:
    """Run one job on the command's connection, then close it: every job command's core."""
    if getattr(args, "output", None) and hasattr(args, "force"):
        check_output(args, request.batch_size)
    try:
        result = run_job(job_client(args), request, quiet=args.quiet)
    finally:
        close_client(args)
    args._request = request
    return result


def check_output(args, count: int) -> None:
    try:
        pictures.check_named(args.output, count, args.force)
    except pictures.PictureError as exc:
        raise CliError(str(exc)) from None


def picture_parameters(args, request, seed: int, size) -> str:
    """The A1111 text of one result (the request as sent, with the seed the daemon used)."""
    s = Settings(prompt=request.prompt, negative_prompt=request.negative_prompt, sampler=request.sampler,
                 steps=request.steps, cfg_scale=request.cfg_scale, seed=seed)
    s.set_concepts(request.concepts)
    model = request.model or getattr(args, "_model_name", "") or ""
    denoising = request.strength if request.init_image is not None else None
    extra = {**prompt_edit.parameters_extra(request), **control_parameters(request.control)}
    return format_parameters(s, seed, size, model, denoising, extra=extra or None)


def save_result(result: Result, out: Optional[str], args=None) -> List[Path]:
    """Write each picture (``out``, or numbered files in the outputs folder) with its parameters."""
    from PIL import Image as PILImage

    request = getattr(args, "_request", None) if args is not None else None
    force = bool(getattr(args, "force", False))
    try:
        paths = pictures.check_named(out, len(result.images), force) if out \
            else pictures.claim_numbered(list(result.seeds))
    except pictures.PictureError as exc:
        raise CliError(str(exc)) from None
    for path, img, seed in zip(paths, result.images, result.seeds):
        pil = PILImage.frombytes("RGBA", (img.width, img.height), img.data)
        if pil.getextrema()[3] == (255, 255):
            pil = pil.convert("RGB")
        text = picture_parameters(args, request, seed, (img.width, img.height)) if request is not None else ""
        pictures.save_picture(pil, path, text)
        print(f"{path}  seed {seed}  {img.width}x{img.height}")
    return paths


def settings_from_args(args) -> Settings:
    """The command line's options as the shared :class:`Settings` (their defaults are its defaults).

    With ``--from PICTURE`` the picture's parameters are the starting point
    and only the options given on the command line override them.
    """
    s = getattr(args, "_from_settings", None)
    s = Settings.from_dict(s.to_dict()) if s is not None else Settings()
    given = {"prompt": args.prompt, "negative_prompt": args.negative, "seed": args.seed, "steps": args.steps,
             "cfg_scale": args.cfg, "sampler": args.sampler, "model": args.model, "batch_size": args.batch}
    for name, value in given.items():
        if value is not None:
            setattr(s, name, value)
    s.preview = False
    if args.concept is not None:
        s.set_concepts(args.concept)
    for name in ("strength", "mask_blur", "grow", "padding", "fill", "whole_picture", "colour_match"):
        if getattr(args, name, None) is not None:
            setattr(s, name, getattr(args, name))
    if not s.prompt:
        raise CliError("a prompt is needed: impasto generate \"a red circle on a blue background\" "
                       "(or --from PICTURE)")
    return s


def plan(args, document, action, window=None, rgba=None, mask=None) -> planner.JobPlan:
    """The one planner's request for these options; a plan error is one readable line."""
    settings = settings_from_args(args)
    # the model's recommendation fills what the artist left unset; a fully set job needs no daemon to plan
    rec = recommendation(args) if settings.unset() or document is None else None
    if document is None:   # text to image with no --size: the model's native size
        document = (rec.native_size, rec.native_size)
    from impasto.backend import cli_control  # --control layers: read for the job's window

    try:
        controls = cli_control.controls_for(args, document, window)
        return planner.plan_job(document, settings, action, window, rgba, mask, recommendation=rec,
                                controls=controls, control_model=getattr(args, "control_model", "") or "")
    except PlanError as exc:
        raise CliError(with_hint(exc.message, where_to_set(exc.field, CLI_WORDS))) from None


def with_hint(message: str, hint: str) -> str:
    """``message`` and the flag that sets its field as two sentences ("... pose. Set it with --control.")."""
    message = message.rstrip()
    if hint and message and not message.endswith((".", "!", "?")):
        message += "."
    return message + hint


# --------------------------------------------------------------------------- commands


def serve_threads(args) -> int:
    """``--threads``, else ``$IMPASTO_THREADS`` (so a daemon a plug-in starts obeys it too); 0: torch's choice."""
    value = args.threads
    if value is None:
        text = os.environ.get("IMPASTO_THREADS", "").strip()
        if not text:
            return 0
        try:
            value = int(text)
        except ValueError:
            raise CliError(f"IMPASTO_THREADS={text!r} is not a whole number of threads", 2) from None
    if value < 1:
        raise CliError(f"--threads {value}: at least 1 thread", 2)
    return value


def cmd_serve(args) -> int:
    from impasto.backend.daemon import Daemon

    threads = serve_threads(args)

    def make_engine():  # imported on the worker thread: the socket answers while torch loads
        from impasto.backend.engine import Engine

        if threads:
            import torch

            torch.set_num_threads(threads)   # on the thread that paints: the setting is per thread
        return Engine(models_dir, limits=limits)

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    limits = Limits()
    if args.max_pixels:
        limits.max_pixels = args.max_pixels
    models_dir = Path(args.models_dir) if args.models_dir else None
    endpoint = args.endpoint or default_endpoint()
    import zmq

    from impasto.backend.daemon.server import DaemonConfigError

    security = "curve" if getattr(args, "curve", False) else "plain"
    try:
        daemon = Daemon(endpoint, make_engine, limits=limits, models_dir=models_dir, preload=not args.no_preload,
                        security=security)
    except DaemonConfigError as exc:
        raise CliError(str(exc), 2) from None
    except zmq.ZMQError as exc:
        raise CliError(f"cannot listen on {endpoint}: {exc.strerror} (is another daemon running? "
                       f"`impasto status` tells)", EXIT_UNAVAILABLE) from None
    daemon.install_signal_handlers()
    print(f"Impasto daemon listening on {endpoint}" + (" (CurveZMQ)" if security == "curve" else ""), flush=True)
    daemon.serve_forever()
    # Everything the daemon keeps is already on disk (written atomically and fsynced) and every
    # client was told.  Skip the interpreter's teardown of torch/diffusers (seconds) - and of a
    # worker still inside native code - so SIGTERM/SIGINT stop the daemon within a second.
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(EXIT_OK)


def ask(args, question, spawn: bool = False):
    """Connect, ask the daemon one control question (``question(client)``), close; its answer."""
    client = connect(args, spawn=spawn)
    try:
        return question(client)
    finally:
        client.close()


def cmd_stop(args) -> int:
    ask(args, lambda client: client.shutdown(timeout=10))
    print("the Impasto daemon is stopping")
    return EXIT_OK


def cmd_status(args) -> int:
    endpoint, st = ask(args, lambda client: (client.endpoint, client.status()))
    print(f"endpoint      {endpoint}\nversion       {st.version}\ndevice        {st.device}\n"
          f"loaded model  {st.model or '(none yet)'}\ndefault model {st.default_model or '(none installed)'}\n"
          f"queue         {st.queue} waiting, {'busy' if st.busy else 'idle'}")
    return EXIT_OK


def cmd_models(args) -> int:
    reply = ask(args, lambda client: client.models(), spawn=not args.no_spawn)
    note = launcher.models_dir_note(args.models_dir or "", getattr(reply, "models_dir", ""))
    if note:
        print(f"note: {note}", file=sys.stderr)
    print(f"models folder: {reply.models_dir}")
    if not reply.models:
        print("no models installed: put a diffusers folder or an SD1.5 / SDXL .safetensors file there")
    for m in reply.models:
        mark = "*" if m["name"] == reply.default else " "
        state = "" if m["supported"] else f"  (unusable: {'; '.join(m['notes'])})"
        print(f"{mark} {m['name']:<24} {m.get('family', m['arch']):<6} {m['arch']:<14} {m['format']:<12} {m['path']}{state}")
        rec = Recommendation.from_model(m)
        print(f"  {'':<24} {rec.label()}, native {m.get('native_size', '?')} px")
        if rec.live is not None:   # its own few-step LoRA shipped beside it (engine/bundled.py)
            print(f"  {'':<24} live painting: few-step LoRA {rec.live_concept} {rec.live.settings()}")
    controls = getattr(reply, "controls", None) or []
    if controls:
        print("control models (--control ... --control-model NAME):")
    for c in controls:
        state = "" if c.get("supported", True) else f"  (unusable: {'; '.join(c.get('notes', []))})"
        kind = "ControlNet" if c.get("kind") == "controlnet" else "T2I-Adapter"
        print(f"  {c['name']:<24} {c.get('family', '?'):<6} {kind:<12} controls {c.get('controls', 'any'):<9} "
              f"{c.get('format', '')} {c.get('path', '')}{state}")
    return EXIT_OK


def read_from(args) -> None:
    """``--from PICTURE``: its A1111 parameters become the defaults the given options override."""
    path = Path(args.from_picture)
    try:
        text = pictures.read_parameters(path)
    except pictures.PictureError as exc:
        raise CliError(str(exc)) from None
    if not text:
        raise CliError(f"{path} carries no parameters (no A1111 'parameters' text in it)")
    params = parse_parameters(text)
    args._from_settings = params.settings
    if args.size is None and params.size is not None:
        args.size = params.size
    if params.settings.seed < 0:
        print(f"note: {path} names no seed: a random one is used", file=sys.stderr)


def cmd_generate(args) -> int:
    if args.p2p_from:   # an edit of a saved picture by its prompt (Prompt-to-Prompt)
        return cli_p2p.run(args, sys.modules[__name__])
    cli_p2p.refuse_strays(args, CliError)
    args.prompt = args.prompt_option or args.prompt
    if args.from_picture:
        read_from(args)
    if args.output:
        check_output(args, args.batch or 1)
    job = plan(args, args.size, planner.GENERATE)
    if args.size is None and not args.quiet:
        rec = recommendation(args)
        print(f"size: the model's native {rec.native_size}x{rec.native_size} (--size WxH to change)",
              file=sys.stderr)
    result = run_request(args, job.request)
    save_result(result, args.output, args)
    return EXIT_OK


# --------------------------------------------------------------------------- parser


def starter_recommendation() -> str:
    """For --help, without a daemon: the shipped starter's recommendation, e.g. "model default (DDIM, 20, 3.0)"."""
    from impasto.backend.engine.model_card import read_card

    folder = os.environ.get("IMPASTO_STARTER_DIR") or str(Path(__file__).resolve().parent / "assets" / "starter")
    meta = read_card(folder)
    if not meta:
        return "the model's recommendation"
    rec = Recommendation.from_model(meta)
    return f"the model's recommendation; the starter's: {rec.label()}, {rec.native_size} px"


def add_common(p: argparse.ArgumentParser) -> None:
    model_default = starter_recommendation()
    p.add_argument("prompt", nargs="?", default=None)
    p.add_argument("-o", "--output", default=None, metavar="FILE",
                   help="picture to write: .png, .jpg or .webp (batches add -1, -2, ...); default: a new "
                        "numbered file in IMPASTO_HOME/outputs/DATE/")
    p.add_argument("--force", action="store_true", help="overwrite an existing -o file")
    p.add_argument("--negative", default=None, help="negative prompt")
    p.add_argument("--seed", type=int, default=None, help="-1 = random (the default; the seed used is printed)")
    p.add_argument("--steps", type=int, default=None, help=f"denoising steps (default: {model_default}; "
                                                           f"`impasto models` shows every model's)")
    p.add_argument("--cfg", type=float, default=None, help=f"CFG scale, how strictly to follow the prompt (default: "
                                                           f"{model_default})")
    p.add_argument("--sampler", default=None, choices=SAMPLERS, help=f"default: {model_default}")
    p.add_argument("--batch", type=int, default=None, help="pictures per run (default 1)")
    p.add_argument("--model", default=None, help="model name (see `impasto models`); default: the starter")
    p.add_argument("--concept", action="append", type=parse_concept, metavar="NAME:WEIGHT",
                   help="use a trained concept (repeatable)")
    p.add_argument("--no-spawn", action="store_true", help="fail instead of starting a daemon")
    p.add_argument("--models-dir", default=None, help="models folder for a daemon this command starts")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="impasto", description="Impasto: local diffusion painting")
    parser.add_argument("--endpoint", default=None, help="daemon endpoint (default: $IMPASTO_ENDPOINT or "
                                                         f"{default_endpoint()})")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("serve", help="run the daemon in the foreground")
    p.add_argument("--endpoint", default=None, dest="serve_endpoint")
    p.add_argument("--models-dir", default=None)
    p.add_argument("--max-pixels", type=int, default=0, help="largest image (w*h) a request may ask for")
    p.add_argument("--no-preload", action="store_true", help="load the model on the first job, not at start")
    p.add_argument("--threads", type=int, default=None,
                   help="torch threads for the painting (default: $IMPASTO_THREADS, else torch's choice, one per "
                        "core); 1 keeps a small model quick while other programs keep the cores busy "
                        "(docs/performance.md, 'Sharing the CPU')")
    p.add_argument("--curve", action="store_true", help="require CurveZMQ (needed to serve anything but "
                                                         "loopback; see `impasto curve`)")
    p.set_defaults(func=cmd_serve)

    sub.add_parser("stop", help="stop the daemon").set_defaults(func=cmd_stop)
    sub.add_parser("status", help="daemon status").set_defaults(func=cmd_status)
    p = sub.add_parser("models", help="list installed models")
    p.add_argument("--no-spawn", action="store_true")
    p.add_argument("--models-dir", default=None)
    p.set_defaults(func=cmd_models)

    p = sub.add_parser("generate", help="text to image")
    add_common(p)
    p.add_argument("--size", type=parse_size, default=None, help="WxH (default: the model's native size)")
    p.add_argument("--from", dest="from_picture", default=None, metavar="PICTURE",
                   help="re-run the settings a picture carries (A1111 'parameters'); options given override them")
    cli_p2p.add_arguments(p)
    from impasto.backend.cli_control import add_options as add_control_options

    add_control_options(p)
    p.set_defaults(func=cmd_generate)

    for register in EXTRA_COMMANDS:
        register(sub, add_common)
    return parser


# Feature modules (editing, concepts, plugin installers) add their sub-commands here.
EXTRA_COMMANDS: list = []


def _load_extras() -> None:
    import importlib

    for mod in ("impasto.backend.cli_edit", "impasto.backend.cli_concepts", "impasto.backend.cli_install",
                "impasto.backend.cli_security", "impasto.backend.cli_sliders"):
        try:
            importlib.import_module(mod)
        except ModuleNotFoundError as exc:
            if exc.name != mod:
                raise


def main(argv: Optional[Sequence[str]] = None) -> int:
    _load_extras()
    argv = list(sys.argv[1:] if argv is None else argv)
    security = sys.modules.get("impasto.backend.cli_security")
    if security is not None:   # a CURVE key may start with "-": not an option
        argv = security.keys_as_positionals(argv)
    args = build_parser().parse_args(argv)
    if getattr(args, "serve_endpoint", None):
        args.endpoint = args.serve_endpoint
    try:
        return args.func(args)
    except CliError as exc:
        print(f"impasto: {exc}", file=sys.stderr)
        return exc.code
    except KeyboardInterrupt:
        return EXIT_CANCELLED


if __name__ == "__main__":
    # Under `python -m impasto.backend.cli` this module runs as __main__: alias it
    # so feature modules that import impasto.backend.cli register their
    # sub-commands (and raise the CliError) of this very module, not a copy.
    sys.modules.setdefault("impasto.backend.cli", sys.modules[__name__])
    sys.exit(main())
