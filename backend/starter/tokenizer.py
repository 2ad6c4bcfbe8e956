"""The starter's tokenizer: a local CLIP BPE vocabulary built in code (no download).

Every domain word is one token and every letter a-z exists with and without ``</w>``, so an unseen
word (a concept's trigger, ``zwx``) falls back to letter tokens instead of the unknown token. The
files written are a CLIP tokenizer's (``tokenizer.json`` and the classic ``vocab.json`` +
``merges.txt`` an SD1.5 folder ships), so the shipped starter loads like any SD model.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Dict, List

from . import domain as D


PAD_LEN = 24

EXTRA_WORDS = ("of", "the", "in", "with", "and", "photo", "painting", "style", "picture", "image")

PUNCT = tuple(".,!?-'\"():;/&+0123456789")


def _bpe(symbols: List[str], ranks: Dict[tuple, int]) -> List[str]:
    word = list(symbols)
    while len(word) > 1:
        pairs = {(word[i], word[i + 1]) for i in range(len(word) - 1)}
        best = min(pairs, key=lambda p: ranks.get(p, float("inf")))
        if best not in ranks:
            break
        out, i = [], 0
        while i < len(word):
            if i < len(word) - 1 and (word[i], word[i + 1]) == best:
                out.append(word[i] + word[i + 1])
                i += 2
            else:
                out.append(word[i])
                i += 1
        word = out
    return word


def build_vocab(words=None):
    """-> (vocab dict, merges list).  Domain words are single tokens."""
    words = tuple(D.DOMAIN_WORDS) if words is None else tuple(words)
    tokens: List[str] = []
    seen = set()

    def add(t):
        if t not in seen:
            seen.add(t)
            tokens.append(t)

    for c in "abcdefghijklmnopqrstuvwxyz" + "".join(PUNCT):
        add(c)
    for c in "abcdefghijklmnopqrstuvwxyz" + "".join(PUNCT):
        add(c + "</w>")
    merges: List[tuple] = []
    ranks: Dict[tuple, int] = {}
    for w in tuple(dict.fromkeys(words + EXTRA_WORDS)):
        symbols = list(w[:-1]) + [w[-1] + "</w>"]
        seg = _bpe(symbols, ranks)
        while len(seg) > 1:  # extend with new (highest-rank) merges
            pair = (seg[0], seg[1])
            ranks[pair] = len(merges)
            merges.append(pair)
            add(seg[0] + seg[1])
            seg = [seg[0] + seg[1]] + seg[2:]
        add(seg[0])
    add("<|startoftext|>")
    add("<|endoftext|>")
    return {t: i for i, t in enumerate(tokens)}, merges


def write_tokenizer(dest: Path, words=None, max_len: int = PAD_LEN):
    from transformers import CLIPTokenizer

    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    vocab, merges = build_vocab(words)
    tok = CLIPTokenizer(
        vocab=vocab,
        merges=[tuple(m) for m in merges],
        unk_token="<|endoftext|>",
        bos_token="<|startoftext|>",
        eos_token="<|endoftext|>",
        pad_token="<|endoftext|>",
        model_max_length=max_len,
    )
    tok.save_pretrained(str(dest))
    # the classic CLIP files too (what SD1.5 folders ship; slow tokenizers read them)
    (dest / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False))
    (dest / "merges.txt").write_text("#version: 0.2\n" + "\n".join(f"{a} {b}" for a, b in merges) + "\n")
    tok = CLIPTokenizer.from_pretrained(str(dest))
    check_tokenizer(tok, words)
    return tok


def check_tokenizer(tok, words=None):
    unk = tok.unk_token_id
    for w in tuple(D.DOMAIN_WORDS if words is None else words):
        ids = tok(w, add_special_tokens=False).input_ids
        assert len(ids) == 1 and ids[0] != unk, (w, ids)
    for c in "abcdefghijklmnopqrstuvwxyz":
        assert c in tok.get_vocab() and c + "</w>" in tok.get_vocab(), c
    ids = tok("zwx", add_special_tokens=False).input_ids
    assert len(ids) == 3 and unk not in ids, ids


def domain_tokenizer(folder: Path, words, option: str):
    """The tokenizer of a trained model folder, refused unless it is this domain's (the exported vocab must match)."""
    from transformers import CLIPTokenizer

    if not (folder / "text_encoder").is_dir() or not (folder / "tokenizer").is_dir():
        raise SystemExit(f"{option} {folder}: needs a model folder with text_encoder/ and tokenizer/")
    tok = CLIPTokenizer.from_pretrained(str(folder / "tokenizer"))
    if tok.get_vocab() != build_vocab(words)[0]:
        raise SystemExit(f"{option} {folder}: its tokenizer is not this domain's")
    return tok
