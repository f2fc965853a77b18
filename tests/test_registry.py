"""core.check.registry: the known models, the user registry file, and match() for the detector."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from dataclasses import FrozenInstanceError
from pathlib import Path

import pytest

from core.check.registry import BUILTIN_PATH, CompatibilityRegistry, ModelRequirements, RegistryError, get_compatibility_registry
from core.errors import WanError

ROOT = Path(__file__).resolve().parent.parent

ALL_IDS = [
    "Wan-AI/Wan2.2-T2V-A14B", "Wan-AI/Wan2.2-T2V-A14B-Diffusers",
    "Wan-AI/Wan2.2-I2V-A14B", "Wan-AI/Wan2.2-I2V-A14B-Diffusers",
    "Wan-AI/Wan2.2-TI2V-5B", "Wan-AI/Wan2.2-TI2V-5B-Diffusers",
    "Wan-AI/Wan2.2-S2V-14B",
    "Wan-AI/Wan2.2-Animate-14B", "Wan-AI/Wan2.2-Animate-14B-Diffusers",
    "Wan-AI/Wan2.1-T2V-1.3B", "Wan-AI/Wan2.1-T2V-1.3B-Diffusers",
    "Wan-AI/Wan2.1-T2V-14B", "Wan-AI/Wan2.1-T2V-14B-Diffusers",
    "Wan-AI/Wan2.1-I2V-14B-480P", "Wan-AI/Wan2.1-I2V-14B-480P-Diffusers",
    "Wan-AI/Wan2.1-I2V-14B-720P", "Wan-AI/Wan2.1-I2V-14B-720P-Diffusers",
    "Wan-AI/Wan2.1-FLF2V-14B-720P", "Wan-AI/Wan2.1-FLF2V-14B-720P-diffusers",
    "Wan-AI/Wan2.1-VACE-1.3B", "Wan-AI/Wan2.1-VACE-1.3B-diffusers",
    "Wan-AI/Wan2.1-VACE-14B", "Wan-AI/Wan2.1-VACE-14B-diffusers",
]
PIPELINES = {"t2v": "WanPipeline", "ti2v": "WanPipeline", "i2v": "WanImageToVideoPipeline",
             "flf2v": "WanImageToVideoPipeline", "vace": "WanVACEPipeline",
             "animate": "WanAnimatePipeline", "s2v": None}


@pytest.fixture(scope="module")
def reg() -> CompatibilityRegistry:
    return CompatibilityRegistry()


def write(tmp_path: Path, text: str, name: str = "user_models.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


# --- the built-in list -----------------------------------------------------------------------

def test_builtin_file_loads_without_problems(reg):
    assert reg.problems == []
    assert [e.model_id for e in reg.entries] == ALL_IDS


@pytest.mark.parametrize("model_id", ALL_IDS)
def test_every_id_resolves_with_plausible_requirements(reg, model_id):
    req = reg.get_pipeline_requirements(model_id)
    assert isinstance(req, ModelRequirements)
    assert req.model_id == model_id
    assert req.layout == ("diffusers" if model_id.lower().endswith("-diffusers") else "wan_original")
    assert req.pipeline_class == PIPELINES[req.task]
    assert req.wan_version == model_id.split("Wan")[-1][:3]
    vram = req.vram_requirements
    assert 4096 <= vram["min_mb"] <= vram["recommended_mb"] <= 96 * 1024
    assert vram["min_assumes"] and vram["recommended_assumes"]
    assert req.default_size in req.sizes
    assert all(w % 16 == 0 and h % 16 == 0 for w, h in req.sizes)
    assert req.steps > 0 and req.fps > 0 and req.guidance > 0 and req.shift > 0
    assert (req.frames - 1) % 4 == 0 or req.task == "s2v"
    dims = req.transformer
    assert {"dim", "in_channels", "out_channels", "num_layers", "ffn_dim", "heads"} <= set(dims)
    assert dims["dim"] == dims["heads"] * 128
    assert dims["out_channels"] == req.vae_z_dim
    assert req.parameters["text_encoder"] == 5_680_910_336
    assert req.parameters["vae"] > 0
    assert req.total_parameters > req.parameters["transformer"] * req.experts
    if req.pipeline_class is not None:
        assert f"diffusers>={req.min_diffusers}" in req.dependencies
        assert "bf16" in req.supported_optimizations
    else:
        assert req.min_diffusers is None and "diffusers" in req.notes
    if req.task in ("i2v", "flf2v", "vace", "animate"):
        assert "ftfy" in req.dependencies
    json.dumps(req.to_dict())


def test_size_classes_follow_the_transformer_width(reg):
    width = {"1.3B": 1536, "5B": 3072, "14B": 5120}
    for req in reg.entries:
        assert req.transformer["dim"] == width[req.size_class]
        assert req.transformer["num_layers"] == (40 if req.size_class == "14B" else 30)


def test_a14b_models_have_two_experts_and_their_boundary(reg):
    for model_id, boundary in [("Wan-AI/Wan2.2-T2V-A14B", 0.875), ("Wan-AI/Wan2.2-I2V-A14B", 0.9)]:
        for req in (reg.get_pipeline_requirements(model_id),
                    reg.get_pipeline_requirements(model_id + "-Diffusers")):
            assert req.experts == 2
            assert req.boundary_ratio == boundary
            assert req.guidance_2 is not None
            assert req.steps == 40
            assert req.total_parameters > 2 * 14e9
    t2v = reg.get_pipeline_requirements("Wan-AI/Wan2.2-T2V-A14B-Diffusers")
    assert (t2v.guidance, t2v.guidance_2, t2v.shift) == (4.0, 3.0, 12.0)
    # published: 59.8 GB at 720P with --offload_model True --convert_model_dtype
    assert t2v.vram_requirements["recommended_mb"] == round(59.8 * 1024 + 0.5)
    assert "offload" in t2v.vram_requirements["recommended_assumes"]
    for req in reg.entries:
        if "A14B" not in req.model_id:
            assert req.experts == 1 and req.boundary_ratio is None and req.guidance_2 is None


def test_ti2v_has_expand_timesteps_and_the_wan22_vae(reg):
    for model_id in ("Wan-AI/Wan2.2-TI2V-5B", "Wan-AI/Wan2.2-TI2V-5B-Diffusers"):
        req = reg.get_pipeline_requirements(model_id)
        assert req.expand_timesteps is True
        assert (req.vae, req.vae_z_dim) == ("wan2.2", 48)
        assert req.transformer["in_channels"] == 48
        assert (req.default_size, req.frames, req.fps) == ((1280, 704), 121, 24)
        assert all(w % 32 == 0 and h % 32 == 0 for w, h in req.sizes)
    for req in reg.entries:
        if req.task != "ti2v":
            assert req.expand_timesteps is False and (req.vae, req.vae_z_dim) == ("wan2.1", 16)


def test_published_wan21_figures(reg):
    small = reg.get_pipeline_requirements("Wan-AI/Wan2.1-T2V-1.3B")
    assert small.vram_requirements["min_mb"] == round(8.19 * 1024)
    big = reg.get_pipeline_requirements("Wan-AI/Wan2.1-T2V-14B-Diffusers")
    assert big.vram_requirements["min_mb"] == 13 * 1024
    assert "group offloading" in big.vram_requirements["min_assumes"]
    i2v = reg.get_pipeline_requirements("Wan-AI/Wan2.1-I2V-14B-480P")
    assert (i2v.shift, i2v.default_size) == (3.0, (832, 480))


def test_the_yaml_writes_shared_facts_once():
    lines = BUILTIN_PATH.read_text(encoding="utf-8").splitlines()
    text = "\n".join(line for line in lines if not line.lstrip().startswith("#"))
    assert text.count("transformer: {dim: 3072") == 1           # TI2V-5B, both repos
    assert text.count("Wan-AI/Wan2.2-TI2V-5B-Diffusers") == 1


# --- lookups ---------------------------------------------------------------------------------

def test_lookup_ignores_case_and_accepts_the_bare_name(reg):
    req = reg.get_pipeline_requirements("wan-ai/WAN2.2-t2v-a14b-diffusers")
    assert req.model_id == "Wan-AI/Wan2.2-T2V-A14B-Diffusers"
    assert reg.get_pipeline_requirements("  Wan2.1-VACE-14B-Diffusers ").model_id == \
        "Wan-AI/Wan2.1-VACE-14B-diffusers"
    assert "wan-ai/wan2.2-s2v-14b" in reg
    assert reg.get("Wan-AI/Wan9-T2V") is None and "nothing" not in reg


def test_unknown_id_error_lists_near_matches(reg):
    with pytest.raises(RegistryError) as info:
        reg.get_pipeline_requirements("Wan-AI/Wan2.2-TI2V-5B-Difusers")
    err = info.value
    assert isinstance(err, WanError)
    assert "Wan-AI/Wan2.2-TI2V-5B-Diffusers" in err.message
    assert "Did you mean" in err.message
    assert err.remedy and "user registry" in err.remedy
    with pytest.raises(RegistryError, match="Wan-AI/Wan2.1-T2V-14B"):
        reg.get_pipeline_requirements("Wan2.1-T2V-14")
    with pytest.raises(RegistryError) as far:
        reg.get_pipeline_requirements("stabilityai/sdxl")
    assert "Did you mean" not in far.value.message


def test_entries_are_frozen(reg):
    req = reg.entries[0]
    with pytest.raises(FrozenInstanceError):
        req.pipeline_class = "Other"  # type: ignore[misc]
    with pytest.raises(TypeError):
        req.vram_requirements["min_mb"] = 1  # type: ignore[index]


# --- match() ---------------------------------------------------------------------------------

def test_match_by_layout(reg):
    def m(**kw):
        found = reg.match(**kw)
        return found.model_id if found else None

    assert m(wan_version="2.2", task="t2v", size_class="14B", layout="diffusers") == \
        "Wan-AI/Wan2.2-T2V-A14B-Diffusers"
    assert m(wan_version="2.2", task="t2v", size_class="14B", layout="wan_original") == \
        "Wan-AI/Wan2.2-T2V-A14B"
    assert m(wan_version="2.2", task="ti2v", size_class="5B", layout="single_file") == \
        "Wan-AI/Wan2.2-TI2V-5B"
    assert m(wan_version=None, task="t2v", size_class="1.3b", layout="diffusers") == \
        "Wan-AI/Wan2.1-T2V-1.3B-Diffusers"
    assert m(wan_version=None, task="t2v", size_class="14B", layout="diffusers") == \
        "Wan-AI/Wan2.2-T2V-A14B-Diffusers"          # first listed
    assert m(wan_version="2.2", task="s2v", size_class="14B", layout="diffusers") is None
    assert m(wan_version="2.2", task="s2v", size_class="14B", layout="single_file") == \
        "Wan-AI/Wan2.2-S2V-14B"
    assert m(wan_version="2.1", task="t2v", size_class="5B", layout="diffusers") is None
    assert m(wan_version=None, task="vace", size_class="14B", layout=None) == "Wan-AI/Wan2.1-VACE-14B"


@pytest.mark.parametrize("hint, layout, expected", [
    (None, "diffusers", "Wan-AI/Wan2.1-I2V-14B-480P-Diffusers"),
    ("Wan2.1-I2V-14B-720P-Diffusers", "diffusers", "Wan-AI/Wan2.1-I2V-14B-720P-Diffusers"),
    ("/models/models--Wan-AI--Wan2.1-I2V-14B-720P-Diffusers/snapshots/abc", "diffusers",
     "Wan-AI/Wan2.1-I2V-14B-720P-Diffusers"),
    ("/models/wan2.1-i2v-14b-480p", "wan_original", "Wan-AI/Wan2.1-I2V-14B-480P"),
    ("WAN2.1-I2V-14B-720P", "wan_original", "Wan-AI/Wan2.1-I2V-14B-720P"),
    ("wan2.1_i2v_720p_14B_fp8_e4m3fn.safetensors", "single_file", "Wan-AI/Wan2.1-I2V-14B-720P"),
    ("my-favourite-model", "diffusers", "Wan-AI/Wan2.1-I2V-14B-480P-Diffusers"),
])
def test_match_prefers_the_name_hint(reg, hint, layout, expected):
    found = reg.match(wan_version="2.1", task="i2v", size_class="14B", layout=layout, name_hint=hint)
    assert found is not None and found.model_id == expected


# --- the user registry file ------------------------------------------------------------------

NEW_MODEL = """
- id: me/Wan2.1-T2V-14B-Finetune
  name: My fine-tune
  wan_version: 2.1
  task: t2v
  size_class: 14b
  pipeline_class: WanPipeline
  sizes: [832x480, 480x832]
  vram: {min_mb: 14000, recommended_mb: 40000, min_assumes: group offloading}
"""


def test_user_file_adds_a_model(tmp_path):
    reg = CompatibilityRegistry(user_path=write(tmp_path, NEW_MODEL))
    assert reg.problems == []
    req = reg.get_pipeline_requirements("ME/wan2.1-t2v-14b-finetune")
    assert (req.wan_version, req.size_class, req.layout) == ("2.1", "14B", "wan_original")
    assert req.default_size == (832, 480) and req.frames == 81            # built-in defaults
    assert req.vram_requirements == {"min_mb": 14000, "recommended_mb": 40000,
                                     "min_assumes": "group offloading", "recommended_assumes": ""}
    assert req.source.endswith("user_models.yaml")
    assert req.model_id == reg.entries[-1].model_id and len(reg) == len(ALL_IDS) + 1


def test_user_file_as_a_mapping_with_repos(tmp_path):
    text = """
me/Wan2.2-TI2V-5B-Turbo-Diffusers:
  name: Turbo
  wan_version: "2.2"
  task: ti2v
  size_class: 5B
  pipeline_class: WanPipeline
  vae: wan2.2
  expand_timesteps: true
  default_size: 1280x704
  steps: 8
  guidance: 1.0
  shift: 5.0
  vram: {min_mb: 8000, recommended_mb: 16000}
"""
    reg = CompatibilityRegistry(user_path=write(tmp_path, text))
    assert reg.problems == []
    req = reg.get_pipeline_requirements("me/Wan2.2-TI2V-5B-Turbo-Diffusers")
    assert (req.layout, req.sizes, req.steps, req.vae_z_dim) == ("diffusers", ((1280, 704),), 8, 48)


def test_user_file_overrides_fields_of_a_known_model(tmp_path):
    text = """
- id: wan-ai/wan2.2-ti2v-5b-diffusers
  vram: {min_mb: 9000}
  steps: 30
- repos: {wan_original: Wan-AI/Wan2.1-T2V-1.3B, diffusers: Wan-AI/Wan2.1-T2V-1.3B-Diffusers}
  guidance: 6.0
"""
    builtin = CompatibilityRegistry()
    reg = CompatibilityRegistry(user_path=write(tmp_path, text))
    assert reg.problems == []
    req = reg.get_pipeline_requirements("Wan-AI/Wan2.2-TI2V-5B-Diffusers")
    before = builtin.get_pipeline_requirements("Wan-AI/Wan2.2-TI2V-5B-Diffusers")
    assert req.model_id == "Wan-AI/Wan2.2-TI2V-5B-Diffusers"        # the built-in spelling
    assert req.vram_requirements["min_mb"] == 9000 and req.steps == 30
    assert req.vram_requirements["recommended_mb"] == before.vram_requirements["recommended_mb"]
    assert (req.expand_timesteps, req.vae, req.pipeline_class) == (True, "wan2.2", "WanPipeline")
    assert reg.get_pipeline_requirements("Wan-AI/Wan2.2-TI2V-5B").steps == 50   # other layout kept
    assert reg.get_pipeline_requirements("Wan-AI/Wan2.1-T2V-1.3B").guidance == 6.0
    assert reg.get_pipeline_requirements("Wan-AI/Wan2.1-T2V-1.3B-Diffusers").guidance == 6.0
    assert len(reg) == len(ALL_IDS)
    assert [e.model_id for e in reg.entries] == ALL_IDS                  # order kept


def test_malformed_user_entries_are_reported_and_skipped(tmp_path):
    text = NEW_MODEL + """
- id: Wan-AI/Wan2.2-TI2V-5B-Diffusers
  vram: {min_mb: lots}
- id: me/bad-task
  name: Bad task
  wan_version: "2.1"
  task: t3v
  size_class: 14B
  pipeline_class: WanPipeline
  sizes: [832x480]
  vram: {min_mb: 1000, recommended_mb: 2000}
- id: me/missing-vram
  name: No memory figures
  wan_version: "2.2"
  task: t2v
  size_class: 14B
  pipeline_class: WanPipeline
  sizes: [832x480]
- id: Wan-AI/Wan2.1-T2V-14B
  vram: {min_mb: 90000}
- id: Wan-AI/Wan2.2-T2V-A14B
  experts: 1
- id: Wan-AI/Wan2.1-VACE-14B
  stepz: 12
- just a string
"""
    path = write(tmp_path, text)
    reg = CompatibilityRegistry(user_path=path)
    problems = "\n".join(reg.problems)
    assert "user_models.yaml: entry 'Wan-AI/Wan2.2-TI2V-5B-Diffusers', key 'vram': must give min_mb" \
        in problems
    assert "entry 'me/bad-task', key 'task': must be one of t2v" in problems
    assert "entry 'me/missing-vram', key 'vram': is required for a new model" in problems
    assert "entry 'Wan-AI/Wan2.1-T2V-14B', key 'vram': must have min_mb (90000) no larger" in problems
    assert "entry 'Wan-AI/Wan2.2-T2V-A14B', key 'boundary_ratio'" in problems
    assert "entry 'Wan-AI/Wan2.1-VACE-14B', key 'stepz': is not a known field" in problems
    assert "entry 8: must be a mapping" in problems
    assert all(p.split(":")[0].endswith("user_models.yaml") for p in reg.problems)  # names the file
    # the bad ones are skipped; the good one and the built-in values stay
    assert "me/bad-task" not in reg and "me/missing-vram" not in reg
    assert "me/Wan2.1-T2V-14B-Finetune" in reg
    assert reg.get_pipeline_requirements("Wan-AI/Wan2.2-TI2V-5B-Diffusers").vram_requirements["min_mb"] == 8192
    assert reg.get_pipeline_requirements("Wan-AI/Wan2.2-T2V-A14B").experts == 2
    assert reg.get_pipeline_requirements("Wan-AI/Wan2.1-VACE-14B").steps == 50


@pytest.mark.parametrize("text, expected", [
    ("- id: [unclosed\n  name: x\n", "is not valid YAML at line"),
    ("models: {\n", "is not valid YAML"),
    ("42\n", "must be a list of models or a mapping"),
])
def test_unparseable_user_file_is_one_problem(tmp_path, text, expected):
    reg = CompatibilityRegistry(user_path=write(tmp_path, text))
    assert len(reg.problems) == 1 and expected in reg.problems[0]
    assert "user_models.yaml" in reg.problems[0]
    assert len(reg) == len(ALL_IDS)


def test_user_file_edge_cases(tmp_path):
    assert CompatibilityRegistry(user_path=tmp_path / "absent.yaml").problems == []
    assert CompatibilityRegistry(user_path=write(tmp_path, "")).problems == []
    assert CompatibilityRegistry(user_path=write(tmp_path, "# nothing yet\n")).problems == []
    (tmp_path / "latin1.yaml").write_bytes(b"- id: caf\xe9\n")
    assert "not UTF-8" in CompatibilityRegistry(user_path=tmp_path / "latin1.yaml").problems[0]
    assert "cannot be read" in CompatibilityRegistry(user_path=tmp_path).problems[0]  # a folder


# --- the app-wide instance -------------------------------------------------------------------

def test_get_compatibility_registry_is_cached_per_path(tmp_path):
    path = write(tmp_path, NEW_MODEL)
    first = get_compatibility_registry(str(path))
    assert first is get_compatibility_registry(str(path))
    assert "me/Wan2.1-T2V-14B-Finetune" in first
    path.write_text("", encoding="utf-8")
    again = get_compatibility_registry(str(path), reload=True)
    assert again is not first and "me/Wan2.1-T2V-14B-Finetune" not in again


def test_default_user_path_comes_from_config(tmp_path, monkeypatch):
    config = pytest.importorskip("core.config")
    write(tmp_path, NEW_MODEL, name="mine.yaml")
    write(tmp_path, "user_registry: ./mine.yaml\n", name="config.yaml")
    monkeypatch.setenv("WAN_COMPAT_CONFIG", str(tmp_path / "config.yaml"))
    previous = config.use(None)                       # this process reads its config afresh, once
    try:
        reg = get_compatibility_registry(reload=True)
        assert "me/Wan2.1-T2V-14B-Finetune" in reg and reg.problems == []
        write(tmp_path, "port: many\n", name="config.yaml")
        assert "me/Wan2.1-T2V-14B-Finetune" in get_compatibility_registry(reload=True)   # not read again
        config.use(None)                              # as a new process would: the broken file is read
        broken = get_compatibility_registry(reload=True)
        assert len(broken) == len(ALL_IDS)
        assert any("configuration" in p and "`port`" in p for p in broken.problems)
    finally:
        config.use(previous)
        monkeypatch.delenv("WAN_COMPAT_CONFIG")
        get_compatibility_registry(reload=True)


def test_a_config_passed_in_names_the_user_registry(tmp_path):
    config = pytest.importorskip("core.config")
    write(tmp_path, NEW_MODEL, name="theirs.yaml")
    cfg = config.load_config(write(tmp_path, "user_registry: ./theirs.yaml\n", name="other.yaml"))
    reg = get_compatibility_registry(cfg.user_registry)
    assert "me/Wan2.1-T2V-14B-Finetune" in reg and reg.problems == []


def test_loading_is_fast_and_imports_neither_torch_nor_diffusers():
    code = (
        "import sys, time\n"
        "t = time.perf_counter()\n"
        "from core.check.registry import CompatibilityRegistry\n"
        "r = CompatibilityRegistry()\n"
        "assert len(r) == 23 and not r.problems\n"
        "print(time.perf_counter() - t)\n"
        "assert not {'torch', 'diffusers', 'gradio', 'transformers'} & set(sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stderr
    best = min(_build_seconds() for _ in range(5))
    assert best < 0.030, f"building the registry took {best * 1000:.1f} ms"


def _build_seconds() -> float:
    start = time.perf_counter()
    CompatibilityRegistry()
    return time.perf_counter() - start
