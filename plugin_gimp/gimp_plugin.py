"""The GIMP 3 plug-in: five procedures under Filters > Impasto (runs inside GIMP only).

* **Generate** - text to image: new layers in the open image (covering it by
  default), or a new image when none is open.
* **Refine** - img2img at a denoising strength: of the whole layer, or of the
  selection only ("only masked", the result masked by the selection).
* **Inpaint Selection** - repaint the selection (denoising strength 1 by
  default), context from "only masked" padding around it.
* **Repaint Now** - live painting on demand (GIMP has no stroke event): the
  client core's live job, into one "Impasto live" layer (``live.py``).
* **Settings** - daemon endpoint, auto-start, daemon command, transport.
* **Save Result** - the selected result layer as a PNG carrying its A1111
  parameters (each new layer keeps them; ``gimp_save.py``).

Every run reads GIMP pixels on the main thread, sends one typed request, and
puts each result in a *new* layer above the source (one undo group); the
artist's layers and masks are never changed.  Non-interactive runs (scripts,
batch mode, the tests) take every value from the procedure's arguments and
wait synchronously; interactive runs show GIMP's procedure dialog, then a
progress window with the daemon's live preview and a Cancel button, while
the network waits happen on a worker thread.

Over 500 lines on purpose: GIMP registers procedures from one ``Gimp.PlugIn``
class, so the procedures' declarations (arguments, menus, defaults) live
together here; planning, pixels, dialogs and the job flow are in their own
modules (``jobs.py``, ``gimp_pixels.py``, ``gimp_ui.py``, ``job_runner.py``).
"""
from __future__ import annotations

import sys
import traceback
from typing import List

import gi

gi.require_version("Gimp", "3.0")
from gi.repository import Gimp, GLib, GObject  # noqa: E402

from ..protocol.messages import FILL_MODES, SAMPLERS, Image, Limits, ProtocolError, Result  # noqa: E402
from ..protocol.settings import FILL_HINTS, FILL_LABELS, Recommendation, sampler_label  # noqa: E402
from . import control_layer, daemon_link, geometry, jobs, live, pixels, results, save_result  # noqa: E402
from . import gimp_pixels as gp  # noqa: E402
from . import settings as plugin_settings  # noqa: E402
from .geometry import Rect  # noqa: E402
from .job_runner import JobFlow, Outcome  # noqa: E402

PROC_GENERATE = "impasto-generate"
PROC_REFINE = "impasto-refine"
PROC_INPAINT = "impasto-inpaint"
PROC_SETTINGS = "impasto-settings"
PROC_SAVE = "impasto-save-result"
MENU = "<Image>/Filters/Impasto"
RW = GObject.ParamFlags.READWRITE

#: the menu's words: the client core's (protocol/settings.py), the same as the canvas and Krita show
SAMPLER_LABELS = {"default": "Model default (its impasto.json)", **{name: sampler_label(name) for name in SAMPLERS}}
#: How long a non-interactive run waits for the next event; the client's heartbeat notices a dead
#: daemon long before this.
EVENT_TIMEOUT = 3600.0
ANY_IMAGE = (Gimp.ProcedureSensitivityMask.DRAWABLE | Gimp.ProcedureSensitivityMask.DRAWABLES
             | Gimp.ProcedureSensitivityMask.NO_DRAWABLES)


# --------------------------------------------------------------------------- arguments


def _choice(values, labels, hints=None) -> Gimp.Choice:
    choice = Gimp.Choice.new()
    for i, nick in enumerate(values):
        choice.add(nick, i, labels.get(nick, nick), (hints or {}).get(nick, ""))
    return choice


def _add_common(proc) -> None:
    proc.add_string_argument("prompt", "_Prompt", "What to paint", "", RW)
    proc.add_string_argument("negative-prompt", "_Negative prompt", "What to keep out of the picture", "", RW)
    proc.add_int_argument("seed", "See_d", "-1 picks a new random seed each run", -1, jobs.MAX_SEED, -1, RW)
    proc.add_int_argument("steps", "S_teps", "Sampling steps (0: the model's recommendation)", 0, Limits().max_steps,
                          0, RW)
    proc.add_double_argument("cfg-scale", "C_FG scale", "How strictly to follow the prompt (0: the model's "
                             "recommendation)", 0.0, Limits().max_cfg, 0.0, RW)
    proc.add_choice_argument("sampler", "S_ampler", "Sampler", _choice((jobs.MODEL_DEFAULT,) + tuple(SAMPLERS),
                                                                      SAMPLER_LABELS), jobs.MODEL_DEFAULT, RW)
    proc.add_string_argument("model", "_Model", "Model name (empty: the daemon's default)", "", RW)
    proc.add_string_argument("concepts", "Conc_epts",
                             "Trained concepts with LoRA weights, e.g. 'mycat:0.8, watercolor'", "", RW)
    proc.add_int_argument("batch-size", "_Batch size", "Pictures per run (one layer each)", 1, Limits().max_batch,
                          1, RW)


def _add_edit(proc, strength: float, fill: str) -> None:
    proc.add_double_argument("strength", "Denoisin_g strength", "0 keeps the picture, 1 repaints it fully",
                             0.0, 1.0, strength, RW)
    proc.add_int_argument("mask-blur", "Mask bl_ur", "Feather of the selection's edge, px", 0, 256, 4, RW)
    proc.add_int_argument("grow", "Grow / shrin_k", "Grow the selection by px (negative shrinks)", -256, 256, 0, RW)
    proc.add_int_argument("padding", "Onl_y-masked padding", "Context around the selection, px", 0, 2048, 32, RW)
    proc.add_choice_argument("fill", "F_ill", "What the masked area starts from",
                             _choice(FILL_MODES, FILL_LABELS, FILL_HINTS), fill, RW)
    proc.add_boolean_argument("whole-picture", "_Whole picture",
                              "Diffuse the whole picture instead of only the masked area", False, RW)
    proc.add_boolean_argument("colour-match", "Co_lour match",
                              "Shift the repainted colours to meet the surroundings at the seam", True, RW)
    proc.add_boolean_argument("sample-merged", "Use the _visible image (sample merged)",
                              "Work from the visible image instead of the active layer", False, RW)


def _add_results(proc) -> None:
    proc.add_image_return_value("result-image", "Image", "The image the result was put in", True, RW)
    proc.add_layer_return_value("result-layer", "Layer", "The first new layer", True, RW)
    proc.add_int_return_value("result-seed", "Seed", "The seed of the first picture", -1, 2**31 - 1, -1, RW)


COMMON_FIELDS = ["prompt", "negative-prompt"]
SAMPLING_FIELDS = ["sampler", "steps", "cfg-scale", "seed", "batch-size", "model", "concepts"]
EDIT_FIELDS = ["strength", "mask-blur", "grow", "padding", "fill", "whole-picture", "colour-match", "sample-merged"]


# --------------------------------------------------------------------------- the plug-in


class ImpastoPlugIn(Gimp.PlugIn):
    """Registers the procedures; each run is a fresh process started by GIMP."""

    def do_query_procedures(self):
        return [PROC_GENERATE, PROC_REFINE, PROC_INPAINT, live.PROC_REPAINT, PROC_SETTINGS, PROC_SAVE]

    def do_set_i18n(self, name):
        return False

    def do_create_procedure(self, name):
        proc = Gimp.ImageProcedure.new(self, name, Gimp.PDBProcType.PLUGIN, self._run, None)
        proc.set_attribution("Impasto", "Impasto contributors", "2026")
        if name == PROC_GENERATE:
            proc.set_image_types("*")
            proc.set_sensitivity_mask(Gimp.ProcedureSensitivityMask.ALWAYS)
            proc.set_menu_label("_Generate…")
            proc.set_documentation(
                "Paint a picture from a prompt with the local Impasto daemon",
                "New layers in the open image (the image's size by default), or a new image when none is open.",
                name)
            _add_common(proc)
            proc.add_int_argument("width", "_Width", "0: the image's width (512 without an image)", 0, 8192, 0, RW)
            proc.add_int_argument("height", "Hei_ght", "0: the image's height (512 without an image)", 0, 8192, 0,
                                  RW)
            control_layer.add_arguments(proc, _choice)
            _add_results(proc)
        elif name in (PROC_REFINE, PROC_INPAINT):
            proc.set_image_types("RGB*, GRAY*")
            proc.set_sensitivity_mask(ANY_IMAGE)
            if name == PROC_REFINE:
                proc.set_menu_label("_Refine…")
                proc.set_documentation(
                    "Repaint the layer, or the selection, at a denoising strength (img2img)",
                    "Without a selection the whole layer is refined; with one, only the selection ('only masked', "
                    "with padding for context). The result is a new layer above, masked by the selection.",
                    name)
                _add_common(proc)
                _add_edit(proc, 0.5, "original")
            else:
                proc.set_menu_label("_Inpaint Selection…")
                proc.set_documentation(
                    "Repaint the selected area from a prompt",
                    "The selection (soft edges kept) becomes the mask; only the area around it is sent. The result "
                    "is a new layer at the selection with a layer mask from the selection.",
                    name)
                _add_common(proc)
                _add_edit(proc, 1.0, "blur")
            control_layer.add_arguments(proc, _choice)
            _add_results(proc)
        elif name == PROC_SAVE:
            from . import gimp_save

            gimp_save.declare(proc)
        elif name == live.PROC_REPAINT:   # live painting on demand (live.py)
            proc.set_image_types("RGB*, GRAY*")
            proc.set_sensitivity_mask(ANY_IMAGE)
            proc.set_menu_label("Repaint _Now")
            proc.set_documentation(
                "Repaint the picture (or the selection) as live painting does, into the 'Impasto live' layer",
                "No dialog: the last values (give it a shortcut and press it after each stroke). The live layer is "
                "replaced at every press; rename it to keep it, delete it to discard it.", name)
            _add_common(proc)
            _add_edit(proc, 0.5, "original")
        elif name == PROC_SETTINGS:
            proc.set_image_types("*")
            proc.set_sensitivity_mask(Gimp.ProcedureSensitivityMask.ALWAYS)
            proc.set_menu_label("_Settings…")
            proc.set_documentation("Where the Impasto daemon is, and whether to start it",
                                   "Saved in GIMP's profile folder and shared by all Impasto procedures.", name)
            defaults = plugin_settings.PluginSettings()
            proc.add_string_argument("endpoint", "_Endpoint", "Daemon endpoint (empty: $IMPASTO_ENDPOINT or "
                                     "tcp://127.0.0.1:7877)", defaults.endpoint, RW)
            proc.add_boolean_argument("auto-start", "_Auto-start", "Start the daemon when nothing answers",
                                      defaults.auto_start, RW)
            proc.add_string_argument("daemon-command", "Daemon co_mmand",
                                     "How to start it (empty: `impasto serve` from PATH)", defaults.daemon_command,
                                     RW)
            proc.add_choice_argument("transport", "_Transport", "pyzmq when available, else pure-Python ZMTP",
                                     _choice(plugin_settings.TRANSPORTS, {"auto": "Automatic",
                                                                         "zmtp": "Pure-Python ZMTP",
                                                                         "pyzmq": "pyzmq"}),
                                     defaults.transport, RW)
        proc.add_menu_path(MENU)   # after the menu label: GIMP refuses a path for an unlabelled procedure
        return proc

    # ------------------------------------------------------------------ dispatch

    def _run(self, procedure, run_mode, image, drawables, config, run_data):
        name = procedure.get_name()
        interactive = run_mode == Gimp.RunMode.INTERACTIVE
        try:
            if name == PROC_SETTINGS:
                return run_settings(procedure, config, interactive)
            if name == PROC_SAVE:
                return run_save(procedure, image, list(drawables or []), config, interactive)
            runner = {PROC_GENERATE: run_generate, PROC_REFINE: run_refine, PROC_INPAINT: run_inpaint,
                      live.PROC_REPAINT: run_repaint_now}[name]
            return runner(procedure, image, list(drawables or []), config, interactive)
        except (ProtocolError, gp.GimpInputError, plugin_settings.SettingsError, ValueError, OSError) as exc:
            return _error(procedure, _sentence(exc))
        except Exception as exc:  # noqa: BLE001 - GIMP must get an answer, never a dead plug-in
            traceback.print_exc()
            return _error(procedure, f"Impasto failed unexpectedly: {type(exc).__name__}: {exc}")


# --------------------------------------------------------------------------- shared helpers


def _sentence(exc: BaseException) -> str:
    return exc.message if isinstance(exc, ProtocolError) else str(exc)


def _error(procedure, message: str):
    return procedure.new_return_values(Gimp.PDBStatusType.EXECUTION_ERROR, GLib.Error(message))


def _success(image, layer, seed: int):
    return Gimp.ValueArray.new_from_values([
        GObject.Value(Gimp.PDBStatusType, Gimp.PDBStatusType.SUCCESS),
        GObject.Value(Gimp.Image, image),
        GObject.Value(Gimp.Layer, layer),
        GObject.Value(GObject.TYPE_INT, int(seed) if 0 <= seed < 2**31 else -1),
    ])


def _cancelled(procedure):
    return procedure.new_return_values(Gimp.PDBStatusType.CANCEL, None)


def load_settings() -> plugin_settings.PluginSettings:
    settings, warnings = plugin_settings.load(plugin_settings.settings_path(Gimp.directory()))
    for w in warnings:
        print(f"impasto: {w}", file=sys.stderr)
    return settings


def _dialog(procedure, config, title: str, groups: List[List[str]]) -> bool:
    from . import gimp_ui

    return gimp_ui.run_procedure_dialog(procedure, config, title, groups, info=_daemon_info)


def _daemon_info(show) -> None:
    """For the dialog: what the daemon offers (never starts it: that happens on OK)."""
    settings = load_settings()
    quick = plugin_settings.PluginSettings(**{**settings.__dict__, "auto_start": False})
    try:
        client = daemon_link.connect(quick, ping_timeout=1.0)
    except Exception:
        show("The Impasto daemon is not running" + (": it starts when you press OK." if settings.auto_start
                                                    else ". Start it with `impasto serve`."))
        return
    try:
        models = client.models(timeout=5)
        concepts = client.concepts(timeout=5)
        names = ", ".join(str(m["name"]) for m in models.models if m.get("supported", True)) or "none installed"
        cons = ", ".join(f"{c.get('name')} (trigger: {c.get('trigger', '')})" for c in concepts.concepts) or "none yet"
        note = daemon_link.models_note(settings, models)
        rec = Recommendation.for_model(models.models, "", models.default)
        show(f"Models: {names} (default: {models.default or '-'})\n"
             f"Sampler, steps and CFG left at Model default / 0: the model's own {rec.settings()}\n"
             f"Concepts: {cons}" + (f"\nNote: {note}" if note else ""))
        if hasattr(show, "sliders"):   # the dialog shows the library's Concept Sliders as sliders
            show.sliders(concepts.concepts)
    except Exception as exc:  # noqa: BLE001
        show(f"The daemon answered but could not list models: {exc}")
    finally:
        client.close()


def with_recommendation(fields: "jobs.JobFields") -> "jobs.JobFields":
    """Fields plus the chosen model's recommendation for knobs left at "model default" (the daemon's listing).

    Connecting may start the daemon, as pressing OK does anyway; when it cannot
    be reached the protocol's values stand in and the job's own connect says why.
    """
    settings = load_settings()
    try:
        client = daemon_link.connect(settings, ping_timeout=1.5)
    except Exception:  # noqa: BLE001 - run_job reports an unreachable daemon in words
        return fields
    try:
        reply = client.models(timeout=10)
        fields.recommendation = Recommendation.for_model(reply.models, fields.model, reply.default)
        note = daemon_link.models_note(settings, reply)
        if note:
            Gimp.message(f"Impasto: {note}")
        if fields.concepts.strip():   # a few-step LoRA in the concepts brings its own settings (docs/live.md)
            fields.recommendation = fields.recommendation.with_concepts(client.concepts(timeout=10).concepts,
                                                                        jobs.parse_concepts(fields.concepts))
    except Exception:  # noqa: BLE001
        pass
    finally:
        client.close()
    return fields


def run_job(request, title: str, interactive: bool) -> Outcome:
    """Send ``request`` and follow it to its outcome, with GIMP's progress (and a window when interactive)."""
    settings = load_settings()

    def connect(status):
        return daemon_link.connect(settings, status)

    Gimp.progress_init(title)
    try:
        if not interactive:
            def on_progress(ev):
                Gimp.progress_update(min(max(ev.step / max(ev.total, 1), 0.0), 1.0))

            flow = JobFlow(connect, request, on_status=Gimp.progress_set_text, on_progress=on_progress,
                           on_done=lambda outcome: None, on_warning=lambda text: Gimp.message(f"Impasto: {text}"))
            return flow.run_blocking(timeout=EVENT_TIMEOUT)
        return _run_job_interactive(connect, request, title)
    finally:
        Gimp.progress_end()


def _run_job_interactive(connect, request, title: str) -> Outcome:
    from . import gimp_ui

    box: List[Outcome] = []

    def post(fn, *args):
        def once():
            fn(*args)
            return False
        GLib.idle_add(once)

    def start(quit):
        holder = {}
        window = gimp_ui.ProgressWindow(title, on_cancel=lambda: holder["flow"].cancel())

        def done(outcome: Outcome):
            box.append(outcome)
            window.close()
            quit()

        holder["flow"] = JobFlow(connect, request, window.status, window.progress, done, post=post,
                                 on_warning=window.warn).start()

    gimp_ui.run_main_loop_until(start)
    return box[0]


def _finish(procedure, outcome: Outcome, place):
    """Turn an outcome into return values, calling ``place(result)`` for a result."""
    if outcome.cancelled:
        return _cancelled(procedure)
    if not outcome.ok:
        field = f" (field: {outcome.field})" if outcome.field else ""
        return _error(procedure, f"{outcome.error}{field}")
    for w in outcome.warnings:        # the ones the daemon did not send while the job ran
        Gimp.message(f"Impasto: {w}")
    image, layer = place(outcome.result)
    return _success(image, layer, outcome.result.seeds[0] if outcome.result.seeds else -1)


class _UndoGroup:
    def __init__(self, image):
        self.image = image

    def __enter__(self):
        self.image.undo_group_start()
        return self

    def __exit__(self, *exc):
        self.image.undo_group_end()
        return False


def _insert(image, plans, action: str, prompt: str, anchor, tag=None):
    """Add one new layer per plan above ``anchor`` (stacked in order), all in one undo group.

    ``tag(plan)``, when given, is the plan's A1111 parameters, kept with its layer for Save Result.
    """
    from . import gimp_save

    first = None
    with _UndoGroup(image):
        for plan in plans:
            layer = gp.new_layer(image, jobs.layer_name(action, prompt, plan.seed), plan.place, plan.rgba)
            gp.insert_above(image, layer, anchor)
            if plan.mask is not None:
                gp.add_mask(layer, plan.mask)
            if tag is not None:
                gimp_save.tag(layer, tag(plan))
            anchor = layer
            first = first or layer
    Gimp.displays_flush()
    return first


# --------------------------------------------------------------------------- Generate


def run_generate(procedure, image, drawables, config, interactive: bool):
    if interactive and not _dialog(procedure, config, "Impasto: Generate",
                                   [COMMON_FIELDS, SAMPLING_FIELDS, ["width", "height"], control_layer.FIELDS]):
        return _cancelled(procedure)
    fields = with_recommendation(jobs.JobFields.from_config(config.get_property))
    usable = image is not None and image.get_base_type() != Gimp.ImageBaseType.INDEXED
    size = (image.get_width(), image.get_height()) if usable else None
    width, height = geometry.generate_size(size, fields.width, fields.height)
    request = jobs.txt2img_request(fields, width, height,
                                   control=control_layer.read(config, Rect(0, 0, width, height)) if usable else None)
    outcome = run_job(request, "Impasto: generating", interactive)

    def place(result: Result):
        target = image if usable else None
        if target is None:
            target = Gimp.Image.new(width, height, Gimp.ImageBaseType.RGB)
        anchor = gp.source_layer(drawables) if usable else None
        first = _insert(target, results.generate_layers(result), "generate", fields.prompt, anchor,
                        save_result.tagger(request, result, (width, height)))
        if target is not image and interactive:
            Gimp.Display.new(target)
        return target, first

    return _finish(procedure, outcome, place)


# --------------------------------------------------------------------------- Refine / Inpaint


def _source(image, drawables, fields_merged: bool):
    """(layer or None, reader): the layer to work from and a function reading RGBA of a region."""
    layer = None if fields_merged else gp.source_layer(drawables)
    if layer is None:
        return None, lambda region: gp.read_visible(image, region)
    return layer, lambda region: gp.read_rgba(layer, region)


def _edit_form(procedure, image, config, interactive: bool, title: str):
    """The Refine / Inpaint dialog (when interactive), then (fields, sample merged?, selection or None); None: cancelled."""
    if interactive and not _dialog(procedure, config, title,
                                   [COMMON_FIELDS, ["strength"] + SAMPLING_FIELDS, EDIT_FIELDS[1:],
                                    control_layer.FIELDS]):
        return None
    return (with_recommendation(jobs.JobFields.from_config(config.get_property)),
            bool(config.get_property("sample-merged")),
            geometry.selection_rect(gp.selection_bounds(image)))


def run_refine(procedure, image, drawables, config, interactive: bool):
    form = _edit_form(procedure, image, config, interactive, "Impasto: Refine")
    if form is None:
        return _cancelled(procedure)
    fields, merged, selection = form
    if selection is not None:
        return _edit(procedure, image, drawables, fields, merged, selection, "refine", interactive,
                     lambda region: control_layer.read(config, region))
    layer, read = _source(image, drawables, merged)
    region = gp.drawable_rect(layer).intersect(gp.image_rect(image)) if layer else gp.image_rect(image)
    if region.empty:
        raise gp.GimpInputError("the layer lies outside the canvas: nothing to refine")
    source = read(region)
    request = jobs.img2img_request(fields, Image(region.width, region.height, source),
                                   control=control_layer.read(config, region))
    outcome = run_job(request, "Impasto: refining", interactive)

    def place(result: Result):
        plans = results.refine_layers(result, region, source if layer is not None else None)
        return image, _insert(image, plans, "refine", fields.prompt, layer,
                              save_result.tagger(request, result, (image.get_width(), image.get_height())))

    return _finish(procedure, outcome, place)


def run_inpaint(procedure, image, drawables, config, interactive: bool):
    form = _edit_form(procedure, image, config, interactive, "Impasto: Inpaint Selection")
    if form is None:
        return _cancelled(procedure)
    fields, merged, selection = form
    if selection is None:
        raise gp.GimpInputError("nothing is selected: select the area to inpaint first (Select > Rectangle, "
                                "Free Select, Fuzzy Select …)")
    return _edit(procedure, image, drawables, fields, merged, selection, "inpaint", interactive,
                 lambda region: control_layer.read(config, region))


def _edit(procedure, image, drawables, fields: jobs.JobFields, merged: bool, selection: Rect, action: str,
          interactive: bool, read_control=None):
    """The "only masked" loop shared by Refine (with a selection) and Inpaint."""
    canvas = gp.image_rect(image)
    selection = selection.intersect(canvas)
    if selection.empty:
        raise gp.GimpInputError("the selection lies outside the canvas")
    sent = jobs.edit_window(fields, canvas, selection, action)
    layer, read = _source(image, drawables, merged)
    source = read(sent)
    mask = gp.read_selection(image, sent)
    if pixels.mask_bbox(mask, sent.width, sent.height) is None:
        raise gp.GimpInputError("the selection is empty (fully transparent): select the area to repaint")
    request = jobs.edit_request(fields, Image(sent.width, sent.height, source),
                                Image(sent.width, sent.height, mask, "gray8"), canvas=canvas, sent=sent,
                                action=action, control=read_control(sent) if read_control else None)
    outcome = run_job(request, f"Impasto: {action}", interactive)

    def place(result: Result):
        plans = results.edit_layers(result, sent, mask)
        return image, _insert(image, plans, action, fields.prompt, layer,
                              save_result.tagger(request, result, (image.get_width(), image.get_height())))

    return _finish(procedure, outcome, place)


# --------------------------------------------------------------------------- Save Result


def run_save(procedure, image, drawables, config, interactive: bool):
    from . import gimp_save, gimp_ui

    if interactive and not gimp_ui.run_procedure_dialog(procedure, config, "Impasto: Save Result", [["file"]]):
        return _cancelled(procedure)
    chosen = config.get_property("file")
    try:
        path = gimp_save.save(image, drawables, chosen.get_path() if chosen is not None else "")
    except save_result.SaveError as exc:
        return _error(procedure, str(exc))
    if interactive:
        Gimp.message(f"Impasto: saved {path} with its parameters")
    return procedure.new_return_values(Gimp.PDBStatusType.SUCCESS, None)


# --------------------------------------------------------------------------- Repaint Now (live painting)


def run_repaint_now(procedure, image, drawables, config, interactive: bool):
    """The live job now, no dialog; the picture replaces the 'Impasto live' layer (one undo group)."""
    fields = with_recommendation(jobs.JobFields.from_config(config.get_property))
    old = [layer for layer in image.get_layers() if layer.get_name() == live.LIVE_LAYER]
    for layer in old:                    # never repaint the last repaint
        layer.set_visible(False)
    try:
        plan, sent, mask = live.repaint_request(
            fields, gp.image_rect(image), geometry.selection_rect(gp.selection_bounds(image)),
            live.session_seed(fields.seed, image.get_id()), lambda r: gp.read_visible(image, r),
            lambda r: gp.read_selection(image, r))
    finally:
        for layer in old:
            layer.set_visible(True)
    plan.request.job = f"gimp-live-{image.get_id()}-{GLib.get_monotonic_time()}"
    outcome = run_job(plan.request, "Impasto: repainting", False)

    def place(result: Result):
        lplans = (results.edit_layers(result, sent, mask) if mask is not None
                  else results.refine_layers(result, sent, None))
        with _UndoGroup(image):
            for layer in old:
                image.remove_layer(layer)
            first = None
            for lp in lplans[:1]:
                first = gp.new_layer(image, live.LIVE_LAYER, lp.place, lp.rgba)
                gp.insert_above(image, first, None)
                if lp.mask is not None:
                    gp.add_mask(first, lp.mask)
        Gimp.displays_flush()
        return image, first

    return _finish(procedure, outcome, place)


# --------------------------------------------------------------------------- Settings


def run_settings(procedure, config, interactive: bool):
    path = plugin_settings.settings_path(Gimp.directory())
    if interactive:
        current = load_settings()
        config.set_property("endpoint", current.endpoint)
        config.set_property("auto-start", current.auto_start)
        config.set_property("daemon-command", current.daemon_command)
        config.set_property("transport", current.transport)
        from . import gimp_ui

        if not gimp_ui.run_procedure_dialog(procedure, config, "Impasto: Settings",
                                            [["endpoint", "auto-start", "daemon-command", "transport"]]):
            return _cancelled(procedure)
    old = load_settings()
    new = plugin_settings.PluginSettings(
        endpoint=(config.get_property("endpoint") or "").strip(),
        auto_start=bool(config.get_property("auto-start")),
        daemon_command=(config.get_property("daemon-command") or "").strip(),
        transport=config.get_property("transport") or "auto",
        start_timeout=old.start_timeout,
    )
    plugin_settings.save(new, path)
    if interactive:
        quick = plugin_settings.PluginSettings(**{**new.__dict__, "auto_start": False})
        try:
            client = daemon_link.connect(quick, ping_timeout=1.5)
            try:
                st = client.status()
                Gimp.message(f"Impasto: connected to {client.endpoint} ({daemon_link.python_info()}); device "
                             f"{st.device}, default model {st.default_model or '(none installed)'}")
            finally:
                client.close()
        except ProtocolError as exc:
            Gimp.message(f"Impasto settings saved. {exc.message}")
    return procedure.new_return_values(Gimp.PDBStatusType.SUCCESS, None)


def main() -> None:
    Gimp.main(ImpastoPlugIn.__gtype__, sys.argv)
