"""The VRAM/RAM estimate behind :mod:`core.run.optimize`: what one set-up needs, stage by stage.

Usage::

    from core.check.detect import inspect
    from core.run.hardware import probe
    from core.run.memory_estimate import _Setup, _evaluate, _facts, _machine, latent_tokens
    from core.run.optimize import OptimizationRequest

    facts = _facts(inspect("/models/Wan2.1-T2V-1.3B-Diffusers"))   # the numbers the estimate uses
    request = OptimizationRequest(width=832, height=480, num_frames=81, num_inference_steps=50)
    ev = _evaluate(facts, _machine(probe()), request, "bf16", _Setup("model_offload"))
    ev.estimate.peak_vram_mb, ev.estimate.stage_vram_mb, ev.fits   # MiB; within the margins?
    latent_tokens(facts, 832, 480, 81)                             # 32760

Pure arithmetic on the :class:`~core.check.report.ModelReport` (exact parameter counts from the
safetensors headers) and the :class:`~core.run.hardware.HardwareInfo`: no torch, no diffusers.
Which set-up to use, and the sentences that explain it, are :mod:`core.run.optimize`'s job.

The estimate (MiB; "GB" in sentences is GiB, as nvidia-smi and torch count)
------------------------------------------------------------------------------
Weights: ``parameters x bytes`` of the chosen precision, per component (the VAE at
``vae_precision``). Stages, each adding :data:`CUDA_OVERHEAD_MB` (CUDA context, cuBLAS/cuDNN
workspaces) to what is resident on the GPU at that moment:

- encode: the text encoder (unless on the CPU) + :data:`TEXT_ENCODE_ACTIVATION_MB`; the CLIP
  image encoder; for I2V/FLF2V/VACE/Animate the VAE *encode* of a full-length video, counted
  like a decode (same architecture, mirrored; not measured separately).
- denoise: the transformer (with model offload one expert: the switch offloads ``transformer``
  before ``transformer_2`` moves in; all_on_device both) + the activations of one call.
  Classifier-free guidance does not double them: diffusers' Wan pipelines run the conditional
  and unconditional passes one after the other (``pipeline_wan.py``), so it doubles the time.
- decode: the VAE + its decode activations.

Transformer activations per call, in elements, for L latent tokens
(``L = ((F-1)//4+1) x H/16 x W/16``; ``/32`` with the Wan2.2 VAE of TI2V-5B)::

    L x (7 x dim + 1.5 x ffn_dim  [+ 19 x dim with per-token timesteps (TI2V-5B)]
         [+ dim per VACE layer: the hints are kept for the whole call])

times the bytes of the precision, times :data:`ACTIVATION_SLACK`. SDPA attention is
memory-efficient (no L x L matrix), so the peak is the hidden states: residual, norm, q/k/v and
the float32 copies diffusers makes for the norms and RoPE (~7 x dim), and the FFN's two
``ffn_dim``-wide tensors (GELU in and out, 1.5 x ffn_dim net of what is freed). TI2V-5B's
``expand_timesteps`` gives every token its own timestep: the 6 x dim modulation per token in
bf16 plus its float32 copy in each block (+19 x dim).

VAE decode activations (elements), per output pixel H x W and frame count F, scaled by the
VAE's width C (``base_dim`` 96 for the Wan2.1 VAE, ``decoder_base_dim`` 256 for Wan2.2)::

    untiled: H x W x (k_vae x C + f_vae x F)          Wan2.1: k 56.5, f 6;  Wan2.2: k 23.1, f 3
    tiled:   k_vae x C x 256^2 + 11 x H x W x F       (diffusers' 256 px tiles, 192 px stride)

The first term is one causal chunk (4 frames at full resolution) and the feature cache of
every causal convolution; the second the decoded frames being concatenated.

Calibration (NVIDIA H100, torch 2.11, diffusers 0.42.1, 2026-11: real-width models with random
weights, 2 transformer layers; ``torch.cuda.max_memory_allocated`` above the weights). The
formula columns are without :data:`ACTIVATION_SLACK`:

=========================================  ========  =======
measured (MiB)                             measured  formula
=========================================  ========  =======
14B DiT call, 1280x720x81, bf16               8,163    8,158
14B DiT call, 832x480x81, bf16 (fp16 same)    3,541    3,535
5B DiT call, 1280x704x121 (TI2V), bf16        5,186    5,275
  same with one timestep for all tokens       2,148        -
1.3B DiT call, 832x480x81, bf16               1,522    1,512
Wan2.1 VAE decode 1280x720x81, fp32          20,679   20,777
Wan2.1 VAE decode 832x480x81, fp32            8,967    9,004
Wan2.1 VAE decode 832x480x81, bf16            4,485    4,502
Wan2.1 VAE tiled 1280x720x81, fp32            3,987    4,488
Wan2.1 VAE tiled 832x480x81, fp32             1,914    2,713
Wan2.2 VAE decode 1280x704x121, fp32         21,542   21,576
Wan2.2 VAE tiled 1280x704x121, fp32           5,831    6,054
=========================================  ========  =======

The allocator reserved 1.3-1.4x those peaks; :data:`ACTIVATION_SLACK` covers part of that and
the 10% :data:`VRAM_MARGIN` the rest (``PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True``
narrows the gap). Whole-pipeline peaks against published figures (GB = GiB; asserted in
``tests/test_optimize.py``):

==============================================================  =========  ========
published, with its settings                                    published  estimate
==============================================================  =========  ========
diffusers docs: T2V-1.3B, model offload                         11 GB      11.6
diffusers docs: I2V-14B-480P, model offload, "at least 35 GB"   35 GB      35.7
diffusers docs: T2V-14B, group offload (leaf), fp32 VAE         13 GB      11.6
Wan-AI: T2V-A14B 720P, H100, offload_model                      59.8 GB    36.8
Wan-AI: T2V-A14B 480P, H100, offload_model                      41.3 GB    31.3
Wan-AI: TI2V-5B 720P, RTX 4090, offload_model + t5_cpu          22.9 GB    16.1
Wan-AI: T2V-1.3B 480P, RTX 4090, offload_model + t5_cpu         8.19 GB    11.6
==============================================================  =========  ========

Wan-AI's own code (``generate.py``) keeps the residual stream in float32 and applies RoPE in
float64, so its transformer steps take more than diffusers' (0.6-0.8x); it decodes under bf16
autocast, while we plan diffusers' advised fp32 VAE, which is the 1.3B's peak (1.4x).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from core.check.report import ComponentReport, ModelReport
from core.run.hardware import GpuInfo, HardwareInfo
from core.run.ram_plan import load_transient_mb, storage
from core.units import format_mib

__all__ = ["ACTIVATION_SLACK", "BASE_RAM_MB", "BYTES", "CUDA_OVERHEAD_MB", "DIT_DIM_FACTOR", "DIT_FFN_FACTOR",
           "DIT_PER_TOKEN_TIMESTEP_FACTOR", "GROUP_OFFLOAD_BLOCKS_PER_GROUP", "GROUP_OFFLOAD_RESIDENT_GROUPS",
           "IMAGE_ENCODE_ACTIVATION_MB", "MIB", "PLACEMENTS", "RAM_MARGIN", "TEXT_ENCODE_ACTIVATION_MB",
           "VAE_CHUNK_FACTOR", "VAE_FRAME_FACTOR", "VAE_TILED_FRAME_FACTOR", "VAE_TILE_PIXELS", "VRAM_MARGIN",
           "MemoryEstimate", "latent_tokens"]

PLACEMENTS = ("all_on_device", "model_offload", "group_offload", "sequential_offload", "balanced", "disk_offload")
BYTES = {"bf16": 2, "fp16": 2, "fp32": 4}
MIB = 2**20

# --- constants of the estimate (see the module docstring for their calibration) -------------

#: Fraction of the GPU's free memory a plan may use (the rest: other programs, fragmentation).
VRAM_MARGIN = 0.10
#: Fraction of available RAM a plan may use.
RAM_MARGIN = 0.10
#: CUDA context, cuBLAS and cuDNN workspaces: on the GPU but outside torch's tensors (MiB).
CUDA_OVERHEAD_MB = 600.0
#: Measured activation peaks (max_memory_allocated) times this: the caching allocator's
#: fragmentation (it reserved 1.3-1.4x the allocated peak in the calibration runs).
ACTIVATION_SLACK = 1.2
#: Transformer activations per latent token, in multiples of dim and ffn_dim (elements).
DIT_DIM_FACTOR = 7.0
DIT_FFN_FACTOR = 1.5
#: Extra per-token elements (x dim) when every token has its own timestep (TI2V-5B).
DIT_PER_TOKEN_TIMESTEP_FACTOR = 19.0
#: VAE decode: elements per output pixel per channel of the VAE's width, and per frame.
VAE_CHUNK_FACTOR = {"wan2.1": 56.5, "wan2.2": 23.1}
VAE_FRAME_FACTOR = {"wan2.1": 6.0, "wan2.2": 3.0}
#: Tiled decode: diffusers' tile (256 x 256 px) and elements per pixel-frame of the output.
VAE_TILE_PIXELS = 256 * 256
VAE_TILED_FRAME_FACTOR = 11.0
#: UMT5-XXL encoding 512 tokens (attention scores, position bias, gated FFN): small (MiB).
TEXT_ENCODE_ACTIVATION_MB = 256.0
#: CLIP ViT-H image encoder on one image (257 tokens) (MiB).
IMAGE_ENCODE_ACTIVATION_MB = 128.0
#: RAM of the Python process before any weights: torch, CUDA libraries, the app (MiB).
BASE_RAM_MB = {"cuda": 2560.0, "cpu": 1024.0}
#: Group offload keeps the running group and the prefetched next one (use_stream=True).
GROUP_OFFLOAD_BLOCKS_PER_GROUP = 1
GROUP_OFFLOAD_RESIDENT_GROUPS = 2

# Usual sizes when the report lacks a component (e.g. a transformer-only single file).
_DEFAULT_PARAMETERS = {"text_encoder": 5_680_910_336, "vae:wan2.1": 126_892_531,
                       "vae:wan2.2": 704_688_668}
# Transformer dims by size class when the report has no config: dim, ffn_dim, num_layers.
_DIMS_BY_SIZE = {"1.3B": (1536, 8960, 30), "5B": (3072, 14336, 30), "14B": (5120, 13824, 40)}
_WEIGHTLESS_CLASSES = ("Tokenizer", "Scheduler", "Processor", "FeatureExtractor")
_FILE_DTYPE_BYTES = {"F64": 8, "F32": 4, "BF16": 2, "F16": 2, "F8_E4M3": 1, "F8_E5M2": 1,
                     "I8": 1, "U8": 1}
_VIDEO_ENCODING_TASKS = ("i2v", "flf2v", "vace", "animate")
_STAGES = ("encode", "denoise", "decode")


# --- the result -----------------------------------------------------------------------------

@dataclass(frozen=True)
class MemoryEstimate:
    """Memory of one plan, in MiB. ``stage_vram_mb``: encode, denoise, decode (0 on a CPU)."""

    weights_mb: dict[str, float]
    peak_vram_mb: float
    peak_ram_mb: float
    stage_vram_mb: dict[str, float]
    activations_mb: float            # one transformer call at the requested size (slack included)
    latent_tokens: int
    load_ram_mb: float = 0.0         # RAM while loading (weights + what the load maps or copies); <= peak_ram_mb
    disk_mb: float = 0.0             # weights written to offload_dir (disk_offload only)

    def to_dict(self) -> dict[str, Any]:
        return {"weights_mb": {k: round(v, 1) for k, v in self.weights_mb.items()},
                "peak_vram_mb": round(self.peak_vram_mb, 1), "peak_ram_mb": round(self.peak_ram_mb, 1),
                "load_ram_mb": round(self.load_ram_mb, 1), "disk_mb": round(self.disk_mb, 1),
                "stage_vram_mb": {k: round(v, 1) for k, v in self.stage_vram_mb.items()},
                "activations_mb": round(self.activations_mb, 1), "latent_tokens": self.latent_tokens}


class _Size(Protocol):
    """What the estimate reads of a request (an :class:`~core.run.optimize.OptimizationRequest`)."""

    @property
    def width(self) -> int: ...

    @property
    def height(self) -> int: ...

    @property
    def num_frames(self) -> int: ...


# --- what the estimate needs from the report ------------------------------------------------

@dataclass(frozen=True)
class _Facts:
    """The numbers of one model that the estimate uses (from the report, else the registry)."""

    name: str
    wan: bool                        # activations are modelled for Wan models only
    parameters: dict[str, int]       # weight-bearing components
    assumed: tuple[str, ...]         # components counted at their usual size (not in the report)
    experts: tuple[str, ...]         # transformer, transformer_2
    dim: int
    ffn_dim: int
    num_layers: int
    text_dim: int
    freq_dim: int
    in_channels: int
    out_channels: int
    per_token_timesteps: bool
    vace_layers: int
    vae_kind: str
    vae_width: int                   # base_dim (Wan2.1) or decoder_base_dim (Wan2.2)
    token_divisor: int               # 16 or 32 (VAE spatial factor x patch 2)
    encodes_video: bool
    te_embedding: int                # parameters of UMT5's word table (a leaf of its own)
    te_layers: int
    sizes: tuple[tuple[int, int], ...]
    stored_mb: dict[str, float] = field(default_factory=dict)   # GGUF / fp8 components: MiB as stored
    files: dict[str, Any] = field(default_factory=dict)         # core.run.ram_plan.FileFacts per component

    @property
    def nonblock_parameters(self) -> int:
        """Transformer parameters outside its blocks: embedders, time projection, output."""
        d = self.dim
        return (self.text_dim * d + d * d + self.freq_dim * d + d * d + 6 * d * d
                + self.in_channels * 4 * d + d * self.out_channels * 4)

    def block_parameters(self, name: str) -> float:
        return max(0.0, (self.parameters.get(name, 0) - self.nonblock_parameters) / max(1, self.num_layers))

    @property
    def largest_leaf(self) -> int:
        """Parameters of the transformer's largest single layer (time projection or FFN)."""
        return max(6 * self.dim * self.dim, self.dim * self.ffn_dim, self.text_dim * self.dim)


def _facts(report: ModelReport) -> _Facts:
    entry = _registry_entry(report)
    reg_params: Mapping[str, int] = entry.parameters if entry is not None else {}
    params: dict[str, int] = {}
    for comp in report.components:
        n = _component_parameters(comp, reg_params)
        if n:
            params[comp.name] = n
    vae_kind = report.vae_kind or ("wan2.2" if report.vae_z_dim == 48 else "wan2.1")
    assumed: list[str] = []
    if report.is_wan and any(k.startswith("transformer") for k in params):
        if "text_encoder" not in params:
            params["text_encoder"] = int(reg_params.get("text_encoder", _DEFAULT_PARAMETERS["text_encoder"]))
            assumed.append("text_encoder")
        if "vae" not in params:
            params["vae"] = int(reg_params.get("vae", _DEFAULT_PARAMETERS[f"vae:{vae_kind}"]))
            assumed.append("vae")
    experts = tuple(k for k in ("transformer", "transformer_2") if k in params)

    tcfg = _config(report, "transformer")
    dims = dict(entry.transformer) if entry is not None else {}
    by_size = _DIMS_BY_SIZE.get(report.size_class or "", (0, 0, 1))
    heads_x_dim = _int(tcfg.get("num_attention_heads")) * _int(tcfg.get("attention_head_dim"))
    dim = _int(tcfg.get("dim")) or heads_x_dim or _int(dims.get("dim")) or by_size[0]
    ffn = _int(tcfg.get("ffn_dim")) or _int(dims.get("ffn_dim")) or by_size[1]
    layers = _int(tcfg.get("num_layers")) or _int(dims.get("num_layers")) or by_size[2]
    vcfg = _config(report, "vae")   # diffusers: decoder_base_dim None means base_dim
    width = (_int(vcfg.get("decoder_base_dim")) or _int(vcfg.get("base_dim"))
             or (256 if vae_kind == "wan2.2" else 96))
    ecfg = _config(report, "text_encoder")
    vocab, d_model = _int(ecfg.get("vocab_size")) or 256384, _int(ecfg.get("d_model")) or 4096
    vace = tcfg.get("vace_layers") or dims.get("vace_layers") or ()
    sizes = tuple(entry.sizes) if entry is not None else ()
    stored, files = storage(report)          # weights as stored: GGUF blocks and fp8 are not bf16
    return _Facts(
        name=_model_name(report, entry), wan=report.is_wan, parameters=params, assumed=tuple(assumed),
        experts=experts, dim=dim, ffn_dim=ffn, num_layers=layers,
        text_dim=_int(tcfg.get("text_dim")) or 4096, freq_dim=_int(tcfg.get("freq_dim")) or 256,
        in_channels=_int(tcfg.get("in_channels") or tcfg.get("in_dim")) or 16,
        out_channels=_int(tcfg.get("out_channels") or tcfg.get("out_dim")) or 16,
        per_token_timesteps=bool(report.expand_timesteps) or report.task == "ti2v",
        vace_layers=len(vace) if isinstance(vace, (list, tuple)) else 0,
        vae_kind=vae_kind, vae_width=width, token_divisor=32 if vae_kind == "wan2.2" else 16,
        encodes_video=report.task in _VIDEO_ENCODING_TASKS,
        te_embedding=min(vocab * d_model, params.get("text_encoder", 0)),
        te_layers=_int(ecfg.get("num_layers")) or 24, sizes=sizes,
        stored_mb={k: v for k, v in stored.items() if k in params}, files=files)


def _component_parameters(comp: ComponentReport, reg_params: Mapping[str, int]) -> int:
    """Exact count from the headers; else the registry's; else file size / bytes per value."""
    if not comp.present or any(w in (comp.class_name or "") for w in _WEIGHTLESS_CLASSES):
        return 0
    if comp.parameters:
        return int(comp.parameters)
    key = "transformer" if comp.name.startswith("transformer") else comp.name
    if reg_params.get(key):
        return int(reg_params[key])
    if comp.size_bytes:
        named = " ".join(comp.files).lower()
        half = "bf16" in named or "fp16" in named
        per = _FILE_DTYPE_BYTES.get((comp.dtype or "").upper()) or (2 if half else 4)
        return comp.size_bytes // per
    return 0


def _registry_entry(report: ModelReport) -> Any:
    if not report.registry_id:
        return None
    try:
        from core.check.registry import get_compatibility_registry
        return get_compatibility_registry().get(report.registry_id)
    except Exception:  # noqa: BLE001 - a broken registry file must not stop planning
        return None


def _model_name(report: ModelReport, entry: Any) -> str:
    if entry is not None:
        return str(entry.name)
    if report.wan_version and report.task:
        size = f"-{report.size_class}" if report.size_class else ""
        return f"Wan{report.wan_version} {report.task.upper()}{size}"
    return "this model"


def _config(report: ModelReport, name: str) -> Mapping[str, Any]:
    comp = report.component(name)
    return comp.config if comp is not None and isinstance(comp.config, Mapping) else {}


def _int(value: Any) -> int:
    try:
        return int(value) if value is not None and not isinstance(value, bool) else 0
    except (TypeError, ValueError):
        return 0


# --- activations ----------------------------------------------------------------------------

def latent_tokens(facts: _Facts, width: int, height: int, num_frames: int) -> int:
    """Tokens the transformer sees: latent frames x (H/16) x (W/16), or /32 with the Wan2.2 VAE."""
    frames = (max(1, num_frames) - 1) // 4 + 1
    return frames * (height // facts.token_divisor) * (width // facts.token_divisor)


def _dit_activation_mb(facts: _Facts, tokens: int, precision: str) -> float:
    if not facts.wan:
        return 0.0
    per_token = DIT_DIM_FACTOR * facts.dim + DIT_FFN_FACTOR * facts.ffn_dim
    if facts.per_token_timesteps:
        per_token += DIT_PER_TOKEN_TIMESTEP_FACTOR * facts.dim
    per_token += facts.vace_layers * facts.dim
    return tokens * per_token * BYTES[precision] * ACTIVATION_SLACK / MIB


def _vae_activation_mb(facts: _Facts, width: int, height: int, frames: int, tiled: bool,
                       precision: str) -> float:
    if not facts.wan:
        return 0.0
    chunk = VAE_CHUNK_FACTOR.get(facts.vae_kind, VAE_CHUNK_FACTOR["wan2.2"]) * facts.vae_width
    pixels = width * height
    if tiled:
        elements = chunk * min(pixels, VAE_TILE_PIXELS) + VAE_TILED_FRAME_FACTOR * pixels * frames
    else:
        elements = pixels * (chunk + VAE_FRAME_FACTOR.get(facts.vae_kind, 6.0) * frames)
    return elements * BYTES[precision] * ACTIVATION_SLACK / MIB


# --- one candidate set-up and its estimate --------------------------------------------------

@dataclass(frozen=True)
class _Setup:
    placement: str
    group_type: str | None = None
    tiling: bool = False
    te_cpu: bool = False
    vae_precision: str = "fp32"


@dataclass(frozen=True)
class _Machine:
    device: str                      # "cuda" or "cpu"
    gpus: tuple[GpuInfo, ...]        # best first
    usable_vram: dict[int, float]    # per GPU index, after the margin
    usable_ram: float | None
    ram_limit_mb: int | None = None  # a container (cgroup) or process (ulimit -v) cap, and its name
    ram_limit_source: str | None = None
    disk_free_mb: float | None = None    # free space where offload_dir is (disk_offload)

    @property
    def gpu(self) -> GpuInfo | None:
        return self.gpus[0] if self.gpus else None

    @property
    def ram_words(self) -> str:
        """ "this computer has 12 GB available", or with a cap: "this process may use 8.0 GB (container limit)"."""
        if self.ram_limit_mb is not None and self.ram_limit_source:
            return f"this process may use {format_mib(self.ram_limit_mb)} ({self.ram_limit_source})"
        return f"this computer has {format_mib(self.usable_ram or 0)} available"


@dataclass(frozen=True)
class _Eval:
    setup: _Setup
    precision: str
    estimate: MemoryEstimate
    fits_vram: bool
    fits_ram: bool
    device_map: dict[str, str] | None = None
    max_memory: dict[int, int] | None = None
    activations: dict[str, float] = field(default_factory=dict)   # per stage, without weights
    fits_disk: bool = True           # disk_offload: the weights fit in offload_dir's free space

    @property
    def fits(self) -> bool:
        return self.fits_vram and self.fits_ram and self.fits_disk


def _machine(hardware: HardwareInfo) -> _Machine:
    gpus = sorted(hardware.gpus, key=lambda g: -(g.free_mb if g.free_mb is not None else g.total_mb))
    usable = {g.index: (g.free_mb if g.free_mb is not None else g.total_mb) * (1 - VRAM_MARGIN) for g in gpus}
    ram = next((r for r in (getattr(hardware, "ram_usable_mb", None), hardware.ram_free_mb,
                            hardware.ram_total_mb) if r is not None), None)
    return _Machine("cuda" if gpus else "cpu", tuple(gpus), usable,
                    ram * (1 - RAM_MARGIN) if ram is not None else None,
                    getattr(hardware, "ram_limit_mb", None), getattr(hardware, "ram_limit_source", None),
                    getattr(hardware, "offload_free_mb", None))


def _weights_mb(facts: _Facts, precision: str, vae_precision: str) -> dict[str, float]:
    return {name: facts.stored_mb.get(name) or n * BYTES[vae_precision if name == "vae" else precision] / MIB
            for name, n in facts.parameters.items()}


def _evaluate(facts: _Facts, machine: _Machine, request: _Size, precision: str,
              setup: _Setup, width: int | None = None, height: int | None = None,
              frames: int | None = None) -> _Eval:
    """Peak VRAM and RAM of ``setup`` for the request (or another size, for refusals)."""
    w, h = width or request.width, height or request.height
    f = frames or request.num_frames
    weights = _weights_mb(facts, precision, setup.vae_precision)
    load = getattr(request, "inputs", None)          # core.run.input_memory.InputLoad: what inputs add
    call_frames = min(f, load.segment_frames) if load and load.segment_frames else f
    tokens = latent_tokens(facts, w, h, call_frames)
    if load and load.reference_frames:                # VACE references / Animate's character: latent frames
        tokens += load.reference_frames * (h // facts.token_divisor) * (w // facts.token_divisor)
    ranks = max(1, int(getattr(request, "ranks", 1) or 1))
    act_dit = _dit_activation_mb(facts, tokens, precision) / ranks     # Ulysses: 1/N of the tokens per rank
    act_dec = _vae_activation_mb(facts, w, h, call_frames, setup.tiling, setup.vae_precision)
    act_vae_enc = act_dec if facts.encodes_video else 0.0
    encodes = facts.encodes_video
    kept = 0.0                                       # frames made so far (Animate keeps them on the device)
    if load and load.encoded_frames and facts.wan:   # input videos through the VAE, as float32 tensors
        pixels = load.encoded_frames * w * h * 3 * 4 / MIB
        act_vae_enc = max(act_vae_enc, pixels + _vae_activation_mb(facts, w, h, load.encoded_frames,
                                                                     setup.tiling, setup.vae_precision))
        encodes = True
    if load and load.segments > 1:
        kept = f * w * h * 3 * 4 / MIB
    input_ram = load.decoded_mb if load else 0.0
    te = weights.get("text_encoder", 0.0)
    act_te = min(TEXT_ENCODE_ACTIVATION_MB, te)       # min: the tiny demo models
    img = weights.get("image_encoder", 0.0)
    act_img = min(IMAGE_ENCODE_ACTIVATION_MB, img)
    vae = weights.get("vae", 0.0)
    experts = [weights[n] for n in facts.experts] or [0.0]
    others = sum(v for k, v in weights.items()
                 if k not in facts.experts and k not in ("text_encoder", "image_encoder", "vae"))
    total = sum(weights.values())
    full_total = total
    sharded = ranks if getattr(request, "shard_weights", False) and ranks > 1 else 1
    if sharded > 1:   # FSDP2: each GPU holds 1/N of every expert, and they stay on it (no offload hook)
        resident = sum(experts) / sharded
        total = total - sum(experts) + resident
        experts = [resident]
    acts = {"encode": max(act_te, act_img, act_vae_enc), "denoise": act_dit, "decode": act_dec}
    device_map = max_memory = None

    transient = load_transient_mb(facts.files, precision, setup.vae_precision, tuple(weights))
    if machine.device == "cpu":
        stages = {s: 0.0 for s in _STAGES}
        load_ram = BASE_RAM_MB["cpu"] + total + transient
        ram = max(load_ram, BASE_RAM_MB["cpu"] + total + max(acts.values()) + input_ram + kept)
        disk = None
        if setup.placement == "disk_offload":
            disk = _disk(facts, machine, weights, precision, setup, transient)
            resident = {"encode": disk.te_groups + act_te + act_img + act_vae_enc,
                        "denoise": disk.expert_groups + act_dit, "decode": act_dec}
            load_ram = BASE_RAM_MB["cpu"] + disk.load_mb
            ram = max(load_ram, BASE_RAM_MB["cpu"] + disk.kept_mb + max(resident.values()) + input_ram + kept)
        est = MemoryEstimate(weights, 0.0, ram, stages, act_dit, tokens, load_ram, disk.disk_mb if disk else 0.0)
        fits_ram = machine.usable_ram is None or ram <= machine.usable_ram
        return _Eval(setup, precision, est, True, fits_ram, activations=acts, fits_disk=disk.fits if disk else True)

    te_gpu = 0.0 if setup.te_cpu else te
    p = setup.placement
    if p == "all_on_device":
        resident = total - (te if setup.te_cpu else 0.0)
        stages = {"encode": resident + max(act_te if te_gpu else 0.0, act_img, act_vae_enc),
                  "denoise": resident + act_dit, "decode": resident + act_dec}
    elif p == "model_offload":
        encode_te = te_gpu + act_te if te_gpu else 0.0
        encode_img = img + (vae + act_vae_enc if encodes else act_img)
        stages = {"encode": max(encode_te, encode_img, others),
                  "denoise": max(experts) + act_dit + (vae if encodes else 0.0),
                  "decode": vae + act_dec}
    elif p == "group_offload":
        always = vae + _group_resident(img, 32, 0.0)
        if setup.group_type == "leaf_level":
            expert_res = GROUP_OFFLOAD_RESIDENT_GROUPS * facts.largest_leaf * BYTES[precision] / MIB
        else:
            blocks = max(facts.block_parameters(n) for n in facts.experts) if facts.experts else 0.0
            expert_res = (GROUP_OFFLOAD_RESIDENT_GROUPS * GROUP_OFFLOAD_BLOCKS_PER_GROUP * blocks
                          + facts.nonblock_parameters) * BYTES[precision] / MIB
        expert_res = min(expert_res, max(experts))
        te_res = _group_resident(te_gpu, facts.te_layers, facts.te_embedding * BYTES[precision] / MIB)
        stages = {"encode": always + others + max(te_res + act_te if te_gpu else 0.0, act_img, act_vae_enc),
                  "denoise": always + expert_res + act_dit, "decode": always + act_dec}
    elif p == "disk_offload":        # like group offload, read back from disk; the text encoder block by block
        d = _disk(facts, machine, weights, precision, setup, transient)
        always = vae + img
        stages = {"encode": always + others + max(d.te_groups + act_te if te_gpu else 0.0, act_img, act_vae_enc),
                  "denoise": always + min(d.expert_groups, max(experts)) + act_dit, "decode": always + act_dec}
    elif p == "sequential_offload":
        leaf = min(2 * facts.largest_leaf * BYTES[precision] / MIB, max(experts))
        te_leaf = min(facts.te_embedding * BYTES[precision] / MIB, te_gpu)
        stages = {"encode": max(te_leaf + act_te if te_gpu else 0.0, act_img, act_vae_enc),
                  "denoise": leaf + act_dit, "decode": act_dec}
    elif p == "balanced":
        stages, device_map, max_memory, balanced_fits = _balanced(weights, facts, machine, setup, acts,
                                                                  act_te, act_img)
    else:
        raise ValueError(f"unknown placement {p!r}; expected one of {PLACEMENTS}")
    if sharded > 1 and p == "model_offload":     # the sharded experts stay through encode and decode
        stages = {s: v + (experts[0] if s != "denoise" else 0.0) for s, v in stages.items()}
    if p != "balanced":
        stages = {s: v + CUDA_OVERHEAD_MB for s, v in stages.items()}
    if kept:
        stages = {s: v + (kept if s != "encode" else 0.0) for s, v in stages.items()}

    if p in ("all_on_device", "balanced"):   # each component moves to its GPU as soon as it is loaded
        ram = BASE_RAM_MB["cuda"] + max(weights.values(), default=0.0) + (te if setup.te_cpu else 0.0)
    elif p == "disk_offload":                # one component in RAM while it is written; then a group or two
        ram = BASE_RAM_MB["cuda"] + max(d.load_mb - transient, d.kept_mb + 2 * max(d.expert_groups, d.te_groups))
    else:
        ram = BASE_RAM_MB["cuda"] + full_total
    load_ram = ram + transient
    ram = load_ram + input_ram
    peak = max(stages.values())
    est = MemoryEstimate(weights, peak, ram, stages, act_dit, tokens, load_ram, d.disk_mb if p == "disk_offload" else 0.0)
    if p == "balanced":
        fits_vram = balanced_fits
    else:
        fits_vram = peak <= machine.usable_vram[machine.gpus[0].index]
    fits_ram = machine.usable_ram is None or ram <= machine.usable_ram
    return _Eval(setup, precision, est, fits_vram, fits_ram, device_map, max_memory, acts,
                 d.fits if p == "disk_offload" else True)


#: Free space disk offload leaves on the disk beside the weights it writes (MiB).
DISK_MARGIN_MB = 1024.0


@dataclass(frozen=True)
class _DiskOffload:
    """What offloading to disk keeps in RAM and writes (MiB)."""

    disk_mb: float          # the components written to offload_dir
    load_mb: float          # RAM while loading: the largest written component (+ the load's transient) and what stays
    kept_mb: float          # RAM all along: what is not written (the VAE on the CPU; nothing on a GPU once moved)
    expert_groups: float    # the transformer groups read back at a time
    te_groups: float        # the text encoder's word table and two blocks, read back while it encodes
    fits: bool


def _disk(facts: _Facts, machine: _Machine, weights: Mapping[str, float], precision: str, setup: _Setup,
          transient: float) -> _DiskOffload:
    from core.run.disk_offload import offloaded
    from core.run.ram_limit import PROCESS
    written = {n: w for n, w in weights.items() if offloaded(n)}
    kept = sum(w for n, w in weights.items() if not offloaded(n))
    byte = BYTES[precision]
    if setup.group_type == "leaf_level":
        groups = GROUP_OFFLOAD_RESIDENT_GROUPS * facts.largest_leaf * byte / MIB
    else:
        blocks = max((facts.block_parameters(n) for n in facts.experts), default=0.0)
        groups = (GROUP_OFFLOAD_RESIDENT_GROUPS * GROUP_OFFLOAD_BLOCKS_PER_GROUP * blocks
                  + facts.nonblock_parameters) * byte / MIB
    experts = [written[n] for n in facts.experts if n in written]
    if experts and facts.parameters.get(facts.experts[0]):   # GGUF / fp8: groups shrink with the weights
        groups *= min(1.0, experts[0] / (facts.parameters[facts.experts[0]] * byte / MIB))
    te = written.get("text_encoder", 0.0)      # read back: the word table with the encoder's first group, two blocks
    te_groups = _group_resident(te, facts.te_layers, min(facts.te_embedding * byte / MIB, te))
    disk_mb = sum(written.values())
    load_mb = kept + max(written.values(), default=0.0) + transient
    stays = kept if machine.device == "cpu" else 0.0      # on a GPU the VAE (and CLIP) move there after the load
    if machine.ram_limit_source == PROCESS:
        # diffusers leaves an uninitialised tensor of each weight's size: no RAM, but address space (ulimit -v)
        load_mb, stays = kept + disk_mb + transient, stays + disk_mb
    fits = machine.disk_free_mb is None or disk_mb + DISK_MARGIN_MB <= machine.disk_free_mb
    return _DiskOffload(disk_mb, load_mb, stays, groups, te_groups, fits)


def _group_resident(weights_mb: float, blocks: int, nonblock_mb: float) -> float:
    """What block-level group offload keeps on the GPU: the word table and two blocks."""
    if not weights_mb:
        return 0.0
    per_block = max(0.0, weights_mb - nonblock_mb) / max(1, blocks)
    return min(weights_mb, nonblock_mb + GROUP_OFFLOAD_RESIDENT_GROUPS * per_block)


def _balanced(weights: dict[str, float], facts: _Facts, machine: _Machine, setup: _Setup,
              acts: dict[str, float], act_te: float, act_img: float
              ) -> tuple[dict[str, float], dict[str, str], dict[int, int], bool]:
    """Mirror diffusers' ``device_map="balanced"``: components, largest first, dealt over the
    GPUs (most memory first) in a zig-zag; one that does not fit where it is dealt goes to the
    CPU. Each GPU keeps room for the largest activation of any stage."""
    reserve = max(acts.values()) + CUDA_OVERHEAD_MB
    budgets = {g.index: max(0.0, machine.usable_vram[g.index] - reserve) for g in machine.gpus}
    order = [g.index for g in machine.gpus]
    cycle = order + order[::-1]
    left = dict(budgets)
    device_map: dict[str, str] = {}
    i = 0
    for name, size in sorted(weights.items(), key=lambda kv: -kv[1]):
        if name == "text_encoder" and setup.te_cpu:
            device_map[name] = "cpu"
            continue
        gpu = cycle[i % len(cycle)]
        if size > left[gpu]:
            device_map[name] = "cpu"
            continue
        device_map[name] = f"cuda:{gpu}"
        left[gpu] -= size
        i += 1
    runs = {"text_encoder": [("encode", act_te)], "image_encoder": [("encode", act_img)],
            "vae": [("decode", acts["decode"])] + ([("encode", acts["encode"])] if facts.encodes_video else []),
            **{n: [("denoise", acts["denoise"])] for n in facts.experts}}
    per_gpu: dict[str, dict[str, float]] = {}
    for g in order:
        on = [n for n, d in device_map.items() if d == f"cuda:{g}"]
        resident = sum(weights[n] for n in on) + CUDA_OVERHEAD_MB
        stage = {s: resident for s in _STAGES}
        for n in on:
            for s, a in runs.get(n, []):
                stage[s] = max(stage[s], resident + a)
        per_gpu[f"cuda:{g}"] = stage
    stages = {s: max((v[s] for v in per_gpu.values()), default=0.0) for s in _STAGES}
    fits = all(max(per_gpu[f"cuda:{g}"].values()) <= machine.usable_vram[g] for g in order) and not any(
        d == "cpu" for n, d in device_map.items() if not (n == "text_encoder" and setup.te_cpu))
    return stages, device_map, {g: int(b) for g, b in budgets.items()}, fits

