"""Fix: repairs in place on broken copies of the demo models and of full-size sparse layouts.

Every repair is checked by Model Check afterwards (ready to load, no error finding), by a
second plan that finds nothing to do, by its backups, and, for the demo models, by loading
the repaired folder and generating a tiny video. A dry run must leave every byte alone.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from core import fix
from core.check.detect import inspect
from core.check.report import Severity
from core.errors import WanError
from tests.conftest import run_cli
from tests.sparse.diffusers_layout import disk_usage, model_index, write_diffusers_layout
from tests.sparse.specs import BY_KEY, SPECS

SMALL = 1 << 20


# --------------------------------------------------------------------------- helpers

def tree_state(root: Path, *, with_backups: bool = False) -> dict[str, str]:
    """Every file under ``root``: a content hash for small files; size, inode and mtime for big
    (sparse) ones, whose 100 GB of holes are not worth reading. Fix's own backup folder is
    left out unless asked for."""
    out = {}
    for p in sorted(root.rglob("*")):
        rel = p.relative_to(root).as_posix()
        if not with_backups and rel.split("/")[0] == fix.BACKUP_DIR:
            continue
        if p.is_dir():
            out[rel + "/"] = "dir"
            continue
        st = p.stat()
        if st.st_size <= SMALL:
            out[rel] = hashlib.sha256(p.read_bytes()).hexdigest()
        else:
            out[rel] = f"big:{st.st_size}:{st.st_ino}:{st.st_mtime_ns}"
    return out


def read_json(path: Path) -> dict:
    return json.loads(path.read_text())


def edit_json(path: Path, change: Callable[[dict], None]) -> None:
    obj = read_json(path)
    change(obj)
    path.write_text(json.dumps(obj, indent=2))


def assert_ready(report) -> None:
    errors = [f"{f.code}: {f.message}" for f in report.findings if f.severity is Severity.ERROR]
    assert not errors, errors
    assert fix.is_ready(report), report.findings


def apply_and_check(folder: Path, expected_codes: list[str]) -> fix.FixResult:
    """Plan, check the codes, execute, then: ready, nothing more to do, backups hold the originals."""
    before = tree_state(folder)
    p = fix.plan(inspect(folder))
    assert [a.code for a in p.actions] == expected_codes, p.describe()
    assert not p.manual_steps, p.describe()
    assert tree_state(folder) == before  # planning reads only
    result = p.execute()
    assert not result.errors, result.errors
    assert result.fixes_applied == [a.description for a in p.actions]
    assert_ready(result.report_after)
    again = fix.plan(inspect(folder))
    assert again.is_empty and not again.manual_steps, again.describe()
    # backups: every replaced file, byte for byte; never a weights file
    backup = Path(result.backup_dir)
    assert backup.parent == folder / fix.BACKUP_DIR
    journal = read_json(backup / "journal.json")
    assert journal["state"] == "done"
    for rel in {w for a in p.actions for w in a.writes}:
        saved = backup / "files" / rel
        if rel in before:
            assert hashlib.sha256(saved.read_bytes()).hexdigest() == before[rel], rel
        else:
            assert not saved.exists(), rel
    assert not list(backup.rglob("*.safetensors"))
    assert not list(folder.rglob("*" + ".wan_compat_tmp"))
    assert not fix.is_locked(folder)   # the lock file stays (see core.fix.lock); nobody holds it
    return result


def load_and_generate(folder: Path, tmp_path: Path) -> None:
    """The loader takes the repaired folder and makes 5 frames of 32x32 in 2 steps."""
    pytest.importorskip("torch")
    from core.run.generation import GenerationConfig
    from core.run.load import WanPipelineLoader
    wrapper = WanPipelineLoader().load_wan_pipeline(folder)
    extra = {}
    if wrapper.report.pipeline_class == "WanImageToVideoPipeline":
        from PIL import Image
        image = tmp_path / "start.png"
        Image.new("RGB", (32, 32), (200, 30, 30)).save(image)
        extra["image"] = str(image)
    frames, result = wrapper.generate_frames(GenerationConfig(prompt="a cat", width=32, height=32, num_frames=5,
                                                              num_inference_steps=2, seed=1, **extra))
    assert result.success, result.errors
    assert frames.shape == (5, 32, 32, 3)


@pytest.fixture
def demo_copy(demo_models_dir: Path, tmp_path: Path) -> Callable[[str], Path]:
    """A fresh copy of a demo model (real small files; copying them is fine)."""
    def make(name: str) -> Path:
        target = tmp_path / "models" / name
        shutil.copytree(demo_models_dir / name, target)
        return target
    return make


@pytest.fixture
def sparse(tmp_path: Path) -> Callable[[str], Path]:
    """A fresh full-size sparse -Diffusers layout (written anew; never copied)."""
    def make(key: str, name: str | None = None) -> Path:
        return write_diffusers_layout(BY_KEY[key], tmp_path / "models" / (name or key))
    return make


# --------------------------------------------------------------------------- repairs on demo models

def _no_index(root: Path) -> None:
    (root / "model_index.json").unlink()


def _bad_index(root: Path) -> None:
    (root / "model_index.json").write_text('{"_class_name": "WanPipeline", "vae": ["diffusers", ')


def _index(**changes) -> Callable[[Path], None]:
    def change(root: Path) -> None:
        def apply(index: dict) -> None:
            for key, value in changes.items():
                if value is ...:
                    index.pop(key, None)
                else:
                    index[key] = value
        edit_json(root / "model_index.json", apply)
    return change


def _tokenizer_class(root: Path) -> None:
    edit_json(root / "tokenizer" / "tokenizer_config.json", lambda c: c.update(tokenizer_class="UMT5Tokenizer"))
    _index(tokenizer=["transformers", "UMT5Tokenizer"])(root)


def _misnamed_text_encoder(root: Path) -> None:
    folder = root / "text_encoder"
    os.rename(folder / "model.safetensors", folder / "diffusion_pytorch_model.safetensors")


DEMO_CASES = {
    "a14b_index_missing": ("wan22_t2v_a14b", _no_index, ["rebuild_model_index"]),
    "ti2v_index_unreadable": ("wan22_ti2v_5b", _bad_index, ["rebuild_model_index"]),
    "i2v_index_missing": ("wan21_i2v", _no_index, ["rebuild_model_index"]),
    "wrong_pipeline_class": ("wan21_t2v", _index(_class_name="WanImageToVideoPipeline"), ["set_pipeline_class"]),
    "text_encoder_class": ("wan21_t2v", _index(text_encoder=["transformers", "CLIPTextModel"]),
                           ["fix_component_class"]),
    "entry_without_folder": ("wan21_t2v", _index(transformer_2=["diffusers", "WanTransformer3DModel"]),
                             ["null_missing_component"]),
    "boundary_missing": ("wan22_t2v_a14b", _index(boundary_ratio=...), ["set_boundary_ratio"]),
    "expand_missing": ("wan22_ti2v_5b", _index(expand_timesteps=False), ["set_expand_timesteps"]),
    "scheduler_missing": ("wan21_t2v", lambda r: shutil.rmtree(r / "scheduler"), ["write_scheduler_config"]),
    "scheduler_unreadable": ("wan22_t2v_a14b", lambda r: (r / "scheduler" / "scheduler_config.json").write_text("{"),
                             ["write_scheduler_config"]),
    "scheduler_not_in_index": ("wan21_i2v", _index(scheduler=...), ["add_component_entry"]),
    "tokenizer_class": ("wan21_t2v", _tokenizer_class, ["fix_tokenizer_class", "fix_tokenizer_class"]),
    "weights_misnamed": ("wan21_t2v", _misnamed_text_encoder, ["rename_weights"]),
}


@pytest.mark.parametrize("case", list(DEMO_CASES))
def test_repair_demo_model_then_load_and_generate(case: str, demo_copy, demo_models_dir: Path,
                                                  tmp_path: Path) -> None:
    name, breakage, codes = DEMO_CASES[case]
    folder = demo_copy(name)
    breakage(folder)
    apply_and_check(folder, codes)
    if case in ("a14b_index_missing", "ti2v_index_unreadable", "i2v_index_missing"):
        rebuilt = read_json(folder / "model_index.json")
        assert rebuilt == read_json(demo_models_dir / name / "model_index.json")  # same diffusers wrote both
    load_and_generate(folder, tmp_path)


@pytest.mark.parametrize("case,finding", [("text_encoder_class", "component_class_mismatch"),
                                          ("tokenizer_class", None), ("weights_misnamed", "weights_misnamed")])
def test_those_breakages_really_stop_loading(case: str, finding: str | None, demo_copy) -> None:
    """These folders do not load as the model they are (an error, or, worse, a text encoder of
    the wrong class with random weights). Model Check names two of them; a tokenizer class the
    installed transformers lacks needs transformers imported to see, so Fix finds that itself."""
    pytest.importorskip("torch")
    from core.run.load import WanPipelineLoader
    name, breakage, _ = DEMO_CASES[case]
    folder = demo_copy(name)
    breakage(folder)
    report = inspect(folder)
    if finding is not None:
        assert not report.loadable and finding in {f.code for f in report.findings}
    else:
        assert report.loadable
    try:
        wrapper = WanPipelineLoader().load_wan_pipeline(folder)
    except (WanError, ValueError, OSError):
        return
    assert type(wrapper.pipeline.text_encoder).__name__ != "UMT5EncoderModel"


def test_scheduler_written_from_the_registry(demo_copy) -> None:
    folder = demo_copy("wan22_t2v_a14b")
    shutil.rmtree(folder / "scheduler")
    apply_and_check(folder, ["write_scheduler_config"])
    config = read_json(folder / "scheduler" / "scheduler_config.json")
    assert config["_class_name"] == "UniPCMultistepScheduler"
    assert config["prediction_type"] == "flow_prediction" and config["use_flow_sigmas"] is True
    assert config["flow_shift"] == 12.0  # Wan2.2 T2V-A14B's shift in the registry


def test_several_repairs_in_one_plan(demo_copy, tmp_path: Path) -> None:
    folder = demo_copy("wan22_t2v_a14b")
    _tokenizer_class(folder)
    _misnamed_text_encoder(folder)
    (folder / "scheduler" / "scheduler_config.json").write_text("not json")
    _index(_class_name="WanImageToVideoPipeline", boundary_ratio=..., vae=["diffusers", "AutoencoderKL"])(folder)
    apply_and_check(folder, ["write_scheduler_config", "fix_tokenizer_class", "rename_weights", "set_pipeline_class",
                             "fix_tokenizer_class", "fix_component_class", "set_boundary_ratio"])
    load_and_generate(folder, tmp_path)


# --------------------------------------------------------------------------- dry run, idempotence, undo

def test_dry_run_changes_nothing(demo_copy) -> None:
    folder = demo_copy("wan21_i2v")
    _no_index(folder)
    shutil.rmtree(folder / "scheduler")
    _misnamed_text_encoder(folder)
    before = tree_state(folder, with_backups=True)
    result = fix.apply_wan_compatibility_fix(folder, dry_run=True)
    assert result["dry_run"] is True and result["fixes_applied"] == [] and result["report_after"] is None
    assert len(result["fixes_planned"]) == 3 and result["report_before"]["loadable"] is False
    cli = run_cli("fix", str(folder))
    assert cli.returncode == 1, cli.stderr
    assert "dry run" in cli.stdout and "rebuild" in cli.stdout.lower()
    assert tree_state(folder, with_backups=True) == before
    assert not (folder / fix.BACKUP_DIR).exists()


def test_apply_twice_finds_nothing_the_second_time(demo_copy) -> None:
    folder = demo_copy("wan22_ti2v_5b")
    _bad_index(folder)
    first = fix.apply_wan_compatibility_fix(folder)
    assert first["fixes_applied"] and first["report_after"]["loadable"] and first["backup_dir"]
    state = tree_state(folder, with_backups=True)
    second = fix.apply_wan_compatibility_fix(folder)
    assert second["fixes_applied"] == [] and second["backup_dir"] is None and second["errors"] == []
    assert second["report_after"]["loadable"]
    assert tree_state(folder, with_backups=True) == state


def test_healthy_models_need_nothing(demo_models_dir: Path, sparse) -> None:
    for name in ("wan22_t2v_a14b", "wan22_ti2v_5b", "wan21_t2v", "wan21_i2v"):
        p = fix.plan(inspect(demo_models_dir / name))
        assert p.is_empty and not p.manual_steps and not p.notes, p.describe()
    for spec in SPECS:
        if spec.diffusers_id:
            p = fix.plan(inspect(sparse(spec.key)))
            assert p.is_empty and not p.manual_steps, (spec.key, p.describe())


def test_undo_restores_every_byte(demo_copy) -> None:
    folder = demo_copy("wan21_t2v")
    _tokenizer_class(folder)
    _misnamed_text_encoder(folder)
    shutil.rmtree(folder / "scheduler")
    before = tree_state(folder)
    result = fix.plan(inspect(folder)).execute()
    assert result.ok and tree_state(folder) != before
    undone = fix.undo_fix(folder)
    assert not undone.errors and undone.fixes_applied
    assert tree_state(folder) == before
    assert read_json(Path(result.backup_dir) / "journal.json")["state"] == "undone"
    with pytest.raises(WanError):
        fix.undo_fix(folder)  # nothing left to undo


def test_a_folder_changed_after_planning_is_not_touched(demo_copy) -> None:
    folder = demo_copy("wan22_t2v_a14b")
    _index(boundary_ratio=...)(folder)
    p = fix.plan(inspect(folder))
    edit_json(folder / "model_index.json", lambda i: i.update(boundary_ratio=0.5))
    before = tree_state(folder)
    with pytest.raises(WanError, match="changed after this plan"):
        p.execute()
    assert tree_state(folder) == before and not (folder / fix.BACKUP_DIR).exists()


# One fix at a time per folder (threads, processes, a lock file left behind): tests/test_fix_lock.py


# --------------------------------------------------------------------------- full-size sparse layouts

@pytest.mark.parametrize("key", ["wan22_t2v_a14b", "wan22_i2v_a14b", "wan22_ti2v_5b", "wan22_animate_14b"])
def test_rebuilt_model_index_matches_the_published_one(key: str, sparse) -> None:
    folder = sparse(key)
    _no_index(folder)
    apply_and_check(folder, ["rebuild_model_index"])
    rebuilt = read_json(folder / "model_index.json")
    published = model_index(BY_KEY[key])
    assert {k: v for k, v in rebuilt.items() if k != "_diffusers_version"} == \
           {k: v for k, v in published.items() if k != "_diffusers_version"}


@pytest.mark.parametrize("key", ["wan21_t2v_14b", "wan21_i2v_14b_480p", "wan21_flf2v_14b", "wan21_vace_1_3b"])
def test_rebuilt_model_index_of_older_repositories(key: str, sparse) -> None:
    """Wan2.1 repositories were saved before transformer_2 existed: the rebuilt index adds the
    empty slots and keeps everything the published one says."""
    folder = sparse(key)
    _bad_index(folder)
    apply_and_check(folder, ["rebuild_model_index"])
    rebuilt = read_json(folder / "model_index.json")
    published = model_index(BY_KEY[key])
    assert all(rebuilt[k] == v for k, v in published.items() if k != "_diffusers_version")
    assert rebuilt["transformer_2"] == [None, None] and rebuilt["boundary_ratio"] is None


@pytest.mark.parametrize("key,ratio", [("wan22_t2v_a14b", 0.875), ("wan22_i2v_a14b", 0.9)])
def test_boundary_ratio_from_the_registry(key: str, ratio: float, sparse) -> None:
    folder = sparse(key)
    _index(boundary_ratio=None)(folder)
    apply_and_check(folder, ["set_boundary_ratio"])
    assert read_json(folder / "model_index.json")["boundary_ratio"] == ratio


def test_sparse_repairs_rename_weights_without_copying(sparse) -> None:
    folder = sparse("wan22_t2v_a14b")
    shutil.rmtree(folder / "scheduler")
    vae = folder / "vae" / "diffusion_pytorch_model.safetensors"
    variant = vae.with_name("diffusion_pytorch_model.fp16.safetensors")
    os.rename(vae, variant)
    inode, used = variant.stat().st_ino, disk_usage(folder)
    _index(text_encoder=["diffusers", "UMT5EncoderModel"], expand_timesteps=...)(folder)
    apply_and_check(folder, ["write_scheduler_config", "rename_weights", "fix_component_class"])
    assert vae.stat().st_ino == inode and not variant.exists()
    assert disk_usage(folder) < used + SMALL  # nothing big was written or copied
    assert read_json(folder / "scheduler" / "scheduler_config.json")["flow_shift"] == 12.0
    assert "expand_timesteps" not in read_json(folder / "model_index.json")  # optional: left as it was


def _manual(folder: Path) -> fix.FixPlan:
    p = fix.plan(inspect(folder))
    assert not p.actions, p.describe()
    assert p.manual_steps, p.describe()
    return p


def test_missing_shard_is_a_manual_step(sparse) -> None:
    folder = sparse("wan22_t2v_a14b")
    shard = "transformer_2/diffusion_pytorch_model-00003-of-00012.safetensors"
    (folder / shard).unlink()
    before = tree_state(folder)
    p = _manual(folder)
    step = p.manual_steps[0]
    assert step.repo_id == "Wan-AI/Wan2.2-T2V-A14B-Diffusers" and step.files == (shard,)
    assert shard in step.fetch and "Wan-AI/Wan2.2-T2V-A14B-Diffusers" in step.fetch
    assert step.where == str(folder / "transformer_2") + os.sep
    assert step.command == f"hf download Wan-AI/Wan2.2-T2V-A14B-Diffusers {shard} --local-dir {folder}"
    result = p.execute()
    assert result.fixes_applied == [] and tree_state(folder) == before
    text = "\n".join(p.describe())
    assert shard in text and "hf download" in text


def test_truncated_file_is_a_manual_step(sparse) -> None:
    folder = sparse("wan21_t2v_14b")
    shard = "text_encoder/model-00002-of-00005.safetensors"
    path = folder / shard
    os.truncate(path, path.stat().st_size // 2)
    step = _manual(folder).manual_steps[0]
    assert step.files == (shard,) and step.repo_id == "Wan-AI/Wan2.1-T2V-14B-Diffusers"
    assert "delete the damaged copy" in step.fetch and step.where == str(folder / "text_encoder") + os.sep


def test_wrong_vae_is_a_manual_step(sparse) -> None:
    folder = sparse("wan22_ti2v_5b")
    other = sparse("wan21_t2v_1_3b", "other")
    shutil.rmtree(folder / "vae")
    os.rename(other / "vae", folder / "vae")  # renamed, never copied: the files are sparse
    step = _manual(folder).manual_steps[0]
    assert step.repo_id == "Wan-AI/Wan2.2-TI2V-5B-Diffusers" and step.files == ("vae/*",)
    assert "Wan2.2" in step.problem and step.where == str(folder / "vae") + os.sep


def test_expert_mismatch_is_a_manual_step(sparse) -> None:
    folder = sparse("wan22_t2v_a14b")
    other = sparse("wan21_t2v_1_3b", "other")
    shutil.rmtree(folder / "transformer_2")
    os.rename(other / "transformer", folder / "transformer_2")
    step = _manual(folder).manual_steps[0]
    assert step.files == ("transformer_2/*",) and step.repo_id == "Wan-AI/Wan2.2-T2V-A14B-Diffusers"


def test_text_encoder_width_mismatch_is_a_manual_step(sparse) -> None:
    folder = sparse("wan21_t2v_1_3b")
    edit_json(folder / "text_encoder" / "config.json", lambda c: c.update(d_model=2048))
    step = _manual(folder).manual_steps[0]
    assert step.files == ("text_encoder/*",) and step.repo_id == "Wan-AI/Wan2.1-T2V-1.3B-Diffusers"


def test_missing_needed_folder_is_a_manual_step_and_unneeded_entry_is_nulled(sparse) -> None:
    folder = sparse("wan22_t2v_a14b")
    shutil.rmtree(folder / "transformer_2")  # an A14B model needs its low-noise expert
    step = _manual(folder).manual_steps[0]
    assert step.files == ("transformer_2/*",) and "transformer_2" in step.fetch
    one = sparse("wan21_t2v_14b", "one")
    _index(transformer_2=["diffusers", "WanTransformer3DModel"])(one)  # a Wan2.1 model does not
    apply_and_check(one, ["null_missing_component"])


def test_missing_original_vae_names_the_file(tmp_path: Path) -> None:
    from tests.sparse.original_layout import write_original_layout
    folder = tmp_path / "Wan2.2-TI2V-5B"
    write_original_layout(BY_KEY["wan22_ti2v_5b"], folder)
    (folder / "Wan2.2_VAE.pth").unlink()
    p = fix.plan(inspect(folder))
    assert not p.actions and (p.conversion is None or p.conversion.refusal)
    step = p.manual_steps[0]
    assert step.files == ("Wan2.2_VAE.pth",) and step.repo_id == "Wan-AI/Wan2.2-TI2V-5B"
    assert step.where == str(folder) + os.sep


# --------------------------------------------------------------------------- conversions (integration)

def _convert_module():
    try:
        import core.fix.convert as convert
    except ImportError:
        pytest.skip("core.fix.convert not available yet")
    return convert


def test_original_layout_plans_a_conversion_beside_it(tmp_path: Path) -> None:
    _convert_module()
    from tests.sparse.original_layout import write_original_layout
    folder = tmp_path / "Wan2.2-TI2V-5B"
    write_original_layout(BY_KEY["wan22_ti2v_5b"], folder)
    before = tree_state(tmp_path)
    p = fix.plan(inspect(folder))
    assert p.conversion is not None and not p.actions and not p.is_empty
    assert Path(p.conversion.target) == tmp_path / "Wan2.2-TI2V-5B-diffusers"
    assert fix.plan(inspect(folder), out=tmp_path / "elsewhere").conversion.target == str(tmp_path / "elsewhere")
    cli = run_cli("fix", str(folder), "--out", str(tmp_path / "custom"))
    assert cli.returncode == 1, cli.stderr
    assert "custom" in cli.stdout and "dry run" in cli.stdout
    assert tree_state(tmp_path) == before  # nothing written, no target created


def test_conversion_result_is_checked_afterwards(tmp_path: Path, demo_models_dir: Path, monkeypatch) -> None:
    """FixPlan runs the conversion it holds and reports Model Check of the new folder."""
    convert = _convert_module()
    from tests.sparse.original_layout import write_original_layout
    folder = tmp_path / "Wan2.2-TI2V-5B"
    write_original_layout(BY_KEY["wan22_ti2v_5b"], folder)
    seen = {}

    class Converted(convert.ConversionPlan):
        def execute(self, progress_callback=None) -> Path:  # a stand-in for the real conversion
            from core.progress import Progress
            shutil.copytree(demo_models_dir / "wan22_ti2v_5b", self.target)
            Progress(progress_callback).emit("convert", "converted", 100.0)
            return Path(self.target)

    def fake_plan(report, target=None):
        seen["target"] = target
        return Converted(report.path, str(target or tmp_path / "out"), ("copy",), 1, 2, True, None)

    monkeypatch.setattr(convert, "plan_conversion", fake_plan)
    said = []   # a seed-style (message, percent) callback still hears the conversion
    result = fix.apply_wan_compatibility_fix(folder, out=tmp_path / "out",
                                             progress_callback=lambda message, percent: said.append((message, percent)))
    assert said == [("converted", 100.0)]
    assert result["output_path"] == str(tmp_path / "out") and not result["errors"]
    assert result["report_after"]["loadable"] and result["report_after"]["layout"] == "diffusers"
    assert seen["target"] == tmp_path / "out"


def test_fix_converts_a_tiny_original_checkpoint_end_to_end(tmp_path: Path) -> None:
    """Fix on the original layout: a new PATH-diffusers folder that is ready, the source untouched.
    (That the converted weights compute what the originals do is test_convert.py's business.)"""
    _convert_module()
    pytest.importorskip("torch")
    from tests.test_convert import write_tiny_original
    folder = tmp_path / "Wan2.2-TI2V-5B"
    write_tiny_original("ti2v", folder)
    before = tree_state(folder)
    result = fix.apply_wan_compatibility_fix(folder)
    out = tmp_path / "Wan2.2-TI2V-5B-diffusers"
    assert result["output_path"] == str(out) and not result["errors"], result
    assert result["fixes_applied"] == [f"Converted {folder} into {out}"]
    assert result["report_after"]["loadable"] and result["report_after"]["layout"] == "diffusers"
    assert tree_state(folder) == before and not (folder / fix.BACKUP_DIR).exists()
    assert fix.plan(inspect(out)).is_empty


def test_assemble_plan_from_single_files(tmp_path: Path) -> None:
    _convert_module()
    from tests.sparse.original_layout import write_single_file, write_umt5_single_file, write_vae_single_file
    spec = BY_KEY["wan22_ti2v_5b"]
    transformer = tmp_path / "wan2.2_ti2v_5B_fp16.safetensors"
    write_single_file(spec, transformer)
    vae = tmp_path / "wan2.2_vae.safetensors"
    write_vae_single_file("wan2.2", vae)
    te = tmp_path / "umt5_xxl_fp16.safetensors"
    write_umt5_single_file(te, "F16")
    before = tree_state(tmp_path)
    p = fix.assemble(transformer=transformer, vae=vae, text_encoder=te, out=tmp_path / "assembled")
    assert p.conversion is not None and p.conversion.target == str(tmp_path / "assembled")
    cli = run_cli("fix", "--assemble", "--transformer", str(transformer), "--vae", str(vae),
                  "--text-encoder", str(te), "--out", str(tmp_path / "assembled"))
    assert cli.returncode == 1, cli.stderr
    assert "assembled" in cli.stdout
    assert tree_state(tmp_path) == before


# --------------------------------------------------------------------------- command line

def test_cli_apply_repairs_and_prints_the_report(demo_copy) -> None:
    folder = demo_copy("wan22_t2v_a14b")
    _no_index(folder)
    result = run_cli("fix", str(folder), "--apply")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Done: Rebuild model_index.json" in result.stdout and "Model Check afterwards" in result.stdout
    assert "ready to load" in result.stdout
    again = run_cli("fix", str(folder))
    assert again.returncode == 0 and "Nothing to repair" in again.stdout


def test_cli_exit_1_when_problems_remain(sparse) -> None:
    folder = sparse("wan22_t2v_a14b")
    (folder / "vae" / "diffusion_pytorch_model.safetensors").unlink()
    _index(boundary_ratio=None)(folder)
    result = run_cli("fix", str(folder), "--apply")
    assert result.returncode == 1
    assert "Set boundary_ratio" in result.stdout and "hf download" in result.stdout
    assert read_json(folder / "model_index.json")["boundary_ratio"] == 0.875


def test_cli_json_plan(demo_copy) -> None:
    folder = demo_copy("wan21_t2v")
    _index(_class_name="StableDiffusionPipeline")(folder)
    result = run_cli("fix", str(folder), "--json")
    assert result.returncode == 1
    plan = json.loads(result.stdout)
    assert [a["code"] for a in plan["actions"]] == ["set_pipeline_class"]
    assert plan["actions"][0]["writes"] == ["model_index.json"] and plan["is_empty"] is False


@pytest.mark.parametrize("args", [
    ["fix"],
    ["fix", "/no/such/model/folder"],
    ["fix", "--assemble", "--transformer", "t.safetensors"],
    ["fix", "--assemble", "--transformer", "t", "--vae", "v", "--text-encoder", "e"],
    ["fix", "PATH", "--vae", "v.safetensors"],
    ["fix", "--bogus"],
])
def test_cli_bad_arguments_exit_2(args: list[str], demo_models_dir: Path) -> None:
    args = [str(demo_models_dir / "wan21_t2v") if a == "PATH" else a for a in args]
    result = run_cli(*args)
    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stderr.strip()


def test_cli_undo(demo_copy) -> None:
    folder = demo_copy("wan21_t2v")
    _index(text_encoder=["transformers", "CLIPTextModel"])(folder)
    before = tree_state(folder)
    assert run_cli("fix", str(folder), "--apply").returncode == 0
    result = run_cli("fix", str(folder), "--undo")
    assert "Restored" in result.stdout
    assert tree_state(folder) == before


def test_rebuild_with_an_unreadable_component_config(sparse) -> None:
    folder = sparse("wan22_ti2v_5b")
    _no_index(folder)
    (folder / "vae" / "config.json").write_text("{")
    p = fix.plan(inspect(folder))
    assert [a.code for a in p.actions] == ["rebuild_model_index"]
    assert [s.files for s in p.manual_steps] == [("vae/config.json",)]
    assert p.manual_steps[0].repo_id == "Wan-AI/Wan2.2-TI2V-5B-Diffusers"
    result = p.execute()
    assert read_json(folder / "model_index.json")["vae"] == ["diffusers", "AutoencoderKLWan"]
    assert [f.code for f in result.report_after.errors] == ["config_unreadable"]


def test_hugging_face_cache_snapshot(tmp_path: Path) -> None:
    """In a cache the files are links into blobs/: a repair replaces the link, never the blob."""
    from tests.sparse.diffusers_layout import write_hf_cache_layout
    repo = write_hf_cache_layout(BY_KEY["wan22_ti2v_5b"], tmp_path / "hub")
    snapshot = next((repo / "snapshots").iterdir())
    index = snapshot / "model_index.json"
    blob = index.resolve()
    blob_bytes = blob.read_bytes()
    edit = read_json(index)
    edit["expand_timesteps"] = False
    index.unlink()
    index.write_text(json.dumps(edit))
    scheduler = snapshot / "scheduler" / "scheduler_config.json"
    scheduler_blob = scheduler.resolve()
    scheduler.unlink()
    p = fix.plan(inspect(repo))
    assert Path(p.path) == snapshot
    assert [a.code for a in p.actions] == ["write_scheduler_config", "set_expand_timesteps"]
    assert p.execute().ok
    assert blob.read_bytes() == blob_bytes and scheduler_blob.exists()
    assert not scheduler.is_symlink() and read_json(scheduler)["flow_shift"] == 5.0


def test_folder_of_several_models_is_not_touched(demo_models_dir: Path) -> None:
    p = fix.plan(inspect(demo_models_dir))
    assert p.is_empty and "run Fix on each" in p.notes[0]
