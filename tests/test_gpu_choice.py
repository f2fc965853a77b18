"""The Generate tab's "GPUs" control (issue 18): shown only with several GPUs, offering the counts that split.

Constructed machines (core.run.hardware.HardwareInfo); the models are the full-size sparse layouts.
"""

from __future__ import annotations

import pytest

from core.check.detect import inspect
from core.run.hardware import GpuInfo, HardwareInfo
from tests.sparse.diffusers_layout import write_diffusers_layout
from tests.sparse.specs import BY_KEY
from wan_ui.gpu_choice import gpu_control


def _machine(n: int) -> HardwareInfo:
    return HardwareInfo(gpus=[GpuInfo(i, "NVIDIA GeForce RTX 4090", 24564, 24000, (8, 9), True) for i in range(n)],
                        ram_total_mb=128 * 1024, ram_free_mb=120 * 1024, cpu_count=16)


@pytest.fixture(scope="module")
def reports(tmp_path_factory: pytest.TempPathFactory) -> dict:
    root = tmp_path_factory.mktemp("gpu_choice")
    return {k: inspect(write_diffusers_layout(BY_KEY[k], root / k)) for k in ("wan22_t2v_a14b", "wan21_vace_1_3b")}


@pytest.mark.parametrize("gpus", [0, 1])
def test_hidden_with_one_gpu_or_none(gpus: int) -> None:
    assert gpu_control(_machine(gpus))["visible"] is False


def test_shown_with_several_gpus_offering_the_counts_that_split(reports: dict) -> None:
    a14b = reports["wan22_t2v_a14b"]             # 40 heads: 1, 2, 4, 5, 8 divide; 3, 6, 7 do not
    eight = gpu_control(_machine(8), a14b, 832, 480, 81)
    assert eight == {"visible": True, "choices": ["1", "2", "4", "5", "8", "auto"], "value": "auto"}
    assert gpu_control(_machine(3), a14b, 832, 480, 81)["choices"] == ["1", "2", "auto"]
    assert gpu_control(_machine(2))["choices"] == ["1", "2", "auto"]                 # no model chosen yet
    assert gpu_control(_machine(4), a14b, 832, 480, 81, value="4")["value"] == "4"     # kept while offered
    assert gpu_control(_machine(8), a14b, 832, 480, 81, value="3")["value"] == "auto"


def test_a_model_without_a_context_parallel_plan_offers_one(reports: dict) -> None:
    assert gpu_control(_machine(4), reports["wan21_vace_1_3b"], 832, 480, 81)["choices"] == ["1", "auto"]
