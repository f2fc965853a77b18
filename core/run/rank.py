"""One rank of a generation spread over N GPUs (started by torch.distributed.run; see core.run.parallel).

``python -m core.run.rank JOB_DIR`` reads ``JOB_DIR/job.json`` (model path, GenerationConfig
keywords, plan overrides, world size, backend), joins the process group, loads the pipeline
with its memory plan for one GPU (the CPU with gloo), enables Ulysses context parallelism on
every transformer, and generates with the same seed as every other rank. Rank 0 writes the
MP4, its JSON, the history entry, ``result.json`` and its ProgressEvents (``progress.jsonl``,
one JSON object a line); the other ranks keep no history and write no file but their own.
Every rank writes ``rankR.json`` (``{"status": "ok" | "error", "message"}``) just before exiting.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from core.run.parallel import DIE_AT_ENV, EXPERT_NAMES, rank_plan


def main(argv: list[str] | None = None) -> int:
    """Run this process's rank of the job in ``argv[0]``; returns its exit code."""
    argv = sys.argv[1:] if argv is None else argv
    job_dir = Path(argv[0])
    rank = int(os.environ.get("RANK", "0"))
    if rank != 0:
        os.environ["WAN_COMPAT_MONITOR"] = "off"   # one history entry per run: rank 0's
    try:
        job = json.loads((job_dir / "job.json").read_text(encoding="utf-8"))
        result = _run(job, job_dir, rank)
    except BaseException as exc:  # noqa: BLE001 - every failure becomes this rank's report
        from core.errors import explain
        err = explain(exc) if isinstance(exc, Exception) else None
        message = f"{err.message} {err.remedy}".strip() if err else f"stopped ({type(exc).__name__})"
        _write(job_dir / f"rank{rank}.json", {"status": "error", "message": message})
        return 1
    status = "ok" if result.get("success") else "error"
    _write(job_dir / f"rank{rank}.json", {"status": status, "message": " ".join(result.get("errors") or [])})
    _leave()
    return 0 if status == "ok" else 1


def _run(job: dict[str, Any], job_dir: Path, rank: int) -> dict[str, Any]:
    import torch
    import torch.distributed as dist

    from core.check.detect import inspect
    from core.run.generation import GenerationConfig, request_for, resolve
    from core.run.hardware import probe
    from core.run.load import WanPipelineLoader, WanPipelineWrapper
    from core.run.optimize import check_request_fits
    from core.run.pipelines import PipelineManager

    world, backend = int(job["world_size"]), job["backend"]
    local = int(os.environ.get("LOCAL_RANK", rank))
    if backend == "nccl":
        torch.cuda.set_device(local)
    dist.init_process_group(backend=backend)
    config = GenerationConfig(**job["config"])
    report = inspect(job["path"])
    settings, errors = resolve(config, report)
    if errors or settings is None:
        return {"success": False, "errors": errors}
    hardware = probe(use_torch=True)
    plan = rank_plan(report, hardware, request_for(settings, job.get("overrides") or {}), world,
                     local if backend == "nccl" else None)      # its own GPU, 1/N of the tokens, FSDP2 if needed
    hardware = plan.hardware
    check_request_fits(plan)
    progress = _progress_for(rank, job_dir)
    start = time.perf_counter()
    pipe = WanPipelineLoader._load_components(report, PipelineManager().select_pipeline_class(report), plan,
                                              _Quiet())
    enable_context_parallel(pipe, world)            # before any offload hook (diffusers needs this order)
    sharded = shard_experts(pipe, world, backend) if plan.request.shard_weights else []  # after it, before hooks
    wrapper = WanPipelineWrapper(pipe, plan, report, 0.0, hardware)
    wrapper._apply_plan(plan)
    wrapper.load_seconds = time.perf_counter() - start
    if rank == 0:
        result = wrapper.generate(config, plan=plan, progress=progress)
        summary = {"success": result.success, "output_path": result.output_path, "errors": result.errors,
                   "warnings": result.warnings, "seconds_per_step": result.seconds_per_step,
                   "seconds": result.seconds, "peak_vram_mb": result.peak_vram_mb,
                   "peak_ram_mb": result.peak_ram_mb, "cancelled": result.cancelled,
                   "plan_lines": plan.summary_lines(), "world_size": world, "split": split_degrees(pipe), "sharded": sharded}
        _write(job_dir / "result.json", summary)
        return summary
    _frames, result = wrapper.generate_frames(config, plan=plan, progress=progress)
    return {"success": result.success, "errors": result.errors}


def enable_context_parallel(pipe: Any, world: int) -> None:
    """Ulysses over ``world`` ranks on every transformer of ``pipe`` (both A14B experts)."""
    from diffusers import ContextParallelConfig
    for name in EXPERT_NAMES:
        module = getattr(pipe, name, None)
        if module is None:
            continue
        with _cpu_device_count():
            module.enable_parallelism(config=ContextParallelConfig(ulysses_degree=world))


def shard_experts(pipe: Any, world: int, backend: str) -> list[str]:
    """FSDP2 on every transformer: each block, then the whole, sharded ``world`` ways; returns their names.

    Call after :func:`enable_context_parallel` and before any offload hook. The sharded experts
    are kept out of model offload (its hooks would move their shards), so they stay on the GPU.
    """
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard
    mesh = init_device_mesh("cuda" if backend == "nccl" else "cpu", (world,))
    names = []
    for name in EXPERT_NAMES:
        module = getattr(pipe, name, None)
        if module is None:
            continue
        for block in module.blocks:
            fully_shard(block, mesh=mesh)
        fully_shard(module, mesh=mesh)
        names.append(name)
    pipe._exclude_from_cpu_offload = [*getattr(pipe, "_exclude_from_cpu_offload", []), *names]
    return names


def split_degrees(pipe: Any) -> dict[str, int]:
    """``{transformer name: Ulysses degree}`` as diffusers recorded it on each transformer."""
    out = {}
    for name in EXPERT_NAMES:
        config = getattr(getattr(pipe, name, None), "_parallel_config", None)
        cp = getattr(config, "context_parallel_config", None)
        if cp is not None:
            out[name] = int(cp.ulysses_degree or 1)
    return out


@contextlib.contextmanager
def _cpu_device_count() -> Iterator[None]:
    """On a CPU-only torch, diffusers computes ``rank % torch.accelerator.device_count()`` (0): say 1."""
    import torch
    if torch.accelerator.device_count() > 0:
        yield
        return
    original = torch.accelerator.device_count
    torch.accelerator.device_count = lambda: 1  # type: ignore[assignment]
    try:
        yield
    finally:
        torch.accelerator.device_count = original  # type: ignore[assignment]


class _Quiet:
    """A Progress stand-in for loading (rank 0 reports its own load as one event)."""

    def emit(self, *args: Any, **kwargs: Any) -> None:
        return None


def _progress_for(rank: int, job_dir: Path) -> Any:
    """Rank 0: each ProgressEvent as a JSON line for the parent. Every rank: the test hook that kills it."""
    die = os.environ.get(DIE_AT_ENV, "")
    die_rank, _, die_step = die.partition(":")
    out = open(job_dir / "progress.jsonl", "a", encoding="utf-8") if rank == 0 else None  # noqa: SIM115

    def on_event(event: Any) -> None:
        if out is not None:
            out.write(json.dumps(event.to_dict()) + "\n")
            out.flush()
        if die and str(rank) == die_rank.strip() and event.step is not None and str(event.step) == die_step.strip():
            os.kill(os.getpid(), signal.SIGKILL)

    return on_event


def _write(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, default=str), encoding="utf-8")
    os.replace(tmp, path)


def _leave() -> None:
    with contextlib.suppress(Exception):
        import torch.distributed as dist
        if dist.is_initialized():
            dist.destroy_process_group()


if __name__ == "__main__":
    sys.exit(main())
