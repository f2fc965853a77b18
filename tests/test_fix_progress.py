"""Fix and conversions send ProgressEvents; seed-style ``(message, percent)`` callbacks still work.

Real runs: a broken demo-model copy repaired in place and undone, and a tiny original
Wan-AI checkpoint converted. The Fix tab's panel is filled from the events' fields.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from core import fix
from core.check.detect import inspect
from core.progress import ProgressEvent
from tests.test_fix_crash import CODES, break_demo


@pytest.fixture
def broken(demo_models_dir: Path, tmp_path: Path) -> Path:
    folder = tmp_path / "wan22_t2v_a14b"
    shutil.copytree(demo_models_dir / "wan22_t2v_a14b", folder)
    break_demo(folder)
    return folder


def test_fix_sends_events_whose_percent_only_grows(broken: Path) -> None:
    events: list[ProgressEvent] = []
    plan = fix.plan(inspect(broken))
    assert plan.execute(events.append).ok
    assert events and {e.stage for e in events} == {"fix"}
    percents = [e.percent for e in events]
    assert percents == sorted(percents) and percents[-1] == 100
    changes = [e for e in events if e.step is not None]
    assert [e.step for e in changes] == list(range(1, len(CODES) + 1))
    assert {e.steps for e in changes} == {len(CODES)}
    assert [e.message for e in changes] == [a.description for a in plan.actions]
    undo: list[ProgressEvent] = []
    assert not fix.undo_fix(broken, progress_callback=undo.append).errors
    assert undo[0].stage == "fix" and undo[0].message.startswith("Restoring the files from")
    assert undo[-1].percent == 100


def test_a_seed_style_callback_gets_message_and_percent(broken: Path) -> None:
    heard: list[tuple[str, float]] = []

    def seed_callback(message: str, percent: float) -> None:
        heard.append((message, percent))
    result = fix.apply_wan_compatibility_fix(broken, progress_callback=seed_callback)
    assert result["report_after"]["loadable"]
    assert heard[0] == ("Backing up the files that will change", 1.0) and heard[-1] == ("Done", 100.0)


def test_a_conversion_sends_convert_events(tmp_path: Path) -> None:
    pytest.importorskip("torch")
    from tests.test_convert import write_tiny_original
    folder = tmp_path / "Wan2.2-TI2V-5B"
    write_tiny_original("ti2v", folder)
    events: list[ProgressEvent] = []
    result = fix.plan(inspect(folder)).execute(events.append)
    assert result.ok, result.errors
    assert {e.stage for e in events} == {"convert"}
    assert any(e.message.startswith("transformer:") for e in events)
    assert events[-1].message == f"Converted into {result.output_path}" and events[-1].percent == 100
    assert [e.percent for e in events] == sorted(e.percent for e in events)


def test_the_fix_panel_shows_the_event_fields() -> None:
    from wan_ui.fix import show_event
    from wan_ui.generate import ProgressView
    from wan_ui.render import render_progress
    view = ProgressView()
    show_event(view, ProgressEvent("fix", "Set the pipeline class in model_index.json", 40.0, step=2, steps=7))
    html = render_progress(view)
    assert view.stage == "Set the pipeline class in model_index.json" and view.percent == 40.0
    assert "Step <b>2</b> of <b>7</b>" in html and 'aria-valuenow="40"' in html
    show_event(view, ProgressEvent("convert", "x" * 120, 55.0))   # a long sentence: the stage's name instead
    assert view.stage == "Converting" and "x" * 120 in render_progress(view)
