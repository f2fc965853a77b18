"""PipelineManager: the right class, checks before loading, trust_remote_code only when asked for."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from core.check.detect import ArchitectureDetector, inspect
from core.errors import WanError
from core.run.pipelines import PipelineManager
from tests.sparse.diffusers_layout import write_diffusers_layout
from tests.sparse.other_layouts import write_other_family
from tests.sparse.specs import BY_KEY


@pytest.mark.parametrize("key,expected", [("wan22_t2v_a14b", "WanPipeline"), ("wan22_ti2v_5b", "WanPipeline"),
                                          ("wan21_i2v_14b_480p", "WanImageToVideoPipeline"),
                                          ("wan21_vace_1_3b", "WanVACEPipeline")])
def test_select_pipeline_class(tmp_path: Path, key: str, expected: str) -> None:
    folder = write_diffusers_layout(BY_KEY[key], tmp_path / key)
    signature = ArchitectureDetector().detect_model_architecture(folder).signature
    assert PipelineManager().select_pipeline_class(signature) == expected


def test_non_wan_families_map_to_their_pipelines(tmp_path: Path) -> None:
    folder = write_other_family("FluxPipeline", tmp_path / "flux")
    assert PipelineManager().select_pipeline_class(inspect(folder)) == "FluxPipeline"


def test_missing_components_are_named(tmp_path: Path) -> None:
    folder = write_diffusers_layout(BY_KEY["wan22_t2v_a14b"], tmp_path / "a14b")
    shutil.rmtree(folder / "transformer_2")
    with pytest.raises(WanError) as info:
        PipelineManager().select_pipeline_class(inspect(folder))
    assert "transformer_2" in info.value.message


def test_load_custom_pipeline_loads_a_wan_model(demo_models_dir: Path) -> None:
    result = PipelineManager().load_custom_pipeline(str(demo_models_dir / "wan21_t2v"), "WanPipeline",
                                                    trust_remote_code=True)
    assert result.success and type(result.pipeline).__name__ == "WanPipeline"
    assert any("not needed" in w for w in result.warnings)


def test_custom_code_is_not_run_without_permission(demo_models_dir: Path, tmp_path: Path) -> None:
    folder = tmp_path / "custom"
    shutil.copytree(demo_models_dir / "wan21_t2v", folder)
    marker = tmp_path / "ran"
    (folder / "my_pipeline.py").write_text(f"open({str(marker)!r}, 'w').write('x')\n")
    index = json.loads((folder / "model_index.json").read_text())
    index["_class_name"] = ["my_pipeline", "MyPipeline"]
    (folder / "model_index.json").write_text(json.dumps(index))
    report = inspect(folder)
    assert report.custom_code and "custom_code" in {f.code for f in report.findings}
    result = PipelineManager().load_custom_pipeline(str(folder), "WanPipeline")
    assert not result.success and "trust_remote_code" in result.errors[0]
    assert not marker.exists()
