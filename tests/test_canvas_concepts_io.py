"""The canvas concepts panel imports and exports through bytes (issue 13): the canvas reads and
writes the artist's files, the daemon only sees the bytes and opens no path of ours."""
from __future__ import annotations

import pytest
from PySide6.QtCore import Qt

from impasto.desktop import headless
from test_canvas_window import dialogs_seen, open_window, qapp  # noqa: F401 (fixtures)

pytestmark = pytest.mark.usefixtures("qapp")


def _names(panel):
    return [panel.list.item(i).data(Qt.ItemDataRole.UserRole)["name"] for i in range(panel.list.count())]


def test_concepts_panel_exports_and_imports_through_bytes(open_window, daemon, dialogs_seen, tmp_path):  # noqa: F811
    import torch
    from safetensors.torch import load_file

    from impasto.backend.concepts.library import ConceptLibrary, new_meta

    library = ConceptLibrary(daemon.home / "concepts")
    module = "unet.mid_block.attentions.0.proj_in"
    tensors = {f"{module}.lora_A.weight": torch.randn(4, 32), f"{module}.lora_B.weight": torch.randn(32, 4)}
    library.save("Canvas io", tensors, new_meta(trigger="cvio", rank=4))
    out = tmp_path / "exported" / "canvas io.safetensors"
    out.parent.mkdir()
    try:
        w = open_window(daemon.endpoint)
        assert headless.pump(90, lambda: w.link.connected), w.link.message
        panel = w.concepts
        assert headless.pump(20, lambda: "Canvas io" in _names(panel)), panel.status.text()
        panel.list.setCurrentRow(_names(panel).index("Canvas io"))
        dialogs_seen.answers["save_file"] = str(out)
        panel.export_selected()
        assert headless.pump(30, lambda: "Exported" in panel.status.text()), panel.status.text()
        keys = set(load_file(str(out)))
        assert keys and all(k.startswith("lora_unet_") for k in keys), keys
        assert not [p for p in out.parent.iterdir() if p.name != out.name]  # no temporary left beside it
        dialogs_seen.answers["open_file"] = str(out)
        dialogs_seen.answers["ask_text"] = "Canvas io copy"
        panel.import_concept()
        assert headless.pump(30, lambda: "Imported" in panel.status.text()), panel.status.text()
        copy = library.find("Canvas io copy")
        assert copy is not None and copy.meta["imported_from"] == out.name and copy.trigger == "cvio"
        assert torch.equal(library.load_weights(copy)[f"{module}.lora_A.weight"], tensors[f"{module}.lora_A.weight"])
    finally:
        for name in ("Canvas io", "Canvas io copy"):
            if library.find(name) is not None:
                library.delete(name)
