#!/usr/bin/env python3
"""Wan Compat: the web app. Reads config.yaml, builds the UI and serves it on 127.0.0.1.

Usage::

    python app.py                       # settings from config.yaml; opens the browser
    python app.py --port 7861 --no-browser
    python app.py --models-dir D:/models --config my.yaml
    python app.py --host 0.0.0.0        # other computers: needs `auth` in config.yaml

Start-up stays fast and works where ``import torch`` fails: the settings are checked before
Gradio is imported, and torch/diffusers are imported only when a model is loaded.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"  # before anything imports gradio

TITLE = "Wan Compat"
TAGLINE = "Find out what a Wan 2.1 or 2.2 video model is, whether it is complete, and what to do about it."
EXIT_SETTINGS = 2  # a mistake in config.yaml or the command line, or the port is taken


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="app.py", description="Wan Compat: check Wan 2.1/2.2 video models in your browser. "
                                   "Settings come from config.yaml; these options override them.")
    parser.add_argument("--host", help="address to listen on (default from config.yaml: 127.0.0.1); "
                                       "any non-loopback address needs `auth` in config.yaml")
    parser.add_argument("--port", type=_port, help="port to listen on (default from config.yaml: 7860)")
    parser.add_argument("--models-dir", help="folder where your models live")
    parser.add_argument("--no-browser", action="store_true", help="do not open a browser tab")
    parser.add_argument("--config", metavar="FILE",
                        help="settings file (default: $WAN_COMPAT_CONFIG, else config.yaml here)")
    return parser.parse_args(argv)


def _port(text: str) -> int:
    if not text.strip().isdigit() or not 1 <= int(text) <= 65535:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number from 1 to 65535")
    return int(text)


def settings(args: argparse.Namespace) -> Any:
    """The config from the file with the command line's overrides; raises ConfigError."""
    from core.config import ConfigError, load_config

    cfg = load_config(args.config)
    changes: dict[str, Any] = {}
    if args.host is not None:
        if not args.host.strip():
            raise ConfigError("--host is empty.", "Give an address such as 127.0.0.1, or leave --host out.")
        changes["host"] = args.host.strip()
    if args.port is not None:
        changes["port"] = args.port
    if args.models_dir is not None:
        changes["models_dir"] = Path(args.models_dir).expanduser().resolve()
    if args.no_browser:
        changes["open_browser"] = False
    cfg = dataclasses.replace(cfg, **changes)
    if not cfg.is_loopback and cfg.auth is None:
        raise ConfigError(
            f"Refusing to listen on {cfg.host}: other computers could reach the app, so it needs a "
            f"login, and `auth` is not set in {cfg.source or 'config.yaml'}.",
            'Set `auth: "user:password"` in config.yaml, or leave out --host to stay on 127.0.0.1.')
    return cfg


def build_ui(models_dir: str | os.PathLike[str] | None = None, config: Any = None) -> Any:
    """The Gradio Blocks of the whole app (not yet launched).

    ``config``: the AppConfig whose folders the tabs use (None: config.yaml / WAN_COMPAT_CONFIG);
    ``models_dir`` overrides its models folder.
    """
    import gradio as gr

    from wan_ui import common, report_actions
    from wan_ui.fix import build_fix_tab
    from wan_ui.generate import build_generate_tab, on_load
    from wan_ui.model_check import build_model_check_tab
    from wan_ui.performance import build_performance_tab

    ctx = common.configure(config, models_dir)
    with gr.Blocks(title=TITLE, analytics_enabled=False) as demo:
        gr.Markdown(f"# {TITLE}\n{TAGLINE}", elem_id="wc-title")
        with gr.Tabs() as tabs:
            with gr.Tab("Model Check", id="model-check", elem_id="wc-tab-check"):
                check = build_model_check_tab(models_dir=ctx.models_dir)
            with gr.Tab("Fix", id="fix", elem_id="wc-tab-fix"):
                fix = build_fix_tab()
            with gr.Tab("Generate", id="generate", elem_id="wc-tab-generate"):
                generate = build_generate_tab()
            with gr.Tab("Performance", id="performance", elem_id="wc-tab-performance") as perf_tab:
                perf = build_performance_tab()
        # Model Check -> Fix on the same folder: the buttons in the report (Fix, Open, Open in Fix)
        report_actions.wire(check, fix, tabs)
        # the history after every generation, and whenever the tab is opened
        for event in (generate.generate_event, generate.self_test_event):
            event.then(perf.refresh, inputs=perf.kind, outputs=perf.outputs, api_visibility="private")
        perf_tab.select(perf.refresh, inputs=perf.kind, outputs=perf.outputs, api_visibility="private")
        demo.load(on_load, outputs=generate.load_outputs(), api_visibility="private")
    # Checks, fixes and the history stay responsive while a video is generated (its own limit).
    demo.queue(default_concurrency_limit=4)
    return demo


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    from core.config import ConfigError

    try:
        cfg = settings(args)
    except ConfigError as exc:
        print(f"Wan Compat cannot start: {exc}", file=sys.stderr)
        return EXIT_SETTINGS
    for warning in cfg.warnings:
        print(f"Warning: {warning}", file=sys.stderr)

    # The one configuration of this process: the monitor, registry and loader read it from here
    # (core.config.current()); the file is not read again.
    from core.config import use
    use(cfg)
    from core.run import stop_signals
    from core.run.output_claim import sweep
    from core.run.startup import startup_problems
    problems, _ = startup_problems(outputs=Path(cfg.outputs_dir), config=cfg)   # warnings: printed above
    if problems:
        print(f"Wan Compat cannot start: {problems[0]}", file=sys.stderr)
        return EXIT_SETTINGS
    stop_signals.install()      # SIGTERM: ffmpeg stopped and partial videos removed, then a clean exit
    sweep(Path(cfg.outputs_dir))  # hidden partial files of runs that were killed
    from core.run.disk_offload import remove_stale
    remove_stale(Path(cfg.offload_dir))   # weights a killed run offloaded to disk (gigabytes)

    from wan_ui.render import CSS

    demo = build_ui(models_dir=cfg.models_dir, config=cfg)
    try:
        _app, local_url, _share = demo.launch(
            server_name=cfg.host, server_port=cfg.port, auth=cfg.auth_pair,
            inbrowser=cfg.open_browser, share=False, ssr_mode=False, quiet=True,
            prevent_thread_lock=True, css=CSS, allowed_paths=[str(cfg.outputs_dir)],
            max_file_size="2gb")  # uploads: a .zip of a small model, starting images
    except OSError:       # Gradio's own text advises GRADIO_SERVER_PORT and launch(): not for our users
        free = next_free_port(cfg.host, cfg.port + 1)
        offer = f"Port {free} is free: start with --port {free}" if free else "Choose another with --port"
        print(f"Wan Compat cannot start: port {cfg.port} on {cfg.host} is in use by another program. "
              f"{offer}, or set `port` in config.yaml.", file=sys.stderr)
        return EXIT_SETTINGS
    print(f"Wan Compat is running at {local_url} (press Ctrl+C to stop).", flush=True)
    from core.jobs.runner import get_runner, stop_runner
    get_runner(outputs_dir=cfg.outputs_dir, db_path=cfg.history_db)   # interrupted jobs marked, the queue resumed
    try:
        demo.block_thread()
    except (KeyboardInterrupt, stop_signals.Stopped):
        demo.close()
    finally:
        stop_runner()             # the worker stops; a job it ran is marked interrupted
    return 0


def next_free_port(host: str, start: int, tries: int = 50) -> int | None:
    """The first port from ``start`` on that ``host`` can listen on now, or None."""
    import socket
    for port in range(start, min(start + tries, 65536)):
        with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
            try:
                probe.bind((host, port))
            except OSError:
                continue
            return port
    return None


if __name__ == "__main__":
    sys.exit(main())
