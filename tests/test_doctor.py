"""core.doctor and core.run.hardware on this machine, and with a broken torch injected."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from core.config import AppConfig, load_config  # noqa: E402
from core.doctor import (  # noqa: E402
    DoctorReport,
    check_disk,
    check_ffmpeg,
    check_gpu,
    check_package,
    check_torch,
    check_vram,
    nearest_existing,
    run_doctor,
    torch_install_commands,
)
from core.run.hardware import GpuInfo, HardwareInfo, probe, torch_facts_subprocess  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
DLL_ERROR = "DLL load failed while importing _C: The specified module could not be found."


@pytest.fixture(scope="module")
def config(tmp_path_factory: pytest.TempPathFactory) -> AppConfig:
    return load_config(tmp_path_factory.mktemp("cfg") / "config.yaml")


@pytest.fixture(scope="module")
def report(config: AppConfig) -> DoctorReport:
    return run_doctor(config)


def by_name(report: DoctorReport, name: str):
    return next(c for c in report.checks if c.name == name)


def fake_torch_env(tmp_path: Path, body: str) -> dict[str, str]:
    """An environment whose PYTHONPATH puts a fake `torch` package first."""
    pkg = tmp_path / "fake" / "torch"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text(body, encoding="utf-8")
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(pkg.parent), env.get("PYTHONPATH")]))
    return env


def gpu_hw(total_mb: int = 24 * 1024, free_mb: int | None = None, driver_cuda: str = "12.8") -> HardwareInfo:
    gpu = GpuInfo(0, "NVIDIA GeForce RTX 4090", total_mb, total_mb if free_mb is None else free_mb,
                  (8, 9), True)
    return HardwareInfo(gpus=[gpu], ram_total_mb=64 * 1024, ram_free_mb=48 * 1024, cpu_count=16,
                        driver_version="570.1", driver_cuda_version=driver_cuda)


# --- on this machine --------------------------------------------------------------------

def test_doctor_runs_here_and_every_check_is_well_formed(report: DoctorReport) -> None:
    names = [c.name for c in report.checks]
    for expected in ("Python", "Config", "torch", "GPU", "RAM", "Disk (models)", "Disk (outputs)", "Disk (offload)",
                     "diffusers", "transformers", "ffmpeg"):
        assert expected in names
    for c in report.checks:
        assert c.status in ("ok", "warning", "error")
        assert c.summary
        if c.status != "ok":
            assert c.remedy, c
    json.dumps(report.to_dict())
    assert report.to_dict()["ok"] == report.ok


def test_no_gpu_is_a_warning_not_a_crash(report: DoctorReport) -> None:
    gpu = by_name(report, "GPU")
    if probe().gpus:
        pytest.skip("this machine has an NVIDIA GPU")
    assert gpu.status == "warning"
    assert "No NVIDIA GPU found" in gpu.summary and "CPU" in gpu.summary
    assert "VRAM" not in [c.name for c in report.checks]


def test_torch_is_present_and_working(report: DoctorReport) -> None:
    assert by_name(report, "torch").status in ("ok", "warning")
    assert report.torch["ok"] is True and report.torch["version"].startswith("2.")
    for name in ("Python", "diffusers", "transformers", "ffmpeg"):
        assert by_name(report, name).status == "ok", by_name(report, name)


def test_doctor_never_imports_torch_in_its_own_process() -> None:
    code = ("import sys, json; from core.config import load_config; from core.doctor import run_doctor; "
            "r = run_doctor(load_config()); json.dumps(r.to_dict()); r.render_text(); "
            "assert r.torch['ok'], r.torch; "
            "bad = {'torch', 'diffusers', 'transformers', 'gradio'} & set(sys.modules); "
            "assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True, timeout=120)


def test_render_text_has_a_mark_per_check_and_indented_remedies(report: DoctorReport) -> None:
    text = report.render_text()
    lines = text.splitlines()
    for c in report.checks:
        assert any(re.match(rf"\[(ok|warn|ERROR)\] +{re.escape(c.name)}: ", line) for line in lines), c
    if any(c.remedy for c in report.checks):
        assert any(line.startswith("        -> ") for line in lines)


def test_probe_without_torch_reports_memory() -> None:
    hw = probe()
    assert hw.ram_total_mb and hw.ram_total_mb > 0 and hw.cpu_count
    assert all(isinstance(g, GpuInfo) for g in hw.gpus)


# --- a broken torch ---------------------------------------------------------------------

def test_broken_torch_is_caught_and_explained_with_pip_commands(tmp_path: Path, config: AppConfig) -> None:
    env = fake_torch_env(tmp_path, f"raise ImportError({DLL_ERROR!r})\n")
    facts = torch_facts_subprocess(env=env)
    assert facts["ok"] is False and "DLL load failed while importing _C" in facts["error"]

    rep = run_doctor(config, env=env, hardware=HardwareInfo(ram_total_mb=32768, ram_free_mb=16384))
    check = by_name(rep, "torch")
    assert check.status == "error" and not rep.ok
    assert "DLL load failed while importing _C" in check.summary
    assert "-m pip uninstall -y torch" in check.remedy
    assert "-m pip install torch==" in check.remedy
    assert "[ERROR] torch:" in rep.render_text()


def test_torch_that_kills_the_interpreter_is_reported(tmp_path: Path) -> None:
    facts = torch_facts_subprocess(env=fake_torch_env(tmp_path, "import os\nos._exit(3)\n"))
    assert facts["ok"] is False and facts["error_type"] == "Crash" and "code 3" in facts["error"]


def test_torch_that_hangs_times_out(tmp_path: Path) -> None:
    facts = torch_facts_subprocess(timeout=2, env=fake_torch_env(tmp_path, "import time\ntime.sleep(30)\n"))
    assert facts["ok"] is False and "longer than 2 seconds" in facts["error"]


def test_missing_torch_says_install_not_reinstall() -> None:
    facts = {"ok": False, "error_type": "ModuleNotFoundError",
             "error": "ModuleNotFoundError: No module named 'torch'"}
    check = check_torch(facts, HardwareInfo())
    assert check.status == "error" and "not installed" in check.summary
    assert "uninstall" not in check.remedy and "-m pip install torch==" in check.remedy


# --- with a GPU (simulated) -------------------------------------------------------------

def test_cpu_torch_on_a_gpu_machine_gets_the_cuda_command(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TORCH_INDEX_URL", raising=False)
    monkeypatch.delenv("TORCH_VERSION", raising=False)
    facts = {"ok": True, "version": "2.13.0+cpu", "cuda_available": False, "devices": []}
    check = check_torch(facts, gpu_hw())
    assert check.status == "warning"
    assert "--index-url https://download.pytorch.org/whl/cu126" in check.remedy, "driver 570: no cu128 since torch 2.12"
    assert "update the driver to 580" in check.remedy
    new = HardwareInfo(gpus=gpu_hw().gpus, driver_version="581.15", driver_cuda_version="13.0")
    assert "--index-url https://download.pytorch.org/whl/cu130" in torch_install_commands(new, uninstall=True)
    assert "update the driver" not in torch_install_commands(new, uninstall=True)
    monkeypatch.setenv("TORCH_INDEX_URL", "https://example.org/whl/cu999")
    monkeypatch.setenv("TORCH_VERSION", "9.9.9")
    assert "torch==9.9.9 --index-url https://example.org/whl/cu999" in torch_install_commands(gpu_hw(), uninstall=False)


def test_torch_built_for_a_newer_cuda_than_the_driver_is_said_so(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TORCH_INDEX_URL", raising=False)
    facts = {"ok": True, "version": "2.13.0", "cuda_version": "13.0", "cuda_available": False, "devices": []}
    check = check_torch(facts, gpu_hw(driver_cuda="12.8"))
    assert check.status == "warning"
    assert check.summary.startswith("torch 2.13.0 built for CUDA 13.0, your driver supports up to 12.8")
    assert "--index-url https://download.pytorch.org/whl/cu126" in check.remedy
    matching = check_torch(dict(facts, cuda_version="12.6"), gpu_hw(driver_cuda="12.8"))
    assert "CPU-only build, or the driver is too old" in matching.summary


def test_gpu_and_vram_checks() -> None:
    facts_ok = {"ok": True, "version": "2.13.0+cu128", "cuda_version": "12.8", "cuda_available": True,
                "devices": [{"name": "RTX 4090", "total_mb": 24564, "compute_capability": [8, 9]}]}
    assert check_torch(facts_ok, gpu_hw()).status == "ok"
    gpu = check_gpu(gpu_hw())
    assert gpu.status == "ok" and "RTX 4090" in gpu.summary and "bf16" in gpu.summary
    assert check_vram(gpu_hw()).status == "ok"
    busy = check_vram(gpu_hw(free_mb=2048))
    assert busy.status == "warning" and "Other programs" in busy.summary and busy.remedy
    small = check_vram(gpu_hw(total_mb=6 * 1024))
    assert small.status == "warning" and small.remedy


# --- disk, packages, ffmpeg -------------------------------------------------------------

def test_disk_uses_the_nearest_existing_parent(tmp_path: Path) -> None:
    missing = tmp_path / "a" / "b" / "models"
    assert nearest_existing(missing) == tmp_path
    check = check_disk("Disk (models)", missing, min_free_gb=0, why="x")
    assert check.status == "ok" and "not created yet" in check.summary
    full = check_disk("Disk (models)", tmp_path, min_free_gb=10**9, why="models are big")
    assert full.status == "warning" and "models are big" in full.summary and full.remedy


def test_package_versions_are_read_without_importing() -> None:
    check = check_package("diffusers")
    assert check.status == "ok" and "0.35.0" in check.summary


def test_ffmpeg_missing_is_an_error() -> None:
    def broken() -> str:
        raise RuntimeError("No ffmpeg exe could be found.")
    check = check_ffmpeg(broken)
    assert check.status == "error" and "imageio-ffmpeg" in check.remedy
    assert check_ffmpeg().status == "ok"


# --- the command line (written by the lead; skipped until it exists) ----------------------

@pytest.mark.skipif(not (ROOT / "core" / "__main__.py").exists(), reason="core/__main__.py not written yet")
def test_cli_doctor_json_and_exit_code(tmp_path: Path) -> None:
    env = dict(os.environ, WAN_COMPAT_CONFIG=str(tmp_path / "config.yaml"))
    proc = subprocess.run([sys.executable, "-m", "core", "doctor", "--json"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)
    data = json.loads(proc.stdout)
    assert {"ok", "checks"} <= set(data)
    assert proc.returncode == (0 if data["ok"] else 1), proc.stderr
    text = subprocess.run([sys.executable, "-m", "core", "doctor"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)
    assert "torch" in text.stdout and text.returncode == proc.returncode


def test_probe_reads_gpus_through_nvml(monkeypatch: pytest.MonkeyPatch) -> None:
    """The NVML path, with a stand-in for the driver (this machine may have no GPU)."""
    import types

    class NVMLError(Exception):
        pass

    class NVMLError_LibraryNotFound(NVMLError):  # noqa: N801 - pynvml's name
        pass

    mem = types.SimpleNamespace(total=80 * 2**30, free=79 * 2**30, used=2**30)
    fake = types.SimpleNamespace(
        NVMLError=NVMLError, NVMLError_LibraryNotFound=NVMLError_LibraryNotFound,
        nvmlInit=lambda: None, nvmlShutdown=lambda: None,
        nvmlSystemGetDriverVersion=lambda: "570.86.15",
        nvmlSystemGetCudaDriverVersion=lambda: 12080,
        nvmlDeviceGetCount=lambda: 2,
        nvmlDeviceGetHandleByIndex=lambda i: i,
        nvmlDeviceGetName=lambda h: b"NVIDIA H100 80GB HBM3" if h == 0 else "Tesla T4",
        nvmlDeviceGetMemoryInfo=lambda h: mem,
        nvmlDeviceGetCudaComputeCapability=lambda h: (9, 0) if h == 0 else (7, 5),
    )
    monkeypatch.setitem(sys.modules, "pynvml", fake)
    hw = probe()
    assert hw.driver_version == "570.86.15" and hw.driver_cuda_version == "12.8"
    assert [g.name for g in hw.gpus] == ["NVIDIA H100 80GB HBM3", "Tesla T4"]
    assert hw.gpus[0].total_mb == 80 * 1024 and hw.gpus[0].free_mb == 79 * 1024
    assert [g.bf16_supported for g in hw.gpus] == [True, False]
    assert hw.max_vram_mb == 80 * 1024 and hw.problems == []

    def no_driver() -> None:
        raise NVMLError_LibraryNotFound("NVML Shared Library Not Found")
    monkeypatch.setattr(fake, "nvmlInit", no_driver, raising=False)
    assert probe().gpus == [] and probe().problems == []

    def broken() -> None:
        raise NVMLError("Driver/library version mismatch")
    monkeypatch.setattr(fake, "nvmlInit", broken, raising=False)
    hw = probe()
    assert hw.gpus == [] and "version mismatch" in hw.problems[0]
    assert "version mismatch" in check_gpu(hw).summary
