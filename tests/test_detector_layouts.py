"""Model Check on full-size sparse layouts of every registry model, in every layout, and broken."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from core.check.detect import ArchitectureDetector, inspect
from core.check.wording import headline, render_text
from tests.conftest import run_cli
from tests.sparse.diffusers_layout import write_diffusers_layout, write_hf_cache_layout
from tests.sparse.original_layout import write_original_layout, write_single_file, write_umt5_single_file, write_vae_single_file
from tests.sparse.other_layouts import FAMILIES, write_other_family
from tests.sparse.specs import BY_KEY, SPECS, ModelSpec

VAE_Z = {"wan2.1": 16, "wan2.2": 48}
DIFFUSERS_SPECS = [s for s in SPECS if s.diffusers_id]


def expected_common(report, spec: ModelSpec) -> None:
    assert report.is_wan
    assert report.architecture_type.value == f"wan_{spec.task}"
    assert report.wan_version == spec.wan_version
    assert report.task == spec.task
    assert report.pipeline_class == (spec.pipeline_class or None)


@pytest.fixture(scope="session")
def layouts(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Every model in the diffusers, original, single-file and HF-cache layouts (sparse: a few MB)."""
    root = tmp_path_factory.mktemp("layouts")
    for spec in SPECS:
        if spec.diffusers_id:
            write_diffusers_layout(spec, root / "diffusers" / spec.key)
        write_original_layout(spec, root / "original" / spec.key)
        write_single_file(spec, root / "single" / f"{spec.key}.safetensors")
        write_single_file(spec, root / "single_prefixed" / f"{spec.key}.safetensors", prefix="model.diffusion_model.")
    write_hf_cache_layout(BY_KEY["wan22_t2v_a14b"], root / "hub")
    write_hf_cache_layout(BY_KEY["wan22_ti2v_5b"], root / "hub")
    return root


@pytest.mark.parametrize("spec", DIFFUSERS_SPECS, ids=lambda s: s.key)
def test_diffusers_layout(layouts: Path, spec: ModelSpec) -> None:
    report = inspect(layouts / "diffusers" / spec.key)
    expected_common(report, spec)
    assert report.layout.value == "diffusers"
    assert report.experts == spec.experts
    assert report.boundary_ratio == spec.boundary_ratio
    assert report.vae_z_dim == VAE_Z[spec.vae]
    assert report.registry_id == spec.diffusers_id
    assert report.loadable, [f.message for f in report.findings]
    assert all(c.complete for c in report.components)
    transformer = report.component("transformer")
    assert transformer.parameters > 1e9 and transformer.dtype in ("F32", "BF16")


@pytest.mark.parametrize("spec", SPECS, ids=lambda s: s.key)
def test_original_layout(layouts: Path, spec: ModelSpec) -> None:
    report = inspect(layouts / "original" / spec.key)
    expected_common(report, spec)
    assert report.layout.value == "wan_original"
    assert report.experts == spec.experts
    assert report.vae_z_dim == VAE_Z[spec.vae]
    assert report.registry_id == spec.original_id
    assert report.loadable
    assert "needs_conversion" in {f.code for f in report.findings}


@pytest.mark.parametrize("folder", ["single", "single_prefixed"])
@pytest.mark.parametrize("spec", SPECS, ids=lambda s: s.key)
def test_single_file(layouts: Path, spec: ModelSpec, folder: str) -> None:
    report = inspect(layouts / folder / f"{spec.key}.safetensors")
    expected_common(report, spec)
    assert report.layout.value == "single_file"
    assert report.registry_id == spec.original_id
    # a transformer alone is a part: not ready to load, and the headline says what is missing
    assert report.part == "transformer" and not report.loadable and report.is_wan
    assert headline(report).endswith("transformer only — needs a VAE, text encoder and tokenizer")


def test_comfyui_file_names_tell_wan22_experts_apart_from_wan21(tmp_path: Path) -> None:
    spec = BY_KEY["wan22_t2v_a14b"]
    high = write_single_file(spec, tmp_path / "wan2.2_t2v_high_noise_14B_fp8_scaled.safetensors",
                             dtype="F8_E4M3", prefix="model.diffusion_model.")
    report = inspect(high)
    assert (report.wan_version, report.registry_id) == ("2.2", "Wan-AI/Wan2.2-T2V-A14B")
    assert "one_expert" in {f.code for f in report.findings}
    plain = write_single_file(BY_KEY["wan21_t2v_14b"], tmp_path / "wan2.1_t2v_14B_fp16.safetensors", dtype="F16")
    assert inspect(plain).registry_id == "Wan-AI/Wan2.1-T2V-14B"
    i2v_720 = write_single_file(BY_KEY["wan21_i2v_14b_720p"], tmp_path / "wan2.1_i2v_720p_14B_fp16.safetensors")
    assert inspect(i2v_720).registry_id == "Wan-AI/Wan2.1-I2V-14B-720P"


def test_vae_and_text_encoder_files_are_parts_not_models(tmp_path: Path) -> None:
    for kind, z, version in (("wan2.1", 16, "2.1"), ("wan2.2", 48, "2.2")):
        report = inspect(write_vae_single_file(kind, tmp_path / f"{kind}_vae.safetensors"))
        assert (report.vae_kind, report.vae_z_dim) == (kind, z)
        assert not report.loadable and report.findings[-1].code == "only_a_part"
        as_json = report.to_dict()  # a Wan part: is_wan, the version its shapes tell, a headline naming it
        assert (as_json["is_wan"], as_json["wan_version"], as_json["part"]) == (True, version, "vae")
        assert headline(report) == f"Wan {version} VAE — one part of a model, not a whole model"
    report = inspect(write_umt5_single_file(tmp_path / "umt5_xxl_fp16.safetensors", "F16"))
    assert report.component("text_encoder") is not None and not report.loadable
    assert report.to_dict()["is_wan"] and report.wan_version is None
    assert headline(report) == "Wan text encoder (UMT5-XXL) — one part of a model, not a whole model"


def test_a_text_file_is_not_a_model_file(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("prompt ideas")
    report = inspect(tmp_path / "notes.txt")
    assert headline(report) == "Not a model file" and report.layout.value == "unknown"
    assert report.errors[0].message == "This is not a model file (a .txt file): model weights are .safetensors files."
    assert "single-file" not in render_text(report)


def test_an_empty_folder_is_one_sentence(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    report = inspect(tmp_path / "empty")
    assert headline(report) == "An empty folder" and [f.message for f in report.findings] == ["The folder is empty."]


def test_hf_cache_folder(layouts: Path) -> None:
    repo = next((layouts / "hub").glob("models--Wan-AI--Wan2.2-T2V-A14B-Diffusers"))
    report = inspect(repo)
    expected_common(report, BY_KEY["wan22_t2v_a14b"])
    assert report.registry_id == "Wan-AI/Wan2.2-T2V-A14B-Diffusers"
    assert "/snapshots/" in report.path
    hub = inspect(layouts / "hub")
    assert hub.is_collection and len(hub.models) == 2
    assert {m.registry_id for m in hub.models} == {"Wan-AI/Wan2.2-T2V-A14B-Diffusers", "Wan-AI/Wan2.2-TI2V-5B-Diffusers"}


def test_folder_of_several_models(layouts: Path) -> None:
    report = inspect(layouts / "diffusers")
    assert report.is_collection and len(report.models) == len(DIFFUSERS_SPECS)
    assert report.loadable
    result = run_cli("check", str(layouts / "diffusers"), "--json")
    assert result.returncode == 0
    assert len(json.loads(result.stdout)["models"]) == len(DIFFUSERS_SPECS)


def test_seed_guide_api(layouts: Path) -> None:
    arch = ArchitectureDetector().detect_model_architecture(layouts / "diffusers" / "wan22_t2v_a14b")
    assert arch.architecture_type.value == "wan_t2v"
    sig = arch.signature
    assert sig.is_wan_architecture() and sig.has_transformer_2 and sig.has_boundary_ratio
    assert sig.vae_dimensions == 3
    assert sig.component_classes["transformer"] == "WanTransformer3DModel"
    assert sig.pipeline_class == "WanPipeline"


def test_check_json_keys(layouts: Path) -> None:
    result = run_cli("check", str(layouts / "diffusers" / "wan22_ti2v_5b"), "--json")
    assert result.returncode == 0
    data = json.loads(result.stdout)
    assert data["architecture_type"] == "wan_ti2v" and data["wan_version"] == "2.2"
    assert data["layout"] == "diffusers" and data["pipeline_class"] == "WanPipeline"
    assert data["experts"] == 1 and data["boundary_ratio"] is None and data["vae_z_dim"] == 48
    assert 10e9 < data["parameters"] < 13e9  # 5B transformer + 5.7B UMT5 + 0.7B VAE
    assert data["registry_id"] == "Wan-AI/Wan2.2-TI2V-5B-Diffusers" and data["loadable"] is True
    for key in ("path", "is_wan", "findings"):
        assert key in data


# --------------------------------------------------------------------------- broken copies

@pytest.fixture
def a14b(tmp_path: Path) -> Path:
    return write_diffusers_layout(BY_KEY["wan22_t2v_a14b"], tmp_path / "Wan2.2-T2V-A14B-Diffusers")


def codes(report) -> set[str]:
    return {f.code for f in report.findings}


def finding(report, code: str):
    return next(f for f in report.findings if f.code == code)


def test_missing_shard_is_named(a14b: Path) -> None:
    shard = sorted((a14b / "transformer_2").glob("*.safetensors"))[3]
    shard.unlink()
    report = inspect(a14b)
    assert not report.loadable
    assert shard.name in finding(report, "shard_missing").message
    assert report.component("transformer_2").complete is False
    result = run_cli("check", str(a14b))
    assert result.returncode == 1 and shard.name in result.stdout


def test_truncated_shard_is_named(a14b: Path) -> None:
    shard = sorted((a14b / "transformer").glob("*.safetensors"))[0]
    with open(shard, "r+b") as fh:
        fh.truncate(shard.stat().st_size // 2)
    report = inspect(a14b)
    f = finding(report, "file_truncated")
    assert shard.name in f.message and "interrupted download" in f.message
    assert report.is_wan  # still recognised


def test_missing_component_folder(a14b: Path) -> None:
    shutil.rmtree(a14b / "vae")
    report = inspect(a14b)
    assert "component_missing" in codes(report)
    assert report.architecture_type.value == "wan_t2v"


def test_missing_model_index_still_detects(a14b: Path) -> None:
    (a14b / "model_index.json").unlink()
    report = inspect(a14b)
    assert "model_index_missing" in codes(report)
    assert report.architecture_type.value == "wan_t2v" and report.experts == 2
    assert report.wan_version == "2.2" and not report.loadable


def test_unparseable_model_index_still_detects(a14b: Path) -> None:
    (a14b / "model_index.json").write_text("{not json")
    report = inspect(a14b)
    assert "model_index_unreadable" in codes(report)
    assert report.architecture_type.value == "wan_t2v"


def test_missing_and_broken_transformer_config(a14b: Path) -> None:
    (a14b / "transformer" / "config.json").unlink()
    (a14b / "transformer_2" / "config.json").write_text("{oops")
    report = inspect(a14b)
    assert {"config_missing", "config_unreadable"} <= codes(report)
    assert report.task == "t2v" and report.size_class == "14B"  # from the headers


def test_stable_diffusion_class_over_wan_components(a14b: Path) -> None:
    index = json.loads((a14b / "model_index.json").read_text())
    index["_class_name"] = "StableDiffusionPipeline"
    (a14b / "model_index.json").write_text(json.dumps(index))
    report = inspect(a14b)
    f = finding(report, "class_name_mismatch")
    assert "StableDiffusionPipeline" in f.message and "Fix" in f.remedy
    assert report.is_wan and report.pipeline_class == "WanPipeline"


def test_wrong_wan_pipeline_class(tmp_path: Path) -> None:
    folder = write_diffusers_layout(BY_KEY["wan21_i2v_14b_480p"], tmp_path / "i2v")
    index = json.loads((folder / "model_index.json").read_text())
    index["_class_name"] = "WanPipeline"
    (folder / "model_index.json").write_text(json.dumps(index))
    assert "WanImageToVideoPipeline" in finding(inspect(folder), "class_name_mismatch").message


def test_ti2v_with_the_wan21_vae(tmp_path: Path) -> None:
    ti2v = write_diffusers_layout(BY_KEY["wan22_ti2v_5b"], tmp_path / "ti2v")
    other = write_diffusers_layout(BY_KEY["wan21_t2v_1_3b"], tmp_path / "t2v")
    shutil.rmtree(ti2v / "vae")
    (other / "vae").rename(ti2v / "vae")  # never copy sparse files: a copy writes every byte
    report = inspect(ti2v)
    f = finding(report, "vae_mismatch")
    assert "Wan2.2" in f.message and "z_dim 16" in f.message


def test_experts_of_different_models(a14b: Path, tmp_path: Path) -> None:
    other = write_diffusers_layout(BY_KEY["wan22_ti2v_5b"], tmp_path / "ti2v")
    shutil.rmtree(a14b / "transformer_2")
    (other / "transformer").rename(a14b / "transformer_2")
    assert "expert_mismatch" in codes(inspect(a14b))


def test_text_encoder_width_mismatch(a14b: Path) -> None:
    config = json.loads((a14b / "text_encoder" / "config.json").read_text())
    config["d_model"] = 2048
    (a14b / "text_encoder" / "config.json").write_text(json.dumps(config))
    f = finding(inspect(a14b), "text_dim_mismatch")
    assert "2048" in f.message and "4096" in f.message


def test_two_experts_without_boundary_ratio(a14b: Path) -> None:
    index = json.loads((a14b / "model_index.json").read_text())
    del index["boundary_ratio"]
    (a14b / "model_index.json").write_text(json.dumps(index))
    assert "boundary_ratio_missing" in codes(inspect(a14b))


def test_incomplete_original_download(tmp_path: Path) -> None:
    folder = write_original_layout(BY_KEY["wan22_t2v_a14b"], tmp_path / "orig")
    with open(folder / "models_t5_umt5-xxl-enc-bf16.pth", "r+b") as fh:
        fh.truncate(10**9)
    (folder / "Wan2.1_VAE.pth").unlink()
    report = inspect(folder)
    assert "models_t5_umt5-xxl-enc-bf16.pth" in finding(report, "file_truncated").message
    assert "Wan2.1_VAE.pth" in finding(report, "component_missing").remedy
    assert not report.loadable


@pytest.mark.parametrize("pipeline,family", [
    ("StableDiffusionPipeline", "stable_diffusion"), ("StableDiffusionXLPipeline", "stable_diffusion_xl"),
    ("StableDiffusion3Pipeline", "stable_diffusion_3"), ("FluxPipeline", "flux")])
def test_other_families(tmp_path: Path, pipeline: str, family: str) -> None:
    report = inspect(write_other_family(pipeline, tmp_path / pipeline))
    assert report.architecture_type.value == family
    assert not report.is_wan and report.pipeline_class == pipeline
    assert "not_wan" in codes(report) and "class_name_mismatch" not in codes(report)
    assert set(FAMILIES[pipeline]) - {"safety_checker"} <= {c.name for c in report.components}


def test_other_diffusers_pipeline(tmp_path: Path) -> None:
    folder = write_other_family("StableDiffusionPipeline", tmp_path / "kandinsky")
    index = json.loads((folder / "model_index.json").read_text())
    index["_class_name"] = "KandinskyV22Pipeline"
    del index["unet"]
    shutil.rmtree(folder / "unet")
    (folder / "model_index.json").write_text(json.dumps(index))
    report = inspect(folder)
    assert report.architecture_type.value == "diffusers_other" and report.pipeline_class == "KandinskyV22Pipeline"


def test_folder_of_text_files_is_not_a_model(tmp_path: Path) -> None:
    for i in range(3):
        (tmp_path / f"notes{i}.txt").write_text("hello")
    report = inspect(tmp_path)
    assert codes(report) == {"not_a_model"} and not report.loadable


def test_demo_models_are_recognised(demo_models_dir: Path) -> None:
    expected = {"wan22_t2v_a14b": ("wan_t2v", "2.2", 2, 16), "wan22_ti2v_5b": ("wan_ti2v", "2.2", 1, 48),
                "wan21_t2v": ("wan_t2v", "2.1", 1, 16), "wan21_i2v": ("wan_i2v", "2.1", 1, 16)}
    for name, (arch, version, experts, z) in expected.items():
        report = inspect(demo_models_dir / name)
        assert (report.architecture_type.value, report.wan_version, report.experts, report.vae_z_dim) == \
               (arch, version, experts, z), name
        assert report.loadable, [f.message for f in report.findings]


def test_a_component_folder_on_its_own(a14b: Path) -> None:
    report = inspect(a14b / "transformer")
    assert report.layout.value == "diffusers" and report.task == "t2v"
    assert "only_a_part" in codes(report) and "model_index.json" in finding(report, "only_a_part").remedy
    vae = inspect(a14b / "vae")
    assert vae.vae_z_dim == 16 and not vae.loadable


def test_a_missing_shard_is_not_mistaken_for_mismatched_experts(a14b: Path) -> None:
    sorted((a14b / "transformer").glob("*.safetensors"))[2].unlink()
    report = inspect(a14b)
    assert "shard_missing" in codes(report) and "expert_mismatch" not in codes(report)


@pytest.mark.parametrize("processor", ["CLIPImageProcessor", "CLIPImageProcessorFast", "CLIPImageProcessorPil"])
def test_image_processor_classes_diffusers_loads_are_accepted(demo_models_dir: Path, tmp_path: Path,
                                                              processor: str) -> None:
    """transformers 5 saves CLIPImageProcessorPil where torchvision is missing; all three load."""
    folder = tmp_path / "i2v"
    shutil.copytree(demo_models_dir / "wan21_i2v", folder)
    index = json.loads((folder / "model_index.json").read_text())
    index["image_processor"] = ["transformers", processor]
    (folder / "model_index.json").write_text(json.dumps(index))
    report = inspect(folder)
    assert report.loadable, [f.message for f in report.errors]
