"""One plan per generation (issue 9 §1): the plan made for the request is the one loaded and applied.

Found in review: Wan2.2 TI2V-5B on a 16 GB GPU with offload=model. The Generate tab's plan
for 480x320 with 17 frames fits; the loader then planned again at the model's default
1280x704 with 121 frames, which does not, and refused the load. The machine here is a
constructed HardwareInfo; the model is the full-size sparse diffusers layout (real headers).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from core.check.detect import inspect
from core.check.report import ModelReport
from core.errors import WanError
from core.progress import ProgressEvent
from core.run.generation import GenerationConfig, default_request
from core.run.hardware import GpuInfo, HardwareInfo
from core.run.load import WanPipelineLoader, load, plan_for_load
from core.run.optimize import OptimizationRequest, plan_for, stronger_plan
from tests.sparse.diffusers_layout import write_diffusers_layout
from tests.sparse.specs import BY_KEY

GPU_16GB = HardwareInfo(gpus=[GpuInfo(index=0, name="NVIDIA GeForce RTX 4060 Ti 16GB", total_mb=16380,
                                      free_mb=15980, compute_capability=(8, 9), bf16_supported=True)],
                        ram_total_mb=64 * 1024, ram_free_mb=60 * 1024, cpu_count=16)
SMALL = OptimizationRequest(width=480, height=320, num_frames=17, num_inference_steps=50,
                            overrides={"offload": "model"})


class _Reached(Exception):
    """Raised from the progress callback at the first "load" event: planning and refusals are over."""


def _stop_at_loading(seen: list[ProgressEvent]):
    def on_event(event: ProgressEvent) -> None:
        seen.append(event)
        if event.stage == "load":
            raise _Reached(event.message)
    return on_event


@pytest.fixture(scope="module")
def ti2v(tmp_path_factory: pytest.TempPathFactory) -> ModelReport:
    report = inspect(write_diffusers_layout(BY_KEY["wan22_ti2v_5b"], tmp_path_factory.mktemp("one_plan") / "ti2v"))
    assert report.is_wan and not report.errors
    return report


def test_the_small_request_fits_and_the_default_size_does_not(ti2v: ModelReport) -> None:
    small = plan_for(ti2v, GPU_16GB, SMALL)
    assert small.fits and small.placement.value == "model_offload" and small.precision.value == "bf16"
    default = plan_for(ti2v, GPU_16GB, default_request(ti2v, {"offload": "model"}))
    r = default.request
    assert (r.width, r.height, r.num_frames) == (1280, 704, 121)
    assert not default.fits and "1280x704 with 121 frames" in (default.refusal or "")


def test_loading_with_the_plan_shown_is_not_refused(ti2v: ModelReport) -> None:
    plan = plan_for(ti2v, GPU_16GB, SMALL)
    seen: list[ProgressEvent] = []
    with pytest.raises(_Reached):          # got as far as reading weights: nothing planned again, nothing refused
        load(ti2v, plan, progress=_stop_at_loading(seen))
    assert [e.stage for e in seen][-1] == "load" and "model offload, bf16" in seen[-1].message

    # the plan at the default size is refused by the same call, before any weight is read
    default = plan_for(ti2v, GPU_16GB, default_request(ti2v, {"offload": "model"}))
    seen.clear()
    with pytest.raises(WanError) as info:
        load(ti2v, default, progress=_stop_at_loading(seen))
    assert "1280x704 with 121 frames" in info.value.message
    assert "load" not in [e.stage for e in seen]


def test_the_seed_loader_plans_for_the_request_it_is_given(ti2v: ModelReport) -> None:
    # The seed entry point, which used to plan at 1280x704x121 and refuse, now plans for the request.
    plan = plan_for_load(ti2v, GPU_16GB, SMALL)
    assert plan.fits and plan.request == SMALL and plan.hardware is GPU_16GB
    seen: list[ProgressEvent] = []
    with pytest.raises(_Reached):
        WanPipelineLoader().load_wan_pipeline(ti2v.path, optimization_config={"offload": "model"},
                                              progress_callback=_stop_at_loading(seen),
                                              request=SMALL, hardware=GPU_16GB)
    # without a request it plans at the model's defaults, and refuses as the seed did
    with pytest.raises(WanError):
        plan_for_load(ti2v, GPU_16GB, overrides={"offload": "model"})


def test_the_plan_carries_its_machine_for_the_out_of_memory_retry(ti2v: ModelReport) -> None:
    plan = plan_for(ti2v, GPU_16GB, SMALL)
    assert plan.hardware is GPU_16GB
    retry = stronger_plan(plan, ti2v)      # no probing: the machine comes with the plan
    assert retry is not None and retry.hardware is GPU_16GB
    assert retry.placement.value == "group_offload" and retry is not plan
    assert plan.placement.value == "model_offload"      # the plan it replaces is unchanged


# --- the same object through load and generate, on a real demo pipeline ---------------------

def test_wrapper_plan_is_the_plan_loaded_and_is_replaced_not_changed(demo_models_dir: Path, tmp_path: Path) -> None:
    pytest.importorskip("torch")
    from core.run.generation import request_for, resolve
    from core.run.hardware import probe
    report = inspect(demo_models_dir / "wan21_t2v")
    config = GenerationConfig(prompt="a paper boat", width=32, height=32, num_frames=5, num_inference_steps=2,
                              output_path=str(tmp_path / "boat.mp4"))
    settings, errors = resolve(config, report)
    assert not errors and settings is not None
    plan = plan_for(report, probe(), request_for(settings))
    wrapper = load(report, plan)
    assert wrapper.plan is plan
    result = wrapper.generate(config, plan=plan)
    assert result.success, result.errors
    assert wrapper.plan is plan and result.plan == plan.to_dict()
    shown = plan.to_dict()
    other = wrapper.generate(GenerationConfig(prompt="a paper boat", width=48, height=32, num_frames=5,
                                              num_inference_steps=2, output_path=str(tmp_path / "wide.mp4")))
    assert other.success, other.errors
    assert wrapper.plan is not plan and wrapper.plan.request.width == 48    # planned once, for that request
    assert plan.to_dict() == shown                                           # the first plan was not edited
