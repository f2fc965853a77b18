"""core.units: the one formatter for sizes on disk (decimal) and memory (MiB), at its edges."""

from __future__ import annotations

import subprocess

import pytest

from core.units import UNKNOWN, format_bytes, format_mib
from tests.conftest import REPO


@pytest.mark.parametrize("n, shown", [
    (0, "0 bytes"), (1, "1 byte"), (999, "999 bytes"),
    (1_000, "1.0 KB"), (999_949, "999.9 KB"),
    (1_000_000, "1.0 MB"), (12_345_678, "12.3 MB"), (99_999_999, "100.0 MB"),
    (100_000_000, "0.10 GB"), (28_580_000_000, "28.58 GB"), (999_000_000_000, "999.00 GB"),
    (1_000_000_000_000, "1.00 TB"), (3_200_000_000_000, "3.20 TB"),
    (2.5e9, "2.50 GB"),
])
def test_sizes_on_disk_are_decimal(n: float, shown: str) -> None:
    assert format_bytes(n) == shown


def test_unknown_size_is_a_dash_or_the_word_given() -> None:
    assert format_bytes(None) == UNKNOWN == "—"
    assert format_bytes(None, "unknown") == "unknown"
    assert format_bytes("12") == UNKNOWN and format_bytes(True) == UNKNOWN


@pytest.mark.parametrize("mb, shown", [
    (None, "0 MB"), (0, "0 MB"), (0.5, "0.50 MB"), (681, "681 MB"), (999.4, "999 MB"),
    (1000, "1.0 GB"), (3481.6, "3.4 GB"), (16_384, "16 GB"), (81_559, "80 GB"), (1_048_576, "1024 GB"),
])
def test_memory_in_mib_reads_as_the_card_is_sold(mb: float | None, shown: str) -> None:
    assert format_mib(mb) == shown


def test_no_other_module_formats_sizes_itself() -> None:
    """The six private formatters are gone: GB figures are written by core.units only."""
    out = subprocess.run(["grep", "-rnE", r"(1e9|1e6|2 ?\*\* ?(20|30)|1024)\b.*[GM]B\"|def _gi?b\(",
                          "core", "wan_ui", "app.py"], cwd=REPO, capture_output=True, text=True)
    found = [line for line in out.stdout.splitlines() if not line.startswith("core/units.py:")]
    assert found == [], found
