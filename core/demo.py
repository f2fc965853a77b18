"""Small random-weight Wan 2.1 / 2.2 pipelines, built offline, for self-tests and tests.

Each demo model is a real diffusers pipeline made of the same classes as the published
models (``WanPipeline`` / ``WanImageToVideoPipeline``, ``WanTransformer3DModel``,
``AutoencoderKLWan``, ``UMT5EncoderModel``, a T5 tokenizer, ``UniPCMultistepScheduler``
and, for Wan2.1 I2V, ``CLIPVisionModel`` + ``CLIPImageProcessor``), with the real key names
and component layout but tiny widths, so it saves to about a megabyte, loads in a fraction of
a second and generates a few frames on a CPU in well under a second. The weights are random,
so the "video" is noise; the point is that every code path (detection, loading, expert
switching, VAE decode, export) runs for real. Nothing touches the network.

Building is deterministic: every component is created after a fixed ``torch.manual_seed``,
and the tokenizer's vocabulary is counted from a fixed corpus, so writing the same model twice gives
byte-identical files.

Usage::

    from core.demo import DEMO_MODELS, build_demo_pipeline, write_demo_models

    pipe = build_demo_pipeline("wan22_t2v_a14b")          # in memory
    paths = write_demo_models("/tmp/wan-demo")            # {name: folder}, skips complete ones

    from diffusers import DiffusionPipeline
    pipe = DiffusionPipeline.from_pretrained(paths["wan21_t2v"])
    frames = pipe("a cat", height=64, width=64, num_frames=5, num_inference_steps=2).frames

Command line (``python -m core demo OUT_DIR [--only NAME ...]``)::

    python -m core demo ./demo-models --only wan21_t2v wan22_ti2v_5b

``torch``, ``diffusers`` and ``transformers`` are imported only inside the functions that
need them; ``import core.demo`` stays cheap and works without torch.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import shutil
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from core.check.signals import WAN22_LATENTS_MEAN, WAN22_LATENTS_STD
from core.errors import WanError, explain
from core.units import format_bytes

if TYPE_CHECKING:  # pragma: no cover - for type checkers only
    from diffusers import DiffusionPipeline

ProgressCallback = Callable[[str, float], None]

DEMO_MODELS: tuple[str, ...] = ("wan22_t2v_a14b", "wan22_ti2v_5b", "wan21_t2v", "wan21_i2v")

#: Bump when the recipe changes, so that folders written by an older recipe are rebuilt.
DEMO_RECIPE_VERSION = 1
#: Written last into a finished demo folder: recipe, name and a SHA-256 of every file.
MARKER_NAME = ".wan_compat_demo.json"

# Tiny widths that keep the real structure (see WAN_FACTS.md, "Small random-weight components").
TEXT_DIM = 32            # UMT5 d_model == transformer text_dim
HEADS, HEAD_DIM = 2, 12  # transformer inner dim 24
IMAGE_DIM = 32           # CLIP hidden size == transformer image_dim
IMAGE_SIZE = 32          # CLIP input size (patch 16 -> 4 patches + class token)


@dataclass(frozen=True)
class DemoSpec:
    """What one demo model imitates; read by the builder and by tests."""

    name: str
    imitates: str               # the published model it is shaped like
    pipeline_class: str         # "WanPipeline" or "WanImageToVideoPipeline"
    in_channels: int            # transformer patch-embedding input channels
    out_channels: int           # latent channels (== VAE z_dim)
    experts: int                # 1, or 2 for Wan2.2 A14B (transformer + transformer_2)
    vae: str                    # "2.1" (z_dim 16) or "2.2" (z_dim 48, residual, patch 2)
    boundary_ratio: float | None
    expand_timesteps: bool
    flow_shift: float
    image_encoder: bool         # Wan2.1 I2V: CLIP image branch
    seed: int                   # base seed; components use seed + a fixed offset


DEMO_SPECS: dict[str, DemoSpec] = {
    "wan22_t2v_a14b": DemoSpec("wan22_t2v_a14b", "Wan-AI/Wan2.2-T2V-A14B-Diffusers", "WanPipeline",
                               16, 16, 2, "2.1", 0.875, False, 12.0, False, 2200),
    "wan22_ti2v_5b": DemoSpec("wan22_ti2v_5b", "Wan-AI/Wan2.2-TI2V-5B-Diffusers", "WanPipeline",
                              48, 48, 1, "2.2", None, True, 5.0, False, 2250),
    "wan21_t2v": DemoSpec("wan21_t2v", "Wan-AI/Wan2.1-T2V-1.3B-Diffusers", "WanPipeline",
                          16, 16, 1, "2.1", None, False, 5.0, False, 2100),
    "wan21_i2v": DemoSpec("wan21_i2v", "Wan-AI/Wan2.1-I2V-14B-480P-Diffusers", "WanImageToVideoPipeline",
                          36, 16, 1, "2.1", None, False, 3.0, True, 2150),
}

# The tokenizer's training text: prompt-like English, fixed so the vocabulary is fixed.
_TOKENIZER_CORPUS = """\
A cinematic video of a cat walking on a beach at sunset, waves rolling in, golden light.
A red sports car drives through a neon city at night in the rain, reflections on the road.
Two astronauts float inside a space station and look out of the window at the blue earth.
A drone shot over green mountains and a river valley in the morning fog, slow camera pan.
A chef cooks noodles in a busy kitchen; steam rises, the camera zooms in on the bowl.
An old man plays the piano in a quiet room, soft window light, close-up of his hands.
A dog runs across a snowy field, jumps and catches a ball, slow motion, high detail.
Ocean waves crash against black rocks under a stormy sky, lightning in the distance.
A little girl in a yellow coat walks with an umbrella down a street lined with trees.
Fireworks explode over a harbour full of boats; people cheer on the bridge.
Time-lapse of clouds moving over a desert with red sand dunes and a bright blue sky.
A panda eats bamboo in a forest; the camera slowly moves left, realistic, 4k, detailed.
Bright colors, overexposed, static, blurred details, subtitles, style, artwork, painting,
picture, still, overall gray, worst quality, low quality, JPEG artifacts, ugly, deformed,
extra fingers, poorly drawn hands, poorly drawn faces, fused fingers, messy background,
three legs, many people in the background, walking backwards.
"""
_TOKENIZER_ALPHABET = [chr(c) for c in range(33, 127)]  # printable ASCII but the space


# --------------------------------------------------------------------------- building


def _spec(name: str) -> DemoSpec:
    try:
        return DEMO_SPECS[name]
    except KeyError:
        raise ValueError(f"Unknown demo model {name!r}; choose one of: {', '.join(DEMO_MODELS)}.") from None


def _tokenizer_vocab() -> list[tuple[str, float]]:
    """The Unigram vocabulary: T5's special tokens, then pieces scored by log frequency.

    Pieces are every word of a fixed corpus (with SentencePiece's ``\u2581`` word-start
    mark), ``\u2581`` itself and every printable ASCII character, so any ASCII text encodes
    without ``<unk>``. Scores are log relative frequencies counted here in Python: the
    ``tokenizers`` UnigramTrainer orders equal-score pieces by hash, run to run, so its output
    is not byte-reproducible, while counting is.
    """
    import math
    import re
    from collections import Counter

    words = Counter(re.findall(r"[A-Za-z0-9]+|[^\sA-Za-z0-9]", _TOKENIZER_CORPUS))
    chars = Counter(_TOKENIZER_CORPUS.replace("\n", "").replace(" ", ""))
    counts: dict[str, float] = {"\u2581": float(sum(words.values()))}
    for word, n in words.items():
        counts["\u2581" + word] = float(n)
    for char in _TOKENIZER_ALPHABET:
        counts[char] = counts.get(char, 0.0) + chars[char] + 1.0  # add-one: unseen chars stay usable
    total = sum(counts.values())
    scored = sorted(((piece, round(math.log(n / total), 4)) for piece, n in counts.items()),
                    key=lambda item: (-item[1], item[0]))
    return [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), *scored]


def _build_tokenizer() -> Any:
    """A T5 tokenizer (transformers' ``T5TokenizerFast``, a ``tokenizers`` Unigram model).

    The layout follows T5/UMT5: ``<pad>`` = 0, ``</s>`` = 1, ``<unk>`` = 2, then the pieces
    of ``_tokenizer_vocab()``; no ``<extra_id_N>`` sentinels (the text encoder never sees them).
    """
    from transformers import T5TokenizerFast

    return T5TokenizerFast(vocab=_tokenizer_vocab(), extra_ids=0, model_max_length=512)


def _build_text_encoder(vocab_size: int, seed: int) -> Any:
    import torch
    from transformers import UMT5Config, UMT5EncoderModel

    torch.manual_seed(seed)
    config = UMT5Config(
        vocab_size=vocab_size, d_model=TEXT_DIM, d_kv=8, d_ff=64, num_layers=2, num_heads=4,
        relative_attention_num_buckets=32, relative_attention_max_distance=128,
        feed_forward_proj="gated-gelu", tie_word_embeddings=False,
    )
    return UMT5EncoderModel(config).eval()


def _build_transformer(spec: DemoSpec, seed: int) -> Any:
    import torch
    from diffusers import WanTransformer3DModel

    torch.manual_seed(seed)
    image = {"image_dim": IMAGE_DIM, "added_kv_proj_dim": HEADS * HEAD_DIM} if spec.image_encoder else {}
    return WanTransformer3DModel(
        patch_size=(1, 2, 2), num_attention_heads=HEADS, attention_head_dim=HEAD_DIM,
        in_channels=spec.in_channels, out_channels=spec.out_channels, text_dim=TEXT_DIM,
        freq_dim=256, ffn_dim=32, num_layers=2, cross_attn_norm=True,
        qk_norm="rms_norm_across_heads", eps=1e-6, rope_max_seq_len=1024, **image,
    ).eval()


def _build_vae(kind: str, seed: int) -> Any:
    import torch
    from diffusers import AutoencoderKLWan

    torch.manual_seed(seed)
    if kind == "2.2":  # Wan2.2 VAE: z_dim 48, residual blocks, 2x2 patchify, 16x spatial
        vae = AutoencoderKLWan(
            base_dim=4, decoder_base_dim=8, z_dim=48, dim_mult=[1, 2, 4, 4], num_res_blocks=2,
            temperal_downsample=[False, True, True], is_residual=True, in_channels=12,
            out_channels=12, patch_size=2, scale_factor_temporal=4, scale_factor_spatial=16,
            latents_mean=list(WAN22_LATENTS_MEAN), latents_std=list(WAN22_LATENTS_STD),
        )
    else:  # Wan2.1 VAE: z_dim 16 with the library's (= published) latent statistics
        vae = AutoencoderKLWan(
            base_dim=4, z_dim=16, dim_mult=[1, 2, 4, 4], num_res_blocks=2,
            temperal_downsample=[False, True, True],
        )
    return vae.eval()


def _build_scheduler(flow_shift: float) -> Any:
    from diffusers import UniPCMultistepScheduler

    return UniPCMultistepScheduler(
        num_train_timesteps=1000, prediction_type="flow_prediction", use_flow_sigmas=True,
        flow_shift=flow_shift, solver_order=2, solver_type="bh2", lower_order_final=True,
    )


def _build_image_components(seed: int) -> tuple[Any, Any]:
    import torch
    from transformers import CLIPVisionConfig, CLIPVisionModel

    try:  # transformers 5: the PIL processor, the same with or without torchvision
        from transformers import CLIPImageProcessorPil as CLIPImageProcessor
    except ImportError:  # transformers 4
        from transformers import CLIPImageProcessor

    torch.manual_seed(seed)
    config = CLIPVisionConfig(
        hidden_size=IMAGE_DIM, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
        image_size=IMAGE_SIZE, patch_size=16, projection_dim=IMAGE_DIM, hidden_act="gelu",
    )
    encoder = CLIPVisionModel(config).eval()
    processor = CLIPImageProcessor(
        size={"shortest_edge": IMAGE_SIZE}, crop_size={"height": IMAGE_SIZE, "width": IMAGE_SIZE},
        do_resize=True, do_center_crop=True, do_normalize=True, do_convert_rgb=True,
    )
    return encoder, processor


def build_demo_pipeline(name: str) -> DiffusionPipeline:
    """Build one demo pipeline in memory (random weights, float32, CPU).

    >>> pipe = build_demo_pipeline("wan22_ti2v_5b")   # doctest: +SKIP
    >>> type(pipe).__name__, pipe.vae.config.z_dim
    ('WanPipeline', 48)

    Raises ``ValueError`` for a name not in ``DEMO_MODELS``.
    """
    spec = _spec(name)
    import torch
    from diffusers import WanImageToVideoPipeline, WanPipeline

    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float32)
    try:
        tokenizer = _build_tokenizer()
        parts: dict[str, Any] = {
            "tokenizer": tokenizer,
            "text_encoder": _build_text_encoder(len(tokenizer), spec.seed + 1),
            "vae": _build_vae(spec.vae, spec.seed + 2),
            "scheduler": _build_scheduler(spec.flow_shift),
            "transformer": _build_transformer(spec, spec.seed + 3),
            "transformer_2": _build_transformer(spec, spec.seed + 4) if spec.experts == 2 else None,
            "boundary_ratio": spec.boundary_ratio,
            "expand_timesteps": spec.expand_timesteps,
        }
        if spec.pipeline_class == "WanImageToVideoPipeline":
            encoder, processor = (_build_image_components(spec.seed + 5) if spec.image_encoder
                                  else (None, None))
            pipe = WanImageToVideoPipeline(image_encoder=encoder, image_processor=processor, **parts)
        else:
            pipe = WanPipeline(**parts)
    finally:
        torch.set_default_dtype(previous)
    # Record the class names the published repositories use; they load under transformers 4
    # and 5 alike (transformers 5 would otherwise write "T5Tokenizer" and, without
    # torchvision, "CLIPImageProcessorPil", which transformers 4 cannot load).
    pipe.register_to_config(tokenizer=("transformers", "T5TokenizerFast"))
    if spec.image_encoder:
        pipe.register_to_config(image_processor=("transformers", "CLIPImageProcessor"))
    return pipe


# --------------------------------------------------------------------------- writing


def _file_hashes(folder: Path) -> dict[str, str]:
    """SHA-256 of every file under ``folder`` except the marker, keyed by POSIX relative path."""
    hashes: dict[str, str] = {}
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        rel = path.relative_to(folder).as_posix()
        if rel != MARKER_NAME:
            hashes[rel] = hashlib.sha256(path.read_bytes()).hexdigest()
    return hashes


def _marker(name: str, hashes: dict[str, str]) -> dict[str, Any]:
    return {"demo_model": name, "recipe_version": DEMO_RECIPE_VERSION, "files": hashes}


def is_complete(name: str, folder: str | os.PathLike[str]) -> bool:
    """True when ``folder`` holds a finished demo ``name`` whose files match its marker."""
    folder = Path(folder)
    try:
        marker = json.loads((folder / MARKER_NAME).read_text(encoding="utf-8"))
        return marker == _marker(name, _file_hashes(folder))
    except (OSError, ValueError):
        return False


def _fsync_tree(folder: Path) -> None:
    for path in folder.rglob("*"):
        if path.is_file():
            with open(path, "rb") as handle:
                os.fsync(handle.fileno())


@contextlib.contextmanager
def _quiet_transformers_progress() -> Iterator[None]:
    """Hide transformers' "Writing model shards" bar for one save; restore it afterwards."""
    from transformers.utils import logging as hf_logging

    was_enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was_enabled:
            hf_logging.enable_progress_bar()


def _remove_stale_leftovers(out_dir: Path, name: str) -> None:
    """Delete ``.NAME.partial-PID`` / ``.NAME.old-PID`` folders of writers that no longer run."""
    try:
        import psutil
    except ImportError:  # pragma: no cover - psutil is a runtime dependency
        return
    for pattern in (f".{name}.partial-*", f".{name}.old-*"):
        for leftover in out_dir.glob(pattern):
            pid = leftover.name.rsplit("-", 1)[-1]
            if pid.isdigit() and int(pid) != os.getpid() and not psutil.pid_exists(int(pid)):
                shutil.rmtree(leftover, ignore_errors=True)


def write_demo_model(name: str, out_dir: str | os.PathLike[str],
                     progress_callback: ProgressCallback | None = None) -> Path:
    """Write demo model ``name`` to ``out_dir/name`` and return that folder.

    The pipeline is saved (safetensors) into a hidden ``.NAME.partial-PID`` folder beside
    the target, a marker with the hash of every file is added, and only then is the folder
    renamed into place, so an interrupted write leaves no half-written model. A folder that
    is already complete (its marker matches its files) is left alone; an earlier demo folder
    whose files no longer match is replaced; anything else already at ``out_dir/name`` is
    never touched (``WanError``).

    >>> write_demo_model("wan21_t2v", "/tmp/demo")      # doctest: +SKIP
    PosixPath('/tmp/demo/wan21_t2v')
    """
    spec = _spec(name)
    report = progress_callback or (lambda message, percent: None)
    out = Path(out_dir)
    target = out / spec.name
    if is_complete(spec.name, target):
        report(f"{spec.name}: already complete", 100.0)
        return target
    if (target.exists() or target.is_symlink()) and not (target / MARKER_NAME).is_file():
        raise WanError(f"{target} already exists and is not a demo model written by Wan Compat.",
                       "Move it away or choose another output folder; it was left untouched.")
    out.mkdir(parents=True, exist_ok=True)
    _remove_stale_leftovers(out, spec.name)
    partial = out / f".{spec.name}.partial-{os.getpid()}"
    shutil.rmtree(partial, ignore_errors=True)
    try:
        report(f"{spec.name}: building", 0.0)
        pipe = build_demo_pipeline(spec.name)
        report(f"{spec.name}: saving", 50.0)
        with _quiet_transformers_progress():
            pipe.save_pretrained(partial, safe_serialization=True)
        marker = json.dumps(_marker(spec.name, _file_hashes(partial)), indent=1, sort_keys=True)
        (partial / MARKER_NAME).write_text(marker + "\n", encoding="utf-8")
        _fsync_tree(partial)
        if target.exists() or target.is_symlink():  # a damaged or outdated earlier demo write
            old = out / f".{spec.name}.old-{os.getpid()}"
            shutil.rmtree(old, ignore_errors=True)
            os.replace(target, old)
            os.replace(partial, target)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(partial, target)
    finally:
        shutil.rmtree(partial, ignore_errors=True)
    report(f"{spec.name}: written", 100.0)
    return target


def write_demo_models(out_dir: str | os.PathLike[str], names: Iterable[str] | None = None,
                      progress_callback: ProgressCallback | None = None) -> dict[str, Path]:
    """Write several demo models (all of ``DEMO_MODELS`` by default); returns ``{name: folder}``.

    Progress is reported over the whole set as ``progress_callback(message, percent)`` with
    ``percent`` from 0 to 100.

    >>> write_demo_models("/tmp/demo", names=["wan21_i2v"])   # doctest: +SKIP
    {'wan21_i2v': PosixPath('/tmp/demo/wan21_i2v')}
    """
    chosen = list(DEMO_MODELS if names is None else dict.fromkeys(names))
    for name in chosen:
        _spec(name)  # fail before writing anything
    result: dict[str, Path] = {}
    for index, name in enumerate(chosen):
        def scaled(message: str, percent: float, _i: int = index) -> None:
            if progress_callback is not None:
                progress_callback(message, (100.0 * _i + percent) / len(chosen))
        result[name] = write_demo_model(name, out_dir, scaled)
    return result


# --------------------------------------------------------------------------- command line


def _folder_size(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def _check_out_dir(out: Path) -> str | None:
    """A sentence saying why ``out`` cannot hold demo models, or None when it can."""
    if out.exists() and not out.is_dir():
        return f"{out} is a file, not a folder; give a folder to write the demo models into."
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        return f"Cannot create the folder {out}: {exc.strerror or exc}. Choose a folder you can write to."
    if not os.access(out, os.W_OK | os.X_OK):
        return f"The folder {out} is not writable; choose a folder you can write to."
    return None


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m core demo OUT_DIR [--only NAME ...]``; ``argv`` is what follows ``demo``.

    Prints one line per model (name, folder, size); exit 0 on success, 2 when OUT_DIR is
    unusable or the arguments are wrong, 1 when writing fails for another reason.

    >>> main(["/tmp/demo", "--only", "wan21_t2v"])   # doctest: +SKIP
    wan21_t2v: written /tmp/demo/wan21_t2v (1.2 MB)
    0
    """
    parser = argparse.ArgumentParser(
        prog="python -m core demo",
        description="Write small random-weight Wan 2.1/2.2 demo pipelines (offline, deterministic).",
    )
    parser.add_argument("out_dir", metavar="OUT_DIR", help="folder to write the demo models into")
    parser.add_argument("--only", nargs="+", action="extend", choices=DEMO_MODELS, metavar="NAME",
                        help=f"write only these models (default: all of {', '.join(DEMO_MODELS)})")
    try:
        args = parser.parse_args(list(argv) if argv is not None else None)
    except SystemExit as exc:  # argparse has printed the usage and the problem
        return int(exc.code or 0)

    out = Path(args.out_dir).expanduser()
    problem = _check_out_dir(out)
    if problem:
        print(problem, file=sys.stderr)
        return 2
    names = list(dict.fromkeys(args.only)) if args.only else list(DEMO_MODELS)
    try:
        for name in names:
            was_complete = is_complete(name, out / name)
            folder = write_demo_model(name, out)
            state = "already complete" if was_complete else "written"
            print(f"{name}: {state} {folder} ({format_bytes(_folder_size(folder))})", flush=True)
    except Exception as exc:  # noqa: BLE001 - any failure becomes one sentence with a remedy
        err = explain(exc)
        print(f"Could not write the demo models: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
