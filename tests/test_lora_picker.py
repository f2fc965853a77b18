"""The LoRA picker's words and choices (wan_ui.lora_picker) on real LoRA files and the demo models."""

from __future__ import annotations

from pathlib import Path

import pytest

from core.check.detect import inspect
from tests.lora_files import DEMO_WIDTHS, write_lora

pytest.importorskip("peft")


@pytest.fixture(scope="module")
def loras(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("picker_loras")
    dim, ffn, blocks = DEMO_WIDTHS
    return {"style": write_lora(folder / "style.safetensors", "comfyui", dim, ffn, blocks),
            "high": write_lora(folder / "Wan2.2-Lightning_T2V-A14B-4steps-lora_HIGH_fp16.safetensors", "comfyui",
                               dim, ffn, blocks),
            "loha": write_lora(folder / "sub" / "loha.safetensors", "loha", dim, ffn, blocks)}


def test_files_from_the_folder_with_their_verdicts(loras: dict[str, Path]) -> None:
    from wan_ui.lora_picker import choices
    labels = dict((p, label) for label, p in choices(loras["style"].parent))
    assert labels[str(loras["style"])] == "style — a width of 24, rank 4, 20 layers"
    assert "high-noise expert" in labels[str(loras["high"])] and "4-step distillation" in labels[str(loras["high"])]
    assert labels[str(loras["loha"])].startswith("loha — ✗ This is a LyCORIS LoHa file")


def test_strength_per_expert_goes_to_the_right_expert(demo_models_dir: Path, loras: dict[str, Path]) -> None:
    from wan_ui.lora_picker import lora_values, verdict_html
    a14b = inspect(demo_models_dir / "wan22_t2v_a14b")
    style, high = str(loras["style"]), str(loras["high"])
    assert lora_values(a14b, [style, high], 0.8, 0.5) == [f"{style}:0.8@high", f"{style}:0.5@low", f"{high}:0.8@high"]
    assert lora_values(a14b, [style], 0.7, 0.7) == [f"{style}:0.7"]
    assert lora_values(inspect(demo_models_dir / "wan21_t2v"), [style], 0.7, 0.2) == [f"{style}:0.7"]
    shown = verdict_html(a14b, lora_values(a14b, [style, high], 0.8, 0.5))
    assert "style.safetensors</b> (strength 0.8) → high-noise expert, 20 layers applied, 0 not" in shown
    assert "style.safetensors</b> (strength 0.5) → low-noise expert" in shown
    assert "needs 4 steps and guidance 1" in shown


def test_each_lora_has_its_own_strength_sliders(demo_models_dir: Path, loras: dict[str, Path]) -> None:
    """A slot per picked LoRA: one slider on one transformer; on A14B the expert(s) it goes to, each its own."""
    from wan_ui.lora_picker import SLOTS, lora_values, set_strength, slot_updates
    a14b, t2v = inspect(demo_models_dir / "wan22_t2v_a14b"), inspect(demo_models_dir / "wan21_t2v")
    style, high = str(loras["style"]), str(loras["high"])
    strengths = set_strength({}, [style, high], 0, "high", 0.6)
    strengths = set_strength(strengths, [style, high], 0, "low", 0.9)
    strengths = set_strength(strengths, [style, high], 1, "high", 1.0)
    assert lora_values(a14b, [style, high], strengths, None) == [f"{style}:0.6@high", f"{style}:0.9@low",
                                                                f"{high}:1@high"]
    assert lora_values(t2v, [style, high], strengths, None) == [f"{style}:0.6", f"{high}:1"]
    shown = [(u.get("visible"), u.get("label"), u.get("value")) for u in slot_updates(a14b, [style, high], strengths)]
    assert len(shown) == 2 * SLOTS and shown[4:] == [(False, None, None)] * (2 * SLOTS - 4)
    assert shown[:3] == [(True, "style.safetensors: strength on the high-noise expert", 0.6),
                         (True, "style.safetensors: strength on the low-noise expert", 0.9),
                         (True, f"{Path(high).name}: strength on the high-noise expert", 1.0)]
    assert shown[3][0] is False            # the HIGH file has no low-noise slider
    assert [u.get("visible") for u in slot_updates(t2v, [style], strengths)[:2]] == [True, False]


def test_the_distillation_preset_says_what_it_changed(loras: dict[str, Path]) -> None:
    from wan_ui.lora_picker import apply_preset, shift_problem
    steps, guidance, guidance_2, shift, note = apply_preset([str(loras["style"]), str(loras["high"])], 40, 4.0, 3.0,
                                                            None)
    assert (steps, guidance, guidance_2, shift) == (4, 1.0, 1.0, "5")
    assert note == ("For Wan2.2-Lightning_T2V-A14B-4steps-lora_HIGH_fp16.safetensors: steps 40 → 4, guidance 4.0 → 1, "
                    "guidance (low-noise) 3.0 → 1, scheduler shift the model's → 5.")
    assert apply_preset([str(loras["style"])], 40, 4.0, 3.0)[4] == "No distillation LoRA is picked."
    assert apply_preset([str(loras["high"])], 4, 1, 1, "5")[4].endswith(": nothing to change.")
    assert shift_problem("") == shift_problem(" 5 ") == "" and "must be a number above 0" in shift_problem("0")


def test_model_check_field_and_the_tab_builds(demo_models_dir: Path, loras: dict[str, Path]) -> None:
    import gradio as gr

    from wan_ui.lora_picker import add_path, build_lora_picker, model_check_lora, wire
    shown = model_check_lora(str(demo_models_dir / "wan21_i2v"), f"{loras['style']}:0.6\n")
    assert "→ the transformer, 20 layers applied, 0 not" in shown and "image layers stay as they are" in shown
    assert "is not a number" in model_check_lora(str(demo_models_dir / "wan21_i2v"), f"{loras['style']}:much")
    with gr.Blocks():
        path, steps, guidance, guidance_2 = gr.Textbox(), gr.Number(), gr.Number(), gr.Number()
        picker = build_lora_picker()
        wire(picker, path, steps, guidance, guidance_2)
    update, cleared = add_path([], str(loras["style"]))
    assert update["value"] == [str(loras["style"])] and cleared == ""


def test_the_generate_tab_runs_with_a_lora_on_each_expert(app_config, demo_models_dir: Path,
                                                          loras: dict[str, Path]) -> None:
    """The tab's own function, as the Generate button calls it: the LoRA on both experts at two strengths."""
    import json

    from wan_ui.generate import generate
    model = demo_models_dir / "wan22_t2v_a14b"
    *_, (_, video, result) = list(generate(str(model), "a red fox in the snow", "", 64, 64, 5, 2, 5.0, 4.0, 7,
                                           None, None, "auto", "auto", "auto", "auto", lora_files=[str(loras["style"])],
                                           lora_strength=0.6, lora_strength_low=0.9))
    assert result["success"], result
    meta = json.loads(Path(video).with_suffix(".json").read_text(encoding="utf-8"))
    assert [(x["file"], x["strength"], x["components"]) for x in meta["loras"]] == [
        ("style.safetensors", 0.6, ["transformer"]), ("style.safetensors", 0.9, ["transformer_2"])]


def test_a_job_with_a_lora_that_does_not_fit_is_refused_before_it_is_queued(demo_models_dir: Path,
                                                                             tmp_path: Path) -> None:
    """The Generate tab and /enqueue check each LoRA against the model first, as `generate --lora` does."""
    from core.jobs.submit import check_request
    from tests.lora_files import other_family_tensors
    dim, ffn, blocks = DEMO_WIDTHS
    wide = write_lora(tmp_path / "wide.safetensors", "comfyui", dim * 2, ffn, blocks)
    sdxl = write_lora(tmp_path / "sdxl.safetensors", "", 0, 0, 0, tensors=other_family_tensors("sdxl"))
    good = write_lora(tmp_path / "good.safetensors", "comfyui", dim, ffn, blocks)
    model = str(demo_models_dir / "wan21_t2v")
    refused = check_request(model, {"prompt": "a fox", "loras": [str(wide), f"{sdxl}:0.5"]})
    assert refused.config == {} and len(refused.errors) == 2
    assert refused.errors[0].startswith("wide.safetensors: wide.safetensors is a LoRA for a model (width 48)")
    assert "not for Wan" in refused.errors[1] and "Use a LoRA made for Wan 2.1 / 2.2." in refused.errors[1]
    assert not check_request(model, {"prompt": "a fox", "loras": [f"{good}:0.5"]}).errors
