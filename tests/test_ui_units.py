"""The app's tab functions without a browser: zip uploads, manifests, progress, fix, plans, history.

Run: HF_HUB_OFFLINE=1 GRADIO_ANALYTICS_ENABLED=False .venv/bin/python -m pytest -q tests/test_ui_units.py
"""

from __future__ import annotations

import json
import shutil
import zipfile
from pathlib import Path

import pytest

from core.progress import ProgressEvent
from tests.test_filesource import manifest_of
from wan_ui import common
from wan_ui.generate import ProgressView, stage_of
from wan_ui.model_check import check_manifest, check_zip
from wan_ui.render import render_plan, render_progress, render_result


@pytest.fixture(scope="module")
def demo_t2v(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from core.demo import write_demo_model
    out = tmp_path_factory.getbasetemp() / "wan_demo_models"
    return write_demo_model("wan21_t2v", out)


# --- .zip uploads ---------------------------------------------------------------------------

# The unpacking itself (zip-slip, links, bombs, limits) is tested in tests/test_archive.py.

def test_an_unsafe_zip_upload_is_a_sentence_and_leaves_nothing(tmp_path: Path, app_config) -> None:
    archive = tmp_path / "bad.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("model/config.json", "{}")
        zf.writestr("../evil.txt", "x")
    html, data = check_zip(str(archive))
    assert data["error"] == "The .zip contains a path that points outside its folder: '../evil.txt'."
    assert "unsafe to unpack" in data["remedy"] and "points outside its folder" in html
    assert not (tmp_path / "evil.txt").exists()


def test_zip_of_a_demo_model_is_checked(tmp_path: Path, demo_t2v: Path, app_config) -> None:
    archive = Path(shutil.make_archive(str(tmp_path / "wan21_t2v"), "zip", demo_t2v.parent, demo_t2v.name))
    html, data = check_zip(str(archive))
    assert data["source"] == "zip" and data["architecture_type"] == "wan_t2v" and data["loadable"]
    assert "Wan 2.1 T2V — diffusers layout — ready to load" in html
    assert "Unpacked from wan21_t2v.zip" in html
    html, data = check_zip(str(tmp_path / "missing.zip"))
    assert data["error"] and "Traceback" not in html.split("<details")[0]


# --- a dropped folder's manifest -------------------------------------------------------------

def test_manifest_of_a_sparse_full_size_model(tmp_path: Path, app_config) -> None:
    from tests.sparse.diffusers_layout import write_diffusers_layout
    from tests.sparse.specs import BY_KEY

    folder = write_diffusers_layout(BY_KEY["wan22_t2v_a14b"], tmp_path / "Wan2.2-T2V-A14B-Diffusers")
    manifest = manifest_of(folder)
    manifest["browser"] = {"sent_bytes": 600_000, "total_bytes": 126_000_000_000, "files": 43}
    text = json.dumps(manifest)
    html, data = check_manifest(text)
    assert data["source"] == "manifest" and data["received_bytes"] == len(text) < 2_000_000
    assert data["registry_id"] == "Wan-AI/Wan2.2-T2V-A14B-Diffusers" and data["loadable"]
    assert "Wan 2.2 T2V A14B (two experts) — diffusers layout — ready to load" in html
    assert "no weights were uploaded" in html
    assert "On this computer at the model&#x27;s default settings" in html  # the fit card
    assert "local_path" not in data and "data-wc-act" not in html        # not on this computer: no Fix button
    (folder / "model_index.json").unlink()                                # broken, and not found: how to get its path
    html, data = check_manifest(json.dumps(manifest_of(folder)))
    assert "Copy as path" in html and "data-wc-act" not in html
    from wan_ui import common
    common.remember(str(folder))          # a folder checked by path before: the drop is found by its files
    html, data = check_manifest(json.dumps(manifest_of(folder)))
    assert data["local_path"] == str(folder) and f'data-wc-act="fix" data-wc-path="{folder}"' in html
    # what Fix cannot repair here (weights to download) comes first in the plan, its command with a Copy button
    from wan_ui.fix import button_states, plan_fix
    for weights in (folder / "vae").glob("*.safetensors"):
        weights.unlink()
    plan_html, _before, _plan, planned = plan_fix(str(folder))
    command = f'hf download Wan-AI/Wan2.2-T2V-A14B-Diffusers --include "vae/*" --local-dir {folder}'
    assert 'data-wc-act="copy" data-wc-path="' + command.replace('"', "&quot;") + '">Copy</button>' in plan_html
    assert plan_html.index("Fix cannot repair this here: one download is needed") < plan_html.index("1 change to make")
    apply, undo, _fold = button_states(str(folder), "", planned)
    assert apply["interactive"] is True and undo["visible"] is False     # a change to apply; no backup yet


@pytest.mark.parametrize("text, expected", [
    ("{not json", "not valid JSON"),
    ('{"files": 3}', "must be an object with a list of files"),
])
def test_bad_manifests_give_sentences(text: str, expected: str, app_config) -> None:
    html, data = check_manifest(text)
    assert expected in data["error"] and expected in html.replace("&#x27;", "'")


def test_empty_manifest_gives_the_prompt(app_config) -> None:
    html, data = check_manifest("")
    assert data == {} and "Type or paste" in html


# --- live progress --------------------------------------------------------------------------

def test_progress_view_reads_the_event_fields() -> None:
    view = ProgressView()
    view.update(ProgressEvent("load", "Loading transformer (WanTransformer3DModel, 57.2 GB)", 20.0))
    assert view.stage == "Loading the model" and view.step is None
    # the message is free text: the panel's numbers come from the fields, not from parsing it
    view.update(ProgressEvent("denoise", "anything", 42.0, step=3, steps=40, expert="high-noise",
                              seconds_per_step=12.5, eta_seconds=475.0))
    assert (view.stage, view.step, view.steps, view.expert) == ("Denoising", 3, 40, "high-noise expert")
    assert (view.seconds_per_step, view.eta) == ("12.50", "7m 55s")
    view.update(ProgressEvent("denoise", "Step 4/4", 90.0, step=4, steps=4, seconds_per_step=0.05, eta_seconds=0))
    assert view.expert == "" and view.step == 4 and view.eta == "0s"
    view.update(ProgressEvent("decode", "Decoding the video (VAE)", 91.0))
    assert view.stage == "Decoding the video (VAE)" and view.step == 4  # the step facts stay
    html = render_progress(view)
    assert 'aria-valuenow="91"' in html and "Step <b>4</b> of <b>4</b>" in html
    view.update(ProgressEvent("load", "Loading vae", 95.0))
    assert view.step is None                                            # a new load: no stale step
    view.update("Copying transformer/1.safetensors", 50.0, "Applying the fix")   # a plain message still shows
    assert view.stage == "Applying the fix" and view.percent == 50.0
    assert stage_of("Encoding video: frame 3 of 9") == "Writing the MP4"
    view.update(ProgressEvent("write", "<script>x</script>", 99.0))
    assert "<script>" not in render_progress(view)


def test_result_cards() -> None:
    failed = render_result({"success": False, "errors": ["The prompt is empty: <b>describe</b> it."],
                            "details": "Traceback (most recent call last): ..."})
    assert "The video could not be made." in failed and "&lt;b&gt;describe&lt;/b&gt;" in failed
    assert "<details" in failed and "Traceback" not in failed.split("<details")[0]
    assert "Cancelled after the current step" in render_result({"cancelled": True})
    ok = render_result({"success": True, "output_path": "/o/v.mp4", "width": 64, "height": 64, "frames": 9,
                        "fps": 16, "seconds_per_step": 0.25, "seconds": {"total": 3.0}, "peak_ram_mb": 600,
                        "settings": {"prompt": "a cat", "num_inference_steps": 4, "seed": 7, "model_path": "/models/m"}})
    assert "m · 64x64 · 9 frames · 4 steps · seed 7 · 16 fps · 0.25 s/step · 3.0 s in all · peak RAM 600 MB" in ok
    assert "Choose a Wan model" in render_plan(None)


# --- the Generate form ------------------------------------------------------------------------

def test_select_model_shows_the_fields_each_model_needs(tmp_path: Path, app_config) -> None:
    from core.demo import write_demo_model
    from wan_ui.generate import select_model, update_plan

    out = tmp_path.parent / "wan_demo_models"
    a14b = write_demo_model("wan22_t2v_a14b", out)
    ti2v = write_demo_model("wan22_ti2v_5b", out)
    fields = select_model(str(a14b))
    info, size, width, height, frames, steps, guidance, guidance_2, image, _last, image_row = fields
    assert "Wan 2.2 T2V (two experts)" in info and "✓ fits" in info
    assert (width, height, frames["value"], steps) == (1280, 720, 81, 40)    # the registry's A14B defaults
    assert ("1280x720 (default)", "1280x720") in size["choices"] and size["value"] == "1280x720"
    assert size["choices"][-1] == ("Quick test: 16x16, 9 frames, 4 steps", "quick")   # after the model's own
    assert frames["info"] == "81 frames = 5.1 s at 16 fps"
    assert guidance_2["visible"] is True and image["visible"] is False
    assert guidance["label"] == "Guidance (high-noise expert)"
    fields = select_model(str(ti2v))
    assert fields[1]["choices"][-1] == ("Quick test: 32x32, 9 frames, 4 steps", "quick")   # the Wan2.2 VAE: x32
    assert fields[4]["info"] == "121 frames = 5.0 s at 24 fps"
    assert fields[7]["visible"] is False and fields[8]["visible"] is True and fields[10]["visible"] is True
    assert "optional" in fields[8]["label"]
    plan = update_plan(str(a14b), 64, 64, 9, 4, 5.0, "fp32", "auto", "on", "auto")
    assert "✓ Fits" in plan and "64x64, 9 frames, 4 steps" in plan
    assert "precision=fp32, your setting" in plan and "vae_tiling=True, your setting" in plan
    missing = select_model(str(tmp_path / "nope"))[0]
    assert "Not found" in missing


def test_a_chosen_model_fills_only_the_fields_not_touched(tmp_path: Path, app_config) -> None:
    import gradio as gr

    from core.demo import write_demo_model
    from wan_ui.form_defaults import START, clip_words, missing_words
    from wan_ui.generate import apply_size, form_ready, select_new_model
    from wan_ui.queue_panel import PageState, refused

    SKIP = gr.skip()
    a14b = write_demo_model("wan22_t2v_a14b", tmp_path.parent / "wan_demo_models")
    # steps typed (50 -> 8) before the model was chosen: they stay; the untouched fields take its defaults
    page = refused(PageState())                       # "Choose a model first" is on the panel
    out = select_new_model(str(a14b), "", dict(START), page, None, 832, 480, 81, 8, 5.0, 3.0)
    _info, size, width, height, frames, steps, guidance, guidance_2 = out[:8]
    selected, filled, fps, page, progress = out[11:]
    assert (width, height, frames["value"], guidance["value"], guidance_2["value"]) == (1280, 720, 81, 4.0, 3.0)
    assert steps == SKIP                                                    # typed: it stays
    assert filled == {**START, "width": 1280, "height": 720, "guidance": 4.0}
    assert (selected, fps, page.refusal, progress) == (str(a14b), 16, False, "")           # the refusal went
    # the same model again (a blur after Enter) changes nothing
    again = select_new_model(str(a14b), selected, filled, page, None, 64, 64, 9, 8, 4.0, 3.0)
    assert again[11:13] == (selected, filled)
    # another model: a width typed since stays (64), the untouched guidance follows the model
    other = write_demo_model("wan21_t2v", tmp_path.parent / "wan_demo_models")
    out = select_new_model(str(other), selected, filled, page, "1280x720", 64, 720, 81, 8, 4.0, 3.0)
    assert out[2] == SKIP                                        # the width typed since stays
    assert out[3] == 480 and out[6]["value"] == 5.0 and out[1]["value"] is None   # 64x480 is no preset
    # the Quick test preset: the smallest size this model accepts, few frames and steps
    assert apply_size("quick", str(other)) == (16, 16, 9, 4)
    assert apply_size("832x480", str(other))[:2] == (832, 480)
    # with the Quick test chosen, another model takes its own smallest size (x32 with the Wan2.2 VAE)
    ti2v = write_demo_model("wan22_ti2v_5b", tmp_path.parent / "wan_demo_models")
    out = select_new_model(str(ti2v), str(other), out[12], page, "quick", 16, 16, 9, 4, 5.0, 5.0)
    assert (out[1]["value"], out[2], out[3], out[4]["value"], out[5]) == ("quick", 32, 32, 9, 4)
    assert out[4]["info"] == "9 frames = 0.4 s at 24 fps"
    assert clip_words(17, 16) == "17 frames = 1.1 s at 16 fps" and "use 9 or 13" in clip_words(10, 16)
    # Generate waits for a model and a prompt, and says which is missing
    assert [u["interactive"] for u in form_ready("", "a fox")[:2]] == [False, False]
    assert form_ready(str(other), "")[2] == missing_words(str(other), "") == \
        "Write a prompt to generate: what the video shows."
    assert [u["interactive"] for u in form_ready(str(other), "a fox")[:2]] == [True, True]


def test_the_queue_list_offers_what_each_state_allows(tmp_path: Path) -> None:
    from core.jobs.store import JobStore
    from wan_ui.queue_panel import render_queue

    store = JobStore(tmp_path / "history.db")
    ids = [store.add("/models/wan21_t2v", {"prompt": f"clip {n}"}, label=f"clip {n} · 64x64") for n in range(3)]
    store.claim_next("someone")
    store.finish(ids[0], "failed", error="Ran out of memory while generating: this needs about 9.5 GB of RAM.")
    html = render_queue(store.list(), followed=ids[1])
    rows = {int(r.split('data-job="')[1].split('"')[0]): r for r in html.split("<tr ")[1:]}
    assert 'data-state="failed"' in rows[ids[0]] and "Re-queue" in rows[ids[0]] and "9.5 GB" in rows[ids[0]]
    assert 'data-act="up"' in rows[ids[1]] and "Remove" in rows[ids[1]] and "wc-q-followed" in rows[ids[1]]
    assert "<script" not in html and "clip 2 · 64x64" in html
    assert "No jobs yet" in render_queue([])


def test_an_ended_or_cancelling_job_shows_no_eta(app_config) -> None:
    from core.jobs.store import Job
    from wan_ui.queue_panel import job_panel

    event = {"stage": "denoise", "message": "Step 3/40 · 1.00 s/step · ETA 37s", "percent": 20.0, "step": 3,
             "steps": 40, "expert": None, "seconds_per_step": 1.0, "eta_seconds": 37.0}
    running = Job(id=10_001, state="running", position=1, created_at=0.0, model="/m", event=event,
                  started_at=1.0, cancel_requested=True)
    html = job_panel(running)
    assert 'data-state="cancelling"' in html and "Cancelling after the current step…" in html
    assert "Step <b>3</b> of <b>40</b>" in html and "<li>ETA" not in html
    ended = Job(id=10_002, state="cancelled", position=2, created_at=0.0, model="/m", event=event, started_at=1.0,
                finished_at=5.0)
    html = job_panel(ended)
    assert 'data-state="cancelled"' in html and "<li>ETA" not in html and "Cancelled after the current step" in html


def test_generation_problems_are_sentences_before_any_loading(tmp_path: Path, demo_t2v: Path, app_config) -> None:
    from wan_ui import generate

    *_, last = generate.generate(str(demo_t2v), "", "", 70, 64, 10, 4, 5, None, 1, None, None,
                                 "auto", "auto", "auto", "auto")
    html, video, result = last
    assert not result["success"] and video is None
    errors = " ".join(result["errors"])
    assert "The prompt is empty" in errors and "multiple of 16" in errors and "4k+1" in errors
    *_, last = generate.generate(str(tmp_path / "gone"), "a cat", "", 64, 64, 9, 4, 5, None, 1, None, None,
                                 "auto", "auto", "auto", "auto")
    assert last[2]["errors"][0].startswith("Not found")


# --- the Fix tab ------------------------------------------------------------------------------

def test_fix_plan_apply_and_undo(tmp_path: Path, demo_t2v: Path, app_config) -> None:
    from wan_ui.fix import apply_fix, plan_fix, undo_last

    broken = tmp_path / "broken"
    shutil.copytree(demo_t2v, broken)
    (broken / "model_index.json").unlink()
    html, before, data, plan = plan_fix(str(broken))
    assert "1 change to make in place" in html and "☐" in html and "writes model_index.json" in html
    assert "1 problem to fix" in before and data["actions"][0]["code"] == "rebuild_model_index"
    updates = list(apply_fix(str(broken), "", plan))
    progress, plan_html, before, after, result, state = updates[-1]
    assert result["ok"] and Path(result["backup_dir"]).is_dir()
    assert "ready to load" in after and "✓" in plan_html and "Fixed: the model is ready to load." in progress
    assert "1 problem to fix" in before and state.applied
    assert (broken / "model_index.json").is_file()
    # a second press: said plainly, not a red "the model folder changed after this plan was made"
    progress, _plan_html, before, after, result, state = list(apply_fix(str(broken), "", state))[-1]
    assert "Already applied; nothing left to do." in progress and result["already_applied"]
    assert "changed after this plan" not in progress and "Cannot" not in progress
    assert "ready to load" in before and state.applied
    html, after, data = undo_last(str(broken))
    assert "Undone" in html and not (broken / "model_index.json").exists()
    html, _before, data, plan = plan_fix(str(tmp_path / "nowhere"))
    assert plan is None and data["error"].startswith("Not found")
    assert "Cannot fix" in html and "Cannot check" not in html and "<details" not in html


def test_apply_carries_out_only_the_plan_on_screen(tmp_path: Path, demo_t2v: Path, app_config) -> None:
    from wan_ui.fix import apply_fix, plan_fix

    a, b = tmp_path / "a", tmp_path / "b"
    for folder in (a, b):
        shutil.copytree(demo_t2v, folder)
        (folder / "model_index.json").unlink()
    # Apply without Plan: the plan is shown, nothing changes; a second press carries it out
    updates = list(apply_fix(str(a), "", None))
    progress, plan_html, before, after, result, state = updates[-1]
    assert len(updates) == 1 and not (a / "model_index.json").exists()
    assert f"This is the plan for {a}; press Apply to carry it out." in progress
    assert "1 change to make in place" in plan_html and str(a) in before and "1 problem to fix" in before
    assert result["planned_only"] and not state.applied
    *_, (progress, _p, before, after, result, state) = apply_fix(str(a), "", state)
    assert result["ok"] and (a / "model_index.json").is_file() and "ready to load" in after
    # planned for B, then the box changed to A (already fixed) and B: A's plan is never run on B
    _html, _before, _data, planned_b = plan_fix(str(b))
    progress, plan_html, before, *_ = list(apply_fix(str(a), "", planned_b))[-1]
    assert "Nothing to apply" in progress and str(a) in before and not (b / "model_index.json").exists()
    _html, _before, _data, planned_a = plan_fix(str(a))
    progress, plan_html, before, _after, result, state = list(apply_fix(str(b), "", planned_a))[-1]
    assert f"This is the plan for {b}" in progress and str(b) in before and str(b) in plan_html
    assert not (b / "model_index.json").exists() and state.path == str(b)


def test_apply_respects_a_changed_conversion_output_folder(tmp_path: Path, app_config) -> None:
    from tests.sparse.original_layout import write_original_layout
    from tests.sparse.specs import BY_KEY
    from wan_ui.fix import apply_fix, plan_fix

    source = write_original_layout(BY_KEY["wan21_t2v_1_3b"], tmp_path / "Wan2.1-T2V-1.3B")
    _html, _before, _data, planned = plan_fix(str(source), "")
    assert planned.plan.conversion.target == str(tmp_path / "Wan2.1-T2V-1.3B-diffusers")
    elsewhere = tmp_path / "converted" / "mine"
    assert planned.matches(str(source), "") and not planned.matches(str(source), str(elsewhere))
    updates = list(apply_fix(str(source), str(elsewhere), planned))
    progress, plan_html, before, _after, result, state = updates[-1]
    assert len(updates) == 1 and "press Apply to carry it out" in progress and result["planned_only"]
    assert str(elsewhere) in plan_html and state.out == str(elsewhere)
    assert state.plan.conversion.target == str(elsewhere) and "Wan 2.1" in before
    assert not elsewhere.exists() and not (tmp_path / "Wan2.1-T2V-1.3B-diffusers").exists()


def test_fix_and_undo_messages_fit_the_situation(tmp_path: Path, demo_t2v: Path, app_config) -> None:
    from wan_ui.fix import apply_fix, plan_fix, undo_last

    for html in (undo_last("")[0], undo_last("  ")[0], next(apply_fix("", "", None))[0], plan_fix("")[0]):
        assert "wc-prompt" in html and "Type the path" in html
        assert "Cannot" not in html and "<details" not in html and " .." not in html
    clean = tmp_path / "clean"
    shutil.copytree(demo_t2v, clean)
    html, _after, data = undo_last(str(clean))
    assert f"There is no fix to undo in {clean}" in html and data["nothing_to_undo"]
    assert "wc-card wc-bad" not in html and "Cannot" not in html and "<details" not in html
    missing = tmp_path / "nowhere"
    html, _after, data = undo_last(str(missing))
    assert f"Not found: {missing}" in html and "Cannot undo" in html
    assert ".wan_compat_backup" not in html and "<details" not in html and not missing.exists()
    html = next(apply_fix(str(missing), "", None))[0]
    assert f"Not found: {missing}" in html and "Cannot fix" in html and "<details" not in html


def test_open_in_fix_and_badges_only_for_a_wan_model(tmp_path: Path, demo_t2v: Path, app_config) -> None:
    import json as _json

    from core.check.detect import inspect
    from core.fix import plan as fix_plan
    from wan_ui.fix import render_fix_plan
    from wan_ui.model_check import after_check, check_path

    sd = tmp_path / "sd"
    sd.mkdir()
    (sd / "model_index.json").write_text(_json.dumps({"_class_name": "StableDiffusionPipeline",
                                                      "unet": ["diffusers", "UNet2DConditionModel"]}))
    junk = tmp_path / "junk"
    junk.mkdir()
    (junk / "notes.txt").write_text("hello")
    shelf = tmp_path / "shelf"
    shutil.copytree(demo_t2v, shelf / "one")
    shutil.copytree(demo_t2v, shelf / "two")
    (shelf / "two" / "model_index.json").unlink()
    broken = tmp_path / "broken"
    shutil.copytree(demo_t2v, broken)
    (broken / "model_index.json").unlink()
    headline_fix = '<button type="button" class="wc-act wc-act-primary wc-offer-button" data-wc-act="fix"'
    for folder, badge in ((sd, "Not a Wan model"), (junk, "Not a model"), (shelf, None), (broken, None)):
        html, data = check_path(str(folder))
        assert after_check(data)["interactive"], folder                  # the JSON download
        assert (headline_fix in html) is (folder == broken), folder       # "Fix", right under the headline
        if badge is not None:
            assert badge in html and "Needs fixing" not in html and 'data-wc-act="fix"' not in html, folder
            plan_html = render_fix_plan(fix_plan(inspect(str(folder))))
            assert "Nothing to do" not in plan_html and "Note" in plan_html, folder
        elif folder == broken:
            assert "✗ Needs fixing" in html and "Fix can repair this here: 1 change" in html
            assert "Press Fix to rebuild it" in html and "python -m core" not in html   # the app's words
    # a folder of several models: the list first (Open and Open in Fix each), the full reports folded;
    # Fix lists only the model that needs fixing
    html, _data = check_path(str(shelf))
    assert html.count('data-wc-act="check"') == 2 and html.count('data-wc-act="fix"') == 2
    assert html.index("wc-models") < html.index("Full report of each model (2)")
    plan_html = render_fix_plan(fix_plan(inspect(str(shelf))))
    assert "1 of the 2 models in this folder needs fixing" in plan_html
    assert f'data-wc-path="{shelf / "two"}"' in plan_html and f'data-wc-path="{shelf / "one"}"' not in plan_html


# --- cancel, the memory plan card, results -------------------------------------------------------

def test_cancel_with_nothing_running_says_so(app_config) -> None:
    from wan_ui import generate

    assert generate._cancel_clicked() == "Nothing is being generated."


def test_the_cancel_event_has_an_output(app_config) -> None:
    import app as app_module

    demo = app_module.build_ui(config=app_config)
    cancel = [f for f in demo.fns.values() if f.api_name == "cancel"]
    assert len(cancel) == 1 and len(cancel[0].outputs) == 1      # no "returned too many output values"
    assert cancel[0].outputs[0].elem_id == "wc-gen-cancel-note"
    speed = [b for b in demo.blocks.values() if getattr(b, "elem_id", None) == "wc-perf-speed"]
    assert speed and speed[0].x_axis_format is None               # Vega: "invalid format" on empty data


def test_the_plan_card_shows_what_generate_would_refuse(tmp_path: Path, app_config) -> None:
    from core.demo import write_demo_model
    from wan_ui.generate import update_plan

    a14b = write_demo_model("wan22_t2v_a14b", tmp_path.parent / "wan_demo_models")
    html = update_plan(str(a14b), 100, 64, 10, 4, 5.0, "auto", "auto", "auto", "auto")
    assert "Check these settings" in html and "Fits" not in html
    assert "multiple of 16" in html and "4k+1" in html and "prompt" not in html
    html = update_plan(str(a14b), 64, 64, 9, 4, 5.0, "auto", "auto", "auto", "auto")
    assert "✓ Fits" in html and "<details" in html and html.index("64x64") < html.index("<details")


def test_a_gallery_pick_shows_no_made_up_memory_figure(tmp_path: Path, app_config) -> None:
    from wan_ui.generate import show_earlier

    html = render_result({"success": True, "output_path": "/o/v.mp4", "width": 64, "height": 64, "frames": 9,
                          "fps": 16, "settings": {"prompt": "a cat"}})
    assert "peak" not in html and "0.00 MB" not in html
    video = Path(app_config.outputs_dir) / "v.mp4"
    video.parent.mkdir(parents=True, exist_ok=True)
    video.write_bytes(b"")
    video.with_suffix(".json").write_text(json.dumps({"prompt": "a cat", "width": 64, "height": 64,
                                                      "num_frames": 9, "fps": 16, "seed": 1}))

    class Pick:
        index = 0
    _video, _result, html = show_earlier([str(video)], Pick())
    assert "a cat" in html and "peak" not in html and "MB" not in html


def test_fix_tab_converts_an_original_layout_with_progress_per_tensor(tmp_path: Path, app_config,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("torch")
    from core.fix import convert
    from tests.test_convert import write_tiny_original
    from wan_ui.fix import apply_fix, plan_fix

    # A tiny conversion can finish between two refreshes of the page; the conversion's own
    # test hook holds it for a second after its third tensor, so that one refresh is sure
    # to fall while it runs.
    monkeypatch.setenv(convert.PAUSE_ENV, "3")
    monkeypatch.setenv(convert.PAUSE_SECONDS_ENV, "1")

    source = tmp_path / "tiny-t2v21"
    write_tiny_original("t2v21", source)
    html, _before, data, plan = plan_fix(str(source))
    target = tmp_path / "tiny-t2v21-diffusers"
    for expected in ("Convert into a new folder", "Output folder", str(target), "Disk space needed",
                     "Free on that disk", "✓ enough", "Convert the transformer"):
        assert expected in html, expected
    assert data["conversion"] is not None and not target.exists()
    updates = list(apply_fix(str(source), "", plan))
    assert any("transformer: blocks.0." in u[0] for u in updates[:-1])      # per tensor, while it runs
    progress, _plan, _before, after, result, state = updates[-1]
    assert result["ok"] and result["output_path"] == str(target) and "ready to load" in after
    assert "Converted model:" in progress
    progress, *_ = list(apply_fix(str(source), "", state))[-1]     # the target exists now: not an error
    assert "Already applied; nothing left to do." in progress and "Cannot" not in progress


# --- recent paths, overrides, the picker ---------------------------------------------------------

def test_recent_paths_are_kept_newest_first(tmp_path: Path, app_config) -> None:
    for i in range(12):
        common.remember(str(tmp_path / f"m{i}"))
    common.remember(str(tmp_path / "m3"))
    recent = common.recent_paths()
    assert recent[0] == str(tmp_path / "m3") and len(recent) == common.RECENT_MAX
    assert common.context().recent_file.parent == Path(app_config.history_db).parent
    common.context().recent_file.write_text("{broken")
    assert common.recent_paths() == []


def test_overrides_from_the_advanced_fold() -> None:
    assert common.overrides_from("auto", "auto", "auto", "auto") == {}
    assert common.overrides_from("bf16", "group", "on", "off") == {
        "precision": "bf16", "offload": "group", "vae_tiling": True, "text_encoder_on_cpu": False}


def test_model_picker_lists_wan_models_with_fit_badges(tmp_path: Path, demo_t2v: Path, app_config) -> None:
    shutil.copytree(demo_t2v, Path(app_config.models_dir) / "wan21_t2v")
    (Path(app_config.models_dir) / "notes").mkdir()
    choices = common.model_choices()
    assert [Path(c.path).name for c in choices] == ["wan21_t2v"]
    assert "Wan 2.1 T2V · T2V · ✓ fits" in choices[0].label


# --- the history --------------------------------------------------------------------------------

def test_history_view_reads_the_monitor(app_config) -> None:
    from core.monitor import get_performance_monitor
    from wan_ui.performance import history_view, refresh

    monitor = get_performance_monitor()
    assert monitor.db_path == Path(app_config.history_db)
    for seconds in (0.5, 0.52, 0.49):
        with monitor.track("generation", model="demo", width=64, height=64, frames=9, steps=4) as op:
            op.set(seconds_per_step=seconds)
    view = history_view("generation")
    assert len(view["rows"]) == 3 and view["rows"][0]["model"] == "demo" and view["rows"][0]["result"] == "ok"
    note, table, speed, memory, alerts, effect, csv, effect_note, plot_note, _presets = refresh("all")
    assert "3 run(s) recorded" in note and len(table) == 3 and len(speed["value"]) == 3
    assert speed["visible"] and memory["visible"] and not plot_note["visible"] and speed["x_axis_format"]
    assert "Not enough runs to compare yet" in alerts and "No regressions" not in alerts
    assert Path(csv["value"]).read_text().count("\n") == 4     # header + 3 runs
    for seconds in (0.5, 0.51, 0.5):
        with monitor.track("generation", model="demo", width=64, height=64, frames=9, steps=4) as op:
            op.set(seconds_per_step=seconds)
    alerts = refresh("all")[4]
    assert "No slowdowns found" in alerts and "Not enough" not in alerts


def test_an_empty_history_says_so(app_config) -> None:
    from wan_ui.performance import refresh

    note, table, speed, memory, alerts, effect, csv, effect_note, plot_note, _presets = refresh("all")
    assert "No runs recorded yet" in note and "No runs recorded yet" in alerts
    assert "No regressions" not in alerts and "as fast and as lean" not in alerts
    assert speed["visible"] is False and memory["visible"] is False and speed["x_axis_format"] is None
    assert plot_note["visible"] and "No generations recorded yet" in plot_note["value"]


def test_a_slowdown_is_shown_with_what_changed(app_config) -> None:
    from core.monitor import get_performance_monitor
    from wan_ui.performance import refresh

    monitor = get_performance_monitor()
    plan = {"device": "cpu", "placement": "all_on_device", "precision": "fp32", "vae_tiling": False}
    for i, seconds in enumerate([0.50, 0.51, 0.49, 0.50, 0.52, 1.10, 1.12, 1.08]):
        slow = i >= 5
        with monitor.track("generation", model="demo", width=64, height=64, frames=9, steps=4,
                           plan=dict(plan, vae_tiling=slow)) as op:
            op.set(seconds_per_step=seconds)
    assert monitor.detect_performance_regressions()
    _note, _table, _speed, _memory, alerts, *_ = refresh("generation")
    assert "slower" in alerts and "seconds per step · demo" in alerts
    assert "What changed" in alerts and "plan.vae_tiling" in alerts and "False → True" in alerts



def test_a_lone_transformer_is_a_part_and_fix_offers_to_assemble(tmp_path: Path, demo_t2v: Path, app_config) -> None:
    from wan_ui.fix import button_states, plan_assembly, plan_fix
    from wan_ui.model_check import check_path

    lone = tmp_path / "wan_transformer.safetensors"
    shutil.copy(next((demo_t2v / "transformer").glob("*.safetensors")), lone)
    html, _data = check_path(str(lone))
    assert "Part of a model" in html and "Not recognised" not in html
    assert f'data-wc-act="fix" data-wc-path="{lone}">Assemble in Fix</button>' in html
    plan_html, _before, _data, planned = plan_fix(str(lone))
    assert "Only the transformer: assemble it" in plan_html and "python -m core" not in plan_html
    assert button_states(str(lone), "", planned)[2]["open"] is True            # the assembly fold opens
    plan_html, _before, data, planned = plan_assembly(str(lone), "", "", "", "")
    assert "Name the VAE and the text encoder to assemble a model." in plan_html and planned is None
    vae = next((demo_t2v / "vae").glob("*.safetensors"))
    text_encoder = next((demo_t2v / "text_encoder").glob("*.safetensors"))
    plan_html, _before, data, planned = plan_assembly(str(lone), "", str(vae), str(text_encoder),
                                                      str(demo_t2v / "tokenizer"))
    # this demo transformer is already in diffusers' naming: the refusal says what to do instead
    assert "Cannot convert" in plan_html and "diffusers&#x27; naming" in plan_html
    assert button_states(str(lone), "", planned)[0]["interactive"] is False
