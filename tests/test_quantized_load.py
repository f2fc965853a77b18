"""GGUF and fp8 transformers: assembled without dequantizing on disk, loaded quantized, generating.

The transformers are real files written by our own code (tests/quantized_files.py) with the
real Wan tensor names at width 256 (2 heads of 128; the demo width is too small for blocks of
256): GGUF Q8_0 (gguf-py's quantizer) on a Wan2.1 T2V shape, Q4_K (blocks built by hand) on a
TI2V-5B shape (48 latent channels, the Wan2.2 VAE: the shape diffusers' own guess maps to
wan-i2v-14B and the Hub), ComfyUI fp8 and fp8_scaled files. VAE, text encoder and tokenizer are
tiny real ComfyUI-style files. Each is assembled by ``fix --assemble``, checked, loaded by the
loader and made to generate; its frames are compared with the same weights in plain float.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("gguf")

from safetensors.torch import load_file, save_file  # noqa: E402

from core.check.detect import inspect  # noqa: E402
from core.errors import WanError  # noqa: E402
from core.fix.convert import plan_assembly  # noqa: E402
from core.run.generation import GenerationConfig  # noqa: E402
from core.run.load import WanPipelineLoader  # noqa: E402
from tests.conftest import run_cli  # noqa: E402
from tests.quantized_files import dequantized, fp8_state, write_fp8, write_gguf  # noqa: E402
from tests.sparse.specs import ModelSpec  # noqa: E402
from tests.test_convert import (  # noqa: E402
    LAYERS,
    _save_single,
    _umt5_file,
    tiny_dit,
    tiny_vae_model,
    tiny_vae_original,
    write_tokenizer,
)

T2V = ModelSpec("wide_t2v", None, None, "2.1", "t2v", 256, 512, LAYERS, 16, 16)
TI2V = ModelSpec("wide_ti2v", None, None, "2.2", "ti2v", 256, 512, LAYERS, 48, 48, vae="wan2.2")
SMALL = GenerationConfig(prompt="a fox in the snow", width=32, height=32, num_frames=5, num_inference_steps=2,
                         seed=3)


@pytest.fixture(scope="module")
def parts(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """ComfyUI-style files: transformers of both shapes, both VAEs, the text encoder and its tokenizer."""
    root = tmp_path_factory.mktemp("quantized")
    files = root / "ComfyUI" / "models"
    tok = root / "google" / "umt5-xxl"
    vocab = write_tokenizer(tok)
    te, _ = _umt5_file(files / "text_encoders" / "umt5_xxl_fp16.safetensors", vocab)
    t2v, ti2v = tiny_dit(T2V, 1), tiny_dit(TI2V, 2)
    return {
        "root": root, "tok": tok, "te": te, "t2v": t2v, "ti2v": ti2v,
        "vae21": _save_single(files / "vae" / "wan_2.1_vae.safetensors",
                              tiny_vae_original(tiny_vae_model("wan2.1", 5), "wan2.1")),
        "vae22": _save_single(files / "vae" / "wan2.2_vae.safetensors",
                              tiny_vae_original(tiny_vae_model("wan2.2", 6), "wan2.2")),
        "q8": files / "diffusion_models" / "wan2.1-t2v-wide-Q8_0.gguf",
        "q4k": files / "diffusion_models" / "Wan2.2-TI2V-wide-Q4_K_M.gguf",
        "fp8s": write_fp8(files / "diffusion_models" / "wan2.1_t2v_wide_fp8_scaled.safetensors", t2v, True,
                          "model.diffusion_model."),
        "fp8": write_fp8(files / "diffusion_models" / "wan2.1_t2v_wide_fp8_e4m3fn.safetensors", t2v, False),
        "types_q8": write_gguf(files / "diffusion_models" / "wan2.1-t2v-wide-Q8_0.gguf", t2v, "Q8_0"),
        "types_q4k": write_gguf(files / "diffusion_models" / "Wan2.2-TI2V-wide-Q4_K_M.gguf", ti2v, "Q4_K"),
    }


def _assemble(parts: dict[str, Any], transformer: Path, vae: str, out: Path, **kw: Any) -> Path:
    plan = plan_assembly(transformer=transformer, vae=parts[vae], text_encoder=parts["te"], tokenizer=parts["tok"],
                         out=out, **kw)
    assert plan.refusal is None, plan.refusal
    return plan.execute()


def _frames(folder: Path, keep: list[Any] | None = None) -> Any:
    wrapper = WanPipelineLoader().load_wan_pipeline(folder)
    frames, result = wrapper.generate_frames(SMALL)
    assert result.success, result.errors
    assert frames is not None and torch.isfinite(torch.as_tensor(frames)).all()
    if keep is not None:
        keep.append(wrapper.pipeline.transformer)
    return torch.as_tensor(frames)


def _reference(parts: dict[str, Any], state: dict[str, Any], vae: str, name: str) -> Any:
    """The same weights as a plain float file, assembled and generated the ordinary way."""
    dit = _save_single(parts["root"] / "ref" / f"{name}.safetensors", {k: v.float() for k, v in state.items()})
    return _frames(_assemble(parts, dit, vae, parts["root"] / f"ref-{name}"))


@pytest.mark.parametrize(("key", "vae", "qtype", "arch"), [("q8", "vae21", "Q8_0", "wan_t2v"),
                                                             ("q4k", "vae22", "Q4_K", "wan_ti2v")])
def test_gguf_is_assembled_linked_and_generates_as_its_dequantized_weights(parts: dict[str, Any], key: str,
                                                                            vae: str, qtype: str, arch: str) -> None:
    source = parts[key]
    before = hashlib.sha256(source.read_bytes()).hexdigest()
    out = parts["root"] / f"assembled-{key}"
    plan = plan_assembly(transformer=source, vae=parts[vae], text_encoder=parts["te"], tokenizer=parts["tok"], out=out)
    assert any("hard-linked, not copied" in s for s in plan.steps), plan.steps
    assert plan.describe()[:2] == [f"Assemble a diffusers folder in {out} from:",
                                   f"{source} (kept as GGUF {qtype}, hard-linked), {parts[vae]}, {parts['te']}:"]
    assert plan.done(plan.execute())[1:] == [f"{source.name} hard-linked into transformer/, not copied "
                                             "(no extra disk space)"]          # what fix --apply prints
    linked = out / "transformer" / source.name
    assert os.stat(linked).st_ino == os.stat(source).st_ino            # the same file: no copy
    assert hashlib.sha256(source.read_bytes()).hexdigest() == before
    config = json.loads((out / "transformer" / "config.json").read_text())
    assert (config["in_channels"], config["num_attention_heads"]) == ((48, 2) if key == "q4k" else (16, 2))
    report = inspect(out)
    assert report.loadable and report.architecture_type.value == arch, [f.message for f in report.errors]
    assert report.quantization["format"] == "gguf" and qtype in report.quantization["types"]
    assert parts[f"types_{key}"]["blocks.0.ffn.0.weight"] == qtype
    loaded: list[Any] = []
    mine = _frames(out, loaded)
    weight = loaded[0].blocks[0].ffn.net[0].proj.weight
    assert type(weight).__name__ == "GGUFParameter" and weight.dtype == torch.uint8   # kept quantized in memory
    reference = _reference(parts, dequantized(source), vae, key)
    assert float((mine - reference).abs().max()) < 1e-4


def test_fp8_scaled_keeps_fp8_storage_and_matches_the_bf16_conversion(parts: dict[str, Any]) -> None:
    for keep, said in ((True, " (kept as fp8 scaled, hard-linked)"), (False, "")):       # the plan's header
        plan = plan_assembly(transformer=parts["fp8s"], vae=parts["vae21"], text_encoder=parts["te"],
                             tokenizer=parts["tok"], out=parts["root"] / "header", keep_fp8=keep)
        assert plan.describe()[1] == f"{parts['fp8s']}{said}, {parts['vae21']}, {parts['te']}:", plan.describe()
    kept = _assemble(parts, parts["fp8s"], "vae21", parts["root"] / "fp8s-kept", keep_fp8=True)
    assert os.stat(kept / "transformer" / parts["fp8s"].name).st_ino == os.stat(parts["fp8s"]).st_ino
    report = inspect(kept)
    assert report.loadable and report.quantization["format"] == "fp8_scaled", [f.message for f in report.errors]
    loaded: list[Any] = []
    mine = _frames(kept, loaded)
    q = loaded[0].blocks[1].attn1.to_q
    assert q.weight.dtype == torch.float8_e4m3fn and q.bias.dtype != torch.float8_e4m3fn
    converted = _frames(_assemble(parts, parts["fp8s"], "vae21", parts["root"] / "fp8s-bf16"))   # Fix's conversion
    assert float((mine - converted).abs().mean()) < 0.01
    fp8 = fp8_state(parts["t2v"], True)
    plain = {k: (v.float() * fp8[k[:-6] + "scale_weight"]) if v.dtype == torch.float8_e4m3fn else v
             for k, v in fp8.items() if not k.endswith(("scale_weight", "scaled_fp8"))}
    assert float((mine - _reference(parts, plain, "vae21", "fp8s")).abs().max()) < 1e-4


def test_plain_fp8_loads_fp8_and_generates(parts: dict[str, Any]) -> None:
    kept = _assemble(parts, parts["fp8"], "vae21", parts["root"] / "fp8-kept", keep_fp8=True)
    assert inspect(kept).quantization["format"] == "fp8"
    reference = _reference(parts, {k: v.float() for k, v in fp8_state(parts["t2v"], False).items()}, "vae21", "fp8")
    assert float((_frames(kept) - reference).abs().max()) < 1e-4


def test_bad_assemblies_are_refused_and_write_nothing(parts: dict[str, Any], tmp_path: Path) -> None:
    out = tmp_path / "out"
    plan = plan_assembly(transformer=parts["q4k"], vae=parts["vae21"], text_encoder=parts["te"],
                         tokenizer=parts["tok"], out=out)                 # a TI2V GGUF with the Wan2.1 VAE
    assert plan.refusal and "Wan2.2 VAE" in plan.refusal and "z_dim 16" in plan.refusal
    llm = tmp_path / "llama-Q4_K_M.gguf"
    write_gguf(llm, {"blk.0.attn_q.weight": torch.randn(256, 256), "output_norm.weight": torch.ones(256)},
               "Q4_K", architecture="llama")
    html = tmp_path / "wan-Q4_K_M.gguf"
    html.write_text("<!DOCTYPE html><html><body>Sign in</body></html>")
    for bad, phrase in ((llm, "not a Wan transformer"), (html, "web page")):
        plan = plan_assembly(transformer=bad, vae=parts["vae21"], text_encoder=parts["te"], tokenizer=parts["tok"],
                             out=out)
        assert plan.refusal and phrase in plan.refusal, plan.refusal
    tensors = load_file(parts["fp8s"])
    del tensors["model.diffusion_model.blocks.1.self_attn.q.scale_weight"]
    broken = tmp_path / "wan2.1_t2v_wide_fp8_scaled.safetensors"
    save_file(tensors, broken)
    for keep in (True, False):                       # kept in fp8 or converted: both would be noise
        plan = plan_assembly(transformer=broken, vae=parts["vae21"], text_encoder=parts["te"],
                             tokenizer=parts["tok"], out=out, keep_fp8=keep)
        assert plan.refusal and "no scale_weight" in plan.refusal and "Download" in plan.refusal, plan.refusal
    kept = _assemble(parts, parts["fp8s"], "vae21", tmp_path / "swapped", keep_fp8=True)
    (kept / "transformer" / parts["fp8s"].name).unlink()   # a file swapped after assembling: the loader refuses
    save_file(tensors, kept / "transformer" / parts["fp8s"].name)
    with pytest.raises(WanError, match="no scale_weight"):
        WanPipelineLoader().load_wan_pipeline(kept)
    proc = run_cli("fix", "--assemble", "--transformer", str(html), "--vae", str(parts["vae21"]), "--text-encoder",
                   str(parts["te"]), "--tokenizer", str(parts["tok"]), "--out", str(out), "--apply")
    assert proc.returncode != 0 and "web page" in proc.stdout + proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr
    assert not out.exists() and not list(tmp_path.glob(".out.partial-*"))


def test_generate_tab_lists_an_assembled_gguf_folder_with_its_quantization_and_fit(parts: dict[str, Any],
                                                                                   app_config: Any) -> None:
    from wan_ui import common
    _assemble(parts, parts["q8"], "vae21", Path(app_config.models_dir) / "Wan2.1-T2V-wide-Q8_0")
    choices = common.model_choices()
    assert [Path(c.path).name for c in choices] == ["Wan2.1-T2V-wide-Q8_0"]
    assert " · GGUF Q8_0 · ✓ fits" in choices[0].label and choices[0].tone == "ok", choices[0].label


def test_gguf_and_fp8_offloaded_to_disk_generate_the_same_frames(parts: dict[str, Any], tmp_path: Path) -> None:
    """offload: disk writes the quantized blocks as they are (GGUF blocks, fp8 with its scales) and reads them back."""
    from dataclasses import replace

    from core import config
    previous = config.use(replace(config.current(), offload_dir=tmp_path / "offload"))
    try:
        for key, kw in (("q8", {}), ("fp8s", {"keep_fp8": True})):
            folder = _assemble(parts, parts[key], "vae21", tmp_path / key, **kw)
            in_ram = _frames(folder)
            wrapper = WanPipelineLoader().load_wan_pipeline(folder, optimization_config={"offload": "disk"})
            assert wrapper.plan.placement.value == "disk_offload" and wrapper.offload_folder.size_mb() > 0
            frames, result = wrapper.generate_frames(SMALL)
            assert result.success, result.errors
            assert float((torch.as_tensor(frames) - in_ram).abs().max()) == 0.0, key
            del wrapper
    finally:
        config.use(previous)
    assert list((tmp_path / "offload").iterdir()) == []


def test_move_puts_the_gguf_in_the_folder_only_once_it_is_complete(parts: dict[str, Any], tmp_path: Path) -> None:
    """fix --assemble --move: the same file (inode), no copy; killed before the end, the file is where it was."""
    import shutil
    import signal
    import subprocess
    import sys

    from core.fix.convert import PAUSE_ENV
    from tests.conftest import REPO
    source = tmp_path / "downloads" / "wan2.1-t2v-wide-Q8_0.gguf"
    source.parent.mkdir()
    shutil.copyfile(parts["q8"], source)
    inode, out = os.stat(source).st_ino, tmp_path / "Wan2.1-T2V-wide-Q8_0"
    args = ["fix", "--assemble", "--transformer", str(source), "--vae", str(parts["vae21"]), "--text-encoder",
            str(parts["te"]), "--tokenizer", str(parts["tok"]), "--out", str(out), "--move"]
    from core import fix
    dry = "\n".join(fix.assemble(transformer=source, vae=parts["vae21"], text_encoder=parts["te"],
                                 tokenizer=parts["tok"], out=out, move=True).describe())   # what the CLI prints
    assert f"  Assemble a diffusers folder in {out} from:\n  {source} (kept as GGUF Q8_0, moved), " in dry, dry
    assert "--move moves the kept file" in dry, dry
    assert "Move wan2.1-t2v-wide-Q8_0.gguf (GGUF Q8_0, " in dry and "moved, not copied" in dry
    assert source.exists() and not out.exists()
    env = dict(os.environ, PYTHONPATH=str(REPO), **{PAUSE_ENV: "finish", "WAN_COMPAT_CONVERT_PAUSE_SECONDS": "60"})
    killed = subprocess.Popen([sys.executable, "-m", "core", *args, "--apply"], cwd=REPO, env=env, text=True,
                              stderr=subprocess.PIPE, stdout=subprocess.DEVNULL)
    for line in killed.stderr:                        # everything written, just before the rename
        if line.startswith("WAN_COMPAT_CONVERT_PAUSED finish"):
            killed.send_signal(signal.SIGKILL)
            break
    killed.wait(timeout=60)
    assert source.exists() and os.stat(source).st_ino == inode and not out.exists()
    done = run_cli(*args, "--apply")
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"Done: {source.name} moved into transformer/, not copied" in done.stdout, done.stdout
    moved = out / "transformer" / source.name
    assert not source.exists() and os.stat(moved).st_ino == inode and os.stat(moved).st_nlink == 1
    report = inspect(out)
    assert report.loadable and report.quantization["format"] == "gguf", [f.message for f in report.errors]
    twice = plan_assembly(transformer=moved, transformer_2=moved, vae=parts["vae21"], text_encoder=parts["te"],
                          tokenizer=parts["tok"], out=tmp_path / "twice", move=True)
    assert twice.refusal and "same file is given as --transformer and --transformer-2" in twice.refusal
    alone = run_cli("fix", str(out), "--move")
    assert alone.returncode == 2 and "--move goes with --assemble" in alone.stderr


def test_move_to_another_disk_is_refused_not_copied(parts: dict[str, Any], tmp_path: Path) -> None:
    link = tmp_path / "wan2.1-t2v-wide-Q8_0.gguf"          # a link to the download: moving its target would
    link.symlink_to(parts["q8"])                           # leave the user's link dangling
    plan = plan_assembly(transformer=link, vae=parts["vae21"], text_encoder=parts["te"], tokenizer=parts["tok"],
                         out=tmp_path / "out", move=True)
    assert plan.refusal and "--move moves files, not links" in plan.refusal, plan.refusal
    other = Path("/dev/shm")
    if not other.is_dir() or not os.access(other, os.W_OK) or os.stat(other).st_dev == os.stat(tmp_path).st_dev:
        pytest.skip("no second file system to move across here")
    out = other / f"wan-compat-move-{os.getpid()}"
    plan = plan_assembly(transformer=parts["q8"], vae=parts["vae21"], text_encoder=parts["te"], tokenizer=parts["tok"],
                         out=out, move=True)
    assert plan.refusal and "--move" in plan.refusal and "another disk" in plan.refusal, plan.refusal
    assert "leave out --move to link" in plan.refusal and not out.exists() and parts["q8"].exists()


def test_move_out_of_a_read_only_folder_is_refused(parts: dict[str, Any], tmp_path: Path) -> None:
    import shutil
    if os.geteuid() == 0:
        pytest.skip("root may change any folder: there is no read-only folder to refuse here")
    source = tmp_path / "ro" / parts["q8"].name
    source.parent.mkdir()
    shutil.copyfile(parts["q8"], source)
    source.parent.chmod(0o555)
    try:
        plan = plan_assembly(transformer=source, vae=parts["vae21"], text_encoder=parts["te"], tokenizer=parts["tok"],
                             out=tmp_path / "out", move=True)
    finally:
        source.parent.chmod(0o755)
    assert plan.refusal and "which you may not change" in plan.refusal and "Leave out --move" in plan.refusal
    assert source.exists() and not (tmp_path / "out").exists()
