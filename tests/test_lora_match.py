"""A LoRA checked against a model, then loaded into the demo pipelines: the prediction is what peft does.

Every format (ComfyUI with and without prefix, ai-toolkit, lightx2v with .diff/.diff_b, diffusers,
musubi), T2V and I2V LoRAs, on each demo pipeline (T2V 1.3B-like, I2V with the image branch,
TI2V, A14B per expert), and the mismatch cases (another width, a musubi file without ffn, more
blocks than the model, a high-noise LoRA put on the low-noise expert) are loaded for real through
core.run.lora and compared with the prediction: same experts, same module counts, refusals alike.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import run_cli
from tests.lora_files import DEMO_WIDTHS, compare_case, other_family_tensors, prediction_cases, write_lora

pytest.importorskip("peft")


@pytest.fixture(scope="module")
def lora_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("loras")


def test_prediction_equals_what_peft_attaches_in_every_case(demo_models_dir: Path, lora_dir: Path) -> None:
    cases = prediction_cases(demo_models_dir, lora_dir / "cases")
    pipes: dict = {}
    results = [(Path(m).name, Path(t).name, *compare_case(pipes, m, t)) for m, _, t in cases]
    wrong = [r for r in results if not r[2]]
    assert not wrong, wrong
    assert len(results) >= 80


def _check(model: Path, *loras: str) -> list[dict]:
    """What `check MODEL --json --lora ...` prints under "loras" (in this process: each CLI start costs 5 s)."""
    from core.check.detect import inspect
    from core.check.lora_match import choices_from_args, match_loras
    choices, problems = choices_from_args(loras)
    assert not problems
    return json.loads(json.dumps([m.to_dict() for m in match_loras(inspect(model), choices)]))


def test_findings_for_each_mismatch(demo_models_dir: Path, lora_dir: Path) -> None:
    dim, ffn, blocks = DEMO_WIDTHS
    t2v = write_lora(lora_dir / "style.safetensors", "comfyui", dim, ffn, blocks)
    high = write_lora(lora_dir / "Wan2.2-Lightning_T2V-A14B-4steps-lora_HIGH_fp16.safetensors", "comfyui",
                      dim, ffn, blocks)
    wide = write_lora(lora_dir / "for_a_wider_model.safetensors", "comfyui", 48, 64, blocks)
    [on_i2v] = _check(demo_models_dir / "wan21_i2v", str(t2v))
    assert [f["code"] for f in on_i2v["findings"]] == ["lora_t2v_on_i2v"] and on_i2v["padded"] == 4
    assert "the image layers stay as they are" in on_i2v["findings"][0]["message"]
    both, wrong_expert = _check(demo_models_dir / "wan22_t2v_a14b", str(t2v), f"{high}@low")
    [distill] = _check(demo_models_dir / "wan22_t2v_a14b", str(high))
    assert both["target"] == "both" and both["components"] == ["transformer", "transformer_2"]
    assert both["findings"][0]["code"] == "lora_both_experts" and both["applied"] == 20 and both["not_applied"] == 0
    assert wrong_expert["target"] == "low" and wrong_expert["findings"][0]["severity"] == "warning"
    assert "made for the high-noise expert but goes to the low-noise expert" in wrong_expert["findings"][0]["message"]
    assert distill["target"] == "high" and distill["distill_steps"] == 4
    assert any(f["code"] == "lora_distill" and "needs 4 steps and guidance 1, scheduler shift 5" in f["message"]
               for f in distill["findings"])
    result = run_cli("check", str(demo_models_dir / "wan21_t2v"), "--lora", str(wide))
    assert result.returncode == 1 and "its layers do not fit and it cannot load" in result.stdout
    assert set(both) >= {"path", "format", "base", "expert", "target", "applied", "not_applied", "findings"}


def test_generate_puts_each_lora_on_its_expert_and_takes_it_off_after(demo_models_dir: Path, lora_dir: Path,
                                                                        tmp_path: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """Our path gives the frames of plain diffusers calls; a later run without LoRAs has none left on."""
    import numpy as np
    from diffusers import DiffusionPipeline

    from core.check.lora_match import LoraChoice
    from core.run.generation import GenerationConfig
    from core.run.load import WanPipelineLoader
    monkeypatch.setenv("WAN_COMPAT_HISTORY_DB", str(tmp_path / "history.db"))
    dim, ffn, blocks = DEMO_WIDTHS
    high = write_lora(lora_dir / "motion_HIGH.safetensors", "comfyui", dim, ffn, blocks, seed=1)
    low = write_lora(lora_dir / "motion_LOW.safetensors", "musubi", dim, ffn, blocks, seed=2)
    folder = demo_models_dir / "wan22_t2v_a14b"
    wrapper = WanPipelineLoader().load_wan_pipeline(folder)
    loras = (LoraChoice(str(high), 0.8), LoraChoice(str(low), 1.2))        # experts from the file names
    common = dict(prompt="a fox", width=64, height=64, num_frames=5, num_inference_steps=2, seed=3)
    ours, result = wrapper.generate_frames(GenerationConfig(**common, loras=loras))
    assert result.success, result.errors
    assert [(x["file"], x["components"]) for x in result.metadata["loras"]] == [
        ("motion_HIGH.safetensors", ["transformer"]), ("motion_LOW.safetensors", ["transformer_2"])]
    assert result.plan["loras"] == "motion_HIGH 0.8, motion_LOW 1.2" and result.metadata["loras"][0]["fingerprint"]
    ours_meta = result.metadata["loras"]

    plain = DiffusionPipeline.from_pretrained(folder)
    from safetensors.torch import load_file
    plain.load_lora_weights(load_file(high), adapter_name="h")
    plain.load_lora_weights(load_file(low), adapter_name="l", load_into_transformer_2=True)
    plain.set_adapters(["h", "l"], [0.8, 1.2])
    import torch
    expected = plain(**{k: v for k, v in common.items() if k != "seed"}, output_type="np",
                     generator=torch.Generator().manual_seed(3), guidance_scale=result.metadata["guidance_scale"],
                     guidance_scale_2=result.metadata["guidance_scale_2"]).frames[0]
    assert np.abs(ours - expected).max() == 0

    without, result = wrapper.generate_frames(GenerationConfig(**common))
    assert result.success and result.metadata["loras"] == [] and "loras" not in result.plan
    # the history: each LoRA, and the runs with and without side by side (Performance tab)
    from core.monitor import get_performance_monitor
    monitor = get_performance_monitor()
    with_lora = [o for o in monitor.operations("generation") if o.context.get("loras")]
    assert [(x["file"], x["size_bytes"], x["fingerprint"]) for x in with_lora[0].context["loras"]] == [
        (x["file"], x["size_bytes"], x["fingerprint"]) for x in ours_meta]
    plans = {r["plan"] for r in monitor.optimization_effectiveness("generation")}
    assert {p for p in plans if "LoRA motion_HIGH 0.8, motion_LOW 1.2" in p} and {p for p in plans if "LoRA" not in p}
    for name in ("transformer", "transformer_2"):
        assert not getattr(getattr(wrapper.pipeline, name), "peft_config", {})
    fresh = WanPipelineLoader().load_wan_pipeline(folder)
    again, _ = fresh.generate_frames(GenerationConfig(**common))
    assert np.abs(without - again).max() == 0 and np.abs(without - ours).max() > 0
    shifted, result = wrapper.generate_frames(GenerationConfig(**common, flow_shift=5.0))   # a distill preset's shift
    assert result.success and result.metadata["flow_shift"] == 5.0 and np.abs(shifted - without).max() > 0
    assert wrapper.pipeline.scheduler.config.flow_shift == 12.0                             # the model's, back


def test_set_adapters_on_one_expert_does_not_switch_off_the_other(demo_models_dir: Path, lora_dir: Path) -> None:
    """diffusers' pipeline-wide set_adapters drops what it is not given; ours sets each expert on its own."""
    from diffusers import DiffusionPipeline

    from core.check.lora_match import LoraChoice
    from core.run.lora import _active_adapters, apply_loras
    dim, ffn, blocks = DEMO_WIDTHS
    a = write_lora(lora_dir / "a.safetensors", "comfyui", dim, ffn, blocks)
    b = write_lora(lora_dir / "b.safetensors", "comfyui", dim, ffn, blocks)
    pipe = DiffusionPipeline.from_pretrained(demo_models_dir / "wan22_t2v_a14b")
    state = apply_loras(pipe, [LoraChoice(str(a), 1.0, "high"), LoraChoice(str(b), 0.5)])
    assert _active_adapters(pipe.transformer) == ["lora0_a_high", "lora1_b"]
    assert _active_adapters(pipe.transformer_2) == ["lora1_b"]
    pipe.set_adapters(["lora0_a_high"], [1.0])              # the trap, with diffusers' own call
    assert _active_adapters(pipe.transformer_2) != ["lora1_b"]
    state = apply_loras(pipe, [LoraChoice(str(a), 1.0, "low")], state)   # another set: the old ones come off
    assert _active_adapters(pipe.transformer_2) == ["lora0_a_low"] and not getattr(pipe.transformer, "peft_config", {})


def test_generate_cli_refuses_bad_loras_before_loading(demo_models_dir: Path, lora_dir: Path, tmp_path: Path) -> None:
    dim, ffn, blocks = DEMO_WIDTHS
    good = write_lora(lora_dir / "good.safetensors", "comfyui", dim, ffn, blocks)
    wide = write_lora(lora_dir / "wide.safetensors", "comfyui", 48, 64, blocks)
    sdxl = write_lora(lora_dir / "sdxl.safetensors", "", 0, 0, 0, tensors=other_family_tensors("sdxl"))
    cut = write_lora(lora_dir / "cut.safetensors", "comfyui", dim, ffn, blocks)
    with open(cut, "r+b") as fh:
        fh.truncate(cut.stat().st_size - 100)
    odd = write_lora(lora_dir / "odd.safetensors", "", 0, 0, 0, tensors={
        "net.layer.lora_down.weight": (4, 24), "net.layer.lora_up.weight": (24, 4)})
    model = str(demo_models_dir / "wan21_t2v")
    base = ["generate", model, "--prompt", "a fox", "--size", "64x64", "--frames", "5", "--steps", "2",
            "--out", str(tmp_path / "out.mp4")]
    cases = [([f"{good}:strong"], 2, "is not a number"), ([str(good), str(good)], 2, "is given twice"),
             ([str(tmp_path / "missing.safetensors")], 2, "does not exist"),
             ([str(wide)], 1, "its layers do not fit and it cannot load"), ([str(sdxl)], 1, "not for Wan"),
             ([str(cut)], 1, "is cut short"), ([str(odd)], 1, "match no Wan layer")]
    for loras, code, words in cases:
        result = run_cli(*base, *[a for lora in loras for a in ("--lora", lora)])
        assert result.returncode == code and words in result.stderr, (loras, result.stderr[-400:])
        assert "Traceback" not in result.stderr and "Loading" not in result.stderr
        assert not (tmp_path / "out.mp4").exists()
    result = run_cli(*base, "--lora", f"{good}:0.5")
    assert result.returncode == 0, result.stderr[-400:]
    meta = json.loads((tmp_path / "out.json").read_text())
    assert meta["loras"][0]["file"] == "good.safetensors" and meta["loras"][0]["strength"] == 0.5
    from core.run.video import read_video_metadata  # in the MP4 itself too
    [in_mp4] = read_video_metadata(tmp_path / "out.mp4")["loras"]
    assert (in_mp4["file"], in_mp4["size_bytes"], in_mp4["fingerprint"]) == (
        "good.safetensors", good.stat().st_size, meta["loras"][0]["fingerprint"])


def test_diffusers_itself_refuses_loha_and_lokr_for_wan(demo_models_dir: Path, lora_dir: Path) -> None:
    """Why Model Check refuses LyCORIS files: diffusers' Wan loader does not take them (checked, not assumed)."""
    from diffusers import DiffusionPipeline
    from safetensors.torch import load_file

    from core.check.detect import inspect
    dim, ffn, blocks = DEMO_WIDTHS
    loha = write_lora(lora_dir / "loha.safetensors", "loha", dim, ffn, blocks)
    lokr = write_lora(lora_dir / "lokr.safetensors", "", 0, 0, 0, tensors={
        "diffusion_model.blocks.0.self_attn.q.lokr_w1": (4, 4), "diffusion_model.blocks.0.self_attn.q.lokr_w2": (6, 6),
        "diffusion_model.blocks.0.self_attn.q.alpha": ()})
    pipe = DiffusionPipeline.from_pretrained(demo_models_dir / "wan21_t2v")
    for path, kind in ((loha, "LoHa"), (lokr, "LoKr")):
        with pytest.raises((ValueError, KeyError)):
            pipe.load_lora_weights(load_file(path), adapter_name=kind)
        report = inspect(path)
        assert report.lora.kind == kind and report.errors[0].code.value == "lora_unsupported"


def test_fused_loras_change_the_weights_and_come_off_again(demo_models_dir: Path, lora_dir: Path) -> None:
    """The GPU path (should_fuse): merged into the weights at their strength, unmerged before they are removed."""
    import torch
    from diffusers import DiffusionPipeline

    from core.check.lora_match import LoraChoice
    from core.run.lora import apply_loras, remove_loras
    dim, ffn, blocks = DEMO_WIDTHS
    style = write_lora(lora_dir / "fused.safetensors", "comfyui", dim, ffn, blocks)
    pipe = DiffusionPipeline.from_pretrained(demo_models_dir / "wan22_t2v_a14b")
    before = {n: p.detach().clone() for n, p in pipe.transformer_2.named_parameters()}
    state = apply_loras(pipe, [LoraChoice(str(style), 0.5, "low")], fuse=True)
    assert state.fused == ("transformer_2",)
    layer = pipe.transformer_2.blocks[0].attn1.to_q
    assert not torch.allclose(layer.base_layer.weight, before["blocks.0.attn1.to_q.weight"])
    remove_loras(pipe, state)
    after = dict(pipe.transformer_2.named_parameters())
    assert all(torch.allclose(after[n], p, atol=1e-6) for n, p in before.items())


def test_quantized_transformers_take_loras_as_adapters(demo_models_dir: Path, lora_dir: Path) -> None:
    """fp8-stored layers (core.run.quantized) get the LoRA in their compute dtype, never fused; a folder whose
    weights do not carry diffusers' names (GGUF, fp8 as published) is predicted from its config."""
    import torch
    from diffusers import DiffusionPipeline
    from safetensors.torch import load_file

    from core.check.lora_match import LoraChoice, _modules_from_config
    from core.check.safetensors_header import read_header
    from core.run.lora import apply_loras
    from core.run.quantized import _fp8_linear
    folder = demo_models_dir / "wan21_t2v"
    header = read_header(folder / "transformer" / "diffusion_pytorch_model.safetensors")
    assert _modules_from_config(folder / "transformer" / "config.json") == {
        n[: -len(".weight")]: t.shape for n, t in header.tensors.items() if n.endswith(".weight")}
    dim, ffn, blocks = DEMO_WIDTHS
    style = write_lora(lora_dir / "on_fp8.safetensors", "comfyui", dim, ffn, blocks, seed=4)
    fp8, plain = DiffusionPipeline.from_pretrained(folder), DiffusionPipeline.from_pretrained(folder)
    for name, module in fp8.transformer.blocks.named_modules():
        if isinstance(module, torch.nn.Linear):
            module.weight.data = module.weight.data.to(torch.float8_e4m3fn)
            _fp8_linear(module, None)
            plain.transformer.blocks.get_submodule(name).weight.data = module.weight.data.float()
    state = apply_loras(fp8, [LoraChoice(str(style), 0.7)], fuse=True)
    assert state.fused == () and "stay as adapters" in state.notes[0]
    plain.load_lora_weights(load_file(style), adapter_name="s")
    plain.set_adapters(["s"], [0.7])
    call = dict(prompt="a fox", width=32, height=32, num_frames=1, num_inference_steps=2, output_type="np")
    ours = fp8(**call, generator=torch.Generator().manual_seed(1)).frames[0]
    expected = plain(**call, generator=torch.Generator().manual_seed(1)).frames[0]
    assert abs(ours - expected).max() < 1e-4
