"""``impasto``: the command line.  Every command except ``serve`` is a protocol client.

The tests and the README use exactly these commands, so they are the
contract: change them only together with both.
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from pathlib import Path
from typing import List, Optional, Sequence

from impasto.backend.launcher import daemon_log_path, spawn_daemon
from impasto.protocol import Client, JobCancelled, JobFailed, ProtocolError
from impasto.protocol.messages import SAMPLERS, Generate, Limits, Progress, Result
from impasto.protocol.transport import default_endpoint

EXIT_OK, EXIT_FAIL, EXIT_UNAVAILABLE, EXIT_CANCELLED = 0, 1, 3, 130


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
    """A client whose daemon answers: spawning one if allowed and needed."""
    endpoint = args.endpoint or default_endpoint()
    client = Client(endpoint, name="impasto-cli")
    if client.ping(timeout=1.5):
        _check_version(client)
        return client
    if not spawn:
        client.close()
        raise CliError(f"no Impasto daemon answers at {endpoint}: start one with `impasto serve`"
                       f"{' (or drop --no-spawn)' if getattr(args, 'no_spawn', False) else ''}", EXIT_UNAVAILABLE)
    print(f"starting the Impasto daemon at {endpoint} (log: {daemon_log_path()}) ...",
          file=sys.stderr)
    proc = spawn_daemon(endpoint, getattr(args, "models_dir", None))
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            client.close()
            raise CliError(f"the daemon exited at start (code {proc.returncode}); see {daemon_log_path()}", EXIT_UNAVAILABLE)
        if client.ping(timeout=1.0):
            _check_version(client)
            return client
    client.close()
    raise CliError(f"the daemon did not answer within 180 s at {endpoint}", EXIT_UNAVAILABLE)


def _check_version(client: Client) -> None:
    try:
        client.hello(timeout=30)
    except ProtocolError as exc:
        raise CliError(exc.message, EXIT_FAIL) from None


class ProgressBar:
    """One line on stderr: ``[#####.....] 12/20 denoise``."""

    def __init__(self, stream=sys.stderr, width: int = 30):
        self.stream, self.width, self.active = stream, width, False

    def update(self, ev: Progress) -> None:
        total = max(ev.total, 1)
        filled = int(self.width * ev.step / total)
        loss = f" loss {ev.loss:.4f}" if ev.loss is not None else ""
        self.stream.write(f"\r[{'#' * filled}{'.' * (self.width - filled)}] {ev.step}/{ev.total} {ev.stage}{loss}  ")
        self.stream.flush()
        self.active = True

    def close(self) -> None:
        if self.active:
            self.stream.write("\n")
            self.stream.flush()
            self.active = False


def run_job(client: Client, request, quiet: bool = False) -> Result:
    """Submit, show progress, Ctrl-C cancels; returns the result or raises CliError."""
    bar = ProgressBar()
    job = client.submit(request)
    try:
        for ev in job.events():
            if isinstance(ev, Progress) and not quiet:
                bar.update(ev)
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
        code = EXIT_UNAVAILABLE if exc.code == "unavailable" else EXIT_FAIL
        raise CliError(f"{exc.message} [{exc.code}]", code) from None


def run_request(args, request) -> Result:
    """Connect (spawning a daemon unless ``--no-spawn``), run one job, close: every job command's core."""
    client = connect(args, spawn=not args.no_spawn)
    try:
        return run_job(client, request, quiet=args.quiet)
    finally:
        client.close()


def output_paths(out: str, count: int) -> List[Path]:
    path = Path(out)
    if count == 1:
        return [path]
    return [path.with_name(f"{path.stem}-{i + 1}{path.suffix or '.png'}") for i in range(count)]


def save_result(result: Result, out: str) -> List[Path]:
    from PIL import Image as PILImage

    paths = output_paths(out, len(result.images))
    for path, img, seed in zip(paths, result.images, result.seeds):
        path.parent.mkdir(parents=True, exist_ok=True)
        pil = PILImage.frombytes("RGBA", (img.width, img.height), img.data)
        if pil.getextrema()[3] == (255, 255):
            pil = pil.convert("RGB")
        tmp = path.with_name(path.name + ".part")
        pil.save(tmp, format="PNG")
        os.replace(tmp, path)
        print(f"{path}  seed {seed}  {img.width}x{img.height}")
    for w in result.warnings:
        print(f"warning: {w}", file=sys.stderr)
    return paths


def common_request(args, **fields) -> Generate:
    return Generate(
        prompt=args.prompt, negative_prompt=args.negative, seed=args.seed, steps=args.steps,
        cfg_scale=args.cfg, sampler=args.sampler, model=args.model or "", batch_size=args.batch,
        concepts=[tuple(c) for c in (args.concept or [])], preview=False, **fields,
    )


# --------------------------------------------------------------------------- commands


def cmd_serve(args) -> int:
    from impasto.backend.daemon import Daemon

    def make_engine():  # imported on the worker thread: the socket answers while torch loads
        from impasto.backend.engine import Engine

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


def cmd_stop(args) -> int:
    client = connect(args, spawn=False)
    try:
        client.shutdown(timeout=10)
        print("the Impasto daemon is stopping")
    finally:
        client.close()
    return EXIT_OK


def cmd_status(args) -> int:
    client = connect(args, spawn=False)
    try:
        st = client.status()
    finally:
        client.close()
    print(f"endpoint      {client.endpoint}\nversion       {st.version}\ndevice        {st.device}\n"
          f"loaded model  {st.model or '(none yet)'}\ndefault model {st.default_model or '(none installed)'}\n"
          f"queue         {st.queue} waiting, {'busy' if st.busy else 'idle'}")
    return EXIT_OK


def cmd_models(args) -> int:
    client = connect(args, spawn=not args.no_spawn)
    try:
        reply = client.models()
    finally:
        client.close()
    print(f"models folder: {reply.models_dir}")
    if not reply.models:
        print("no models installed: put a diffusers folder or an SD1.5 .safetensors file there")
        return EXIT_OK
    for m in reply.models:
        mark = "*" if m["name"] == reply.default else " "
        state = "" if m["supported"] else f"  (unusable: {'; '.join(m['notes'])})"
        print(f"{mark} {m['name']:<24} {m['arch']:<14} {m['format']:<12} {m['path']}{state}")
    return EXIT_OK


def cmd_generate(args) -> int:
    w, h = args.size
    result = run_request(args, common_request(args, width=w, height=h))
    save_result(result, args.output)
    return EXIT_OK


# --------------------------------------------------------------------------- parser


def add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument("prompt")
    p.add_argument("-o", "--output", default="out.png", help="PNG to write (batches add -1, -2, ...)")
    p.add_argument("--negative", default="", help="negative prompt")
    p.add_argument("--seed", type=int, default=-1, help="-1 = random (the seed used is printed)")
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--cfg", type=float, default=7.0, help="CFG scale (prompt strength)")
    p.add_argument("--sampler", default="euler_a", choices=SAMPLERS)
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--model", default="", help="model name (see `impasto models`); default: the starter")
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
    p.add_argument("--size", type=parse_size, default=(512, 512), help="WxH (default 512x512)")
    p.set_defaults(func=cmd_generate)

    for register in EXTRA_COMMANDS:
        register(sub, add_common)
    return parser


# Feature modules (editing, concepts, plugin installers) add their sub-commands here.
EXTRA_COMMANDS: list = []


def _load_extras() -> None:
    import importlib

    for mod in ("impasto.backend.cli_edit", "impasto.backend.cli_concepts", "impasto.backend.cli_install",
                "impasto.backend.cli_security"):
        try:
            importlib.import_module(mod)
        except ModuleNotFoundError as exc:
            if exc.name != mod:
                raise


def main(argv: Optional[Sequence[str]] = None) -> int:
    _load_extras()
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
