"""The command line: ``python -m core check|fix|generate|doctor|perf|jobs|demo ...``.

Exit codes: 0 success (for ``check``: the model is complete and consistent), 1 the model
or machine has problems (for ``perf``: a slowdown was found), 2 bad arguments or a path
that cannot be read or written.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from core.choices import OFFLOADS, PRECISIONS
from core.errors import WanError, explain
from core.run import stop_signals
from core.run.speed import add_speed_flags, speed_overrides


def _check(args: argparse.Namespace) -> int:
    from core.check.detect import inspect
    from core.check.wording import render_text
    try:
        report = inspect(args.path)  # an empty path is a missing path (not the current folder)
    except OSError as exc:  # the path itself: missing, unreadable, a loop
        err = explain(exc)
        print(f"{err.message} {err.remedy}".strip(), file=sys.stderr)
        return 2
    loras = None
    if args.lora:     # each LoRA checked against this model before anything loads (core.check.lora_match)
        from core.check.lora_match import choices_from_args, match_loras, render_matches
        choices, problems = choices_from_args(args.lora)
        if problems:
            print("\n".join(problems), file=sys.stderr)
            return 2
        loras = match_loras(report, choices)
    deep = _deep_check(args.path) if args.deep else None
    fit = _fit(report)
    if args.json:
        print(json.dumps({**report.to_dict(), **({"deep": deep.to_dict()} if deep else {}),
                          **({"fits": fit.to_dict()} if fit is not None else {}),
                          **({"loras": [m.to_dict() for m in loras]} if loras is not None else {})}, indent=2))
    else:
        print(render_text(report))
        if fit is not None:
            print("\n" + "\n".join(fit.lines()))
        if deep is not None:
            from core.check.deep import render_deep
            print(render_deep(deep))
        if loras is not None:
            print(render_matches(loras))
    return 0 if report.usable and (deep is None or deep.ok) and all(m.ok for m in loras or []) else 1


def _fit(report):
    """Whether the model fits this computer's RAM and GPU (core.run.models_fit); None for other reports.

    Advice only: it never changes check's exit code, which is about the files."""
    from core import config
    from core.run.hardware import probe
    from core.run.models_fit import model_fit
    try:
        cfg = config.current()
        overrides = {k: v for k, v in (("precision", cfg.precision), ("offload", cfg.offload)) if v != "auto"}
    except config.ConfigError:
        overrides = {}
    return model_fit(report, probe(use_torch=False), overrides)


def _deep_check(path: str):
    """``check --deep``: read every tensor (core.check.deep) with a progress bar; Ctrl-C stops it."""
    import threading

    from core.check.deep import deep_check
    cancel = threading.Event()
    try:
        return deep_check(path, progress=ProgressBar(), cancel=cancel)
    except KeyboardInterrupt:
        cancel.set()
        raise


_PART_FLAGS = (("transformer", "--transformer"), ("transformer_2", "--transformer-2"), ("vae", "--vae"),
               ("text_encoder", "--text-encoder"), ("tokenizer", "--tokenizer"))


def _fix(args: argparse.Namespace) -> int:
    """Show the fix plan (a dry run), or with --apply carry it out; 0 = ready to load afterwards.

    With --json one JSON object is printed whatever happens (an OSError that escapes included).
    """
    if not args.json:
        return _fix_run(args)
    try:
        return _fix_run(args)
    except Exception as exc:  # noqa: BLE001 - --json promises its object, also when something escapes
        err = explain(exc)
        print(json.dumps({"ok": False, "fixes_applied": [], "errors": [f"{err.message} {err.remedy}".strip()]},
                         indent=2))
        return 1


def _fix_run(args: argparse.Namespace) -> int:
    from core import fix
    parts = {name: getattr(args, name) for name, _ in _PART_FLAGS}
    if args.move and not args.assemble:
        print("--move goes with --assemble (it moves a kept .gguf or fp8 transformer into the new folder).",
              file=sys.stderr)
        return 2
    if args.assemble:
        missing = [flag for name, flag in _PART_FLAGS if name in ("transformer", "vae", "text_encoder") and not parts[name]]
        missing += [] if args.out else ["--out"]
        if args.path or missing or args.undo:
            print("fix --assemble takes no PATH and needs --transformer, --vae, --text-encoder and --out"
                  + (f" (missing: {', '.join(missing)})." if missing else "."), file=sys.stderr)
            return 2
    elif not args.path or any(parts.values()):
        print("fix needs a PATH (the model folder or file); --transformer, --vae, ... go with --assemble.",
              file=sys.stderr)
        return 2
    try:
        if args.undo:
            return _fix_result(args, fix.undo_fix(args.path))
        if args.assemble:
            fix_plan = fix.assemble(transformer=parts["transformer"], transformer_2=parts["transformer_2"],
                                    vae=parts["vae"], text_encoder=parts["text_encoder"],
                                    tokenizer=parts["tokenizer"], out=args.out, keep_fp8=args.keep_fp8,
                                    move=args.move)
        else:
            from core.check.detect import inspect
            fix_plan = fix.plan(inspect(args.path), out=args.out)
    except OSError as exc:  # the path itself: missing, unreadable
        err = explain(exc)
        print(f"{err.message} {err.remedy}".strip(), file=sys.stderr)
        if args.json:
            print(json.dumps({"ok": False, "fixes_applied": [], "errors": [f"{err.message} {err.remedy}".strip()]},
                             indent=2))
        return 2
    if not args.apply or fix_plan.is_empty:
        if args.json:
            print(json.dumps(fix_plan.to_dict(), indent=2))
        else:
            print("\n".join(fix_plan.describe()))
            if not fix_plan.is_empty:
                print("\nThis was a dry run: nothing was changed. Run again with --apply to make these changes.")
        return 0 if fix_plan.is_empty and fix.is_ready(fix_plan.report_before) else 1
    if not args.json:
        print("\n".join(fix_plan.describe()) + "\n")
    try:
        result = fix_plan.execute(progress_callback=ProgressBar())
    except (WanError, OSError) as exc:  # nothing was changed that cannot be finished or undone (see core.fix)
        err = explain(exc)
        if args.json:
            print(json.dumps({"ok": False, "fixes_applied": [], "errors": [str(err)]}, indent=2))
        else:
            print(str(err), file=sys.stderr)
        return 1
    return _fix_result(args, result)


def _fix_result(args: argparse.Namespace, result) -> int:
    from core.check.wording import render_text
    if args.json:
        print(json.dumps(result.to_dict(), indent=2))
    else:
        for line in result.fixes_applied:
            print(f"Done: {line}")
        if result.backup_dir:
            print(f"Backups and the record of this fix: {result.backup_dir}")
        for line in result.errors:
            print(f"Problem: {line}", file=sys.stderr)
        if result.report_after is not None:
            print("\nModel Check afterwards:\n" + render_text(result.report_after))
    return 0 if result.ok else 1


def _doctor(args: argparse.Namespace) -> int:
    from core.config import ConfigError, current, default_config
    from core.doctor import run_doctor
    try:
        config, config_error = current(), None
    except ConfigError as err:  # the doctor is where a broken config gets reported, with the rest
        config, config_error = default_config(), err
        print(f"[ERROR] Config: {err}\n        -> The checks below use the default settings.", file=sys.stderr)
    result = run_doctor(config)
    if config_error is not None:
        print(json.dumps({**result.to_dict(), "ok": False, "config_error": str(config_error)}, indent=2)
              if args.json else result.render_text())
        return 1
    print(json.dumps(result.to_dict(), indent=2) if args.json else result.render_text())
    return 0 if result.ok else 1


class ProgressBar:
    """A progress callback for a terminal: one redrawn bar on a TTY, plain lines otherwise.

    Takes a :class:`~core.progress.ProgressEvent` (denoising steps are drawn from its fields),
    or the seed's ``(message, percent)``.
    """

    def __init__(self, stream=sys.stderr, width: int = 30) -> None:
        self.stream, self.width = stream, width
        self.tty = hasattr(stream, "isatty") and stream.isatty()
        self.last_line = ""

    def __call__(self, event, percent: float | None = None) -> None:
        if percent is None:
            message, percent = _event_words(event), event.percent
        else:
            message = str(event)
        filled = int(self.width * max(0.0, min(100.0, percent)) / 100)
        line = f"[{'#' * filled}{'.' * (self.width - filled)}] {percent:5.1f}%  {message}"
        if self.tty:
            self.stream.write("\r" + line[:160].ljust(len(self.last_line)))
            self.last_line = line[:160]
            if percent >= 100:
                self.stream.write("\n")
        elif line != self.last_line:
            self.stream.write(line + "\n")
            self.last_line = line
        self.stream.flush()


def _event_words(event) -> str:
    """A ProgressEvent as the bar's words: a denoising step from its numbers, else its message."""
    if event.step is None or not event.steps:
        return event.message
    words = [f"Step {event.step}/{event.steps}"]
    if event.expert:
        words.append(f"{event.expert} expert")
    if event.seconds_per_step is not None:
        words.append(f"{event.seconds_per_step:.2f} s/step")
    if event.eta_seconds is not None:
        eta = int(round(event.eta_seconds))
        words.append(f"ETA {eta // 60}m {eta % 60:02d}s" if eta >= 60 else f"ETA {eta}s")
    return " · ".join(words)


def _parse_size(text: str) -> tuple[int, int]:
    try:
        width, height = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"size must look like 832x480, not {text!r}") from None
    return width, height


def _generate(args: argparse.Namespace) -> int:
    """inspect -> refuse or plan for this request -> load with that plan -> generate (one bar)."""
    import threading

    from core.check.detect import inspect
    from core.progress import Progress
    from core.run.generation import GenerationConfig, request_for, resolve
    from core.run.load import load, plan_for_load
    from core.run.loadable import refusal
    width, height = args.size or (None, None)
    config = GenerationConfig(prompt=args.prompt, negative_prompt=args.negative, num_frames=args.frames,
                              width=width, height=height, num_inference_steps=args.steps,
                              guidance_scale=args.guidance, guidance_scale_2=args.guidance_2, seed=args.seed,
                              fps=args.fps, image=args.image, last_image=args.last_image, output_path=args.out,
                              loras=tuple(args.lora or ()), flow_shift=args.shift,
                              **{name: getattr(args, name) for name in TASK_FLAGS})
    _sweep_leftovers(args.out)
    try:
        report = inspect(args.path)
    except OSError as exc:
        err = explain(exc)
        print(f"{err.message} {err.remedy}".strip(), file=sys.stderr)
        return 2
    problem = refusal(report)
    if problem is not None:
        print(str(problem), file=sys.stderr)
        return 1
    settings, errors = resolve(config, report)
    if errors or settings is None:  # before minutes of loading
        print("\n".join(errors), file=sys.stderr)
        return 2
    for note in settings.notes:
        print(f"Note: {note}", file=sys.stderr)
    if settings.loras:    # each LoRA checked against the model before minutes of loading (core.check.lora_match)
        from core.check.lora_match import match_loras, render_matches
        matches = match_loras(report, settings.loras)
        print(render_matches(matches), file=sys.stderr)
        if not all(m.ok for m in matches):
            return 1
    overrides = {k: v for k, v in (("precision", args.precision), ("offload", args.offload)) if v}
    overrides.update(speed_overrides(args))     # --speed, --cache, --attention, --compile (core.run.speed)
    job = Progress(ProgressBar())
    if args.gpus not in (None, "1"):  # N ranks over N GPUs (core.run.parallel); None: run here
        from core.run.parallel import cli_generate
        code = cli_generate(report, settings, config, overrides, args.gpus, progress=job)
        if code is not None:
            return code
    if getattr(args, "watched", False):   # the load and the generation in a child: a kernel kill is said
        from core.run.memory_failure import killed_sentence
        from core.run.watched import watch
        code = watch(lambda rc: killed_sentence(rc, report, request_for(settings, overrides)))
        if code is not None:
            return code
    try:
        plan = plan_for_load(report, request=request_for(settings, overrides))
        wrapper = load(report, plan, progress=job.span(0, 30))
    except (ValueError, WanError) as exc:
        print(str(exc), file=sys.stderr)
        return 1
    cancel = threading.Event()
    try:
        result = wrapper.generate(config, plan=plan, progress=job.span(30, 100), cancel=cancel)
    except KeyboardInterrupt:
        print("\nStopped; no video was written.", file=sys.stderr)
        return 130
    except stop_signals.Stopped as stop:       # SIGTERM: ffmpeg stopped and the partial files removed on the way out
        print(f"\nStopped by {stop.name}; no video was written and its temporary files were removed.",
              file=sys.stderr)
        return stop.exit_code
    for line in wrapper.plan.summary_lines() if result.plan else []:
        print(f"  {line}", file=sys.stderr)
    for warning in result.warnings:
        print(f"Note: {warning}", file=sys.stderr)
    if not result.success:
        print("\n".join(result.errors), file=sys.stderr)
        validation = not result.seconds and not result.cancelled and not result.plan
        return 2 if validation else 1
    print(result.output_path)
    return 0


def _sweep_leftovers(out: str | None) -> None:
    """Remove the hidden partial files and name claims of earlier runs whose process is gone."""
    from pathlib import Path

    from core.config import ConfigError, current
    from core.run.output_claim import sweep
    folders = [Path(out).parent] if out else []
    try:
        folders.append(Path(current().outputs_dir))
    except ConfigError:
        pass
    for folder in dict.fromkeys(folders):
        sweep(folder)


def _perf(args: argparse.Namespace) -> int:
    from core.monitor import get_performance_monitor, render_text
    monitor = get_performance_monitor()
    if args.csv:
        try:
            monitor.export_csv(args.csv)
        except OSError as exc:
            print(f"Cannot write the CSV file {args.csv}: {exc.strerror or exc}.", file=sys.stderr)
            return 2
    summary = monitor.get_performance_summary()
    alerts = monitor.detect_performance_regressions()
    rows = monitor.optimization_effectiveness()
    if args.json:
        print(json.dumps({"summary": summary, "alerts": [a.to_dict() for a in alerts], "effectiveness": rows,
                          **({"error": monitor.unusable} if monitor.unusable else {})}, indent=2))
    elif not monitor.unusable:       # a newer version's file: its warning (stderr) said so, not "No runs yet"
        print(render_text(monitor.db_path, summary, alerts, rows))
    return 2 if monitor.unusable else 1 if alerts else 0


def _jobs(args: argparse.Namespace) -> int:
    from core.jobs.listing import list_jobs
    text, code = list_jobs(args.json)
    print(text, file=sys.stdout if code == 0 else sys.stderr)
    return code


def _demo(args: argparse.Namespace) -> int:
    from core import demo
    return demo.main(args.rest)


# Task inputs of `generate` (GenerationConfig fields, diffusers' names; see core/run/tasks.py).
TASK_FLAGS = ("video", "mask", "reference_images", "conditioning_scale", "strength", "pose_video", "face_video",
              "background_video", "mask_video", "mode", "segment_frame_length")


def _task_arguments(gen: argparse.ArgumentParser) -> None:
    videos = "an MP4/WebM/MOV/GIF file or a folder of frames"
    gen.add_argument("--video", default=None, help=f"source video (video-to-video, T2V models) or VACE control video: {videos}")
    gen.add_argument("--strength", type=float, default=None, help="video-to-video: how much changes, in (0, 1]")
    gen.add_argument("--mask", default=None, help="VACE: mask video (white = generate), with --video")
    gen.add_argument("--reference", dest="reference_images", action="append", default=None, metavar="IMAGE",
                     help="VACE: a reference image (repeatable)")
    gen.add_argument("--conditioning-scale", type=float, default=None, help="VACE: control strength, 0 or more")
    gen.add_argument("--pose-video", default=None, help=f"Animate: the pose video ({videos})")
    gen.add_argument("--face-video", default=None, help="Animate: the face video")
    gen.add_argument("--mode", choices=("animate", "replace"), default=None, help="Animate: animate or replace")
    gen.add_argument("--background-video", default=None, help="Animate replace mode: the background video")
    gen.add_argument("--mask-video", default=None, help="Animate replace mode: the mask video")
    gen.add_argument("--segment-frame-length", type=int, default=None, help="Animate: frames per segment (77)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m core", description="Wan Compat: check, fix and run Wan video models.")
    sub = parser.add_subparsers(dest="command", required=True)
    check = sub.add_parser("check", help="what a model folder or file is, and whether it is complete",
                           description="What a model folder or file is and whether it is complete; for a Wan "
                                       "model, then whether it fits this computer's RAM and GPU memory at its "
                                       "default size. The fit is advice: the exit code is about the files only.")
    check.add_argument("path", help="a model folder, a .safetensors file, a Hugging Face cache folder, or a folder of models")
    check.add_argument("--json", action="store_true", help="print the report as one JSON object")
    check.add_argument("--deep", action="store_true",
                       help="also read every tensor: NaN/Inf values and zero-filled regions, by file and tensor")
    check.add_argument("--lora", action="append", default=None, metavar="FILE[:STRENGTH][@high|@low]",
                       help="check a LoRA against this model: where it goes, what applies (repeatable)")
    check.set_defaults(run=_check)
    fix = sub.add_parser("fix", help="repair a model folder (shows the plan; --apply makes the changes) or convert it")
    fix.add_argument("path", nargs="?", help="the model folder or file (not with --assemble)")
    fix.add_argument("--apply", action="store_true", help="make the changes (without it nothing is changed)")
    fix.add_argument("--out", default=None, help="where a conversion writes (default: PATH-diffusers beside PATH)")
    fix.add_argument("--json", action="store_true", help="print the plan (or the result) as one JSON object")
    fix.add_argument("--undo", action="store_true", help="undo the last fix of PATH from its backups")
    fix.add_argument("--assemble", action="store_true", help="assemble single files (ComfyUI style) into --out")
    for name, flag in _PART_FLAGS:
        fix.add_argument(flag, dest=name, default=None,
                         help=f"with --assemble: the {name.replace('_', ' ')} {'folder' if name == 'tokenizer' else 'file'}")
    fix.add_argument("--keep-fp8", action="store_true",
                     help="with --assemble: keep an fp8 transformer in fp8 (linked, loaded with its scales) "
                          "instead of converting it to bf16; .gguf transformers are always kept")
    fix.add_argument("--move", action="store_true",
                     help="with --assemble: move the kept transformer file(s) into the folder instead of linking "
                          "them (same disk only, never a copy; the old name goes once the folder is complete)")
    fix.set_defaults(run=_fix)
    doctor = sub.add_parser("doctor", help="check this machine: Python, torch, GPU, memory, disk, libraries")
    doctor.add_argument("--json", action="store_true", help="print the result as one JSON object")
    doctor.add_argument("--config", default=None, help="config.yaml to read (default: the one beside app.py)")
    doctor.set_defaults(run=_doctor)
    gen = sub.add_parser("generate", help="generate a video with a diffusers-layout Wan model")
    gen.add_argument("path", help="the model folder")
    gen.add_argument("--prompt", required=True, help="what the video shows")
    gen.add_argument("--negative", default=None, help="what to keep out of the video")
    gen.add_argument("--size", type=_parse_size, default=None, metavar="WxH", help="e.g. 832x480 (default: the model's)")
    gen.add_argument("--frames", type=int, default=None, help="number of frames, 4k+1 (default: the model's)")
    gen.add_argument("--steps", type=int, default=None, help="denoising steps (default: the model's)")
    gen.add_argument("--guidance", type=float, default=None, help="guidance scale (the high-noise expert for A14B)")
    gen.add_argument("--guidance-2", type=float, default=None, help="guidance scale of the low-noise expert (A14B)")
    gen.add_argument("--seed", type=int, default=None, help="random seed (default 42)")
    gen.add_argument("--fps", type=int, default=None, help="frames per second of the MP4")
    gen.add_argument("--image", default=None, help="starting image (image-to-video, TI2V)")
    gen.add_argument("--last-image", default=None, help="last frame (FLF2V)")
    _task_arguments(gen)
    gen.add_argument("--lora", action="append", default=None, metavar="FILE[:STRENGTH][@high|@low]",
                     help="a LoRA at a strength (default 1), on one expert of Wan2.2 A14B with @high/@low (repeatable)")
    gen.add_argument("--shift", type=float, default=None,
                     help="the scheduler's shift for this run (default: the model's; distill LoRAs say theirs)")
    gen.add_argument("--precision", choices=PRECISIONS, default=None)
    gen.add_argument("--offload", choices=OFFLOADS, default=None)
    add_speed_flags(gen)
    gen.add_argument("--out", default=None, help="the MP4 to write (default: a new file in the outputs folder)")
    gen.add_argument("--gpus", default=None, metavar="N|auto",
                     help="spread one generation over N GPUs (auto: all of them when the model does not fit one)")
    gen.set_defaults(run=_generate)
    perf = sub.add_parser("perf", help="speed and memory history of loads and generations, and slowdowns")
    perf.add_argument("--json", action="store_true", help="print {summary, alerts, effectiveness} as one JSON object")
    perf.add_argument("--csv", default=None, metavar="FILE", help="also write every recorded run to FILE")
    perf.set_defaults(run=_perf)
    jobs = sub.add_parser("jobs", help="the app's generation jobs (queued, running, done, failed, ...)")
    jobs.add_argument("--json", action="store_true", help="print a JSON array of {id, state, percent, message, "
                                                          "output_path, error}")
    jobs.set_defaults(run=_jobs)
    demo = sub.add_parser("demo", help="write small random-weight Wan pipelines (for self-tests)", add_help=False)
    demo.add_argument("rest", nargs=argparse.REMAINDER)
    demo.set_defaults(run=_demo)
    return parser


def _read_config(args: argparse.Namespace) -> int | None:
    """Read and check config.yaml once, for the whole command (core.config.current() hands it out).

    A broken file, a broken user registry, or (for ``generate``) a folder the video cannot be
    written to stops the command here with exit 2, before anything is loaded; ``doctor`` goes
    on and reports them with the rest.
    """
    from pathlib import Path

    from core.config import ConfigError, current, init
    from core.run.startup import startup_problems
    try:
        init(getattr(args, "config", None))
    except ConfigError:
        pass
    if args.run is _doctor:
        return None
    outputs = None
    if args.run is _generate:
        try:
            outputs = Path(args.out).parent if args.out else Path(current().outputs_dir)
        except ConfigError:
            pass
    problems, warnings = startup_problems(outputs=outputs)
    for warning in warnings:
        print(f"Warning: {warning}", file=sys.stderr)
    if problems:
        print(problems[0], file=sys.stderr)
        return 2
    return None


def main(argv: list[str] | None = None, *, watched: bool = False) -> int:
    """The command line; ``watched`` (``python -m core`` only): generate loads and runs in a child
    process whose kill by the kernel is said (core.run.watched), never in a caller's process."""
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["demo"]:  # it has its own parser (core.demo.main): options in any order, its own --help
        from core import demo
        return demo.main(argv[1:])
    args = build_parser().parse_args(argv)
    args.watched = watched
    stop_signals.install()      # SIGTERM unwinds like Ctrl+C: no partial video, no ffmpeg left behind
    refused = _read_config(args)
    if refused is not None:
        return refused
    try:
        return args.run(args)
    except KeyboardInterrupt:
        print("Stopped.", file=sys.stderr)
        return 130
    except stop_signals.Stopped as stop:
        print(stop.sentence, file=sys.stderr)
        return stop.exit_code
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
    sys.exit(main(watched=True))
