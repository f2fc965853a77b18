"""Sizes for people: the one place that turns byte and MiB counts into words.

Usage::

    from core.units import format_bytes, format_mib
    format_bytes(28_580_000_000)     # '28.58 GB'   a file or folder on disk (decimal, as model cards)
    format_bytes(12_345_678)         # '12.3 MB'
    format_bytes(None)               # '—'          unknown
    format_mib(24_576)               # '24 GB'      memory (RAM, GPU) counted in MiB
    format_mib(3_481.6)              # '3.4 GB'

Two kinds of quantity, two rules, never mixed:

- Sizes on disk (:func:`format_bytes`) are decimal: 1 GB = 10^9 bytes, as Hugging Face,
  model cards, file managers on macOS and this README state them.
- Memory (:func:`format_mib`) is counted in MiB by torch, nvidia-smi and the memory
  estimate, and a "16 GB" GPU has 16 GiB; so memory is shown with 1 GB = 1024 MiB, which
  makes a card's size read as printed on its box.
"""

from __future__ import annotations

UNKNOWN = "—"

_DECIMAL = ((10**12, "TB", 2), (10**9, "GB", 2), (10**6, "MB", 1), (10**3, "KB", 1))


def format_bytes(n: int | float | None, unknown: str = UNKNOWN) -> str:
    """A size on disk in decimal units: '57.21 GB', '12.3 MB', '4.1 KB', '12 bytes'.

    >>> format_bytes(57_210_000_000), format_bytes(1_500_000_000_000), format_bytes(0), format_bytes(1)
    ('57.21 GB', '1.50 TB', '0 bytes', '1 byte')

    From 100 MB up the figure is given in GB (two decimals), as model files are compared in GB.
    ``unknown`` is returned for None (and anything not a number).
    """
    if n is None or isinstance(n, bool) or not isinstance(n, (int, float)):
        return unknown
    if n >= 10**12:
        return f"{n / 1e12:.2f} TB"
    if n >= 10**8:
        return f"{n / 1e9:.2f} GB"
    if n >= 10**6:
        return f"{n / 1e6:.1f} MB"
    if n >= 10**3:
        return f"{n / 1e3:.1f} KB"
    n = int(n)
    return f"{n} byte" if n == 1 else f"{n} bytes"


def format_mib(mb: int | float | None) -> str:
    """Memory counted in MiB: '681 MB', '0.50 MB', '3.4 GB', '27 GB' (1 GB = 1024 MiB).

    >>> format_mib(681), format_mib(0.5), format_mib(3481.6), format_mib(27_648), format_mib(None)
    ('681 MB', '0.50 MB', '3.4 GB', '27 GB', '0 MB')

    None (nothing measured or estimated) reads as '0 MB', as the plans have always shown it.
    """
    mb = float(mb or 0.0)
    if mb < 1000:
        if mb == 0:
            return "0 MB"
        return f"{mb:.0f} MB" if mb >= 1 else f"{mb:.2f} MB"
    gb = mb / 1024
    return f"{gb:.1f} GB" if gb < 10 else f"{gb:.0f} GB"
