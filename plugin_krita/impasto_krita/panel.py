"""The docker's contents: prompt, knobs, Generate / Cancel, progress and live preview.

A plain QWidget (the Krita ``DockWidget`` only wraps it), so it is built and
screenshotted offscreen in tests the same way Krita shows it.  It talks to
the document through a host object (:class:`~.krita_host.KritaHost` in Krita)
and to the daemon through a :class:`~.session.Session`; every session
callback arrives here on the UI thread through :class:`Poster`.
"""
from __future__ import annotations

import dataclasses
import threading
import time
import traceback
from typing import Any, Callable, Dict, List, Optional

from ...protocol import notices
from ...protocol.messages import Limits
from . import control_layers, planning
from .config import ConnectionConfig, SettingsStore, load_connection, save_connection, split_command
from .krita_host import document_format, prepare_layer
from .prompt_edit import attach as attach_prompt_edit
from .live import KritaLive
from .form import STATUS_COLOURS, DockerForm, _select_data  # noqa: F401 (_select_data: the test drivers use it)
from .placement import PlacementError, plan_layers
from .planning import JobPlan, Settings
from .qt import QtCore, QtGui, QtWidgets, Qt, Signal, rgba_qimage
from .session import ConnectionState, Session, SessionListener
from .sliders import is_slider, slider_row
from .wording import describe_exception

PREVIEW_SIDE = 256


class Poster(QtCore.QObject):
    """Runs callables on the thread this object lives in (Krita's UI thread)."""

    invoke = Signal(object)

    def __init__(self, parent: Optional[QtCore.QObject] = None):
        super().__init__(parent)
        self.invoke.connect(self._run)

    def post(self, fn: Callable[[], None]) -> None:
        self.invoke.emit(fn)

    @staticmethod
    def _run(fn: Callable[[], None]) -> None:
        try:
            fn()
        except Exception:  # a UI callback must never take Krita down
            traceback.print_exc()


class ImpastoPanel(DockerForm, QtWidgets.QWidget, SessionListener):
    """Generate, refine and inpaint the selection from a Krita docker."""

    def __init__(self, host: Any, store: SettingsStore, install_info: Optional[Dict[str, Any]] = None,
                 parent: Optional[QtWidgets.QWidget] = None, autoconnect: bool = True,
                 limits: Optional[Any] = None):
        super().__init__(parent)
        self.host = host
        self.store = store
        self.limits = limits or Limits()
        self.poster = Poster(self)
        self.connection = load_connection(store, install_info)
        self.session = Session(self.connection, self, self.poster.post)
        self.settings = planning.load_form(store.get("form"))
        self.state = ConnectionState()
        self.last_result: Optional[Any] = None
        self.last_layers: List[Any] = []
        self.last_message = ""
        self.outcome = ""                 # how the last job ended: layers | failed | cancelled
        self.outcome_count = 0            # bumped when a job ends (tests and scripts wait on it)
        self._job_started = 0.0
        self._preview_image: Optional[QtGui.QImage] = None
        self._loading = False
        self._build()
        self.edit_prompt = attach_prompt_edit(self)   # "Edit prompt" on a result (prompt_edit.py)
        self.control_box = control_layers.attach(self)
        self.live = KritaLive(self)   # live painting (live.py): its row goes above the preview it shows in
        self.layout().insertWidget(self.layout().indexOf(self.preview), self.live.row())
        self._load_form(self.settings)
        self._save_timer = QtCore.QTimer(self)
        self._save_timer.setSingleShot(True)
        self._save_timer.setInterval(600)
        self._save_timer.timeout.connect(self._save_form)
        self._canvas_timer = QtCore.QTimer(self)
        self._canvas_timer.setInterval(400)
        self._canvas_timer.timeout.connect(self._refresh_action_label)
        self._canvas_timer.start()
        self._alive_timer = QtCore.QTimer(self)
        self._alive_timer.setInterval(10000)
        self._alive_timer.timeout.connect(self.session.check_alive)
        self._alive_timer.start()
        self._set_running(False)
        if autoconnect:
            self.state_changed(ConnectionState(status="connecting", message=f"Connecting to {self.session.endpoint} …"))
            # Opening Krita never starts the daemon (it holds a model in memory): Generate or ⟳ does.
            self.session.connect(allow_start=False)
        else:
            self.state_changed(ConnectionState(status="offline", message="Not connected: press ⟳ to connect."))

    # ------------------------------------------------------------------ building

    def _form_changed(self, *_: Any) -> None:
        if self._loading:
            return
        self._update_labels()
        self._save_timer.start()

    def _save_form(self) -> None:
        self.settings = self.read_form()
        try:
            self.store.set("form", self.settings.to_json())
        except Exception:
            pass

    def _refresh_action_label(self) -> None:
        doc = None
        try:
            doc = self.host.active_document()
            has_sel = doc is not None and self.host.has_selection(doc)
        except Exception:
            has_sel = False
        s = Settings(strength=self.strength_slider.value() / 100.0)
        label = planning.action_label(s, has_sel)
        if self.generate_button.text() != label:
            self.generate_button.setText(label)
        self.generate_button.setEnabled(not self.session.busy and doc is not None)

    def _reuse_seed(self) -> None:
        if self.last_result is not None and self.last_result.seeds:
            self.random_seed_check.setChecked(False)
            self.seed_spin.setValue(int(self.last_result.seeds[0]) % (2 ** 31))

    def _apply_connection(self) -> None:
        cfg = ConnectionConfig(endpoint=self.endpoint_edit.text().strip(),
                               daemon_command=split_command(self.command_edit.text()),
                               auto_start=self.autostart_check.isChecked(),
                               models_dir=self.connection.models_dir, daemon_env=self.connection.daemon_env)
        self.connection = cfg
        try:
            save_connection(self.store, cfg)
        except Exception:
            pass
        self.session.reconfigure(cfg)
        self.session.connect()

    # ------------------------------------------------------------------ models and concepts

    def _fill_models(self, state: ConnectionState, wanted: Optional[str] = None) -> None:
        current = wanted if wanted is not None else (self.model_combo.currentData() or "")
        was_loading, self._loading = self._loading, True
        try:
            self.model_combo.clear()
            default = state.default_model
            self.model_combo.addItem(f"Default ({default})" if default else "Default", "")
            for m in state.models:
                name = str(m.get("name", ""))
                if name:
                    arch = m.get("arch") or ""
                    self.model_combo.addItem(f"{name}  ·  {arch}" if arch else name, name)
            if current and not _select_data(self.model_combo, current):
                self.model_combo.addItem(f"{current} (not on this daemon)", current)
                _select_data(self.model_combo, current)
        finally:
            self._loading = was_loading
        self.show_recommendation()

    def _fill_concepts(self, concepts: List[Dict[str, Any]]) -> None:
        saved = {c.get("name"): c for c in self.read_form().concepts} if self.concept_rows else \
            {c.get("name"): c for c in self.settings.concepts}
        for check, weight in self.concept_rows.values():
            self.concepts_section.form.removeRow(check)
        self.concept_rows = {}
        self.concepts_hint.setVisible(not concepts)
        for c in concepts:
            name = str(c.get("name", ""))
            if not name:
                continue
            if is_slider(c):   # a Concept Slider: a -3..+3 slider row (sliders.py)
                self.concept_rows[name] = slider_row(c, saved.get(name, {}), self._form_changed)
                self.concepts_section.form.addRow(*self.concept_rows[name])
                continue
            trigger = c.get("trigger") or ""
            check = QtWidgets.QCheckBox(f"{name}  ({trigger})" if trigger else name)
            if trigger:
                check.setToolTip(f"Trigger word: {trigger} - put it in the prompt")
            weight = QtWidgets.QDoubleSpinBox()
            weight.setRange(-2.0, 2.0)
            weight.setSingleStep(0.05)
            weight.setDecimals(2)
            weight.setToolTip("LoRA weight")
            prev = saved.get(name, {})
            check.setChecked(bool(prev.get("enabled", False)))
            weight.setValue(float(prev.get("weight", 1.0)))
            check.toggled.connect(self._form_changed)
            weight.valueChanged.connect(self._form_changed)
            self.concepts_section.form.addRow(check, weight)
            self.concept_rows[name] = (check, weight)

    # ------------------------------------------------------------------ session callbacks (UI thread)

    def state_changed(self, state: ConnectionState) -> None:
        models_changed = (state.models, state.default_model) != (self.state.models, self.state.default_model)
        concepts_changed = state.concepts != self.state.concepts
        self.state = state
        colour = STATUS_COLOURS.get(state.status, "#8a8a8a")
        self.status_dot.setStyleSheet(f"QLabel {{ color: {colour}; font-size: 14px; }}")
        self.status_label.setText(state.message or state.status.capitalize())
        self.status_dot.setToolTip(state.status)
        if models_changed:
            self._fill_models(state)
        if concepts_changed or (state.ready and not self.concept_rows and state.concepts):
            self._fill_concepts(state.concepts)
        self.reconnect_button.setEnabled(state.status not in ("connecting", "starting"))

    def job_started(self, plan: JobPlan) -> None:
        self._job_started = time.monotonic()
        self._heard = notices.Heard()  # this job's warnings shown so far (the daemon sends them live)
        self.progress.setRange(0, 0)  # busy until the first step arrives
        self.progress.setFormat("")
        self.show_message(f"{plan.label}: sent, waiting for the daemon …")

    def job_queued(self, plan: JobPlan, position: int) -> None:
        if position > 0:
            self.show_message(f"{plan.label}: {notices.waiting_words(position)} …")

    def job_progress(self, plan: JobPlan, progress: Any) -> None:
        heard = getattr(self, "_heard", None) or notices.Heard()
        self._heard = heard
        fresh = heard.fresh(getattr(progress, "warnings", ()))
        if fresh or (self.progress.maximum() == 0 and not notices.only_warnings(progress)):
            self.show_message(f"{plan.label}: painting …" + "".join(f"\n⚠ {w}" for w in heard.shown))
        if notices.only_warnings(progress):
            return
        total = max(1, int(progress.total))
        self.progress.setRange(0, total)
        self.progress.setValue(min(total, int(progress.step)))
        self.progress.setFormat(f"%v / %m {progress.stage}".strip())
        if progress.preview is not None:
            p = progress.preview
            self.set_preview(rgba_qimage(p.data, p.width, p.height))

    def job_finished(self, plan: JobPlan, result: Any) -> None:
        self.last_result = result
        elapsed = time.monotonic() - self._job_started
        self.progress.setRange(0, 1)
        self.progress.setValue(1)
        self.progress.setFormat("done")
        try:
            layers = plan_layers(plan, result)
        except PlacementError as exc:
            self._job_done_error(str(exc))
            return
        fmt = plan.document_format
        self.show_message(f"{plan.label}: adding {len(layers)} layer{'s' if len(layers) > 1 else ''} …")

        def prepare() -> None:  # pixel conversion off the UI thread
            try:
                prepared = [prepare_layer(fmt, layer) for layer in layers]
            except Exception as exc:
                message = describe_exception(exc)
                self.poster.post(lambda: self._job_done_error(message))
                return
            self.poster.post(lambda: self._apply_layers(plan, result, prepared, elapsed))

        threading.Thread(target=prepare, name="impasto-prepare", daemon=True).start()

    def _ended(self, outcome: str) -> None:
        self.outcome = outcome
        self.outcome_count += 1

    def _apply_layers(self, plan: JobPlan, result: Any, prepared: List[Any], elapsed: float) -> None:
        self._set_running(False)
        doc = plan.document
        if doc is None or not self.host.is_open(doc):
            self.show_message("The document was closed before the result arrived; nothing was added.", error=True)
            self._ended("failed")
            return
        try:
            self.last_layers = self.host.add_layers(doc, prepared)
        except Exception as exc:
            self.show_message(describe_exception(exc), error=True)
            self._ended("failed")
            return
        if self.last_layers and hasattr(self.host, "activate"):
            # Krita's layer panel learns about a new node a moment after it is added: select it then
            first_node = self.last_layers[0]
            QtCore.QTimer.singleShot(150, lambda: self.host.activate(doc, first_node))
        first = prepared[0].plan
        self.set_preview(rgba_qimage(first.rgba, first.width, first.height))
        seeds = ", ".join(str(s) for s in result.seeds[:4]) + (" …" if len(result.seeds) > 4 else "")
        count = len(prepared)
        where = f" at {first.x},{first.y}" if plan.kind == "edit" else ""
        extra = f" (the first visible, {count - 1} hidden)" if count > 1 else ""
        text = f"{count} new layer{'s' if count > 1 else ''}{where}{extra} · seed {seeds} · {elapsed:.1f} s"
        for w in result.warnings:
            text += f"\n⚠ {w}"
        self.show_message(text)
        try:  # the Results section: a history problem never costs the layers just added
            pictures = [(p.plan.seed, rgba_qimage(p.plan.rgba, p.plan.width, p.plan.height)) for p in prepared]
            self.results.add(doc, plan.request, plan.kind, (plan.canvas_width, plan.canvas_height), pictures,
                             list(result.warnings))
        except Exception as exc:
            self.show_message(f"{text}\n(the result could not be added to Results: {exc})")
        self._ended("layers")

    def _job_done_error(self, message: str) -> None:
        self._set_running(False)
        self.show_message(message, error=True)
        self._ended("failed")

    def job_cancelled(self, plan: Optional[JobPlan]) -> None:
        self._set_running(False)
        self.progress.setRange(0, 1)
        self.progress.setValue(0)
        self.progress.setFormat("cancelled")
        self.show_message("Cancelled.")
        self._ended("cancelled")

    def job_failed(self, plan: Optional[JobPlan], message: str) -> None:
        self._set_running(False)
        self.progress.setRange(0, 1)
        self.progress.setValue(0)
        self.progress.setFormat("")
        self.show_message(message, error=True)
        self._ended("failed")

    # ------------------------------------------------------------------ actions

    def generate(self) -> bool:
        """Read the canvas (UI thread, fast) and hand the rest to the session; False if nothing started."""
        try:
            return self._generate()
        except Exception as exc:  # never a traceback in Krita
            self._set_running(False)
            self.show_message(describe_exception(exc), error=True)
            return False

    def _generate(self) -> bool:
        if self.session.busy:
            self.show_message("A job is already running: cancel it first.")
            return False
        settings = self.read_form()
        self.settings = settings
        # concepts remembered from another daemon are kept in the form, but only listed ones are sent
        settings = dataclasses.replace(settings, concepts=[c for c in settings.concepts
                                                           if c.get("name") in self.concept_rows])
        doc = self.host.active_document()
        if doc is None:
            self.show_message("Open or create a document first.", error=True)
            return False
        self.results.show_document(doc)
        snapshot = planning.read_canvas(self.host, doc, settings)
        snapshot.name = getattr(doc, "name", lambda: "")()
        snapshot.controls = self.control_box.read(doc, snapshot.window)
        doc_fmt = document_format(doc)
        limits = self.limits
        rec = self.recommendation()

        def build() -> JobPlan:
            plan = planning.plan_job(snapshot, settings, limits, rec)
            plan.document = doc
            plan.document_format = doc_fmt
            return plan

        if not self.session.start_job(build):
            self.show_message("A job is already running: cancel it first.")
            return False
        self._set_running(True)
        self.show_message(f"{planning.action_label(settings, snapshot.mask_info is not None)}: preparing the canvas …")
        return True

    def cancel(self) -> None:
        if self.session.busy:
            self.session.cancel()
            self.show_message("Cancelling …")

    # ------------------------------------------------------------------ display

    def _set_running(self, running: bool) -> None:
        self.cancel_button.setEnabled(running)
        self.generate_button.setEnabled(not running)
        if not running:
            self._refresh_action_label()

    def show_message(self, text: str, error: bool = False) -> None:
        self.last_message = text
        self.message_label.setStyleSheet("QLabel { color: #d9534f; }" if error else "")
        self.message_label.setText(text)

    def set_preview(self, image: QtGui.QImage) -> None:
        self._preview_image = image
        self._show_preview()

    def _show_preview(self) -> None:
        if self._preview_image is None or self._preview_image.isNull():
            return
        side = max(64, min(PREVIEW_SIDE, self.preview.width() - 4))
        pix = QtGui.QPixmap.fromImage(self._preview_image).scaled(
            side, side, Qt.AspectRatioMode.KeepAspectRatio, Qt.TransformationMode.SmoothTransformation)
        self.preview.setPixmap(pix)

    def resizeEvent(self, event: Any) -> None:  # noqa: N802 (Qt naming)
        super().resizeEvent(event)
        self._show_preview()

    def shutdown(self) -> None:
        """Stop timers and close the connection (Krita is closing the window)."""
        for t in (self._save_timer, self._canvas_timer, self._alive_timer):
            t.stop()
        self._save_form()
        self.live.set_enabled(False)
        self.session.close()
