"""Writing a conversion: the new diffusers folder, built beside the target and renamed when complete.

Usage (what :meth:`core.fix.convert.ConversionPlan.execute` does)::

    from core.fix.convert.write import write_folder

    write_folder(Path(plan.target), plan.parts, plan.pipeline, plan.bytes_needed,
                 lambda message, percent: print(f"{percent:5.1f}% {message}"))

The shards' headers are known in advance, so each tensor is read (:mod:`core.fix.convert.read`),
converted as planned (:mod:`core.fix.convert.build`) and written straight into its shard: peak
memory is about the largest tensor. Then the tokenizer, the scheduler and ``model_index.json``.

Safety: everything is written into ``.NAME.partial-PID`` beside the target and renamed to NAME
only when complete; killed at any moment, the target is absent or complete, and a partial
folder left by a dead process is removed by the next run. Free disk space is checked first.

Test hook: ``WAN_COMPAT_CONVERT_PAUSE_AFTER=N`` makes ``execute`` print
``WAN_COMPAT_CONVERT_PAUSED <N>`` to stderr after writing its N-th tensor and sleep
(``WAN_COMPAT_CONVERT_PAUSE_SECONDS``, default 600) so that a test can kill it there;
``=finish`` pauses when everything is written, just before the rename.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from core.atomic import free_bytes, fsync_dir
from core.check.safetensors_header import DTYPE_BYTES
from core.errors import WanError, explain
from core.fix.convert.build import DIFFUSERS_LIB, TRANSFORMERS_LIB, Component, OutTensor, plan_component
from core.fix.convert.keys import TOKENIZER_CLASS, scheduler_config
from core.fix.convert.linked import KEPT, finish_moves, linked_component, write_linked
from core.fix.convert.read import ST_TO_TORCH, Part, open_part, read_json, tokenizer_files, torch_dtype
from core.progress import Progress
from core.units import format_bytes

if TYPE_CHECKING:  # pragma: no cover
    import torch

ProgressCallback = Callable[[str, float], None]   # the seed's (message, percent 0..100); see core.progress
STAGE = "convert"                                 # the ProgressEvent stage of a conversion

MAX_SHARD_BYTES = 5 * 10**9          # like save_pretrained(max_shard_size="5GB")
PAUSE_ENV = "WAN_COMPAT_CONVERT_PAUSE_AFTER"
PAUSE_SECONDS_ENV = "WAN_COMPAT_CONVERT_PAUSE_SECONDS"

# The weights file stem of each library's output.
_STEM = {DIFFUSERS_LIB: "diffusion_pytorch_model", TRANSFORMERS_LIB: "model"}


@dataclass(frozen=True)
class _Pipeline:
    """What the folder gets besides the weights: model_index.json's class and settings, the
    scheduler's shift, and the tokenizer folder to copy."""

    pipeline_class: str
    boundary_ratio: float | None
    expand_timesteps: bool
    shift: float
    tokenizer: str


def write_folder(target: Path, parts: tuple[Part, ...], pipeline: _Pipeline, bytes_needed: int,
                 progress: Progress) -> Path:
    """Write the converted folder ``target`` and return it; raises WanError (a sentence and a remedy).

    On any failure the partial folder is removed and the target is not created.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_partials(target)
    if os.path.lexists(target):
        raise WanError(f"{target} already exists.", "Move it away or choose another output folder.")
    free = _free_bytes(target)
    if bytes_needed > free:
        raise WanError(_no_space(bytes_needed, free, target), "Free some space or choose another output folder.")
    partial = target.parent / f".{target.name}.partial-{os.getpid()}"
    shutil.rmtree(partial, ignore_errors=True)
    try:
        partial.mkdir()
        _Writer(parts, pipeline, partial, progress).run()
        _fsync_tree(partial)
        _pause_if_asked("finish")
        if os.path.lexists(target):
            raise WanError(f"{target} appeared while converting.", "Move it away and run the conversion again.")
        os.rename(partial, target)
        fsync_dir(target.parent)
    except BaseException as exc:
        shutil.rmtree(partial, ignore_errors=True)
        if isinstance(exc, (WanError, KeyboardInterrupt, SystemExit)):
            raise
        raise explain(exc) from exc
    for problem in finish_moves(target, parts):     # --move: the old names go only now, the folder complete
        progress.emit(STAGE, problem, 100.0)
    progress.emit(STAGE, f"Converted into {target}", 100.0)
    return target


class _Writer:
    """Carries out a plan into the partial folder: weights, configs, tokenizer, scheduler, index."""

    def __init__(self, parts: tuple[Part, ...], pipeline: _Pipeline, folder: Path, progress: Progress) -> None:
        self.parts = parts
        self.pipeline = pipeline
        self.folder = folder
        self.progress = progress
        self.total = max(1, sum(p.bytes_out for p in parts))
        self.done = 0
        self.tensors = 0
        pause = os.environ.get(PAUSE_ENV, "").strip()
        self.pause_after = int(pause) if pause.isdigit() else None

    def run(self) -> None:
        planned: list[tuple[Component, Any]] = []
        for part in self.parts:          # every name and shape checked before any weight is written
            if part.kind in KEPT:        # a GGUF or fp8 file kept as it is (core.fix.convert.linked)
                planned.append((linked_component(part), None))
                continue
            source = open_part(part)
            try:
                planned.append(plan_component(part, source.specs))
            finally:
                source.close()
        components = [comp for comp, _ in planned]
        self._check_pair(components)
        for part, (comp, model) in zip(self.parts, planned):
            if part.kind in KEPT:
                write_linked(self.folder, part)
                continue
            source = open_part(part)
            try:
                self._write_component(comp, model, source, part)
            finally:
                source.close()
        self._write_rest(components)

    def _check_pair(self, comps: list[Component]) -> None:
        dits = [c for c in comps if c.folder.startswith("transformer")]
        te = next((c for c in comps if c.folder == "text_encoder"), None)
        if dits and te and dits[0].config["text_dim"] != te.config["d_model"]:
            raise WanError(f"The text encoder gives {te.config['d_model']}-wide embeddings but the transformer expects "
                           f"{dits[0].config['text_dim']}.", "Use the umT5-XXL text encoder that came with the model.")

    def _write_component(self, comp: Component, model: Any, source: Any, part: Part) -> None:
        folder = self.folder / comp.folder
        folder.mkdir()
        if comp.library == DIFFUSERS_LIB:
            model.save_config(folder)
        else:
            model.config.architectures = [comp.class_name]
            model.config.dtype = ST_TO_TORCH.get(comp.outputs[0].dtype, "float32")
            model.config.save_pretrained(folder)
        stem = _STEM[comp.library]
        shards = _split(comp.outputs, MAX_SHARD_BYTES)
        names = ([f"{stem}.safetensors"] if len(shards) == 1 else
                 [f"{stem}-{i:05d}-of-{len(shards):05d}.safetensors" for i in range(1, len(shards) + 1)])
        weight_map: dict[str, str] = {}
        for file_name, shard in zip(names, shards):
            self._write_shard(folder / file_name, shard, source, part)
            weight_map.update({o.name: file_name for o in shard})
        if len(shards) > 1:
            index = {"metadata": {"total_size": sum(o.nbytes for o in comp.outputs)}, "weight_map": weight_map}
            _write_json(folder / f"{stem}.safetensors.index.json", index)

    def _write_shard(self, path: Path, shard: list[OutTensor], source: Any, part: Part) -> None:
        header: dict[str, Any] = {"__metadata__": {"format": "pt"}}
        offset = 0
        for o in shard:
            header[o.name] = {"dtype": o.dtype, "shape": list(o.shape), "data_offsets": [offset, offset + o.nbytes]}
            offset += o.nbytes
        raw = json.dumps(header, separators=(",", ":")).encode()
        raw += b" " * (-len(raw) % 8)
        with open(path, "wb") as fh:
            fh.write(len(raw).to_bytes(8, "little"))
            fh.write(raw)
            for o in shard:
                tensor = _materialise(o, source)
                if tensor.numel():
                    fh.write(memoryview(tensor.reshape(-1).view(torch_dtype("U8")).numpy()))
                del tensor
                self._tick(o, part)
            fh.flush()
            os.fsync(fh.fileno())

    def _tick(self, out: OutTensor, part: Part) -> None:
        self.done += out.nbytes
        self.tensors += 1
        self.progress.emit(STAGE, f"{part.role}: {out.name}", min(99.0, 100.0 * self.done / self.total))
        if self.pause_after is not None and self.tensors == self.pause_after:
            _pause_if_asked(str(self.tensors))

    def _write_rest(self, comps: list[Component]) -> None:
        pipe = self.pipeline
        self.progress.emit(STAGE, "Copying the tokenizer and writing the scheduler and model_index.json", 99.0)
        tok = self.folder / "tokenizer"
        tok.mkdir()
        for f in tokenizer_files(Path(pipe.tokenizer)):
            shutil.copyfile(f, tok / f.name)
        config = read_json(tok / "tokenizer_config.json")
        config = config if isinstance(config, dict) else {"eos_token": "</s>", "pad_token": "<pad>", "unk_token": "<unk>"}
        config["tokenizer_class"] = TOKENIZER_CLASS
        _write_json(tok / "tokenizer_config.json", config)
        from diffusers import UniPCMultistepScheduler
        UniPCMultistepScheduler(**scheduler_config(pipe.shift)).save_config(self.folder / "scheduler")
        _write_json(self.folder / "model_index.json", _model_index(pipe, comps))


def _model_index(pipe: _Pipeline, comps: list[Component]) -> dict[str, Any]:
    import diffusers
    by_folder = {c.folder: [c.library, c.class_name] for c in comps}
    index: dict[str, Any] = {"_class_name": pipe.pipeline_class, "_diffusers_version": diffusers.__version__}
    if pipe.pipeline_class == "WanImageToVideoPipeline":
        index.update(image_encoder=[None, None], image_processor=[None, None])
    index.update(
        boundary_ratio=pipe.boundary_ratio,
        scheduler=[DIFFUSERS_LIB, "UniPCMultistepScheduler"],
        text_encoder=by_folder["text_encoder"],
        tokenizer=[TRANSFORMERS_LIB, TOKENIZER_CLASS],
        transformer=by_folder["transformer"],
        transformer_2=by_folder.get("transformer_2", [None, None]),
        vae=by_folder["vae"],
    )
    if pipe.pipeline_class != "WanVACEPipeline":
        index["expand_timesteps"] = pipe.expand_timesteps
    return dict(sorted(index.items()))


def _materialise(out: OutTensor, source: Any) -> torch.Tensor:
    """The output tensor: read, viewed, dequantised or cast as planned; contiguous."""
    import torch
    tensor = source.read(out.src)
    if out.view is not None:
        tensor = tensor.as_strided(*out.view)
    target = torch_dtype(out.dtype)
    if out.scale is not None:
        scale = source.read(out.scale).to(torch.float32)
        tensor = (tensor.to(torch.float32) * scale).to(target)
    elif tensor.dtype != target:
        tensor = tensor.to(target)
    tensor = tensor.contiguous()
    if tuple(tensor.shape) != out.shape:
        raise WanError(f"{out.src} has shape {tuple(tensor.shape)}, not {out.shape} as planned.", "Download the file again.")
    return tensor


def _split(outputs: tuple[OutTensor, ...], limit: int) -> list[list[OutTensor]]:
    """Shards in source order; within a shard, wider dtypes first so that every tensor is aligned."""
    shards: list[list[OutTensor]] = [[]]
    size = 0
    for o in outputs:
        if shards[-1] and size + o.nbytes > limit:
            shards.append([])
            size = 0
        shards[-1].append(o)
        size += o.nbytes
    return [sorted(s, key=lambda o: -DTYPE_BYTES[o.dtype]) for s in shards]


def _pause_if_asked(point: str) -> None:
    if os.environ.get(PAUSE_ENV, "").strip() != point:
        return
    print(f"WAN_COMPAT_CONVERT_PAUSED {point}", file=sys.stderr, flush=True)
    time.sleep(float(os.environ.get(PAUSE_SECONDS_ENV, "600")))


def _write_json(path: Path, obj: Any) -> None:
    path.write_text(json.dumps(obj, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


_gb = format_bytes


def _no_space(needed: int, free: int, target: Path) -> str:
    return (f"The converted model needs {_gb(needed)} ({needed:,} bytes) but only {_gb(free)} ({free:,} bytes) "
            f"is free on the disk of {target.parent}.")


def _free_bytes(target: Path) -> int:
    return free_bytes(Path(target).parent)


def _stale_partials(target: Path) -> Iterator[Path]:
    """``.NAME.partial-PID`` folders beside ``target`` whose process no longer runs."""
    import psutil
    parent = Path(target).parent
    if not parent.is_dir():
        return
    for p in parent.glob(f".{Path(target).name}.partial-*"):
        pid = p.name.rsplit("-", 1)[-1]
        if pid.isdigit() and int(pid) != os.getpid() and not psutil.pid_exists(int(pid)):
            yield p


def _stale_partial_bytes(target: Path) -> int:
    return sum(f.stat().st_size for p in _stale_partials(target) for f in p.rglob("*") if f.is_file())


def _remove_stale_partials(target: Path) -> None:
    for p in list(_stale_partials(target)):
        shutil.rmtree(p, ignore_errors=True)


def _fsync_tree(folder: Path) -> None:
    for path in folder.rglob("*"):
        if path.is_file():
            with open(path, "rb") as fh:
                os.fsync(fh.fileno())
        elif path.is_dir():
            fsync_dir(path)
    fsync_dir(folder)
