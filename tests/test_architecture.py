"""The house rules of DESIGN.md, checked on the source: packages by job, one-way imports.

- no module imports another package's private (``_name``) names;
- no import cycles between modules (imports under ``TYPE_CHECKING`` count: a cycle there
  is still two modules that cannot be understood apart);
- ``core`` never imports ``gradio``; ``wan_ui`` never imports ``torch`` or ``diffusers``;
- the seed guide's import paths keep working.
"""

from __future__ import annotations

import ast
import importlib
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
PACKAGES = ("core", "wan_ui")


def _module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES: dict[str, Path] = {_module_name(p): p for pkg in PACKAGES for p in sorted((REPO / pkg).rglob("*.py"))}


def _package_of(module: str) -> str:
    """The package a module belongs to: ``core.fix.journal`` -> ``core.fix``; shared modules -> themselves."""
    path = MODULES[module]
    return module if path.name == "__init__.py" else module.rpartition(".")[0] or module


def _imports(path: Path, *, top_level_only: bool) -> list[tuple[str, list[str]]]:
    """(module, names) for each ``import``/``from ... import`` of a project module in the file."""
    found: list[tuple[str, list[str]]] = []

    def visit(nodes: list[ast.stmt], nested: bool) -> None:
        for node in nodes:
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                found.append((node.module, [a.name for a in node.names]))
            elif isinstance(node, ast.Import):
                found.extend((a.name, []) for a in node.names)
            if isinstance(node, (ast.If, ast.Try, ast.With)):
                visit(node.body, nested)
                visit(getattr(node, "orelse", []), nested)
                for handler in getattr(node, "handlers", []):
                    visit(handler.body, nested)
            elif not top_level_only and isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                visit(node.body, True)

    visit(ast.parse(path.read_text(encoding="utf-8")).body, False)
    return found


def _edges(module: str) -> set[str]:
    """The project modules that ``module`` imports when it is itself imported."""
    out: set[str] = set()
    for target, names in _imports(MODULES[module], top_level_only=True):
        if target in MODULES:
            out.add(target)
        out.update(f"{target}.{n}" for n in names if f"{target}.{n}" in MODULES)
    out.discard(module)
    return out


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_core_is_split_into_packages_by_job() -> None:
    for package in ("core.check", "core.fix", "core.fix.convert", "core.run", "core.monitor"):
        assert package in MODULES, f"{package} is missing"
    flat = [m for m in MODULES if m.count(".") == 1 and m.startswith("core.")]
    # What stays at the top of core/: the shared pieces, the CLI and the seed re-exports.
    assert set(flat) <= {"core.__main__", "core.errors", "core.atomic", "core.config", "core.demo", "core.doctor",
                         "core.progress", "core.units", "core.choices", "core.detector", "core.loader",
                         "core.registry", "core.check", "core.fix", "core.run", "core.monitor", "core.jobs"}, flat


def test_no_module_imports_private_names_of_another_package() -> None:
    offences = []
    for module, path in MODULES.items():
        for target, names in _imports(path, top_level_only=False):
            if target not in MODULES or _package_of(target) == _package_of(module):
                continue
            private = [n for n in names if n.startswith("_") and not n.startswith("__")]
            if private:
                offences.append(f"{module} imports {', '.join(private)} from {target}")
    assert not offences, "\n".join(offences)


def test_there_are_no_import_cycles() -> None:
    graph = {m: _edges(m) for m in MODULES}
    assert _cycles(graph) == []


def test_the_cycle_finder_finds_a_cycle() -> None:
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


@pytest.mark.parametrize("package, forbidden", [("core", ("gradio",)), ("wan_ui", ("torch", "diffusers"))])
def test_layers_do_not_import_what_they_must_not(package: str, forbidden: tuple[str, ...]) -> None:
    offences = [f"{m} imports {target}" for m, path in MODULES.items() if m.startswith(package)
                for target, _ in _imports(path, top_level_only=False) if target.split(".")[0] in forbidden]
    assert not offences, "\n".join(offences)


def test_the_seed_import_paths_still_work() -> None:
    from core.detector import ArchitectureDetector
    from core.fix import apply_wan_compatibility_fix
    from core.loader import GenerationConfig, PipelineManager, WanPipelineLoader
    from core.monitor import get_performance_monitor
    from core.registry import get_compatibility_registry

    assert callable(ArchitectureDetector().detect_model_architecture)
    assert callable(apply_wan_compatibility_fix) and callable(get_performance_monitor)
    assert callable(get_compatibility_registry().get_pipeline_requirements)
    assert GenerationConfig(prompt="a fox").prompt == "a fox"
    assert callable(WanPipelineLoader().load_wan_pipeline) and callable(PipelineManager().select_pipeline_class)


def test_checking_and_planning_import_no_torch() -> None:
    """Model Check, Fix planning, the registry and the monitor work where `import torch` fails."""
    code = ("import sys; import core.check.detect, core.fix, core.registry, core.monitor, core.run.optimize, "
            "core.doctor, core.__main__; print(sorted(m for m in ('torch', 'diffusers', 'gradio') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


@pytest.mark.parametrize("module", sorted(MODULES))
def test_every_module_imports_on_its_own(module: str) -> None:
    importlib.import_module(module)
