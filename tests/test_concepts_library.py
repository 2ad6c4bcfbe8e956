"""The concept library on disk and LoRA files of the ecosystem (no model, no daemon)."""
from __future__ import annotations

import errno
import json
import os
import time

import pytest
import torch
from PIL import Image
from safetensors.torch import save_file

from impasto.backend.concepts import library as lib_mod
from impasto.backend.concepts import lora_io
from impasto.backend.concepts.library import ConceptLibrary, new_meta
from impasto.backend.engine.errors import EngineError
from impasto.protocol.messages import ErrorCode, ProtocolError

torch.set_num_threads(1)


def weights(seed=0, rank=4, modules=("down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q",)):
    g = torch.Generator().manual_seed(seed)
    out = {}
    for m in modules:
        out[f"unet.{m}.lora_A.weight"] = torch.randn(rank, 32, generator=g)
        out[f"unet.{m}.lora_B.weight"] = torch.randn(32, rank, generator=g)
    return out


@pytest.fixture
def lib(tmp_path):
    return ConceptLibrary(tmp_path / "concepts")


def hidden(lib):
    return sorted(p.name for p in lib.root.iterdir() if p.name.startswith("."))


# --------------------------------------------------------------------------- library


def test_save_list_rename_delete(lib):
    img = Image.new("RGB", (8, 8), (255, 0, 0))
    info = lib.save("Mug", weights(), new_meta(trigger="zwx", class_noun="mug", rank=4), samples=[img, img])
    assert [c.name for c in lib.list()] == ["Mug"]
    wire = info.to_wire()
    assert wire["trigger"] == "zwx" and wire["class_noun"] == "mug" and len(wire["samples"]) == 2
    assert all(os.path.isfile(p) for p in wire["samples"]) and wire["size_bytes"] > 0
    loaded = lib.load_weights(lib.get("Mug"))
    assert all(torch.equal(loaded[k], v) for k, v in weights().items())

    renamed = lib.rename("Mug", "Blue mug")
    assert renamed.id == info.id  # same concept, new name
    assert lib.names() == ["Blue mug"] and lib.find("Mug") is None
    lib.delete("Blue mug")
    assert lib.names() == [] and hidden(lib) == []


@pytest.mark.parametrize("bad", ["", "../evil", "a/b", "a\\b", "..", ".hidden", "x" * 65])
def test_names_are_validated(lib, bad):
    with pytest.raises(ProtocolError) as ei:
        lib.save(bad, weights(), new_meta())
    assert ei.value.code == ErrorCode.BAD_FIELD
    lib.save("ok", weights(), new_meta())
    with pytest.raises(ProtocolError):
        lib.rename("ok", bad)
    assert lib.names() == ["ok"]


def test_unknown_and_colliding_names_are_typed_errors(lib):
    lib.save("cat", weights(), new_meta())
    lib.save("dog", weights(), new_meta())
    with pytest.raises(EngineError) as ei:
        lib.get("bird")
    assert ei.value.code == ErrorCode.UNKNOWN_CONCEPT and "cat" in ei.value.message
    with pytest.raises(EngineError) as ei:
        lib.rename("cat", "dog")
    assert ei.value.code == ErrorCode.BAD_FIELD and ei.value.field == "new_name"
    with pytest.raises(EngineError):  # macOS / Windows would merge these folders
        lib.save("CAT", weights(), new_meta())
    with pytest.raises(EngineError):  # no silent overwrite
        lib.save("cat", weights(1), new_meta())
    with pytest.raises(EngineError) as ei:
        lib.delete("bird")
    assert ei.value.code == ErrorCode.UNKNOWN_CONCEPT
    assert lib.names() == ["cat", "dog"]


def test_disk_full_on_save_leaves_library_intact(lib, monkeypatch):
    old = lib.save("cat", weights(0), new_meta(trigger="old"))
    real = lib_mod._write_file
    calls = []

    def full_after_first(path, data):
        calls.append(path.name)
        if len(calls) > 1:  # the weights got written, then the disk filled up
            raise OSError(errno.ENOSPC, "No space left on device")
        real(path, data)

    monkeypatch.setattr(lib_mod, "_write_file", full_after_first)
    with pytest.raises(EngineError) as ei:
        lib.save("cat", weights(1), new_meta(trigger="new"), samples=[Image.new("RGB", (4, 4))], replace=True)
    assert "disk is full" in ei.value.message
    with pytest.raises(EngineError):
        lib.save("fresh", weights(1), new_meta())
    monkeypatch.setattr(lib_mod, "_write_file", real)
    assert lib.names() == ["cat"] and hidden(lib) == []
    kept = lib.get("cat")
    assert kept.id == old.id and kept.trigger == "old"
    assert torch.equal(lib.load_weights(kept)[next(iter(weights(0)))], next(iter(weights(0).values())))


def test_replace_is_atomic_and_crash_leftovers_are_recovered(tmp_path):
    root = tmp_path / "concepts"
    lib = ConceptLibrary(root)
    lib.save("cat", weights(0), new_meta(trigger="v1"))
    v2 = lib.save("cat", weights(1), new_meta(trigger="v2"), replace=True)
    assert lib.get("cat").id == v2.id and hidden(lib) == []
    # a crash between "old aside" and "new in place" leaves only .trash-cat-*; a half save leaves .tmp-*
    os.rename(root / "cat", root / ".trash-cat-1234abcd")
    (root / ".tmp-dog-99999999").mkdir()
    (root / ".tmp-dog-99999999" / "weights.safetensors").write_bytes(b"half")
    (root / ".deleted-cow-11111111").mkdir()
    past = time.time() - 3600
    for p in root.iterdir():
        os.utime(p, (past, past))
    assert lib.names() == []  # nothing half-made is ever listed
    lib_mod._recovered.clear()  # as a new daemon process would
    again = ConceptLibrary(root)
    assert again.names() == ["cat"] and again.get("cat").trigger == "v2"
    assert hidden(again) == []


# --------------------------------------------------------------------------- kohya names


def _linear_and_conv_names(model):
    return [n for n, m in model.named_modules() if isinstance(m, (torch.nn.Linear, torch.nn.Conv2d))]


def test_kohya_names_round_trip_on_full_sd15_architecture():
    """Every Linear/Conv2d of a full-size SD1.5 UNet and CLIP ViT-L text encoder maps to kohya and back."""
    from pathlib import Path

    from diffusers import UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    import impasto.backend.engine.pipelines as pipelines

    base = Path(pipelines.SD15_CONFIG_DIR) / "base"
    with torch.device("meta"):
        unet = UNet2DConditionModel.from_config(json.loads((base / "unet" / "config.json").read_text()))
        te = CLIPTextModel(CLIPTextConfig(**{k: v for k, v in json.loads(
            (base / "text_encoder" / "config.json").read_text()).items() if not k.startswith("_")}))
    for comp, model in (("unet", unet), ("text_encoder", te)):
        names = _linear_and_conv_names(model)
        if comp == "text_encoder" and not hasattr(model, "text_model"):  # transformers 5 dropped the level
            names = ["text_model." + n for n in names]
        assert len(names) > 70
        for n in names:
            k = lora_io.module_to_kohya(comp, n)
            assert lora_io.kohya_to_module(k[len(lora_io.KOHYA_PREFIX[comp]):]) == n, (comp, n, k)


# --------------------------------------------------------------------------- importing and exporting


MOD = "down_blocks.0.attentions.0.transformer_blocks.0.attn2.to_k"
TE_MOD = "text_model.encoder.layers.0.self_attn.q_proj"


def test_kohya_import_folds_alpha(tmp_path):
    g = torch.Generator().manual_seed(3)
    down, up = torch.randn(4, 32, generator=g), torch.randn(64, 4, generator=g)
    te_down, te_up = torch.randn(2, 32, generator=g), torch.randn(32, 2, generator=g)
    path = tmp_path / "styl.safetensors"
    save_file({
        f"lora_unet_{MOD.replace('.', '_')}.lora_down.weight": down,
        f"lora_unet_{MOD.replace('.', '_')}.lora_up.weight": up,
        f"lora_unet_{MOD.replace('.', '_')}.alpha": torch.tensor(2.0),
        f"lora_te_{TE_MOD.replace('.', '_')}.lora_down.weight": te_down,
        f"lora_te_{TE_MOD.replace('.', '_')}.lora_up.weight": te_up,
    }, str(path), metadata={"ss_tag_frequency": json.dumps({"5_x": {"zwx": 12, "red": 3}}),
                            "ss_base_model_version": "sd_v1"})
    tensors, hints = lora_io.read_lora_file(path)
    assert hints["layout"] == "kohya" and hints["trigger"] == "zwx" and hints["text_encoder"]
    assert hints["rank"] == 4 and hints["base_arch"] == "sd15"
    a, b = tensors[f"unet.{MOD}.lora_A.weight"], tensors[f"unet.{MOD}.lora_B.weight"]
    assert torch.allclose(b @ a, (up @ down) * (2.0 / 4), atol=1e-6)  # alpha/rank is in the weights now
    assert torch.equal(tensors[f"text_encoder.{TE_MOD}.lora_B.weight"], te_up)  # no alpha: scale 1


def test_peft_and_old_diffusers_layouts_import(tmp_path):
    g = torch.Generator().manual_seed(4)
    down, up = torch.randn(4, 32, generator=g), torch.randn(64, 4, generator=g)
    peft_file = tmp_path / "peft.safetensors"
    save_file({f"unet.{MOD}.lora_A.weight": down, f"unet.{MOD}.lora_B.weight": up}, str(peft_file),
              metadata={"lora_adapter_metadata": json.dumps({"unet.lora_adapter_metadata": {"r": 4,
                                                                                            "lora_alpha": 8}})})
    tensors, hints = lora_io.read_lora_file(peft_file)
    assert hints["layout"] == "diffusers"
    assert torch.allclose(tensors[f"unet.{MOD}.lora_B.weight"], up * 2.0)
    old = tmp_path / "old.safetensors"
    block = MOD.rsplit(".", 1)[0]
    save_file({f"unet.{block}.processor.to_k_lora.down.weight": down,
               f"unet.{block}.processor.to_k_lora.up.weight": up,
               f"text_encoder.{TE_MOD}.lora_linear_layer.down.weight": down[:, :32].clone(),
               f"text_encoder.{TE_MOD}.lora_linear_layer.up.weight": up[:32].clone()}, str(old))
    tensors, hints = lora_io.read_lora_file(old)
    assert set(tensors) == {f"unet.{MOD}.lora_A.weight", f"unet.{MOD}.lora_B.weight",
                            f"text_encoder.{TE_MOD}.lora_A.weight", f"text_encoder.{TE_MOD}.lora_B.weight"}
    assert torch.equal(tensors[f"unet.{MOD}.lora_B.weight"], up)


@pytest.mark.parametrize("case", ["pickle", "garbage", "loha", "half", "empty"])  # SDXL LoRAs: tests/test_sdxl_concepts.py
def test_unsupported_files_are_typed_errors(tmp_path, case):
    path = tmp_path / "x.safetensors"
    k = f"lora_unet_{MOD.replace('.', '_')}"
    if case == "pickle":
        path = tmp_path / "x.pt"
        torch.save({"a": torch.zeros(1)}, path)
    elif case == "garbage":
        path.write_bytes(os.urandom(200))
    elif case == "loha":
        save_file({f"{k}.hada_w1_a": torch.zeros(4, 4), f"{k}.hada_w1_b": torch.zeros(4, 4)}, str(path))
    elif case == "half":
        save_file({f"{k}.lora_down.weight": torch.zeros(4, 32)}, str(path))
    else:
        save_file({}, str(path))
    with pytest.raises(EngineError) as ei:
        lora_io.read_lora_file(path)
    assert ei.value.code == ErrorCode.BAD_FIELD and ei.value.field == "path"
    if case == "pickle":
        assert "safetensors" in ei.value.message


def test_export_then_import_is_lossless(tmp_path):
    w = weights(5, modules=(MOD.replace("attn2.to_k", "attn1.to_q"), MOD.replace("to_k", "to_out.0")))
    meta = new_meta(trigger="zwx", class_noun="mug", base_model="tiny", base_fingerprint="abc", base_arch="sd15",
                    steps=40, rank=4)
    out = tmp_path / "mug.safetensors"
    size = lora_io.write_kohya_file(out, "mug", w, meta)
    assert size == out.stat().st_size
    raw, header = lora_io.read_safetensors(out)
    assert all(k.startswith("lora_unet_") for k in raw) and header["ss_network_dim"] == "4"
    assert any(k.endswith("_to_out_0.lora_up.weight") for k in raw)  # ComfyUI/A1111 naming
    back, hints = lora_io.read_lora_file(out)
    assert set(back) == set(w) and all(torch.equal(back[k], w[k]) for k in w)
    assert (hints["trigger"], hints["class_noun"], hints["base_fingerprint"], hints["steps"]) == ("zwx", "mug",
                                                                                                  "abc", 40)
