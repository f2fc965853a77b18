"""Wan Compat's web UI: Gradio only, one module per tab, no model logic.

Each tab module has a ``build_<tab>_tab()`` that adds its controls to the current
``gr.Blocks`` context, and plain functions the buttons call (also reachable through the
API). ``wan_ui.render`` turns core reports into HTML without Gradio. Nothing here imports
torch or diffusers; ``app.py`` assembles the tabs and serves them.
"""

import os

# No usage statistics leave the machine; set before any tab module imports gradio.
os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"
