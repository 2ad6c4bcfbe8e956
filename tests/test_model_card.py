"""The one reader and writer of a model folder's ``impasto.json`` (engine/model_card.py)."""
import json

import pytest

from impasto.backend.engine import model_card as MC
from impasto.backend.engine.models import inspect_diffusers


def test_missing_broken_and_non_object_cards_read_as_empty(tmp_path):
    assert MC.read_card(tmp_path) == {}
    (tmp_path / "impasto.json").write_text("{not json", encoding="utf-8")
    assert MC.read_card(tmp_path) == {}
    (tmp_path / "impasto.json").write_text("[1, 2]", encoding="utf-8")
    assert MC.read_card(tmp_path) == {}
    assert MC.card_block(tmp_path, "training") == {}
    assert MC.native_size(tmp_path, default=96) == 96


def test_a_tool_that_needs_the_card_gets_an_error_naming_it(tmp_path):
    with pytest.raises(ValueError, match="impasto.json"):
        MC.read_card(tmp_path, required=True)
    (tmp_path / "impasto.json").write_text('"a string"', encoding="utf-8")
    with pytest.raises(ValueError, match="not a JSON object"):
        MC.read_card(tmp_path, required=True)


def test_blocks_and_native_size(tmp_path):
    (tmp_path / "impasto.json").write_text(json.dumps(
        {"native_size": 128, "training": {"domain": "scenes"}, "preview_decoder": "not a block"}), encoding="utf-8")
    assert MC.card_block(tmp_path, "training") == {"domain": "scenes"}
    assert MC.card_block(tmp_path, "preview_decoder") == {}
    assert MC.native_size(tmp_path) == 128
    (tmp_path / "impasto.json").write_text(json.dumps({"native_size": "big"}), encoding="utf-8")
    assert MC.native_size(tmp_path, default=64) == 64
    (tmp_path / "impasto.json").write_text(json.dumps({"native_size": -8}), encoding="utf-8")
    assert MC.native_size(tmp_path, default=64) == 64


def test_write_is_atomic_and_round_trips(tmp_path):
    card = {"name": "starter", "native_size": 128, "note": "caf\u00e9"}
    path = MC.write_card(tmp_path, card)
    assert path == tmp_path / "impasto.json"
    assert MC.read_card(tmp_path, required=True) == card
    assert path.read_text(encoding="utf-8").endswith("\n")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["impasto.json"]      # no temporary file left


def test_the_model_scan_survives_a_card_that_is_not_an_object(tmp_path):
    folder = tmp_path / "odd-model"
    (folder / "unet").mkdir(parents=True)
    (folder / "model_index.json").write_text(json.dumps({"_class_name": "StableDiffusionPipeline"}))
    (folder / "unet" / "config.json").write_text(json.dumps({"sample_size": 16, "cross_attention_dim": 768}))
    (folder / "impasto.json").write_text("[]", encoding="utf-8")
    entry = inspect_diffusers(folder)
    assert entry.native_size == 128 and entry.arch == "sd15"
