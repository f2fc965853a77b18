"""The memory plan of one rank of `generate --gpus N` (issue 18): its own GPU, 1/N of the tokens, FSDP2 when needed.

The machines are constructed HardwareInfo (two or four identical GPUs); the models are the
full-size sparse diffusers layouts (real headers), so the sizes are those of the real models.
"""

from __future__ import annotations

import pytest

from core.check.detect import inspect
from core.check.report import ModelReport
from core.run.hardware import GpuInfo, HardwareInfo
from core.run.optimize import OptimizationRequest, plan_for
from core.run.parallel import one_gpu_hardware, rank_plan, split_memory
from tests.sparse.diffusers_layout import write_diffusers_layout
from tests.sparse.specs import BY_KEY


def _gpus(n: int, total_mb: int) -> HardwareInfo:
    return HardwareInfo(gpus=[GpuInfo(i, "NVIDIA GeForce RTX 4090", total_mb, total_mb - 400, (8, 9), True)
                              for i in range(n)], ram_total_mb=256 * 1024, ram_free_mb=250 * 1024, cpu_count=16)


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, ModelReport]:
    root = tmp_path_factory.mktemp("rank_plan")
    return {key: inspect(write_diffusers_layout(BY_KEY[key], root / key)) for key in ("wan22_ti2v_5b", "wan22_t2v_a14b")}


def test_a_rank_offloads_less_than_one_gpu_would(models: dict[str, ModelReport]) -> None:
    """TI2V-5B at 1280x704, 121 frames on 2x16 GB: one GPU needs group offload; each rank, with half the
    tokens, does with model offload (faster), and its estimate has half the activations."""
    report, hardware = models["wan22_ti2v_5b"], _gpus(2, 16380)
    request = OptimizationRequest(1280, 704, 121, 40)
    one = plan_for(report, one_gpu_hardware(hardware, 0), request)
    rank = rank_plan(report, hardware, request, 2, gpu_index=0)
    assert (one.placement.value, rank.placement.value) == ("group_offload", "model_offload")
    assert rank.fits and not rank.request.shard_weights
    assert rank.estimate.activations_mb == pytest.approx(one.estimate.activations_mb / 2)
    assert rank.usable_vram_mb == one.usable_vram_mb              # its own GPU only, not a spread
    assert split_memory(rank, 2).per_gpu_vram_mb == pytest.approx(rank.estimate.peak_vram_mb)
    assert "every GPU holds the whole model" in split_memory(rank, 2).line()


def test_fsdp2_when_one_expert_does_not_fit_a_gpu(models: dict[str, ModelReport]) -> None:
    """A14B (two 14B experts, about 27 GB each in bf16) at 832x480, 81 frames on 4x24 GB: FSDP2 shards both
    experts 4 ways; the plan says why, and its per-GPU VRAM holds a quarter of their weights."""
    report, hardware = models["wan22_t2v_a14b"], _gpus(4, 24564)
    request = OptimizationRequest(832, 480, 81, 40)
    rank = rank_plan(report, hardware, request, 4, gpu_index=0)
    assert rank.request.shard_weights and rank.fits
    assert rank.placement.value == "model_offload"       # the experts stay; text encoder and VAE are offloaded
    experts = rank.estimate.weights_mb["transformer"] + rank.estimate.weights_mb["transformer_2"]
    denoise = rank.estimate.stage_vram_mb["denoise"]
    assert experts / 4 < denoise < experts / 4 + rank.estimate.activations_mb + 2048
    assert ("Weights: FSDP2 shards the transformer blocks 4 ways, so each GPU holds 1/4 of every expert "
            "(one transformer expert with its activations does not fit one GPU).") in rank.summary_lines()
    assert "each GPU holds 1/4 of the transformer weights (FSDP2)" in split_memory(rank, 4).line()


def test_no_fsdp2_when_half_of_both_experts_still_does_not_fit(models: dict[str, ModelReport]) -> None:
    """On 2x24 GB half of both A14B experts (27 GB) is still too big: the rank offloads as one GPU would,
    with half the activations, and nothing is sharded."""
    report, hardware = models["wan22_t2v_a14b"], _gpus(2, 24564)
    request = OptimizationRequest(832, 480, 81, 40)
    one = plan_for(report, one_gpu_hardware(hardware, 0), request)
    rank = rank_plan(report, hardware, request, 2, gpu_index=0)
    assert rank.fits and not rank.request.shard_weights
    assert rank.placement.value == one.placement.value
    assert rank.estimate.stage_vram_mb["denoise"] == pytest.approx(
        one.estimate.stage_vram_mb["denoise"] - one.estimate.activations_mb / 2)
    assert not any("FSDP2" in line for line in rank.summary_lines())


def test_ranks_that_together_do_not_fit_ram_are_refused(models: dict[str, ModelReport]) -> None:
    """Every rank reads the whole pipeline into RAM: 4 ranks of A14B need 4 times a rank's RAM peak.
    About 67 GB each (both experts, the text encoder and the VAE are read before FSDP2 shards): 512 GB fits;
    on a 128 GB machine `--gpus 4` is refused before launching, with the count that fits."""
    from dataclasses import replace

    from core.run.parallel import ram_problem
    report, request = models["wan22_t2v_a14b"], OptimizationRequest(832, 480, 81, 40)
    roomy = rank_plan(report, replace(_gpus(4, 24564), ram_total_mb=512 * 1024, ram_free_mb=500 * 1024),
                      request, 4, gpu_index=0)
    assert ram_problem(roomy, 4) is None
    small = replace(_gpus(4, 24564), ram_total_mb=128 * 1024, ram_free_mb=120 * 1024)
    rank = rank_plan(report, small, request, 4, gpu_index=0)
    per_rank = rank.estimate.peak_ram_mb
    assert 4 * per_rank > rank.usable_ram_mb >= per_rank        # one rank fits, four do not
    said = ram_problem(rank, 4)
    assert said is not None and said.startswith("--gpus 4: each of the 4 ranks loads the model into this computer's RAM")
    fits = max(k for k in range(1, 4) if k * per_rank <= rank.usable_ram_mb)
    assert (f"Use --gpus {fits} or fewer" if fits > 1 else "Run on one GPU (--gpus 1)") in said
