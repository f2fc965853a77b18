"""Memory limits the plan must see (RLIMIT_AS, a real cgroup) and every wording of "out of memory"."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from core.run.memory_failure import is_memory_failure, killed_by_system, memory_sentence
from core.run.ram_limit import CONTAINER, PROCESS
from tests.conftest import REPO

_PROBE = ("import json; from core.run.hardware import probe; h = probe(); "
          "print(json.dumps([h.ram_usable_mb, h.ram_limit_mb, h.ram_limit_source, h.ram_free_mb]))")


def _child(code: str, preexec=None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", code], cwd=REPO, env=dict(os.environ, PYTHONPATH=str(REPO)),
                          capture_output=True, text=True, timeout=60, preexec_fn=preexec)


def test_rlimit_as_in_a_child_is_what_the_plan_reads() -> None:
    import resource

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (1536 * 2**20, 1536 * 2**20))

    out = _child(_PROBE, limit)
    assert out.returncode == 0, out.stderr
    usable, limit_mb, source, free = json.loads(out.stdout.splitlines()[-1])
    assert (limit_mb, source) == (1536, PROCESS)
    assert 0 < usable < 1536 <= free


def _own_cgroup() -> tuple[Path, str, str] | None:
    """(a new child cgroup folder, its limit file, its procs file) where this machine lets us make one."""
    text = Path("/proc/self/cgroup").read_text()
    for line in text.splitlines():
        _, controllers, path = line.split(":", 2)
        if controllers == "" and Path("/sys/fs/cgroup/cgroup.controllers").exists():
            return Path("/sys/fs/cgroup") / path.lstrip("/") / f"wan_test_{uuid.uuid4().hex[:8]}", \
                "memory.max", "cgroup.procs"
        if "memory" in controllers.split(","):
            return Path("/sys/fs/cgroup/memory") / path.lstrip("/") / f"wan_test_{uuid.uuid4().hex[:8]}", \
                "memory.limit_in_bytes", "cgroup.procs"
    return None


def test_a_real_cgroup_limit_is_what_the_plan_reads() -> None:
    found = _own_cgroup()
    if found is None:
        pytest.skip("this machine shows no memory cgroup controller")
    folder, limit_file, procs = found
    try:
        folder.mkdir()
        (folder / limit_file).write_text(str(768 * 2**20))
    except OSError as exc:
        pytest.skip(f"cannot make a memory cgroup here ({exc}): it needs root and a writable cgroupfs")
    try:
        code = f"import os; open({str(folder / procs)!r}, 'w').write(str(os.getpid())); " + _PROBE
        out = _child(code)
        assert out.returncode == 0, out.stderr
        usable, limit_mb, source, _ = json.loads(out.stdout.splitlines()[-1])
        assert (limit_mb, source) == (768, CONTAINER)
        assert 0 < usable < 768
    finally:
        folder.rmdir()


@pytest.mark.parametrize("error", [
    RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB"),
    RuntimeError("[enforce fail at alloc_cpu.cpp:117] data. DefaultCPUAllocator: can't allocate memory: "
                 "you tried to allocate 4294967296 bytes. Error code 12 (Cannot allocate memory)"),
    MemoryError(),
    RuntimeError("std::bad_alloc"),
    OSError("libtorch_cpu.so: failed to map segment from shared object"),
    OSError(12, "Cannot allocate memory"),
])
def test_every_allocation_failure_is_memory(error: BaseException) -> None:
    wrapped = ValueError("Loading the vae failed")
    wrapped.__cause__ = error
    assert is_memory_failure(error) and is_memory_failure(wrapped)


def test_not_memory() -> None:
    assert not is_memory_failure(ValueError("Repo id must be in the form 'repo_name'"))
    assert not is_memory_failure(OSError(28, "No space left on device"))


def test_the_sentence_says_need_and_limit() -> None:
    from core.run.hardware import HardwareInfo
    hw = HardwareInfo(ram_total_mb=64_000, ram_free_mb=30_000, ram_usable_mb=7_900, ram_limit_mb=8192,
                      ram_limit_source=CONTAINER)
    assert memory_sentence(9728, hw) == "needs about 9.5 GB of RAM; this process may use 8.0 GB (container limit)"


def test_a_worker_killed_by_sigkill_reads_as_memory_with_what_fits(demo_models_dir: Path) -> None:
    from core.check.detect import inspect
    from core.run.hardware import HardwareInfo
    from core.run.optimize import OptimizationRequest, plan_for
    killed = subprocess.run([sys.executable, "-c", "import os, signal; os.kill(os.getpid(), signal.SIGKILL)"])
    report = inspect(sorted(p for p in demo_models_dir.iterdir() if p.is_dir())[0])
    hw = HardwareInfo(ram_total_mb=64_000, ram_free_mb=30_000, ram_usable_mb=30_000, cpu_count=2)
    plan = plan_for(report, hw, OptimizationRequest(64, 64, 9, 2))
    err = killed_by_system(killed.returncode, plan, report)
    assert killed.returncode == -9
    assert err.message.startswith("The generation was killed by the system (SIGKILL), most likely because it ran "
                                  "out of memory: it needs about ")
    assert "of RAM; this computer has" in err.message
    assert err.remedy


_REAL_FAILURES = r"""
import json, resource
resource.setrlimit(resource.RLIMIT_AS, (2**31, 2**31))
import torch
from core.errors import explain, is_memory_failure
out = []
for make in (lambda: torch.empty(2**33, dtype=torch.uint8), lambda: bytearray(2**33)):
    try:
        make()
    except BaseException as exc:
        out.append([type(exc).__name__, str(exc)[:200], is_memory_failure(exc), explain(exc).message])
print(json.dumps(out))
"""


def test_real_allocation_failures_under_a_ulimit_are_memory() -> None:
    out = _child(_REAL_FAILURES)
    assert out.returncode == 0, out.stderr
    (torch_type, torch_text, torch_memory, said), (py_type, _, py_memory, _) = json.loads(out.stdout.splitlines()[-1])
    assert "can't allocate memory" in torch_text or "not enough memory" in torch_text, torch_text
    assert torch_memory and py_type == "MemoryError" and py_memory
    assert said.startswith("The computer ran out of memory")


_GENERATE_UNDER_LIMIT = r"""
import json, resource, sys
from core.check.detect import inspect
from core.run.generation import GenerationConfig
from core.run.load import load, plan_for_load
from core.run.ram_limit import _vm_size_mb
report = inspect(sys.argv[1])
plan = plan_for_load(report)           # planned before the limit: it believes the run fits
wrapper = load(report, plan)
limit = (_vm_size_mb() + 64) * 2**20
resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
result = wrapper.generate(GenerationConfig(prompt="cat", width=256, height=256, num_frames=17,
                                           num_inference_steps=2, output_path=sys.argv[2]), plan=plan)
print(json.dumps({"success": result.success, "errors": result.errors, "plan": bool(result.plan)}))
"""


def test_allocator_failure_mid_generation_is_one_memory_sentence(demo_models_dir: Path, tmp_path: Path) -> None:
    out = subprocess.run([sys.executable, "-c", _GENERATE_UNDER_LIMIT, str(demo_models_dir / "wan21_t2v"),
                          str(tmp_path / "v.mp4")], cwd=REPO, env=dict(os.environ, PYTHONPATH=str(REPO)),
                         capture_output=True, text=True, timeout=180)
    assert out.returncode == 0, out.stderr[-2000:]
    result = json.loads(out.stdout.splitlines()[-1])
    assert not result["success"] and result["plan"]        # a plan: the CLI exits 1, not 2 (bad input)
    (error,) = result["errors"]
    assert error.startswith("Out of memory at 256x256 with 17 frames")
    assert "of RAM; this process may use" in error and "(process limit, ulimit -v)" in error
    assert not (tmp_path / "v.mp4").exists()


def test_cli_under_a_ulimit_refuses_with_need_and_limit_exit_1(demo_models_dir: Path, tmp_path: Path) -> None:
    import resource

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (700 * 2**20, 700 * 2**20))

    out = subprocess.run([sys.executable, "-m", "core", "generate", str(demo_models_dir / "wan21_t2v"), "--prompt",
                          "cat", "--size", "64x64", "--frames", "9", "--steps", "2", "--out", str(tmp_path / "v.mp4")],
                         cwd=REPO, env=dict(os.environ, PYTHONPATH=str(REPO)), capture_output=True, text=True,
                         timeout=120, preexec_fn=limit)
    assert out.returncode == 1, out.stderr
    assert "of RAM" in out.stderr and "this process may use 700 MB (process limit, ulimit -v)" in out.stderr
    assert "Traceback" not in out.stderr


def test_a_model_folder_deleted_before_loading_is_named(demo_models_dir: Path, tmp_path: Path) -> None:
    import shutil

    from core.check.detect import inspect
    from core.errors import WanError
    from core.run.load import load, plan_for_load
    folder = tmp_path / "wan21_t2v"
    shutil.copytree(demo_models_dir / "wan21_t2v", folder)
    report = inspect(folder)
    plan = plan_for_load(report)
    shutil.rmtree(folder)                       # gone between the check and the weights
    with pytest.raises(WanError) as info:
        load(report, plan)
    assert "disappeared while it was loading" in info.value.message and "Repo id" not in info.value.message


def test_a_cli_generation_the_kernel_kills_is_said_as_memory(demo_models_dir: Path, tmp_path: Path) -> None:
    """The command watches its generation (core.run.watched): killed by the kernel's OOM killer in a real
    memory cgroup where the machine allows one, else by a SIGKILL sent as that killer sends it."""
    import signal
    import time

    import psutil
    found = _own_cgroup()
    folder = None
    if found is not None:
        folder, limit_file, procs = found
        try:
            folder.mkdir()
            (folder / limit_file).write_text(str(3 * 2**30))      # the plan fits: the estimate was wrong later
        except OSError:
            folder = None

    def enter() -> None:
        if folder is not None:
            Path(folder / procs).write_text(str(os.getpid()))

    proc = subprocess.Popen([sys.executable, "-m", "core", "generate", str(demo_models_dir / "wan21_t2v"),
                             "--prompt", "cat", "--size", "64x64", "--frames", "9", "--steps", "2",
                             "--out", str(tmp_path / "v.mp4")], cwd=REPO, env=dict(os.environ, PYTHONPATH=str(REPO)),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, preexec_fn=enter)
    try:
        seen = ""
        assert proc.stderr is not None
        while "Loading the model" not in seen:                  # the child has torch and is loading
            line = proc.stderr.readline()
            assert line, seen[-2000:]
            seen += line
        if folder is not None:                                   # the container's memory now ends here
            usage = int((folder / limit_file.replace("limit_in_bytes", "usage_in_bytes")
                         .replace("memory.max", "memory.current")).read_text())
            (folder / limit_file).write_text(str(usage + 2**20))
        else:
            (child,) = psutil.Process(proc.pid).children()
            time.sleep(0.5)
            os.kill(child.pid, signal.SIGKILL)
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if folder is not None:
            time.sleep(0.2)
            folder.rmdir()
    assert proc.returncode == 1 and out == "", err[-2000:]
    assert "The generation was killed by the system (SIGKILL), most likely because it ran out of memory: it needs " \
           "about" in err and "Traceback" not in err, err[-2000:]
    if folder is not None:
        assert "(container limit)" in err, err[-2000:]
    assert not list(tmp_path.iterdir())
