"""One generation spread over N GPUs: the split check, the per-GPU memory, the launch and its supervision.

diffusers' own engine does the work: every rank loads the whole pipeline with the same seed
and turns on Ulysses context parallelism (``ContextParallelConfig(ulysses_degree=N)``) on
every transformer, so each GPU attends over 1/N of the video's tokens. This module decides
whether a split can work, says what it costs per GPU, starts the N ranks with torch's own
launcher (``python -m torch.distributed.run``; each rank is :mod:`core.run.rank`) and judges
the run by what the ranks report, not by the launcher's exit code::

    from core.run.parallel import split_problem, run_parallel

    problem = split_problem(report, settings, 2)        # None, or a sentence with the values that work
    outcome = run_parallel(report, config_kwargs, overrides, 2, progress=print_event)
    outcome.exit_code, outcome.output_path, outcome.message

Rank 0 alone writes the MP4, its JSON and the history entry; its ProgressEvents come to this
process as JSON lines. Cancel (Ctrl+C or SIGTERM here) stops every rank; a rank that dies
stops the others within seconds, and nothing is left behind but one sentence.

``WAN_COMPAT_PARALLEL_BACKEND=gloo`` runs the ranks on the CPU over gloo (tests and CI only;
NCCL and one GPU per rank otherwise). Test hook: ``WAN_COMPAT_PARALLEL_DIE_AT=RANK:STEP``
makes that rank kill itself (SIGKILL) when it reaches that denoising step.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from core.check.report import ModelReport
from core.progress import AnyCallback, Progress, ProgressEvent

BACKEND_ENV = "WAN_COMPAT_PARALLEL_BACKEND"     # "nccl" (default) or "gloo" (CPU ranks: tests, CI)
DIE_AT_ENV = "WAN_COMPAT_PARALLEL_DIE_AT"       # test hook "RANK:STEP"
FSDP_ENV = "WAN_COMPAT_PARALLEL_FSDP"           # test hook "1": shard the experts (FSDP2) even when they fit
#: Transformer classes diffusers 0.42 has a context-parallel plan for (VACE and Animate have none).
SPLITTABLE = ("WanTransformer3DModel",)
EXPERT_NAMES = ("transformer", "transformer_2")
#: Seconds the others get to stop after one rank failed, before every rank is killed.
STOP_GRACE_S = 5.0


def backend() -> str:
    """The torch.distributed backend the ranks use: ``nccl``, or ``gloo`` from WAN_COMPAT_PARALLEL_BACKEND."""
    return "gloo" if os.environ.get(BACKEND_ENV, "").strip().lower() == "gloo" else "nccl"


# --- can this split work? ------------------------------------------------------------------

def _transformer_configs(report: ModelReport) -> dict[str, dict[str, Any]]:
    """``{name: config.json}`` of each transformer folder of the model (both A14B experts)."""
    out: dict[str, dict[str, Any]] = {}
    for name in EXPERT_NAMES:
        file = Path(report.path) / name / "config.json"
        try:
            out[name] = json.loads(file.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
    return out


def attention_heads(report: ModelReport) -> int | None:
    """The transformers' attention heads (40 for 14B/A14B, 24 for 5B, 12 for 1.3B); None when unknown."""
    heads = {int(c.get("num_attention_heads") or 0) for c in _transformer_configs(report).values()}
    heads.discard(0)
    return min(heads) if heads else None


def cannot_split(report: ModelReport) -> str | None:
    """Why N GPUs cannot help this model at all (VACE, Animate: no context-parallel plan), else None."""
    classes = {c.get("_class_name") for c in _transformer_configs(report).values()}
    other = sorted(str(c) for c in classes if c not in SPLITTABLE)
    if other:
        return (f"Several GPUs cannot help with this model: diffusers has no context-parallel plan for "
                f"{', '.join(other)} (VACE and Animate models), so it runs on one GPU.")
    return None


def latent_tokens(report: ModelReport, width: int, height: int, num_frames: int) -> int:
    """Tokens the transformer attends over for this size and length (what the split divides)."""
    from core.run.memory_estimate import _facts
    from core.run.memory_estimate import latent_tokens as tokens
    return tokens(_facts(report), width, height, num_frames)


def working_counts(report: ModelReport, width: int, height: int, num_frames: int, upto: int = 8) -> list[int]:
    """The GPU counts (1..upto) that split this model at this size: heads and tokens both divide."""
    heads = attention_heads(report) or 1
    tokens = latent_tokens(report, width, height, num_frames)
    return [n for n in range(1, upto + 1) if heads % n == 0 and tokens % n == 0]


def split_problem(report: ModelReport, width: int, height: int, num_frames: int, n: int,
                  visible_gpus: int | None = None) -> str | None:
    """None when ``n`` ranks can split this generation, else one sentence with the counts that work.

    >>> split_problem(report, 832, 480, 81, 3)   # doctest: +SKIP
    '--gpus 3 cannot split this model: its 40 attention heads do not divide by 3. Use --gpus 1, 2, 4, 5 or 8.'
    """
    if n < 1:
        return f"--gpus {n} is not a number of GPUs. Use --gpus 1 or more, or auto."
    if visible_gpus is not None and n > visible_gpus:
        return (f"--gpus {n} asks for more GPUs than the {visible_gpus} this computer shows. "
                f"Use --gpus {max(1, visible_gpus)} or fewer.")
    heads = attention_heads(report)
    tokens = latent_tokens(report, width, height, num_frames)
    reasons = []
    if heads and heads % n:
        reasons.append(f"its {heads} attention heads do not divide by {n}")
    if tokens % n:
        reasons.append(f"the {tokens} latent tokens of {width}x{height} with {num_frames} frames do not divide by {n}")
    if not reasons:
        return None
    upto = max(8, n, visible_gpus or 0)
    good = working_counts(report, width, height, num_frames, upto)
    if visible_gpus:
        good = [g for g in good if g <= visible_gpus] or [1]
    said = ", ".join(str(g) for g in good[:-1]) + (f" or {good[-1]}" if len(good) > 1 else str(good[-1]))
    return f"--gpus {n} cannot split this model: {' and '.join(reasons)}. Use --gpus {said}."


# --- what it costs per GPU ----------------------------------------------------------------

@dataclass(frozen=True)
class SplitMemory:
    """Per-GPU VRAM of a plan when the sequence is split ``n`` ways (MiB), and whether FSDP2 shards the experts."""

    n: int
    per_gpu_vram_mb: float
    stage_vram_mb: dict[str, float]
    usable_vram_mb: float | None
    fits: bool
    sharded: bool = False

    def line(self) -> str:
        from core.units import format_bytes
        room = f" of {format_bytes(self.usable_vram_mb * 2**20)}" if self.usable_vram_mb else ""
        holds = (f"each GPU holds 1/{self.n} of the transformer weights (FSDP2)" if self.sharded
                 else "every GPU holds the whole model")
        return (f"{self.n} GPUs, the video's tokens split {self.n} ways (Ulysses): about "
                f"{format_bytes(self.per_gpu_vram_mb * 2**20)} per GPU{room}; {holds}.")


def split_memory(plan: Any, n: int) -> SplitMemory:
    """The plan's per-GPU VRAM with the transformer's activations split ``n`` ways.

    A rank's own plan (:func:`rank_plan`, ``plan.request.ranks == n``) already holds the split
    (activations / N, and the experts' weights / N with FSDP2): its stages are used as they are.
    For a one-GPU plan only the denoising stage changes: each rank holds 1/N of the tokens.
    """
    est = plan.estimate
    stages = dict(est.stage_vram_mb)
    request = getattr(plan, "request", None)
    if getattr(request, "ranks", 1) != n and "denoise" in stages and stages["denoise"]:
        stages["denoise"] = stages["denoise"] - est.activations_mb * (1 - 1 / max(1, n))
    peak = max(stages.values(), default=0.0)
    usable = plan.usable_vram_mb
    return SplitMemory(n, peak, stages, usable, usable is None or peak <= usable,
                       bool(getattr(request, "shard_weights", False)))


def expert_fits(plan: Any) -> bool:
    """Whether the largest expert, with one call's activations, fits this plan's GPU (always on the CPU)."""
    if plan.usable_vram_mb is None or plan.device != "cuda":
        return True
    names = [k for k in plan.estimate.weights_mb if k.startswith("transformer")]
    largest = max((plan.estimate.weights_mb[k] for k in names), default=0.0)
    return largest + plan.estimate.activations_mb <= plan.usable_vram_mb


def rank_plan(report: ModelReport, hardware: Any, request: Any, n: int, gpu_index: int | None = None) -> Any:
    """The memory plan of one rank of ``n``: its own GPU, 1/N of the tokens, and FSDP2 when needed.

    FSDP2 (``fully_shard`` on the transformer blocks, each GPU holding 1/N of every expert) is
    chosen when one expert with its activations does not fit one GPU and the sharded plan fits
    (else the rank offloads as one GPU would), or when the test hook WAN_COMPAT_PARALLEL_FSDP=1
    asks for it; the plan then says why in its notes::

        plan = rank_plan(report, probe(), request, 2, gpu_index=0)
        plan.request.shard_weights, plan.estimate.stage_vram_mb["denoise"]
    """
    from dataclasses import replace

    from core.run.optimize import plan_for
    one = one_gpu_hardware(hardware, gpu_index)
    split = replace(request, ranks=n, shard_weights=False)
    plan = plan_for(report, one, split)
    if n < 2:
        return plan
    forced = os.environ.get(FSDP_ENV, "").strip() == "1"
    if not forced and expert_fits(plan):
        return plan
    sharded = plan_for(report, one, replace(split, shard_weights=True))
    if not sharded.fits and plan.fits and not forced:    # 1/N of both experts still too big: offload instead
        return plan
    why = ("the test hook WAN_COMPAT_PARALLEL_FSDP=1 asks for it" if forced else
           "one transformer expert with its activations does not fit one GPU")
    note = (f"Weights: FSDP2 shards the transformer blocks {n} ways, so each GPU holds 1/{n} of "
            f"every expert ({why}).")
    return replace(sharded, notes=(*sharded.notes, note))


def ram_problem(plan: Any, n: int) -> str | None:
    """None when ``n`` ranks, each loading the model into this computer's RAM, fit it; else one sentence.

    Every rank is its own process and reads the whole pipeline into RAM before placing or sharding
    it, so the machine needs about ``n`` times a rank's own RAM peak (``plan`` is a rank's plan)::

        ram_problem(rank_plan(report, probe(), request, 4), 4)
        # '--gpus 4: each of the 4 ranks loads the model into RAM: about 190 GB in all, ...'
    """
    usable = getattr(plan, "usable_ram_mb", None)
    per_rank = plan.estimate.peak_ram_mb
    if not usable or n * per_rank <= usable:
        return None
    from core.units import format_mib
    fits = max((k for k in range(1, n) if k * per_rank <= usable), default=1)
    use = f"Use --gpus {fits} or fewer" if fits > 1 else "Run on one GPU (--gpus 1)"
    return (f"--gpus {n}: each of the {n} ranks loads the model into this computer's RAM: about "
            f"{format_mib(n * per_rank)} in all, and {format_mib(usable)} is available. {use}, or add RAM.")


def one_gpu_hardware(hardware: Any, index: int | None = None) -> Any:
    """The machine as one rank sees it: its own GPU only (none with gloo), so it never plans a spread."""
    from dataclasses import replace
    gpus = [] if index is None else [g for g in hardware.gpus if g.index == index] or hardware.gpus[index:index + 1]
    return replace(hardware, gpus=list(gpus))


def choose_auto(report: ModelReport, request: Any, hardware: Any, width: int, height: int, frames: int) -> int:
    """``--gpus auto``: every visible GPU (that splits) when the model does not fit one all on the GPU, else 1."""
    visible = len(hardware.gpus)
    if visible < 2 or cannot_split(report):
        return 1
    from core.run.optimize import plan_for
    single = plan_for(report, one_gpu_hardware(hardware, hardware.gpus[0].index), request)
    if single.fits and single.placement.value == "all_on_device":
        return 1
    good = [n for n in working_counts(report, width, height, frames, visible) if n <= visible]
    return max(good) if good else 1


# --- launch and supervise -------------------------------------------------------------------

@dataclass
class ParallelOutcome:
    """How a run over N ranks ended: ``exit_code`` 0 (video written), 1 (failed), 130 (cancelled)."""

    exit_code: int
    message: str = ""
    output_path: str | None = None
    result: dict[str, Any] = field(default_factory=dict)
    ranks: dict[int, dict[str, Any]] = field(default_factory=dict)


class _Stop(Exception):
    """SIGTERM to the parent: stop every rank, as Ctrl+C does."""


def launcher_command(n: int, job_dir: Path) -> list[str]:
    """torch's own launcher: one node, ``n`` ranks of :mod:`core.run.rank`, no restarts."""
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nnodes=1",
            f"--nproc-per-node={n}", "--max-restarts=0", "--monitor-interval=0.2",
            "-m", "core.run.rank", str(job_dir)]


def run_parallel(report: ModelReport, config: Mapping[str, Any], overrides: Mapping[str, Any], n: int,
                 progress: AnyCallback = None, output_path: str | None = None,
                 timeout_s: float | None = None, cancel: Any = None) -> ParallelOutcome:
    """Run one generation on ``n`` ranks and wait for it; never raises for a failed run.

    ``config``: GenerationConfig keyword arguments (JSON values). ``output_path``: the MP4
    rank 0 writes (chosen here, beforehand, so that a failed run can be cleaned up). ``cancel``:
    a ``threading.Event`` (the app's Cancel button) that stops every rank as Ctrl+C does.
    """
    progress = Progress(progress)
    job_dir = Path(tempfile.mkdtemp(prefix="wan_compat_gpus_"))
    if output_path is None:
        from core.run.load import _default_output
        output_path = str(_default_output(str(config.get("prompt") or ""), int(config.get("seed") or 42)))
    job = {"path": report.path, "config": {**config, "output_path": output_path}, "overrides": dict(overrides),
           "world_size": n, "backend": backend()}
    (job_dir / "job.json").write_text(json.dumps(job), encoding="utf-8")
    before = _stamp(output_path)
    log = job_dir / "launcher.log"
    env = dict(os.environ, PYTHONUNBUFFERED="1", OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "1"))
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(Path(__file__).resolve().parents[2]),
                                                     env.get("PYTHONPATH")) if p)
    progress.emit("load", f"Starting {n} ranks ({backend()})", 0)
    with open(log, "wb") as log_file:
        proc = subprocess.Popen(launcher_command(n, job_dir), stdout=log_file, stderr=subprocess.STDOUT,
                                env=env, start_new_session=True)
        outcome = _supervise(proc, job_dir, n, progress, timeout_s, cancel)
    outcome = _judge(outcome, job_dir, n, output_path, proc.returncode, log)
    if outcome.exit_code == 0:
        shutil.rmtree(job_dir, ignore_errors=True)
    elif _stamp(output_path) != before:    # written by this run: no partial or orphaned video
        _remove_output(output_path)
    from core.run.output_claim import release
    release(Path(output_path))             # the name's claim, held here while rank 0 wrote
    return outcome


def _stamp(path: str) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_mtime_ns, st.st_size


def _supervise(proc: subprocess.Popen, job_dir: Path, n: int, progress: Progress,
               timeout_s: float | None, cancel: Any = None) -> ParallelOutcome:
    """Relay rank 0's progress until the launcher ends; stop every rank on cancel or a rank's failure."""
    events = job_dir / "progress.jsonl"
    offset, failed_at, start = 0, None, time.monotonic()
    previous = signal.getsignal(signal.SIGTERM) if _main_thread() else None

    def on_term(signum: int, frame: Any) -> None:
        raise _Stop()

    if previous is not None:
        signal.signal(signal.SIGTERM, on_term)
    try:
        while True:
            offset = _relay(events, offset, progress)
            if proc.poll() is not None:
                _relay(events, offset, progress)
                return ParallelOutcome(exit_code=-1)
            if failed_at is None and any(r.get("status") != "ok" for r in _reports(job_dir, n).values()):
                failed_at = time.monotonic()
            if failed_at is not None and time.monotonic() - failed_at > STOP_GRACE_S:
                _stop(proc)
            if cancel is not None and cancel.is_set():
                raise _Stop()
            if timeout_s is not None and time.monotonic() - start > timeout_s:
                _stop(proc)
                return ParallelOutcome(exit_code=1, message=f"The {n} ranks did not finish within "
                                       f"{timeout_s:.0f} s and were stopped; no video was written.")
            time.sleep(0.1)
    except (KeyboardInterrupt, _Stop):
        _stop(proc)
        return ParallelOutcome(exit_code=130, message="Cancelled; every rank was stopped and no video was written.")
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _main_thread() -> bool:
    import threading
    return threading.current_thread() is threading.main_thread()


def _relay(events: Path, offset: int, progress: Progress) -> int:
    """Send rank 0's new, complete JSON lines on as ProgressEvents; returns the new offset."""
    try:
        with open(events, "rb") as fh:
            fh.seek(offset)
            data = fh.read()
    except OSError:
        return offset
    end = data.rfind(b"\n") + 1
    for line in data[:end].splitlines():
        try:
            progress.send(ProgressEvent(**json.loads(line)))
        except (ValueError, TypeError):
            continue
    return offset + end


def _stop(proc: subprocess.Popen) -> None:
    """SIGTERM to the launcher and every rank (one process group), SIGKILL after a grace period."""
    for sig, wait in ((signal.SIGTERM, STOP_GRACE_S), (signal.SIGKILL, 10.0)):
        try:
            os.killpg(proc.pid, sig)
        except (ProcessLookupError, PermissionError):
            pass
        try:
            proc.wait(timeout=wait)
            break
        except subprocess.TimeoutExpired:
            continue
    try:  # ranks left behind in the group after the launcher exited
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def _reports(job_dir: Path, n: int) -> dict[int, dict[str, Any]]:
    """Each rank's exit report (written just before it exits), by rank; missing ones left out."""
    out = {}
    for rank in range(n):
        try:
            out[rank] = json.loads((job_dir / f"rank{rank}.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
    return out


_FAILURE = re.compile(r"rank\s*:\s*(\d+).*?exitcode\s*:\s*(-?\d+)", re.S)


def _root_cause(log_text: str, missing: list[int]) -> tuple[int, int | None]:
    """The rank that failed first and its exit code, from the launcher's "Root Cause" section."""
    _, found, after = log_text.rpartition("Root Cause")
    match = _FAILURE.search(after) if found else None
    if match and int(match.group(1)) in missing:
        return int(match.group(1)), int(match.group(2))
    return missing[0], None


def _exit_words(code: int) -> str:
    """-9 -> "killed by SIGKILL"; 3 -> "exit code 3"."""
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit code {code}"


def _judge(outcome: ParallelOutcome, job_dir: Path, n: int, output_path: str, launcher_rc: int | None,
           log: Path) -> ParallelOutcome:
    """Success is rank 0's result plus every rank's "ok" report and the MP4 on disk; the launcher's
    exit code is not trusted either way (a rank may abort at exit after a correct result)."""
    reports = _reports(job_dir, n)
    outcome.ranks = reports
    try:
        outcome.result = json.loads((job_dir / "result.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        outcome.result = {}
    if outcome.exit_code == 130 or (outcome.exit_code == 1 and outcome.message):
        return outcome
    ok = (len(reports) == n and all(r.get("status") == "ok" for r in reports.values())
          and outcome.result.get("success") and Path(output_path).is_file())
    if ok:
        outcome.exit_code, outcome.output_path = 0, output_path
        return outcome
    outcome.exit_code = 1
    errors = {r: rep for r, rep in reports.items() if rep.get("status") == "error"}
    missing = [r for r in range(n) if r not in reports]
    step = _last_step(job_dir)
    if missing:
        r, code = _root_cause(_tail(log), missing)
        how = f" ({_exit_words(code)})" if code is not None else ""
        outcome.message = (f"Rank {r} of {n} stopped unexpectedly{how}{step}; every rank was stopped and no "
                           f"video was written (launcher log: {log}).")
    elif errors:
        r, rep = min(errors.items())
        outcome.message = f"Rank {r} of {n} failed{step}: {rep.get('message', 'no reason given')}"
    elif outcome.result.get("errors"):
        outcome.message = " ".join(outcome.result["errors"])
    else:
        outcome.message = (f"The {n} ranks ended without a video (launcher exit code {launcher_rc}); "
                           f"see {log}.")
    return outcome


def _last_step(job_dir: Path) -> str:
    """" at step 2 of 3" from rank 0's last denoising event, or ""."""
    try:
        lines = (job_dir / "progress.jsonl").read_text(encoding="utf-8").splitlines()
    except OSError:
        return ""
    for line in reversed(lines):
        try:
            event = json.loads(line)
        except ValueError:
            continue
        if event.get("step"):
            return f" after step {event['step']} of {event['steps']}"
    return ""


def _tail(log: Path, limit: int = 20000) -> str:
    try:
        return log.read_bytes()[-limit:].decode("utf-8", "replace")
    except OSError:
        return ""


def _remove_output(output_path: str | None) -> None:
    """No partial results: the MP4 and its JSON of a failed or cancelled run are removed."""
    if not output_path:
        return
    for path in (Path(output_path), Path(output_path).with_suffix(".json")):
        try:
            path.unlink()
        except OSError:
            pass


# --- the command line's `generate --gpus N|auto` ---------------------------------------------

def config_kwargs(config: Any) -> dict[str, Any]:
    """A GenerationConfig's fields that travel to the ranks as JSON (paths, numbers, text)."""
    from dataclasses import fields
    out = {}
    for f in fields(config):
        value = getattr(config, f.name)
        try:
            json.dumps(value)
        except (TypeError, ValueError):
            continue
        out[f.name] = value
    return out


def visible_for_split(hardware: Any) -> int | None:
    """How many GPUs a split may use: the visible ones, or None (no limit) for gloo's CPU ranks.

    >>> visible_for_split(probe())   # doctest: +SKIP
    2
    """
    return None if backend() == "gloo" else len(hardware.gpus)


def cli_generate(report: ModelReport, settings: Any, config: Any, overrides: Mapping[str, Any], gpus: str,
                 progress: AnyCallback = None, out: Any = sys.stderr) -> int | None:
    """``generate --gpus N|auto``: exit code 0/1/2/130, or None to run in this process on one GPU.

    Refuses a split that cannot work (exit 2) before anything starts, with the counts that work.
    """
    from core.run.generation import request_for
    from core.run.hardware import probe
    hardware = probe()
    visible = visible_for_split(hardware)
    w, h, f = settings.width, settings.height, settings.num_frames
    if str(gpus).strip().lower() == "auto":
        n = choose_auto(report, request_for(settings, overrides), hardware, w, h, f)
        if n > 1:
            print(f"Note: the model does not fit one GPU all on the GPU; using all {n} GPUs.", file=out)
    else:
        try:
            n = int(gpus)
        except ValueError:
            print(f"--gpus {gpus} is not a number of GPUs. Use --gpus 1 or more, or auto.", file=out)
            return 2
    if n == 1:
        return None
    reason = cannot_split(report)
    if reason:
        print(f"Note: {reason}", file=out)
        return None
    problem = split_problem(report, w, h, f, n, visible)
    plan = rank_plan(report, hardware, request_for(settings, overrides), n,
                     hardware.gpus[0].index if hardware.gpus else None)
    problem = problem or ram_problem(plan, n)
    if problem:
        print(problem, file=out)
        return 2
    if hardware.gpus and backend() == "nccl":   # what each GPU holds (the sequence split n ways)
        print(f"  {split_memory(plan, n).line()}", file=out)
    outcome = run_parallel(report, config_kwargs(config), overrides, n, progress=progress,
                           output_path=config.output_path)
    for line in outcome.result.get("plan_lines") or []:
        print(f"  {line}", file=out)
    split = outcome.result.get("split") or {}
    if split:
        said = ", ".join(f"{name} {degree} ways" for name, degree in split.items())
        print(f"  Ran on {n} ranks ({backend()}): the video's tokens split over them (Ulysses): {said}.", file=out)
    sharded = outcome.result.get("sharded") or []
    if sharded:
        print(f"  Weights sharded {n} ways (FSDP2): {', '.join(sharded)}.", file=out)
    if outcome.exit_code != 0:
        print(outcome.message, file=out)
        return outcome.exit_code
    print(outcome.output_path)
    return 0
