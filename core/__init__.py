"""Wan Compat core: everything that is not UI.

Importable without Gradio, and (for checking, fixing plans, the registry and the
monitor) without torch. See DESIGN.md for the architecture.
"""

__version__ = "0.1.0"
