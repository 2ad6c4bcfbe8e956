"""Neighbour-distillation candidates on a full CLIP vocabulary (issue 21 item 8).

The trainer draws its distillation candidates from the tokenizer's whole words.  On the
starter that vocabulary is the domain's own word list (22 candidate words, 12 of them
shapes and colours), so "it found the circle/square/triangle prompts with no list of the
domain's words" is close to circular.  Here the same methods run on SD1.5's real CLIP
tokenizer (49,408 tokens, shipped in backend/assets/sd15_config/tokenizer) and a text
encoder of that vocabulary size, and the tests state what the selection then does.
"""

from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from impasto.backend.concepts import dataset
from impasto.backend.concepts import train as T

SD15_TOKENIZER = Path(T.__file__).resolve().parents[1] / "assets" / "sd15_config" / "tokenizer"
CLASS_PROMPTS = ["a red shape on a blue background", "a yellow shape on a black background",
                 "a white shape on a green background"]
DOMAIN = {"circle", "square", "triangle", "star", "red", "green", "blue", "yellow", "cyan", "magenta",
          "white", "black", "background", "shape"}


@pytest.fixture(scope="module")
def sd15_tok():
    from transformers import CLIPTokenizer

    return CLIPTokenizer.from_pretrained(str(SD15_TOKENIZER))


def _trainer(tok, te=None):
    """The real Trainer methods on the attributes they read (no engine needed for these two)."""
    return SimpleNamespace(class_noun="shape", trigger="zwx", req=SimpleNamespace(seed=0),
                           loaded=SimpleNamespace(base=SimpleNamespace(tokenizer=tok, text_encoder=te)),
                           captions=[p.replace("shape", "zwx shape") for p in CLASS_PROMPTS])


def _word(prompt):  # the word that replaced the class noun
    return prompt.split()[2]


def test_candidates_come_from_the_whole_clip_vocabulary(sd15_tok):
    words = dataset.vocabulary_words(sd15_tok)
    assert len(words) > 30000  # vs 22 usable words in the starter's tokenizer
    cands = T.Trainer.distill_candidates(_trainer(sd15_tok), CLASS_PROMPTS)
    assert len(cands) == T.NEIGHBOUR_CANDIDATES
    assert len(set(cands)) == len(cands)
    for c in cands:  # each is a class prompt with the class noun swapped for one vocabulary word
        w = _word(c)
        assert c.replace(w, "shape", 1) in CLASS_PROMPTS and w.isalpha() and w not in ("shape", "zwx")
    picked = {_word(c) for c in cands}
    assert len(picked) > 240
    # with a full vocabulary the domain's own words are (almost) never among the candidates
    assert len(picked & DOMAIN) <= 2
    # deterministic for a training seed, different for another
    assert T.Trainer.distill_candidates(_trainer(sd15_tok), CLASS_PROMPTS) == cands
    other = _trainer(sd15_tok)
    other.req.seed = 1
    assert T.Trainer.distill_candidates(other, CLASS_PROMPTS) != cands


def test_starter_vocabulary_is_the_domain(tmp_path):
    """The contrast: on the starter's own tokenizer the candidates are the domain's words."""
    from impasto.backend.starter.tokenizer import write_tokenizer

    tok = write_tokenizer(tmp_path / "tok")
    words = {w for w in dataset.vocabulary_words(tok) if w.isalpha() and len(w) >= 3} - {"shape", "zwx"}
    assert len(words) <= 24 and {"circle", "square", "triangle"} <= words


def test_furthest_neighbour_selection_runs_on_the_full_vocabulary(sd15_tok):
    """``_choose_neighbours`` keeps NEIGHBOUR_DISTILL_KEEP of 256 full-vocabulary candidates:
    the ones furthest from the class prompts in the text encoder's embedding."""
    from transformers import CLIPTextConfig, CLIPTextModel

    torch.manual_seed(0)
    te = CLIPTextModel(CLIPTextConfig(vocab_size=len(sd15_tok), hidden_size=32, intermediate_size=64,
                                      num_hidden_layers=1, num_attention_heads=4, max_position_embeddings=77))
    tr = _trainer(sd15_tok, te)
    tr.distill_prompts = T.Trainer.distill_candidates(tr, CLASS_PROMPTS)

    def ids(texts):
        return sd15_tok(list(texts), padding="max_length", max_length=77, truncation=True,
                        return_tensors="pt").input_ids

    with torch.no_grad():
        all_prompts = list(tr.distill_prompts)
        # the trainer hands _choose_neighbours an encoder that returns the hidden states (text_cond)
        T.Trainer._choose_neighbours(tr, lambda x: te(x)[0], ids)
        assert len(tr.distill_prompts) == T.NEIGHBOUR_DISTILL_KEEP
        assert set(tr.distill_prompts) <= set(all_prompts)
        # they are the furthest: every kept prompt is at least as far as every dropped one
        anchors = te(ids(dataset.class_prompts(tr.captions, "zwx", "shape")))[0].flatten(1)

        def far(p):
            return torch.cdist(te(ids([p]))[0].flatten(1), anchors).min().item()

        kept = min(far(p) for p in tr.distill_prompts)
        dropped = max(far(p) for p in all_prompts if p not in tr.distill_prompts)
        assert kept >= dropped - 1e-4
