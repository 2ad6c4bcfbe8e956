"""The canvas window end to end: real mouse events, a real daemon (tiny model), dialogs recorded.

Daemon failures that a real daemon cannot be made to show on demand (going
silent in the middle of a job, a training run's events) are played by a
small in-test ROUTER that speaks the real protocol through the real codec.

Over 500 lines on purpose: one real window per test module is what keeps the
Qt tier fast (a window and a daemon are built once and shared).
"""
from __future__ import annotations

import os
import queue
import threading

import numpy as np
import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from PySide6.QtCore import QPointF, Qt  # noqa: E402
from PySide6.QtGui import QColor, QImage  # noqa: E402

from impasto.desktop import connection, headless, qt_images  # noqa: E402
from impasto.desktop.connection import DaemonLink  # noqa: E402
from impasto.desktop.document import Document  # noqa: E402
from impasto.desktop.main_window import MainWindow  # noqa: E402
from impasto.protocol import codec  # noqa: E402
from impasto.protocol.messages import (  # noqa: E402
    Accepted,
    Concepts,
    Image,
    Models,
    Progress,
    Result,
    Status,
    Welcome,
)

from conftest import free_port  # noqa: E402


@pytest.fixture(scope="module")
def qapp():
    return headless.application()


@pytest.fixture(autouse=True)
def own_home(tmp_path, monkeypatch):
    """The canvas keeps results histories under IMPASTO_HOME: never the user's."""
    monkeypatch.setenv("IMPASTO_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


@pytest.fixture
def dialogs_seen():
    with headless.DialogRecorder({"ask_save_changes": "discard", "confirm": True}) as rec:
        yield rec


@pytest.fixture
def open_window(qapp, dialogs_seen):
    made = []

    def make(endpoint, size=(64, 64), **link_kwargs) -> MainWindow:
        link_kwargs.setdefault("autostart", False)
        link_kwargs.setdefault("ping_timeout", 0.6)
        link = DaemonLink(endpoint, poll_ms=250, **link_kwargs)
        window = MainWindow(link, Document(*size))
        window.resize(1100, 760)
        window.show()
        link.start()
        headless.pump(0.2)
        made.append(window)
        return window

    yield make
    for w in made:
        w.close()
        headless.pump(0.05)


def canvas_drag(window: MainWindow, points):
    view = window.view
    headless.drag(view, [(p.x(), p.y()) for p in (view.to_widget(QPointF(x, y)) for x, y in points)])


def composite(window: MainWindow) -> np.ndarray:
    return qt_images.rgba_array(window.doc.composite())


# --------------------------------------------------------------------------- files give dialogs, not crashes


def test_bad_files_give_dialogs_and_leave_the_picture_alone(open_window, dialogs_seen, tmp_path):
    w = open_window(f"tcp://127.0.0.1:{free_port()}")
    doc = w.doc
    good = tmp_path / "photo.png"
    img = QImage(40, 30, QImage.Format.Format_RGB32)
    img.fill(QColor(90, 120, 30))
    assert img.save(str(good))
    corrupt = tmp_path / "corrupt.png"
    corrupt.write_bytes(good.read_bytes()[:60])
    from test_canvas_document import png_with_header

    oversize = tmp_path / "oversize.png"
    oversize.write_bytes(png_with_header(9000, 9000))
    bad_project = tmp_path / "broken.impasto"
    bad_project.write_bytes(b"PK\x03\x04 not really")
    for path in (corrupt, oversize):
        assert w.open_path(str(path)) is False
        assert w.import_layer(str(path)) is False
    assert w.open_path(str(bad_project)) is False
    errors = dialogs_seen.named("show_error")
    assert len(errors) == 5
    assert all(len(args) == 2 and args[1] for args in errors)         # a title and a sentence
    assert "corrupt.png" in errors[0][1] and "damaged" in errors[0][1]
    assert "9000×9000" in errors[2][1]
    assert "broken.impasto" in errors[4][1]
    assert w.doc is doc and len(doc.layers) == 1                       # nothing changed
    assert w.open_path(str(good)) is True
    assert (w.doc.width, w.doc.height) == (40, 30)
    assert tuple(composite(w)[10, 10]) == (90, 120, 30, 255)
    # the command line opens a file the same way (impasto-canvas FILE)
    from impasto.desktop import app

    w2 = app.create_window(app.build_parser().parse_args(
        [str(good), "--no-autostart", "--endpoint", f"tcp://127.0.0.1:{free_port()}"]))
    try:
        assert (w2.doc.width, w2.doc.height) == (40, 30) and w2.doc.layers[0].name == "photo"
    finally:
        w2.close()


# --------------------------------------------------------------------------- the daemon


def test_paint_mask_inpaint_accept_and_undo_through_a_real_daemon(open_window, daemon):
    w = open_window(daemon.endpoint)
    assert headless.pump(90, lambda: w.link.connected), w.link.message
    # a stroke with the mouse
    w.select_tool("brush")
    w.brush.color = QColor(20, 40, 200)
    w.size_spin.setValue(6)
    w.hardness_spin.setValue(100)
    canvas_drag(w, [(4, 10), (30, 10), (60, 10)])
    assert tuple(composite(w)[10, 30]) == (20, 40, 200, 255)
    assert w.doc.undo.count() == 1
    # a soft mask
    w.select_tool("mask")
    w.size_spin.setValue(16)
    canvas_drag(w, [(36, 40), (44, 44)])
    mask = w.doc.mask_array()
    assert mask[42, 40] == 255 and 0 < mask[42, 40 + 9] < 255 and mask[5, 5] == 0
    # inpaint
    w.panel.prompt.setPlainText("a red circle")
    w.panel.steps.setValue(3)
    w.panel.strength.setValue(1.0)
    w.panel.set_seed(7)
    w.panel.padding.setValue(8)
    w.panel.mask_blur.setValue(4)
    previews = []
    real_set_preview = w.view.set_preview

    def record_preview(image, *rect):
        previews.append(image)
        real_set_preview(image, *rect)

    w.view.set_preview = record_preview
    before = composite(w)
    w.panel.inpaint_button.click()
    assert w.panel.cancel_button.isEnabled()
    assert headless.pump(120, lambda: len(w.staging) == 1), w.panel.status.text()
    assert any(p is not None for p in previews), "no live preview was drawn"
    cand = w.staging.current()
    assert cand.seed == 7 and cand.mode == "inpaint"
    assert cand.rect.contains(40, 42) and not cand.rect.contains(5, 5)
    assert w.staging_bar.isVisible() and "seed 7" in w.staging_bar.title.text()
    assert np.array_equal(composite(w), before)                          # staged, not applied
    # accept: a new layer, one undo step
    w.staging_bar.accept_button.click()
    assert len(w.doc.layers) == 2 and w.doc.layers[-1].kind == "generated"
    after = composite(w)
    assert not np.array_equal(after[36:48, 34:46], before[36:48, 34:46])   # repainted under the mask
    assert np.array_equal(after[0:4, :], before[0:4, :])                    # far away: untouched
    assert len(w.staging) == 0 and not w.staging_bar.isVisible()
    w.a_undo.trigger()
    assert len(w.doc.layers) == 1 and np.array_equal(composite(w), before)
    w.a_redo.trigger()
    assert len(w.doc.layers) == 2 and np.array_equal(composite(w), after)


def test_generate_shows_progress_and_cancel_stops_it(open_window, daemon):
    w = open_window(daemon.endpoint)
    assert headless.pump(90, lambda: w.link.connected), w.link.message
    outcomes = []
    w.controller.finished.connect(lambda job, outcome: outcomes.append(outcome))
    w.panel.prompt.setPlainText("a blue square")
    w.panel.steps.setValue(60)
    w.panel.generate_button.click()
    assert headless.pump(60, lambda: w.panel.progress.maximum() > 1 and w.panel.progress.value() >= 1)
    assert w.panel.progress.maximum() == 60 and "/60" in w.panel.progress.format()
    w.panel.cancel_button.click()
    assert headless.pump(60, lambda: outcomes), w.panel.status.text()
    assert outcomes == ["cancelled"] and "cancelled" in w.panel.status.text()
    assert len(w.staging) == 0 and not w.panel.cancel_button.isEnabled()
    # refine a rectangle selected with the mouse: only that area comes back
    w.select_tool("rect_select")
    canvas_drag(w, [(8, 16), (40, 48)])
    assert w.doc.selection_bounds().getRect() == (8, 16, 32, 32)
    w.panel.steps.setValue(2)
    w.panel.strength.setValue(0.5)
    w.panel.refine_button.click()
    assert headless.pump(90, lambda: len(w.staging) == 1), w.panel.status.text()
    # the planner's edit: the patch is the selection plus its mask-blur band, nothing else changes
    blur = w.panel.settings().mask_blur
    assert w.staging.current().rect.getRect() == (8 - blur, 16 - blur, 32 + 2 * blur, 32 + 2 * blur)
    assert w.staging.current().mode == "refine"
    w.staging_bar.discard_button.click()
    assert len(w.staging) == 0
    # a batch of two: step through, reuse a candidate's seed and settings
    w.panel.steps.setValue(2)
    w.panel.batch.setValue(2)
    w.panel.set_seed(100)
    w.panel.generate_button.click()
    assert headless.pump(90, lambda: len(w.staging) == 2), w.panel.status.text()
    assert [c.seed for c in w.staging.candidates] == [100, 101]
    w.staging_bar.next_button.click()
    assert w.staging.current().seed == 101
    w.panel.set_seed(-1)
    w.panel.steps.setValue(33)
    w.staging_bar.settings_button.click()
    assert w.panel.settings().seed == 101 and w.panel.settings().steps == 2


def test_concepts_panel_lists_renames_and_deletes_through_the_daemon(open_window, daemon, dialogs_seen):
    from impasto.backend.concepts.library import ConceptLibrary, new_meta
    import torch

    library = ConceptLibrary(daemon.home / "concepts")
    library.save("Canvas test cat", {"w": torch.zeros(2, 2)}, new_meta(trigger="cvtcat", class_noun="cat"))
    try:
        w = open_window(daemon.endpoint)
        assert headless.pump(90, lambda: w.link.connected), w.link.message
        panel = w.concepts
        assert headless.pump(20, lambda: panel.list.count() >= 1), panel.status.text()
        names = [panel.list.item(i).data(Qt.ItemDataRole.UserRole)["name"] for i in range(panel.list.count())]
        assert "Canvas test cat" in names
        panel.list.setCurrentRow(names.index("Canvas test cat"))
        panel.use_button.click()
        assert ("Canvas test cat", 1.0) in w.panel.settings().active_concepts()
        assert "cvtcat" in w.panel.settings().prompt
        dialogs_seen.answers["ask_text"] = "Canvas test kitten"
        panel.rename_selected()
        assert headless.pump(20, lambda: "Renamed" in panel.status.text()), panel.status.text()
        assert headless.pump(20, lambda: any(
            panel.list.item(i).data(Qt.ItemDataRole.UserRole)["name"] == "Canvas test kitten"
            for i in range(panel.list.count())))
        row = [panel.list.item(i).data(Qt.ItemDataRole.UserRole)["name"]
               for i in range(panel.list.count())].index("Canvas test kitten")
        panel.list.setCurrentRow(row)
        panel.delete_selected()
        assert headless.pump(20, lambda: "Deleted" in panel.status.text()), panel.status.text()
        assert library.find("Canvas test kitten") is None
    finally:
        for name in ("Canvas test cat", "Canvas test kitten"):
            if library.find(name) is not None:
                library.delete(name)


# --------------------------------------------------------------------------- a daemon that misbehaves


class StubDaemon:
    """A ROUTER speaking the real protocol: answers the link's probes, then does what a test scripts."""

    def __init__(self, on_job):
        import zmq

        self.port = free_port()
        self.endpoint = f"tcp://127.0.0.1:{self.port}"
        self.ctx = zmq.Context()
        self.sock = self.ctx.socket(zmq.ROUTER)
        # clients authenticate (docs/security.md): the stub checks the secret like the real daemon
        from impasto.backend.daemon.auth import ZapHandler, secure_router

        self.zap = ZapHandler(self.ctx, "plain")
        self.zap.start()
        secure_router(self.sock, "plain")
        self.sock.bind(self.endpoint)
        self.on_job = on_job
        self.silent = False
        self.jobs = []            # job ids the stub's status replies list as pending (a test adds them)
        self.outbox = queue.Queue()  # (identity, message) sent by the loop thread: zmq sockets are one thread's
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._loop, daemon=True)
        self.thread.start()

    def send(self, identity, msg):
        self.sock.send_multipart([identity] + codec.encode(msg))

    def post(self, identity, msg):
        """Send from any thread (the loop thread does the sending)."""
        self.outbox.put((identity, msg))

    def _loop(self):
        while not self.stop.is_set():
            while not self.outbox.empty():
                self.send(*self.outbox.get())
            if not self.sock.poll(50):
                continue
            frames = self.sock.recv_multipart()
            identity, msg = frames[0], codec.decode(frames[1:])
            if self.silent:
                continue
            kind = msg.TYPE
            if kind == "hello":
                self.send(identity, Welcome(ref=msg.ref, device="stub"))
            elif kind == "status":
                self.send(identity, Status(ref=msg.ref, device="stub", model="stub", jobs=list(self.jobs)))
            elif kind == "models":
                self.send(identity, Models(ref=msg.ref))
            elif kind == "concepts":
                self.send(identity, Concepts(ref=msg.ref))
            elif kind in ("generate", "train"):
                self.on_job(self, identity, msg)

    def close(self):
        self.stop.set()
        self.thread.join(5)
        self.zap.stop()
        self.zap.join(5)
        self.sock.close(0)
        self.ctx.term()


def test_daemon_going_silent_mid_job_is_a_sentence_not_a_hang(open_window):
    def accept_then_die(stub, identity, msg):
        stub.send(identity, Accepted(job=msg.job))
        stub.send(identity, Progress(job=msg.job, step=1, total=20, stage="denoise"))
        stub.silent = True

    stub = StubDaemon(accept_then_die)
    try:
        w = open_window(stub.endpoint, client_options={"heartbeat": 0.3, "dead_after": 1.0})
        assert headless.pump(20, lambda: w.link.connected), w.link.message
        outcomes = []
        w.controller.finished.connect(lambda job, outcome: outcomes.append(outcome))
        w.panel.prompt.setPlainText("anything")
        w.panel.generate_button.click()
        assert headless.pump(20, lambda: outcomes), w.panel.status.text()
        assert outcomes == ["error"]
        assert "stopped answering" in w.panel.status.text() and "picture is safe" in w.panel.status.text()
        assert headless.pump(20, lambda: w.link.state == connection.DOWN), w.link.message
        assert "stopped answering" in w.link.message
        assert w.start_button.isVisible() and not w.panel.generate_button.isEnabled()
    finally:
        stub.close()


def test_training_shows_loss_and_samples_then_lists_the_new_concept(open_window, dialogs_seen, tmp_path):
    sample = np.zeros((16, 16, 4), np.uint8)
    sample[..., 1], sample[..., 3] = 200, 255
    sent = []

    def train(stub, identity, msg):
        sent.append(msg)
        stub.send(identity, Accepted(job=msg.job))
        stub.send(identity, Progress(job=msg.job, step=3, total=10, loss=0.1234, stage="train",
                                     preview=Image(16, 16, sample.tobytes())))
        stub.send(identity, Result(job=msg.job, info={"concept": {"name": msg.name, "trigger": msg.trigger}}))

    stub = StubDaemon(train)
    try:
        w = open_window(stub.endpoint)
        assert headless.pump(20, lambda: w.link.connected), w.link.message
        panel = w.concepts
        folder = tmp_path / "cats"
        folder.mkdir()
        for i in range(3):
            img = QImage(2000, 1500, QImage.Format.Format_RGB32)
            img.fill(QColor(40 * i, 80, 120))
            img.save(str(folder / f"cat{i}.png"))
        notes = tmp_path / "notes.png"
        notes.write_text("not a picture")
        assert panel.images.add_paths([str(folder), str(notes)]) == 3    # a dropped folder and a bad file
        (warning,) = dialogs_seen.named("show_warning")                 # the bad file was refused, politely
        assert "notes.png" in warning[1]
        panel.train()
        assert "name" in panel.status.text() and not sent               # no name yet: nothing sent
        panel.name.setText("Mimi")
        panel.trigger.setText("mimicat")
        panel.class_noun.setText("cat")
        panel.steps.setValue(10)
        panel.class_images.setValue(0)
        progress_formats = []
        panel.progress.valueChanged.connect(lambda _v: progress_formats.append(panel.progress.format()))
        panel.train()
        assert headless.pump(20, lambda: "Trained" in panel.status.text()), panel.status.text()
        (req,) = sent
        assert (req.name, req.trigger, req.class_noun, req.steps) == ("Mimi", "mimicat", "cat", 10)
        assert len(req.images) == 3 and max(req.images[0].width, req.images[0].height) == 1024
        assert req.prior_preservation is False
        assert any("loss 0.1234" in f for f in progress_formats)
        assert panel.sample.pixmap() is not None and not panel.sample.pixmap().isNull()
        assert panel.train_button.isEnabled() and not panel.cancel_button.isEnabled()
    finally:
        stub.close()


def test_no_daemon_and_a_failed_auto_start_are_explained(open_window):
    spawned = []

    class DeadProcess:
        returncode = 1

        def poll(self):
            return 1

    def spawn(endpoint, models_dir):
        spawned.append(endpoint)
        return DeadProcess()

    endpoint = f"tcp://127.0.0.1:{free_port()}"
    w = open_window(endpoint, autostart=True, spawn=spawn)
    assert headless.pump(20, lambda: w.link.state == connection.DOWN), w.link.message
    assert spawned == [endpoint]                                          # started once, not in a loop
    assert "could not start" in w.link.message and "exit code 1" in w.link.message
    assert "could not start" in w.conn_label.text()
    w.controller.run("generate")
    assert "Cannot generate" in w.panel.status.text()
    manual = open_window(f"tcp://127.0.0.1:{free_port()}")
    assert headless.pump(20, lambda: manual.link.state == connection.DOWN), manual.link.message
    assert "impasto serve" in manual.link.message


# --------------------------------------------------------------------------- issue 19: model defaults, parameters


def test_panel_shows_the_models_recommendation_for_unset_knobs(open_window):
    w = open_window(f"tcp://127.0.0.1:{free_port()}")
    starter = {"name": "starter", "supported": True, "native_size": 64,
               "recommended": {"steps": 20, "guidance_scale": 5.0, "scheduler": "DDIMScheduler"}}
    w.panel.set_models(Models(models=[starter, {"name": "tiny", "supported": True}], default="starter"))
    assert w.panel.sampler.itemText(0) == "model default (DDIM, 20, 5.0)"
    assert w.panel.steps.value() == 0 and w.panel.steps.text() == "model (20)"
    s = w.panel.settings()
    assert s.unset() == ["sampler", "steps", "cfg_scale"]
    plan = w.controller.plan("generate")
    assert (plan.request.sampler, plan.request.steps, plan.request.cfg_scale) == ("ddim", 20, 5.0)
    assert plan.settings.steps == 20          # a staged result records what was sent
    w.panel.model.setCurrentIndex(w.panel.model.findData("tiny"))   # recommends nothing: the protocol's values
    assert w.panel.sampler.itemText(0).startswith("model default (Euler a, 20, 7.0")


def test_export_carries_parameters_and_opening_it_fills_the_panel(open_window, daemon, tmp_path):
    from PIL import Image as PILImage

    w = open_window(daemon.endpoint)
    assert headless.pump(90, lambda: w.link.connected), w.link.message
    assert headless.pump(30, lambda: w.panel.model.findData("tiny") >= 0)
    w.panel.model.setCurrentIndex(w.panel.model.findData("tiny"))
    w.panel.prompt.setPlainText("a yellow star")
    w.panel.negative.setPlainText("blur")
    w.panel.steps.setValue(2)
    w.panel.set_seed(11)
    w.panel.generate_button.click()
    assert headless.pump(90, lambda: len(w.staging) == 1), w.panel.status.text()
    w.staging_bar.accept_button.click()
    path = tmp_path / "export.png"
    assert w.export_png(str(path))
    text = PILImage.open(path).text["parameters"]
    assert text.startswith("a yellow star\nNegative prompt: blur\nSteps: 2, Sampler: Euler a, CFG scale: 7, Seed: 11,")
    assert "Size: 64x64, Model: tiny" in text
    w.panel.prompt.setPlainText("")
    w.panel.set_seed(-1)
    assert w.open_path(str(path))
    s = w.panel.settings()
    assert (s.prompt, s.negative_prompt, s.seed, s.steps, s.model) == ("a yellow star", "blur", 11, 2, "tiny")
    # an A1111 JPEG (EXIF UserComment) fills the panel too
    from impasto.backend.pictures import save_picture

    jpg = tmp_path / "a1111.jpg"
    save_picture(PILImage.open(path), jpg, "a green triangle\nSteps: 5, Sampler: DDIM, CFG scale: 4.5, Seed: 21, "
                                          "Size: 64x64, Model: tiny")
    assert w.open_path(str(jpg))
    s = w.panel.settings()
    assert (s.prompt, s.sampler, s.steps, s.cfg_scale, s.seed) == ("a green triangle", "ddim", 5, 4.5, 21)


def test_results_dock_keeps_each_result_with_its_settings_across_sessions(open_window, daemon, own_home):
    from impasto.desktop.results_panel import ResultsPanel
    from impasto.protocol.history import ResultHistory

    w = open_window(daemon.endpoint)
    assert headless.pump(90, lambda: w.link.connected), w.link.message
    assert headless.pump(30, lambda: w.panel.model.findData("tiny") >= 0)
    w.panel.model.setCurrentIndex(w.panel.model.findData("tiny"))
    w.panel.prompt.setPlainText("a red square")
    w.panel.steps.setValue(2)
    w.panel.batch.setValue(2)
    w.panel.set_seed(40)
    w.panel.generate_button.click()
    assert headless.pump(90, lambda: len(w.staging) == 2), w.panel.status.text()
    w.staging_bar.discard_all_button.click()
    results = w.results
    assert results.list.count() == 2                                  # discarded or not, both are kept
    assert [e.seed for e in results.history.entries] == [41, 40]      # newest first
    item = results.list.item(0)
    assert "a red square" in item.text() and "seed 41" in item.text() and not item.icon().isNull()
    assert "Steps: 2, Sampler: Euler a" in item.toolTip() and "Seed: 41" in item.toolTip()
    # re-use settings: the panel gets the result's knobs and seed back
    w.panel.prompt.setPlainText("something else")
    w.panel.steps.setValue(9)
    w.panel.set_seed(-1)
    results.list.setCurrentRow(1)
    results.use_button.click()
    s = w.panel.settings()
    assert (s.prompt, s.steps, s.seed, s.model) == ("a red square", 2, 40, "tiny")
    # save: the full picture, carrying its parameters
    from PIL import Image as PILImage

    saved = results.save_selected(str(own_home.parent / "saved.png"))
    assert PILImage.open(saved).size == (64, 64)
    assert "a red square\nSteps: 2, Sampler: Euler a, CFG scale: 7, Seed: 40," in PILImage.open(saved).text["parameters"]
    # persisted: another view of the same folder (a later session) lists them; delete removes one and its thumbnail
    folder = results.history.folder
    assert str(folder).startswith(str(own_home))
    results.list.setCurrentRow(0)
    thumb = results.history.thumbnail_path(results.history.entries[0])
    results.delete_button.click()
    assert results.list.count() == 1 and not thumb.exists()
    later = ResultsPanel(ResultHistory(folder))
    assert later.list.count() == 1 and later.history.entries[0].seed == 40


def test_canvas_says_when_the_running_daemon_has_another_models_folder(open_window, daemon, tmp_path):
    w = open_window(daemon.endpoint, models_dir=str(tmp_path / "my-models"))
    assert headless.pump(90, lambda: w.link.connected), w.link.message
    assert "already running uses the models folder" in w.link.message and "my-models" in w.link.message


def test_canvas_says_waiting_n_ahead_and_shows_warnings_while_the_job_runs(open_window):
    """Issue 19: the queue position and each daemon warning reach the panel before the result does."""
    seen = []
    release = threading.Event()

    def queued_then_warn(stub, identity, msg):
        stub.jobs.append(msg.job)        # pending in the stub's status replies (else the client reaps it as lost)

        def play():
            stub.post(identity, Accepted(job=msg.job, position=2))
            release.wait(10)
            stub.post(identity, Progress(job=msg.job, warnings=["size changed: painted at 64x64"]))
            release.clear()
            release.wait(10)
            stub.post(identity, Progress(job=msg.job, step=1, total=2, stage="denoise"))
            stub.post(identity, Result(job=msg.job, images=[Image(8, 8, b"\x80" * 256)], seeds=[1], steps_run=2,
                                       warnings=["size changed: painted at 64x64"]))
        threading.Thread(target=play, daemon=True).start()

    stub = StubDaemon(queued_then_warn)
    try:
        w = open_window(stub.endpoint, size=(8, 8))
        assert headless.pump(20, lambda: w.link.connected), w.link.message
        w.panel.prompt.setPlainText("anything")
        w.panel.steps.setValue(2)
        w.panel.generate_button.click()
        assert headless.pump(20, lambda: "waiting (2 ahead)" in w.panel.status.text()), w.panel.status.text()
        release.set()
        assert headless.pump(20, lambda: "size changed" in w.panel.status.text()), w.panel.status.text()
        seen.append(w.panel.progress.format())
        assert len(w.staging) == 0                                   # said while the job runs, not after
        release.set()
        assert headless.pump(20, lambda: len(w.staging) == 1), w.panel.status.text()
        assert "size changed" in w.panel.status.text()
        assert "0/0" not in seen[0]                                   # a warnings-only event moves no bar
    finally:
        stub.close()


def test_colour_match_toggle_reaches_the_request(open_window):
    w = open_window(f"tcp://127.0.0.1:{free_port()}")
    assert w.panel.colour_match.isChecked() and w.panel.settings().colour_match is True   # default on
    w.panel.colour_match.setChecked(False)
    s = w.panel.settings()
    assert s.colour_match is False
    from impasto.protocol import planner

    plan = planner.plan_job((8, 8), s, planner.INPAINT, rgba=b"\x00" * 256, mask=b"\xff" * 64)
    assert plan.request.colour_match is False
    w.panel.set_settings(s.__class__())
    assert w.panel.colour_match.isChecked()


def test_fill_menu_shows_the_client_cores_words_with_a_hint_per_mode(open_window):
    """The canvas's fill menu reads protocol/settings.py's table, as Krita and GIMP do: one spelling of
    "Neutral grey" everywhere, and each mode's hover text says what it is for."""
    from impasto.protocol.messages import FILL_MODES
    from impasto.protocol.settings import FILL_HINTS, fill_label
    from PySide6.QtCore import Qt

    w = open_window(f"tcp://127.0.0.1:{free_port()}")
    combo = w.panel.fill
    assert [combo.itemData(i) for i in range(combo.count())] == list(FILL_MODES)
    assert [combo.itemText(i) for i in range(combo.count())] == [fill_label(m) for m in FILL_MODES]
    assert combo.itemText(combo.findData("neutral")) == "Neutral grey"
    assert combo.itemData(combo.findData("blur"), Qt.ItemDataRole.ToolTipRole) == FILL_HINTS["blur"]
