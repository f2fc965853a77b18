"""Load a transformer stored quantized (GGUF, fp8, ComfyUI fp8_scaled) without dequantizing it on disk.

A model folder made by ``fix --assemble`` from such a file keeps it as it is in
``transformer/`` (and ``transformer_2/``) beside a ``config.json`` written from our own
tables, so that diffusers never guesses the model (it would take TI2V-5B and Wan2.2
I2V-A14B for ``wan-i2v-14B`` and go to the Hub). Usage::

    from core.run.quantized import quantized_file, load_quantized_transformer

    found = quantized_file(Path("/models/Wan2.2-TI2V-5B-Q4_K_M/transformer"))   # QuantizedFile or None
    model = load_quantized_transformer(found, "bf16")

- GGUF: ``WanTransformer3DModel.from_single_file(file, quantization_config=GGUFQuantizationConfig(
  compute_dtype=...), config=<the model folder>, subfolder="transformer")``: diffusers keeps the
  blocks quantized and dequantizes each layer as it runs.
- fp8 / fp8_scaled: the file's tensors are renamed by diffusers' own converter and put into the
  model as they are (``load_state_dict(assign=True)``); each fp8 ``nn.Linear`` keeps its fp8
  weight and computes with ``weight x scale_weight`` cast to the compute dtype, one layer at a
  time (layerwise casting that also applies ComfyUI's scale, which ``from_single_file``
  ignores: NaN video). Biases, norms and the layers diffusers keeps in float32 are not cast to fp8.

torch and diffusers are imported inside the functions.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from core.check.dit import find_prefix
from core.check.quantization import FP8_DTYPES, SCALE_SUFFIX, SCALED_MARK
from core.check.safetensors_header import HeaderError, read_header
from core.errors import WanError

DIFFUSERS_STEM = "diffusion_pytorch_model"
TORCH_DTYPES = {"bf16": "bfloat16", "fp16": "float16", "fp32": "float32"}


@dataclass(frozen=True)
class QuantizedFile:
    """A transformer folder whose weights are one quantized single file (original Wan names)."""

    folder: Path
    file: Path
    format: str            # "gguf", "fp8" or "fp8_scaled"

    @property
    def config_path(self) -> Path:
        return self.folder / "config.json"


def quantized_file(folder: Path) -> QuantizedFile | None:
    """The quantized single file a component folder holds (a ``.gguf``, or an fp8 ``.safetensors`` in the
    original naming), or None for a normal diffusers folder. Reads headers only."""
    if not folder.is_dir():
        return None
    ggufs = sorted(folder.glob("*.gguf"))
    if ggufs:
        return QuantizedFile(folder, ggufs[0], "gguf")
    for path in sorted(folder.glob("*.safetensors")):
        if path.name.startswith(DIFFUSERS_STEM):
            continue
        try:
            tensors = read_header(path).tensors
        except (HeaderError, OSError):
            continue
        if find_prefix(tensors) is None or not any(t.dtype in FP8_DTYPES for t in tensors.values()):
            continue
        scaled = any(n.endswith((SCALE_SUFFIX, SCALED_MARK)) for n in tensors)
        return QuantizedFile(folder, path, "fp8_scaled" if scaled else "fp8")
    return None


def _dtype(name: str) -> Any:
    import torch
    return getattr(torch, TORCH_DTYPES.get(name, name))


def load_quantized_transformer(found: QuantizedFile, precision: str) -> Any:
    """The WanTransformer3DModel of ``found``, computing in ``precision`` (bf16, fp16 or fp32).

    Raises WanError (a sentence and a remedy) when the file does not fit the folder's config or
    cannot be read; never lets diffusers guess the config or reach the Hub.
    """
    if not found.config_path.is_file():
        raise WanError(f"{found.folder.name}/config.json is missing beside {found.file.name}; without it diffusers "
                       "would guess the model from the Hub.",
                       "Assemble the folder again with `python -m core fix --assemble ...`.")
    try:
        if found.format == "gguf":
            return _load_gguf(found, precision)
        return _load_fp8(found, precision)
    except WanError:
        raise
    except (ImportError, ModuleNotFoundError) as exc:
        raise WanError(f"Loading {found.file.name} needs the gguf package, which is not installed."
                       if "gguf" in str(exc).lower() else f"Loading {found.file.name} failed: {exc}",
                       "Run ./launch.sh (or pip install -r requirements.txt) to install it.", str(exc)) from exc
    except Exception as exc:  # noqa: BLE001 - a damaged or mismatched file, said as a sentence
        from core.errors import is_memory_failure
        if is_memory_failure(exc):
            raise
        said = str(exc).splitlines()[0][:300] if str(exc) else type(exc).__name__
        raise WanError(f"{found.folder.name}/{found.file.name} could not be loaded as a {found.format} transformer: "
                       f"{said}", f"Run `python -m core check {found.folder.parent}`; download the file again if it "
                       "is damaged.", str(exc)) from exc


def _load_gguf(found: QuantizedFile, precision: str) -> Any:
    from diffusers import GGUFQuantizationConfig, WanTransformer3DModel
    dtype = _dtype(precision)
    return WanTransformer3DModel.from_single_file(
        str(found.file), quantization_config=GGUFQuantizationConfig(compute_dtype=dtype),
        config=str(found.folder.parent), subfolder=found.folder.name, torch_dtype=dtype).eval()


def _load_fp8(found: QuantizedFile, precision: str) -> Any:
    import torch
    from accelerate import init_empty_weights
    from diffusers import WanTransformer3DModel
    from diffusers.loaders.single_file_utils import convert_wan_transformer_to_diffusers
    from safetensors import safe_open

    compute = _dtype(precision)
    config = json.loads(found.config_path.read_text(encoding="utf-8"))
    with init_empty_weights():
        model = WanTransformer3DModel.from_config(config)
    with safe_open(str(found.file), framework="pt") as fh:
        state = {k: fh.get_tensor(k) for k in fh.keys() if not k.endswith(SCALED_MARK)}
    state = convert_wan_transformer_to_diffusers(state)
    scales = {k[: -len(SCALE_SUFFIX)]: state.pop(k).float() for k in list(state) if k.endswith(SCALE_SUFFIX)}
    state.pop("scale_input", None)
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    extra = sorted(set(state) - set(expected))
    wrong = [k for k in state if k in expected and tuple(state[k].shape) != tuple(expected[k].shape)]
    if missing or extra or wrong:
        first = (missing or extra or wrong)[0]
        raise WanError(f"{found.file.name} does not fit {found.folder.name}/config.json: "
                       f"{len(missing)} tensors missing, {len(extra)} unexpected, {len(wrong)} of another shape "
                       f"(e.g. {first}).", "Assemble the folder again from the right file, or download it again.")
    fp32_names = tuple(getattr(model, "_keep_in_fp32_modules", None) or ())
    linear_fp8 = {name for name, m in model.named_modules()
                  if isinstance(m, torch.nn.Linear) and state[f"{name}.weight"].dtype in _fp8_torch()}
    unscaled = sorted(n for n in linear_fp8 if n not in scales)
    if found.format == "fp8_scaled" and unscaled:     # unscaled weights give a noise video
        raise WanError(f"{found.file.name} is an fp8 \"scaled\" file, but {len(unscaled)} of its {len(linear_fp8)} "
                       f"fp8 layers have no scale_weight (e.g. {unscaled[0]}).",
                       "Download the file again, or use the model's fp8_e4m3fn (unscaled), fp16 or bf16 file.")
    for key, value in list(state.items()):
        module = key.rsplit(".", 1)[0]
        if value.dtype in _fp8_torch():
            if module in linear_fp8 and key.endswith(".weight"):
                continue                                   # stays fp8; scaled when used
            value = value.float() * scales.pop(module, torch.tensor(1.0))   # not a Linear: dequantized now
        keep32 = any(part in fp32_names for part in key.split("."))
        state[key] = value.to(torch.float32 if keep32 or compute == torch.float32 else compute)
    model.load_state_dict(state, assign=True, strict=True)
    for name in linear_fp8:
        _fp8_linear(model.get_submodule(name), scales.get(name))
    return model.eval()


def _fp8_torch() -> tuple[Any, ...]:
    import torch
    return (torch.float8_e4m3fn, torch.float8_e5m2)


def _fp8_linear(module: Any, scale: Any) -> None:
    """Make one nn.Linear compute with ``fp8 weight x scale`` in the input's dtype (the weight stays fp8)."""
    module.__class__ = _fp8_linear_class()
    module.register_buffer("fp8_scale", scale.reshape(()).float() if scale is not None else None, persistent=False)


@cache
def _fp8_linear_class() -> Any:
    import torch
    import torch.nn.functional as F

    class Fp8Linear(torch.nn.Linear):
        """An nn.Linear whose weight is stored in fp8 (times ComfyUI's scale) and cast for each call."""

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            weight = self.weight.to(torch.float32)
            if self.fp8_scale is not None:
                weight = weight * self.fp8_scale
            bias = self.bias.to(x.dtype) if self.bias is not None else None
            return F.linear(x, weight.to(x.dtype), bias)

    return Fp8Linear


def weights_bytes(found: QuantizedFile) -> int:
    """Bytes the transformer's weights take in memory once loaded (the file's tensor data)."""
    return found.file.stat().st_size
