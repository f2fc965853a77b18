"""Finding codes: one enumeration, emitted by the detector and handled by Fix or documented.

Read from the source (an AST scan, nothing imported or run):

- *emitted*: ``Code.X`` named in ``core/check`` outside a comparison (a ``Finding(...)``
  argument, a table), and the codes ``header_code()`` maps to where it is called;
- *handled*: ``Code.X`` named anywhere in ``core/fix`` (a repair, a manual step, a refusal);
- *documented*: the code in backquotes in README.md.

Fix must not handle a code the detector never emits; every emitted code must be handled by
Fix or documented; and no module compares a finding's code with a string literal instead of
the enumeration. The negative checks feed the same scan a module that breaks each rule.
"""

from __future__ import annotations

import ast
from pathlib import Path

from core.check.codes import HEADER_CODES, HEADER_DAMAGE, Code
from core.check.detect import inspect
from core.check.report import Finding, Severity

ROOT = Path(__file__).resolve().parent.parent
CODES_MODULE = ROOT / "core" / "check" / "codes.py"
VALUES = {c.value for c in Code}


def sources(folder: str) -> dict[str, str]:
    return {str(p.relative_to(ROOT)): p.read_text(encoding="utf-8")
            for p in sorted((ROOT / folder).rglob("*.py")) if p != CODES_MODULE}


def _code_names(tree: ast.AST, *, skip_comparisons: bool) -> set[str]:
    """Member names of ``Code.X`` in ``tree`` (outside comparisons when asked)."""
    skipped: set[int] = set()
    if skip_comparisons:
        for node in ast.walk(tree):
            if isinstance(node, ast.Compare):
                skipped |= {id(n) for n in ast.walk(node)}
    return {node.attr for node in ast.walk(tree)
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "Code"
            and id(node) not in skipped}


def _names(tree: ast.AST) -> set[str]:
    return {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)}


def emitted(check_sources: dict[str, str]) -> set[str]:
    found: set[str] = set()
    for text in check_sources.values():
        tree = ast.parse(text)
        found |= _code_names(tree, skip_comparisons=True)
        if "header_code" in _names(tree):
            found |= {c.name for c in HEADER_CODES.values()}
    return found


def handled(fix_sources: dict[str, str]) -> set[str]:
    found: set[str] = set()
    for text in fix_sources.values():
        tree = ast.parse(text)
        found |= _code_names(tree, skip_comparisons=False)
        if "HEADER_DAMAGE" in _names(tree):
            found |= {c.name for c in HEADER_DAMAGE}
    return found


def documented(docs: str, names: set[str]) -> set[str]:
    def value(name: str) -> str:  # a name the enumeration lacks (the negative checks) by the convention
        return Code[name].value if name in Code.__members__ else name.lower()
    return {n for n in names if f"`{value(n)}`" in docs}


def problems(check_sources: dict[str, str], fix_sources: dict[str, str], docs: str) -> list[str]:
    """What is wrong with the codes, in sentences (empty when all is well)."""
    out, fix_done, made = [], handled(fix_sources), emitted(check_sources)
    for name in sorted(fix_done - made):
        out.append(f"Fix handles Code.{name}, which the detector never emits")
    for name in sorted(made - fix_done - documented(docs, made)):
        out.append(f"the detector emits Code.{name}, which neither Fix handles nor README.md mentions")
    return out


def string_codes(all_sources: dict[str, str]) -> list[str]:
    """Places that write a finding code as a string literal (compared, or given to Finding)."""
    def literal(node: ast.AST) -> bool:
        if isinstance(node, ast.Constant):
            return isinstance(node.value, str) and node.value in VALUES
        if isinstance(node, (ast.Tuple, ast.List, ast.Set)):
            return any(literal(e) for e in node.elts)
        return False

    def about_codes(node: ast.Compare) -> bool:
        # `layout == "single_file"` is about a Layout; only what reads a code counts
        return any("code" in ast.unparse(side).lower() for side in [node.left, *node.comparators])

    out = []
    for path, text in all_sources.items():
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.Compare) and about_codes(node) and any(
                    literal(side) for side in [node.left, *node.comparators]):
                out.append(f"{path}:{node.lineno}: {ast.unparse(node)}")
            elif isinstance(node, ast.Call) and ast.unparse(node.func).endswith("Finding"):
                args = node.args[1:2] + [k.value for k in node.keywords if k.arg == "code"]
                if any(literal(a) for a in args):
                    out.append(f"{path}:{node.lineno}: {ast.unparse(node)[:80]}")
    return out


def real() -> tuple[dict[str, str], dict[str, str], str]:
    return sources("core/check"), sources("core/fix"), (ROOT / "README.md").read_text(encoding="utf-8")


# --------------------------------------------------------------------------- the rules hold

def test_every_emitted_code_is_handled_by_fix_or_documented() -> None:
    assert problems(*real()) == []


def test_every_code_is_emitted_by_the_detector() -> None:
    never = {c.name for c in Code} - emitted(sources("core/check"))
    assert not never, f"codes nothing emits (remove them from core/check/codes.py): {sorted(never)}"


def test_no_code_is_written_as_a_string_literal() -> None:
    everywhere = {**sources("core"), **sources("wan_ui")}
    assert string_codes(everywhere) == []


def test_json_keeps_the_plain_strings() -> None:
    """`check --json` prints the same strings as before the enumeration."""
    finding = Finding(Severity.ERROR, "shard_missing", "a shard is missing")
    assert finding.code is Code.SHARD_MISSING and finding.to_dict()["code"] == "shard_missing"
    assert f"{finding.code}" == "shard_missing" and finding.code == "shard_missing"


def test_a_real_report_carries_codes(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("no model here")
    report = inspect(tmp_path)
    assert [f.code for f in report.findings] == [Code.NOT_A_MODEL]
    assert report.to_dict()["findings"][0]["code"] == "not_a_model"


# --------------------------------------------------------------------------- and the checks really fail

def test_the_check_catches_a_code_fix_handles_but_nothing_emits() -> None:
    check, fix, docs = real()
    fix = dict(fix, **{"core/fix/extra.py": "def f(x):\n    return x.code is Code.VANISHED\n"})
    assert problems(check, fix, docs) == ["Fix handles Code.VANISHED, which the detector never emits"]


def test_the_check_catches_an_emitted_code_nobody_handles_or_documents() -> None:
    check, fix, docs = real()
    check = dict(check, **{"core/check/extra.py": "X = [Finding(ERROR, Code.BRAND_NEW, 'new', '')]\n"})
    assert problems(check, fix, docs) == [
        "the detector emits Code.BRAND_NEW, which neither Fix handles nor README.md mentions"]
    assert problems(check, fix, docs + "\n| `brand_new` | a new thing |\n") == []


def test_the_check_catches_a_string_literal_code() -> None:
    bad = {"core/fix/extra.py": "ok = f.code == 'shard_missing'\nlayout_ok = layout == 'single_file'\n",
           "core/check/extra.py": "Finding(ERROR, 'not_wan', 'm')\n"}
    assert string_codes(bad) == ["core/fix/extra.py:1: f.code == 'shard_missing'",
                                 "core/check/extra.py:1: Finding(ERROR, 'not_wan', 'm')"]
