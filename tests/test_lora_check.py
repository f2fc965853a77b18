"""Model Check on LoRA files, from the header only: every format with its real key names and widths.

The full-size files are sparse (header written, data a hole): a rank-64 LoRA for Wan 14B with 40
blocks has the real apparent size and takes no disk.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from core.check.detect import inspect
from core.check.lora_match import choices_from_args, parse_lora
from tests.conftest import run_cli
from tests.lora_files import lora_tensors, other_family_tensors, write_lora

WIDTHS = {"wan-1.3b": (1536, 8960, 30), "wan-5b": (3072, 14336, 30), "wan-14b": (5120, 13824, 40)}


@pytest.mark.parametrize("fmt, expected", [("comfyui", "comfyui"), ("comfyui_bare", "comfyui"),
                                           ("aitoolkit", "comfyui"), ("lightx2v", "comfyui"),
                                           ("diffusers", "diffusers"), ("musubi", "musubi")])
@pytest.mark.parametrize("base", sorted(WIDTHS))
def test_each_format_and_base_is_known_from_its_header(tmp_path: Path, fmt: str, expected: str, base: str) -> None:
    dim, ffn, blocks = WIDTHS[base]
    path = write_lora(tmp_path / f"style_{fmt}.safetensors", fmt, dim, ffn, blocks, rank=64, sparse=True)
    report = inspect(path)
    lora = report.to_dict()["lora"]
    assert lora["format"] == expected and lora["base"] == base and lora["rank"] == 64
    assert lora["modules"] == blocks * 10 + (blocks if fmt == "lightx2v" else 0)   # + the norm3 .diff layers
    assert lora["task"] is None and lora["expert"] is None and lora["distill_steps"] is None
    assert report.to_dict()["is_wan"] is True and report.loadable is False and report.usable
    assert report.findings[0].code.value == "lora_file"


def test_real_distill_loras_say_expert_task_steps_and_alpha(tmp_path: Path) -> None:
    dim, ffn, blocks = WIDTHS["wan-14b"]
    high = write_lora(tmp_path / "Wan2.2-Lightning_T2V-A14B-4steps-lora_HIGH_fp16.safetensors", "comfyui",
                      dim, ffn, blocks, rank=64, sparse=True)
    low = write_lora(tmp_path / "wan2.2_i2v_A14b_low_noise_lora_rank64_lightx2v_4step_1022.safetensors", "lightx2v",
                     dim, ffn, blocks, rank=64, sparse=True)
    i2v = write_lora(tmp_path / "lightx2v_I2V_14B_480p_cfg_step_distill_rank128_bf16.safetensors", "comfyui",
                     dim, ffn, blocks, rank=128, i2v=True, sparse=True)
    musubi = write_lora(tmp_path / "my_motion.safetensors", "musubi", dim, ffn, blocks, rank=32, sparse=True,
                        metadata={"ss_network_alpha": "16", "ss_base_model_version": "wan2.2_t2v_a14b",
                                  "ss_dit_name": "wan2.2_t2v_high_noise_14B_fp16.safetensors"})
    dim5, ffn5, blocks5 = WIDTHS["wan-5b"]
    fastwan = write_lora(tmp_path / "Wan2_2_5B_FastWanFullAttn_lora_rank_128_bf16.safetensors", "comfyui",
                         dim5, ffn5, blocks5, rank=128, sparse=True)
    f = inspect(fastwan).to_dict()["lora"]
    assert (f["base"], f["distill_steps"], f["registry_id"]) == ("wan-5b", 3, "fastwan-wan22-ti2v-5b")
    assert "use 3 steps, guidance 1, shift 3" in inspect(fastwan).findings[0].message
    h, lo, i, m = (inspect(p).to_dict()["lora"] for p in (high, low, i2v, musubi))
    assert (h["expert"], h["task"], h["distill_steps"], h["registry_id"]) == ("high", "t2v", 4, "lightning-wan22-t2v-a14b")
    assert (lo["expert"], lo["task"], lo["distill_steps"]) == ("low", "i2v", 4)
    assert (i["task"], i["rank"], i["distill_steps"], i["modules"]) == ("i2v", 128, 4, 40 * 12)   # k_img, v_img
    assert (m["expert"], m["task"], m["alpha"], m["rank"]) == ("high", "t2v", 16.0, 32)
    said = inspect(high).findings[0].message
    assert "4-step distillation LoRA: use 4 steps, guidance 1, shift 5" in said


def test_alpha_is_read_from_the_scalar_in_the_file(tmp_path: Path) -> None:
    path = write_lora(tmp_path / "a.safetensors", "comfyui", 24, 32, 2, rank=4)   # real data: alpha = rank
    assert inspect(path).lora.alpha == 4.0


def test_refusals_lycoris_other_families_and_unknown_names(tmp_path: Path) -> None:
    loha = write_lora(tmp_path / "loha.safetensors", "loha", 5120, 13824, 2, sparse=True)
    sdxl = write_lora(tmp_path / "sdxl.safetensors", "", 0, 0, 0, sparse=True, tensors=other_family_tensors("sdxl"))
    flux = write_lora(tmp_path / "flux.safetensors", "", 0, 0, 0, sparse=True, tensors=other_family_tensors("flux"))
    odd = write_lora(tmp_path / "odd.safetensors", "", 0, 0, 0, sparse=True,
                     tensors={"something.layer.lora_down.weight": (4, 64), "something.layer.lora_up.weight": (64, 4)})
    cases = {loha: ("lycoris", "lora_unsupported", "LyCORIS LoHa"), sdxl: ("unknown", "lora_other_family", "SDXL"),
             flux: ("unknown", "lora_other_family", "Flux"), odd: ("unknown", "lora_unsupported", "match no Wan layer")}
    for path, (fmt, code, words) in cases.items():
        report = inspect(path)
        assert report.lora.format == fmt and not report.usable
        assert report.errors[0].code.value == code and words in report.errors[0].message
        result = run_cli("check", str(path), "--json")
        assert result.returncode == 1 and json.loads(result.stdout)["lora"]["format"] == fmt


def test_cli_exit_codes_json_and_a_folder_of_loras(tmp_path: Path) -> None:
    good = write_lora(tmp_path / "loras" / "good.safetensors", "comfyui", 1536, 8960, 30, rank=16, sparse=True)
    cut = write_lora(tmp_path / "loras" / "cut.safetensors", "comfyui", 1536, 8960, 30, rank=16, sparse=True)
    with open(cut, "r+b") as fh:       # an interrupted download
        fh.truncate(cut.stat().st_size // 2)
    result = run_cli("check", str(good), "--json")
    data = json.loads(result.stdout)
    assert result.returncode == 0 and data["is_wan"] and data["loadable"] is False
    assert set(data["lora"]) >= {"format", "base", "task", "expert", "rank", "alpha", "modules", "distill_steps"}
    result = run_cli("check", str(cut))
    assert result.returncode == 1 and "cut short" in result.stdout and "Traceback" not in result.stderr
    result = run_cli("check", str(tmp_path / "loras"))
    assert result.returncode == 1 and "A folder of 2 LoRA files — 1 usable" in result.stdout
    assert "good.safetensors" in result.stdout and "cut.safetensors" in result.stdout


def test_a_header_that_lies_is_damage_not_a_lora(tmp_path: Path) -> None:
    import struct
    header = {"diffusion_model.blocks.0.self_attn.q.lora_down.weight":
              {"dtype": "BF16", "shape": [4, 5120], "data_offsets": [0, 64]}}   # 40,960 bytes said, 64 given
    raw = json.dumps(header).encode()
    path = tmp_path / "lies.safetensors"
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + bytes(64))
    result = run_cli("check", str(path))
    assert result.returncode == 1 and "byte range does not match its shape" in result.stdout
    assert "Traceback" not in result.stderr + result.stdout


def test_lora_arguments_parse_and_bad_ones_are_sentences() -> None:
    assert parse_lora("a.safetensors") == parse_lora("a.safetensors:1")
    assert parse_lora("dir/a.safetensors:0.5@high").expert == "high"
    assert parse_lora("C:\\loras\\a.safetensors:0.5").path == "C:\\loras\\a.safetensors"
    _, problems = choices_from_args(["a.safetensors:strong", "b.safetensors:1e9", "c.safetensors", "c.safetensors"])
    assert problems[0].startswith("The LoRA strength 'strong' in 'a.safetensors:strong' is not a number")
    assert "out of range" in problems[1] and "given twice" in problems[2]
    assert not choices_from_args(["c.safetensors:0.5@high", "c.safetensors:1@low"])[1]   # one per expert is fine


def test_header_only_tensors_have_the_real_names() -> None:
    names = lora_tensors("comfyui", 5120, 13824, 40, rank=64, i2v=True)
    assert ("diffusion_model.blocks.39.cross_attn.k_img.lora_down.weight", (64, 5120)) in names.items()
    assert names["diffusion_model.blocks.0.ffn.0.lora_up.weight"] == (13824, 64)
    assert "lora_unet_blocks_0_self_attn_q.lora_down.weight" in lora_tensors("musubi", 1536, 8960, 1)
    assert "transformer.blocks.0.attn1.to_out.0.lora_B.weight" in lora_tensors("diffusers", 1536, 8960, 1)


def test_the_fingerprint_tells_apart_loras_of_the_same_layout(tmp_path: Path) -> None:
    """Lightning's HIGH and LOW files have equal headers and sizes: the history must still tell them apart."""
    from core.check.lora_match import fingerprint
    a = write_lora(tmp_path / "a_HIGH.safetensors", "comfyui", 24, 32, 2, seed=1)
    b = write_lora(tmp_path / "a_LOW.safetensors", "comfyui", 24, 32, 2, seed=2)
    again = write_lora(tmp_path / "copy.safetensors", "comfyui", 24, 32, 2, seed=1)
    assert a.stat().st_size == b.stat().st_size and fingerprint(a) != fingerprint(b) == fingerprint(b)
    assert fingerprint(a) == fingerprint(again) and len(fingerprint(a) or "") == 16
