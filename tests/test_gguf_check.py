"""Model Check on GGUF transformers and fp8 files: header only, full-size sparse files, bad input.

The GGUF files are the layout city96's and QuantStack's Wan files have (``general.architecture``
"wan", original tensor names, F32 norms / modulation / 5-D patch embedding, Q4_K_M = Q4_K
with Q6_K feed-forward outputs), written with the full apparent size of the real model but
only its header on disk (tests/quantized_files.py).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from core.check.detect import inspect
from core.check.gguf_header import read_gguf_header
from tests.conftest import run_cli
from tests.quantized_files import gguf_types, write_sparse_gguf
from tests.sparse.original_keys import wan_dit_keys
from tests.sparse.specs import BY_KEY


def q4_k_m(key: str) -> dict[str, tuple[str, tuple[int, ...]]]:
    """A full-size Q4_K_M layout of ``key``: Q4_K matrices, Q6_K for each block's ffn.2."""
    types = gguf_types(wan_dit_keys(BY_KEY[key]), "Q4_K")
    return {n: ("Q6_K" if n.endswith("ffn.2.weight") else t, s) for n, (t, s) in types.items()}


@pytest.mark.parametrize(("key", "name", "arch", "version", "size_class"), [
    ("wan21_t2v_1_3b", "wan2.1-t2v-1.3b-Q4_K_M.gguf", "wan_t2v", "2.1", "1.3B"),
    ("wan22_ti2v_5b", "Wan2.2-TI2V-5B-Q4_K_M.gguf", "wan_ti2v", "2.2", "5B"),
    ("wan22_i2v_a14b", "Wan2.2-I2V-A14B-HighNoise-Q4_K_M.gguf", "wan_i2v", "2.2", "14B"),
    ("wan21_t2v_14b", "wan2.1-t2v-14b-Q8_0.gguf", "wan_t2v", "2.1", "14B"),
])
def test_full_size_sparse_gguf_is_read_from_its_header(tmp_path: Path, key: str, name: str, arch: str,
                                                       version: str, size_class: str) -> None:
    tensors = q4_k_m(key) if "Q4_K_M" in name else gguf_types(wan_dit_keys(BY_KEY[key]), "Q8_0")
    path = tmp_path / name
    size = write_sparse_gguf(path, tensors)
    assert os.stat(path).st_blocks * 512 < 2 * 2**20 < size     # the data is a hole
    proc = run_cli("check", str(path), "--json")
    report = json.loads(proc.stdout)
    assert (report["layout"], report["is_wan"], report["architecture_type"]) == ("gguf", True, arch)
    assert (report["wan_version"], report["size_class"], report["part"]) == (version, size_class, "transformer")
    quant = report["quantization"]
    header = read_gguf_header(path)
    assert quant["format"] == "gguf" and quant["types"] == header.type_counts
    assert quant["types"]["F32"] > 0 and (("Q4_K" in quant["types"] and "Q6_K" in quant["types"])
                                          or "Q8_0" in quant["types"])
    assert 4.5 < quant["bits_per_weight"] < (5.5 if "Q4_K_M" in name else 9)
    assert report["bytes_read"] < 1 * 2**20                       # never the tensor data
    codes = {f["code"] for f in report["findings"]}
    assert "single_file" in codes and not {"file_truncated", "quant_unsupported", "not_wan"} & codes
    if "A14B" in name:
        assert "one_expert" in codes
    assert proc.returncode == 1 and "Traceback" not in proc.stderr   # a part: it needs a VAE and text encoder


def test_patch_embedding_keeps_its_five_dimensions(tmp_path: Path) -> None:
    path = tmp_path / "wan.gguf"
    write_sparse_gguf(path, q4_k_m("wan22_ti2v_5b"))
    infos = read_gguf_header(path).tensor_infos()
    assert infos["patch_embedding.weight"].shape == (3072, 48, 1, 2, 2)
    assert infos["blocks.0.ffn.0.weight"] == infos["blocks.0.ffn.0.weight"]._replace(dtype="Q4_K", shape=(14336, 3072))


def _llm_tensors() -> dict[str, tuple[str, tuple[int, ...]]]:
    d = {"token_embd.weight": ("Q4_K", (32000, 4096)), "output_norm.weight": ("F32", (4096,))}
    for i in range(2):
        d[f"blk.{i}.attn_q.weight"] = ("Q4_K", (4096, 4096))
        d[f"blk.{i}.ffn_down.weight"] = ("Q6_K", (4096, 11008))
    return d


def _bad_files(tmp: Path) -> dict[str, tuple[Path, str, str]]:
    """name -> (file, the code Model Check gives, a phrase of its sentence)."""
    empty = tmp / "empty.gguf"
    empty.write_bytes(b"")
    html = tmp / "wan2.1-t2v-14b-Q4_K_M.gguf"
    html.write_text("<!DOCTYPE html><html><head><title>Sign in</title></head><body>login</body></html>")
    cut = tmp / "cut.gguf"
    full = write_sparse_gguf(cut, q4_k_m("wan21_t2v_1_3b"))
    write_sparse_gguf(cut, q4_k_m("wan21_t2v_1_3b"), truncate_to=full // 3)
    head_cut = tmp / "head_cut.gguf"
    write_sparse_gguf(head_cut, q4_k_m("wan21_t2v_1_3b"), truncate_to=3000)
    llm = tmp / "llama-2-7b.Q4_K_M.gguf"
    write_sparse_gguf(llm, _llm_tensors(), architecture="llama")
    iq = tmp / "wan-IQ2_XXS.gguf"
    write_sparse_gguf(iq, gguf_types(wan_dit_keys(BY_KEY["wan21_t2v_1_3b"]), "IQ2_XXS"))
    return {"empty": (empty, "file_truncated", "empty"), "html": (html, "not_a_model", "web page"),
            "cut": (cut, "file_truncated", "cut short"), "head_cut": (head_cut, "file_truncated", "cut short"),
            "llm": (llm, "not_wan", "llama"), "iq": (iq, "quant_unsupported", "IQ2_XXS")}


def test_bad_gguf_files_are_findings_with_a_remedy(tmp_path: Path) -> None:
    for what, (path, code, phrase) in _bad_files(tmp_path).items():
        report = inspect(path)
        found = [f for f in report.findings if f.code == code]
        assert found, (what, [(f.code, f.message) for f in report.findings])
        assert phrase in found[0].message and found[0].remedy, (what, found[0])
        assert not report.loadable, what
    proc = run_cli("check", str(tmp_path / "wan2.1-t2v-14b-Q4_K_M.gguf"))
    assert proc.returncode == 1 and "Traceback" not in proc.stdout + proc.stderr
    assert "web page" in proc.stdout


def test_a_folder_lists_loose_gguf_files(tmp_path: Path) -> None:
    write_sparse_gguf(tmp_path / "wan2.1-t2v-1.3b-Q4_K_M.gguf", q4_k_m("wan21_t2v_1_3b"))
    write_sparse_gguf(tmp_path / "Wan2.2-TI2V-5B-Q4_K_M.gguf", q4_k_m("wan22_ti2v_5b"))
    report = inspect(tmp_path)
    assert sorted(m.architecture_type.value for m in report.models) == ["wan_t2v", "wan_ti2v"]
    assert all(m.quantization and m.quantization["format"] == "gguf" for m in report.models)


def test_fp8_files_report_their_format_and_missing_scales(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    from tests.quantized_files import write_fp8
    from tests.sparse.specs import ModelSpec
    from tests.test_convert import LAYERS, tiny_dit
    state = tiny_dit(ModelSpec("w", None, None, "2.1", "t2v", 256, 512, LAYERS, 16, 16), 1)
    scaled = write_fp8(tmp_path / "wan2.1_t2v_1.3B_fp8_scaled.safetensors", state, True, "model.diffusion_model.")
    plain = write_fp8(tmp_path / "wan2.1_t2v_1.3B_fp8_e4m3fn.safetensors", state, False)
    assert inspect(scaled).quantization["format"] == "fp8_scaled"
    assert inspect(scaled).quantization["types"]["F8_E4M3"] == 2 * 10 and inspect(scaled).loadable is False
    assert inspect(plain).quantization["format"] == "fp8"
    from safetensors.torch import load_file, save_file
    tensors = load_file(scaled)
    del tensors["model.diffusion_model.blocks.1.self_attn.q.scale_weight"]
    broken = tmp_path / "broken_fp8_scaled.safetensors"
    save_file(tensors, broken)
    found = [f for f in inspect(broken).findings if f.code == "fp8_scales_missing"]
    assert found and "blocks.1.self_attn.q.weight" in found[0].message and found[0].remedy
    assert torch.float8_e4m3fn  # the files above hold real fp8 tensors
