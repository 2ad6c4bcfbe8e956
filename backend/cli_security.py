"""``impasto curve ...``: the keys a remote (studio GPU box) daemon and its clients need.

On the GPU box::

    impasto curve show                 # the server's public key (created on first use)
    impasto curve allow alice KEY      # let a client key in
    impasto serve --endpoint tcp://0.0.0.0:7877 --curve

On the artist's machine::

    impasto curve client-key           # creates this machine's keypair, prints the public key
    impasto curve trust SERVERKEY      # the GPU box's public key (or IMPASTO_CURVE_SERVER_KEY)
    IMPASTO_ENDPOINT=tcp://gpu-box:7877 impasto status

Only public keys ever travel between machines.  See docs/security.md.
"""
from __future__ import annotations

import re

from impasto.backend import cli as _cli
from impasto.protocol import credentials

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}")


def cmd_curve(args) -> int:
    import zmq

    from impasto.backend.daemon.auth import allowed_client_keys, server_keypair

    d = credentials.curve_dir()
    try:
        if args.action == "show":
            public, _ = server_keypair()
            print(f"server public key   {public.decode()}")
            print(f"key files           {d}")
            allowed = sorted((f.stem, credentials.read_key(f)) for f in (d / "clients").glob("*.key"))
            print(f"allowed clients     {len(allowed)}")
            for name, key in allowed:
                print(f"  {name:<16} {key.decode() if key else '(unreadable)'}")
            print("\na client needs: `impasto curve trust " + public.decode() + "` and its own key allowed here")
        elif args.action == "allow":
            if not args.name or not args.key or not _NAME.fullmatch(args.name):
                raise _cli.CliError("usage: impasto curve allow NAME KEY (NAME: letters, digits, _ . -)", 2)
            key = credentials.check_key(args.key)
            credentials.write_private(d / "clients" / f"{args.name}.key", key + b"\n", mode=0o644)
            print(f"allowed {args.name}: {key.decode()} ({len(allowed_client_keys())} client key(s))")
        elif args.action == "revoke":
            path = d / "clients" / f"{args.name}.key"
            if not args.name or not _NAME.fullmatch(args.name) or not path.is_file():
                raise _cli.CliError(f"no allowed client named {args.name!r}", 1)
            path.unlink()
            print(f"revoked {args.name}")
        elif args.action == "client-key":
            public = credentials.read_key(d / "client.key")
            if public is None or credentials.read_key(d / "client.key_secret") is None:
                public, secret = zmq.curve_keypair()
                credentials.write_private(d / "client.key_secret", secret + b"\n")
                credentials.write_private(d / "client.key", public + b"\n", mode=0o644)
            print(public.decode())
        elif args.action == "trust":
            key = credentials.check_key(args.name or "")
            credentials.write_private(d / "server.pub", key + b"\n", mode=0o644)
            print(f"trusting daemon key {key.decode()}")
    except credentials.CredentialError as exc:
        raise _cli.CliError(exc.message, 2) from None
    return 0


Z85_CHARS = frozenset("0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ.-:+=^!/*?&<>()[]{}@%$#")


def keys_as_positionals(argv):
    """``impasto curve allow NAME KEY`` with a key that starts with ``-`` (one Z85 key in 85 does).

    argparse would read such a key as an unknown option; it goes after a ``--`` instead, where
    only positionals are read.  Only after ``curve``, and only a 40-character Z85 key.
    """
    argv = list(argv)
    if "curve" not in argv:
        return argv
    at = argv.index("curve") + 1
    keys = [a for a in argv[at:] if a.startswith("-") and len(a) == 40 and set(a) <= Z85_CHARS]
    if not keys:
        return argv
    return argv[:at] + [a for a in argv[at:] if a not in keys] + ["--"] + keys


def register(sub, add_common) -> None:
    p = sub.add_parser("curve", help="CurveZMQ keys for a remote daemon (show, allow, revoke, client-key, trust)")
    p.add_argument("action", choices=("show", "allow", "revoke", "client-key", "trust"))
    p.add_argument("name", nargs="?", default="", help="allow/revoke: the client's name; trust: the server key")
    p.add_argument("key", nargs="?", default="", help="allow: the client's public key")
    p.set_defaults(func=cmd_curve)


_cli.EXTRA_COMMANDS.append(register)
