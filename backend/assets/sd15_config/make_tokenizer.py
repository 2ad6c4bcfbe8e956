"""Regenerate ``tokenizer/`` (CLIP ViT-L/14's BPE tokenizer) without a model hub.

SD1.5 conditions on OpenAI CLIP ViT-L/14, whose tokenizer is a byte-level BPE:
``vocab.json`` (49408 entries) and ``merges.txt`` (48894 merges).  Model hubs
are out of reach on artists' machines and on CI, but the merges themselves
ship on PyPI: the ``open_clip_torch`` wheel carries CLIP's own
``bpe_simple_vocab_16e6.txt.gz`` (MIT licence, the file OpenAI's CLIP repository
publishes).  The vocabulary follows from the merges deterministically, exactly
as CLIP's ``simple_tokenizer.py`` builds it:

1. the 256 byte symbols of ``bytes_to_unicode()`` (ids 0-255),
2. the same symbols with ``</w>`` appended (ids 256-511),
3. each merge's two halves joined, in merge order (ids 512-49405),
4. ``<|startoftext|>`` (49406) and ``<|endoftext|>`` (49407).

Usage (from the repository root)::

    pip download --no-deps open_clip_torch -d /tmp/oc        # any version: the file never changed
    python backend/assets/sd15_config/make_tokenizer.py /tmp/oc/open_clip_torch-*.whl

The argument may be the wheel or the extracted ``.txt.gz``.  The script checks
the source's SHA-256, writes the four tokenizer files (plain text: transformers
cannot read gzip) and prints their SHA-256 so a re-run can be compared with the
committed files.  open_clip is *not* a dependency: only this one data file is
used, once, offline.
"""
from __future__ import annotations

import gzip
import hashlib
import json
import sys
import zipfile
from pathlib import Path

BPE_MEMBER = "open_clip/bpe_simple_vocab_16e6.txt.gz"
BPE_SHA256 = "924691ac288e54409236115652ad4aa250f48203de50a9e4722a6ecd48d6804a"
N_MERGES = 49152 - 256 - 2  # CLIP's vocabulary is 49408 = 2 * 256 byte symbols + merges + 2 specials
BOS, EOS = "<|startoftext|>", "<|endoftext|>"
OUT = Path(__file__).resolve().parent / "tokenizer"


def bytes_to_unicode() -> dict:
    """CLIP's / GPT-2's reversible byte -> printable unicode character table."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, [chr(c) for c in cs]))


def read_bpe(source: Path) -> bytes:
    """The gzipped merges file, from the wheel or as extracted."""
    if source.suffix == ".whl":
        with zipfile.ZipFile(source) as zf:
            data = zf.read(BPE_MEMBER)
    else:
        data = source.read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    if digest != BPE_SHA256:
        raise SystemExit(f"{source}: unexpected SHA-256 {digest} (want {BPE_SHA256})")
    return data


def build(bpe_gz: bytes):
    """(vocab dict, merges list) exactly as CLIP's simple_tokenizer derives them."""
    lines = gzip.decompress(bpe_gz).decode("utf-8").split("\n")
    merges = [tuple(line.split()) for line in lines[1:N_MERGES + 1]]  # line 0 is the "#version" header
    if len(merges) != N_MERGES or any(len(m) != 2 for m in merges):
        raise SystemExit("the merges file does not look like CLIP's")
    symbols = list(bytes_to_unicode().values())
    tokens = symbols + [s + "</w>" for s in symbols] + ["".join(m) for m in merges] + [BOS, EOS]
    vocab = {tok: i for i, tok in enumerate(tokens)}
    if len(vocab) != 49408:
        raise SystemExit(f"expected 49408 distinct tokens, got {len(vocab)}")
    return vocab, [" ".join(m) for m in merges]


def write(vocab: dict, merges: list, out: Path = OUT) -> dict:
    """Write the tokenizer folder; returns {file name: sha256}."""
    out.mkdir(parents=True, exist_ok=True)
    files = {
        "vocab.json": json.dumps(vocab, ensure_ascii=False, separators=(",", ":")),
        "merges.txt": "#version: 0.2\n" + "\n".join(merges) + "\n",
        "tokenizer_config.json": json.dumps({
            "tokenizer_class": "CLIPTokenizer", "model_max_length": 77, "do_lower_case": True,
            "add_prefix_space": False, "errors": "replace",
            "bos_token": BOS, "eos_token": EOS, "unk_token": EOS, "pad_token": EOS,
        }, indent=2) + "\n",
        "special_tokens_map.json": json.dumps({
            "bos_token": BOS, "eos_token": EOS, "unk_token": EOS, "pad_token": EOS,
        }, indent=2) + "\n",
    }
    digests = {}
    for name, text in files.items():
        data = text.encode("utf-8")
        tmp = out / (name + ".tmp")
        tmp.write_bytes(data)
        tmp.replace(out / name)
        digests[name] = hashlib.sha256(data).hexdigest()
    return digests


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        print(__doc__)
        return 2
    vocab, merges = build(read_bpe(Path(argv[0])))
    for name, digest in write(vocab, merges).items():
        print(f"{digest}  {name}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
