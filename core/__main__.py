"""The command line: ``python -m core check|doctor|demo ...``.

Exit codes: 0 success (for ``check``: the model is complete and consistent), 1 the model
or machine has problems, 2 bad arguments or a path that cannot be read.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from core.errors import WanError, explain


def _check(args: argparse.Namespace) -> int:
    from core.detector import inspect
    from core.report_text import render_text
    try:
        report = inspect(args.path)
    except OSError as exc:  # the path itself: missing, unreadable, a loop
        err = explain(exc)
        print(f"{err.message} {err.remedy}".strip(), file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(report.to_dict(), indent=2))
    else:
        print(render_text(report))
    return 0 if report.loadable else 1


def _doctor(args: argparse.Namespace) -> int:
    from core.config import load_config
    from core.doctor import run_doctor
    result = run_doctor(load_config(args.config))
    print(json.dumps(result.to_dict(), indent=2) if args.json else result.render_text())
    return 0 if result.ok else 1


def _demo(args: argparse.Namespace) -> int:
    from core import demo
    return demo.main(args.rest)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m core", description="Wan Compat: check, fix and run Wan video models.")
    sub = parser.add_subparsers(dest="command", required=True)
    check = sub.add_parser("check", help="what a model folder or file is, and whether it is complete")
    check.add_argument("path", help="a model folder, a .safetensors file, a Hugging Face cache folder, or a folder of models")
    check.add_argument("--json", action="store_true", help="print the report as one JSON object")
    check.set_defaults(run=_check)
    doctor = sub.add_parser("doctor", help="check this machine: Python, torch, GPU, memory, disk, libraries")
    doctor.add_argument("--json", action="store_true", help="print the result as one JSON object")
    doctor.add_argument("--config", default=None, help="config.yaml to read (default: the one beside app.py)")
    doctor.set_defaults(run=_doctor)
    demo = sub.add_parser("demo", help="write small random-weight Wan pipelines (for self-tests)", add_help=False)
    demo.add_argument("rest", nargs=argparse.REMAINDER)
    demo.set_defaults(run=_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except KeyboardInterrupt:
        print("Stopped.", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `python -m core check PATH | head`: the reader has gone
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    except WanError as err:
        print(str(err), file=sys.stderr)
        return 2
    except Exception as exc:  # noqa: BLE001 - a person gets a sentence, not a traceback
        err = explain(exc)
        print(f"{err.message} {err.remedy}".strip(), file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
