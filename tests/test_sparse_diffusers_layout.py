"""The full-size sparse ``-Diffusers`` layouts are what the real repositories are.

Checks sizes (apparent and on disk), safetensors headers, parameter counts against the
published figures, index files, that diffusers and transformers accept every config and
build exactly the tensors the headers list, and the Hugging Face cache wrapping.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from core.check.safetensors_header import read_header
from tests.sparse import diffusers_layout as dl
from tests.sparse.specs import BY_KEY, SPECS

CHECKED = ("wan22_t2v_a14b", "wan22_ti2v_5b", "wan21_i2v_14b_480p")
DIFFUSERS_SPECS = tuple(s for s in SPECS if s.diffusers_id)

# Published file sizes of Wan-AI/Wan2.2-T2V-A14B-Diffusers (from a mirror's file listing).
A14B_TRANSFORMER_SHARDS = (
    4863171808, 4919594456, 4919465128, 4919594536, 4919465224, 4919594552,
    4919465224, 4919594552, 4919465224, 4919594552, 4919465224, 3095607280)
A14B_TEXT_ENCODER_SHARDS = (4935812536, 4983103192, 1442935480)
WAN21_VAE_BYTES = 507591892


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Every diffusers layout, written once for the module."""
    return dl.write_full_size_tree(tmp_path_factory.mktemp("models"))


def _weights(folder: Path) -> list[Path]:
    return sorted(folder.glob("*.safetensors"))


def _header_tensors(folder: Path) -> dict[str, tuple[int, ...]]:
    """name -> shape over every safetensors file of a component folder."""
    out: dict[str, tuple[int, ...]] = {}
    for path in _weights(folder):
        for name, info in read_header(path).tensors.items():
            assert name not in out, f"{name} in two shards"
            out[name] = info.shape
    return out


def _parameters(folder: Path) -> int:
    return sum(read_header(p).parameters for p in _weights(folder))


def _dtypes(folder: Path) -> set[str]:
    return {read_header(p).dominant_dtype for p in _weights(folder)}


# -- sizes -------------------------------------------------------------------------------

def test_a14b_has_the_published_size_and_takes_no_disk(tree: dict[str, Path]) -> None:
    root = tree["wan22_t2v_a14b"]
    assert 115e9 <= dl.apparent_size(root) <= 130e9
    assert dl.disk_usage(root) < 50 * 2**20
    for sub in ("transformer", "transformer_2"):
        assert tuple(p.stat().st_size for p in _weights(root / sub)) == A14B_TRANSFORMER_SHARDS
    assert tuple(p.stat().st_size for p in _weights(root / "text_encoder")) == A14B_TEXT_ENCODER_SHARDS
    assert (root / "vae" / "diffusion_pytorch_model.safetensors").stat().st_size == WAN21_VAE_BYTES


def test_whole_tree_is_under_a_few_megabytes_on_disk(tree: dict[str, Path]) -> None:
    assert set(tree) == {s.key for s in DIFFUSERS_SPECS}
    assert sum(dl.apparent_size(p) for p in tree.values()) > 500e9
    assert sum(dl.disk_usage(p) for p in tree.values()) < 50 * 2**20


@pytest.mark.parametrize("key", CHECKED)
def test_every_file_is_as_long_as_its_header_says(tree: dict[str, Path], key: str) -> None:
    for path in tree[key].rglob("*.safetensors"):
        header = read_header(path)
        assert header.metadata == {"format": "pt"}
        assert header.expected_file_size == path.stat().st_size, path


# -- parameters --------------------------------------------------------------------------

@pytest.mark.parametrize("key, transformer, vae", [
    ("wan22_t2v_a14b", 14.29e9, 127e6),
    ("wan22_ti2v_5b", 5.0e9, 705e6),
    ("wan21_i2v_14b_480p", 16.4e9, 127e6),  # 14.29 B + the CLIP branch (k_img/v_img, img_emb)
])
def test_parameter_counts_match_published(tree: dict[str, Path], key: str, transformer: float, vae: float) -> None:
    root, spec = tree[key], BY_KEY[key]
    tol = 0.02 if spec.vae == "wan2.2" else 0.01
    for sub in ("transformer", "transformer_2")[: spec.experts]:
        assert _parameters(root / sub) == pytest.approx(transformer, rel=tol)
        assert _dtypes(root / sub) == {"F32"}
    assert _parameters(root / "text_encoder") == pytest.approx(5.7e9, rel=0.03)
    assert _parameters(root / "vae") == pytest.approx(vae, rel=0.05)
    assert _dtypes(root / "vae") == {"F32"}
    assert _dtypes(root / "text_encoder") == {dl.repo_facts(spec).text_encoder_dtype}
    if spec.image_branch:
        assert _parameters(root / "image_encoder") == pytest.approx(632e6, rel=0.02)  # ViT-H/14 vision tower


def test_text_encoder_dtype_follows_the_repository(tree: dict[str, Path]) -> None:
    """Wan2.1 repositories hold the UMT5 encoder in float32 (5 shards), Wan2.2 ones in bf16 (3)."""
    assert len(_weights(tree["wan21_t2v_1_3b"] / "text_encoder")) == 5
    assert len(_weights(tree["wan22_ti2v_5b"] / "text_encoder")) == 3


# -- indexes -----------------------------------------------------------------------------

@pytest.mark.parametrize("key", CHECKED)
def test_index_weight_maps_name_every_tensor(tree: dict[str, Path], key: str) -> None:
    indexes = list(tree[key].rglob("*.safetensors.index.json"))
    assert indexes
    for index_path in indexes:
        index = json.loads(index_path.read_text())
        actual = {name: path.name for path in _weights(index_path.parent) for name in read_header(path).tensors}
        assert index["weight_map"] == actual
        total = sum(i.end - i.start for p in _weights(index_path.parent) for i in read_header(p).tensors.values())
        assert index["metadata"]["total_size"] == total


# -- the libraries accept what is written ----------------------------------------------

def _diffusers_tensors(config_path: Path) -> dict[str, tuple[int, ...]]:
    import diffusers
    from accelerate import init_empty_weights

    config = json.loads(config_path.read_text())
    with init_empty_weights(include_buffers=True):
        model = getattr(diffusers, config["_class_name"]).from_config(config)
    return {name: tuple(t.shape) for name, t in model.state_dict().items()}


def _transformers_tensors(folder: Path) -> dict[str, tuple[int, ...]]:
    import transformers
    from accelerate import init_empty_weights

    config = transformers.AutoConfig.from_pretrained(folder)
    model_cls = getattr(transformers, config.architectures[0])
    with init_empty_weights(include_buffers=True):
        model = model_cls(config)
    tied = set(getattr(model, "_tied_weights_keys", None) or ())
    return {name: tuple(t.shape) for name, t in model.state_dict().items() if name not in tied}


@pytest.mark.parametrize("spec", DIFFUSERS_SPECS, ids=lambda s: s.key)
def test_diffusers_builds_exactly_the_header_tensors(tree: dict[str, Path], spec) -> None:
    root = tree[spec.key]
    for sub in ("transformer", "transformer_2")[: spec.experts]:
        assert _diffusers_tensors(root / sub / "config.json") == _header_tensors(root / sub), sub
    if spec.key in CHECKED:
        assert _diffusers_tensors(root / "vae" / "config.json") == _header_tensors(root / "vae")


@pytest.mark.parametrize("key", ("wan22_t2v_a14b", "wan21_i2v_14b_480p"))
def test_transformers_builds_exactly_the_header_tensors(tree: dict[str, Path], key: str) -> None:
    root = tree[key]
    assert _transformers_tensors(root / "text_encoder") == _header_tensors(root / "text_encoder")
    if BY_KEY[key].image_branch:
        assert _transformers_tensors(root / "image_encoder") == _header_tensors(root / "image_encoder")


@pytest.mark.parametrize("key", CHECKED)
def test_scheduler_and_processor_load(tree: dict[str, Path], key: str) -> None:
    from diffusers import UniPCMultistepScheduler

    root = tree[key]
    scheduler = UniPCMultistepScheduler.from_pretrained(root, subfolder="scheduler")
    assert scheduler.config.prediction_type == "flow_prediction" and scheduler.config.use_flow_sigmas
    if BY_KEY[key].image_branch:
        from transformers import CLIPImageProcessor

        assert CLIPImageProcessor.from_pretrained(root / "image_processor").crop_size["height"] == 224


def test_model_index_is_the_published_one(tree: dict[str, Path]) -> None:
    import diffusers

    a14b = json.loads((tree["wan22_t2v_a14b"] / "model_index.json").read_text())
    assert a14b["_class_name"] == "WanPipeline" and a14b["boundary_ratio"] == 0.875
    assert a14b["transformer_2"] == ["diffusers", "WanTransformer3DModel"] and a14b["expand_timesteps"] is False
    ti2v = json.loads((tree["wan22_ti2v_5b"] / "model_index.json").read_text())
    assert ti2v["transformer_2"] == [None, None] and ti2v["boundary_ratio"] is None
    assert ti2v["expand_timesteps"] is True
    i2v22 = json.loads((tree["wan22_i2v_a14b"] / "model_index.json").read_text())
    assert i2v22["image_encoder"] == [None, None] and i2v22["boundary_ratio"] == 0.9
    i2v21 = json.loads((tree["wan21_i2v_14b_480p"] / "model_index.json").read_text())
    assert i2v21["image_encoder"] == ["transformers", "CLIPVisionModel"]
    assert "transformer_2" not in i2v21 and "boundary_ratio" not in i2v21  # saved by diffusers 0.33
    for spec in DIFFUSERS_SPECS:
        index = json.loads((tree[spec.key] / "model_index.json").read_text())
        assert index["_class_name"] == spec.pipeline_class and hasattr(diffusers, spec.pipeline_class)
        for name, value in index.items():
            if isinstance(value, list) and value[0] is not None:
                assert (tree[spec.key] / name).is_dir(), (spec.key, name)
        assert (tree[spec.key] / "transformer_2").is_dir() == (spec.experts == 2)


def test_s2v_has_no_diffusers_layout(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        dl.write_diffusers_layout(BY_KEY["wan22_s2v_14b"], tmp_path / "s2v")


# -- Hugging Face cache ------------------------------------------------------------------

def test_hf_cache_layout_resolves_to_full_size_blobs(tmp_path: Path) -> None:
    from huggingface_hub import scan_cache_dir, snapshot_download

    spec = BY_KEY["wan22_t2v_a14b"]
    repo = dl.write_hf_cache_layout(spec, tmp_path / "hub")
    plain = dl.write_diffusers_layout(spec, tmp_path / "plain")
    assert repo.name == "models--Wan-AI--Wan2.2-T2V-A14B-Diffusers"
    commit = (repo / "refs" / "main").read_text()
    snapshot = repo / "snapshots" / commit
    files = sorted(p for p in snapshot.rglob("*") if not p.is_dir())
    assert files and all(p.is_symlink() for p in files)
    for link in files:
        rel = link.relative_to(snapshot)
        target = os.readlink(link)
        assert not os.path.isabs(target) and target.startswith("../" * (len(rel.parts) + 1) + "blobs/")
        resolved = link.resolve()
        assert resolved.parent == (repo / "blobs").resolve() and resolved.is_file()
        assert resolved.stat().st_size == (plain / rel).stat().st_size, rel
    # identical small files share one blob, as on the hub
    assert (snapshot / "transformer/config.json").resolve() == (snapshot / "transformer_2/config.json").resolve()
    assert dl.disk_usage(repo) < 50 * 2**20
    # huggingface_hub itself finds the snapshot offline and sizes the repository
    found = snapshot_download(spec.diffusers_id, cache_dir=tmp_path / "hub", local_files_only=True)
    assert Path(found) == snapshot
    info = {r.repo_id: r for r in scan_cache_dir(tmp_path / "hub").repos}[spec.diffusers_id]
    assert 115e9 <= info.size_on_disk <= 130e9
    assert {r.commit_hash for r in info.revisions} == {commit}
