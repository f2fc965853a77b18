"""The finding codes: one enumeration that the detector, Fix, the UI and the CLI import.

``Finding.code`` is a :class:`Code`. It is a ``str`` enum, so the JSON of
``python -m core check --json`` keeps the same plain strings, and ``Code.SHARD_MISSING ==
"shard_missing"`` holds for tools that compare with text. Usage::

    from core.check.codes import Code

    missing = [f for f in report.findings if f.code is Code.SHARD_MISSING]
    Code("file_truncated")          # Code.FILE_TRUNCATED; ValueError for an unknown code

A new code goes here, is emitted by ``core/check``, and is either handled by Fix
(``core/fix``: a repair or a manual step) or described in README.md's "Finding codes";
``tests/test_codes.py`` fails otherwise.
"""

from __future__ import annotations

from enum import Enum


class Code(str, Enum):
    """Why a finding was made (the values are stable strings for tools)."""

    # the path and the scan
    NOT_A_MODEL = "not_a_model"
    ONLY_A_PART = "only_a_part"
    COLLECTION = "collection"
    FOUND_IN_SUBFOLDER = "found_in_subfolder"
    SCAN_TRUNCATED = "scan_truncated"
    SCAN_PROBLEM = "scan_problem"
    PERMISSION_DENIED = "permission_denied"
    FIX_INTERRUPTED = "fix_interrupted"
    JOURNAL_FOREIGN = "journal_foreign"
    # what the model is
    NOT_WAN = "not_wan"
    SINGLE_FILE = "single_file"
    ONE_EXPERT = "one_expert"
    NEEDS_CONVERSION = "needs_conversion"
    CUSTOM_CODE = "custom_code"
    # model_index.json and configs
    MODEL_INDEX_MISSING = "model_index_missing"
    MODEL_INDEX_UNREADABLE = "model_index_unreadable"
    CLASS_NAME_MISMATCH = "class_name_mismatch"
    COMPONENT_NOT_IN_INDEX = "component_not_in_index"
    COMPONENT_CLASS_MISMATCH = "component_class_mismatch"
    BOUNDARY_RATIO_MISSING = "boundary_ratio_missing"
    EXPAND_TIMESTEPS_MISSING = "expand_timesteps_missing"
    CONFIG_MISSING = "config_missing"
    CONFIG_UNREADABLE = "config_unreadable"
    CONFIG_MISMATCH = "config_mismatch"
    # parts and files
    COMPONENT_MISSING = "component_missing"
    TOKENIZER_MISSING = "tokenizer_missing"
    WEIGHTS_MISSING = "weights_missing"
    WEIGHTS_MISNAMED = "weights_misnamed"
    SHARD_MISSING = "shard_missing"
    INDEX_UNREADABLE = "index_unreadable"
    FILE_TRUNCATED = "file_truncated"
    FILE_UNREADABLE = "file_unreadable"
    FILE_EXTRA_BYTES = "file_extra_bytes"
    WEIGHTS_MISMATCH = "weights_mismatch"
    HEADER_BAD_LENGTH = "header_bad_length"
    HEADER_NOT_JSON = "header_not_json"
    HEADER_BAD_SHAPE = "header_bad_shape"
    PICKLE_WEIGHTS = "pickle_weights"
    PICKLE_NOT_INSPECTED = "pickle_not_inspected"
    # quantized weights (core/check/quantization.py): GGUF types, fp8 scales
    QUANT_UNSUPPORTED = "quant_unsupported"
    FP8_SCALES_MISSING = "fp8_scales_missing"
    # parts that do not belong together
    EXPERT_MISMATCH = "expert_mismatch"
    VAE_MISMATCH = "vae_mismatch"
    TEXT_DIM_MISMATCH = "text_dim_mismatch"
    # LoRA files (core/check/lora.py) and a LoRA checked against a model (core/check/lora_match.py)
    LORA_FILE = "lora_file"
    LORA_UNSUPPORTED = "lora_unsupported"
    LORA_OTHER_FAMILY = "lora_other_family"
    LORA_NOT_LOADABLE = "lora_not_loadable"
    LORA_WRONG_BASE = "lora_wrong_base"
    LORA_NOT_APPLIED = "lora_not_applied"
    LORA_T2V_ON_I2V = "lora_t2v_on_i2v"
    LORA_EXPERT_MISMATCH = "lora_expert_mismatch"
    LORA_BOTH_EXPERTS = "lora_both_experts"
    LORA_DISTILL = "lora_distill"
    # what only `check --deep` finds (it reads every byte)
    TENSOR_NOT_FINITE = "tensor_not_finite"
    ZERO_FILLED = "zero_filled"

    def __str__(self) -> str:  # the plain value in f-strings and str(), on every Python version
        return self.value


# core.check.safetensors_header.HeaderError.reason -> the finding it becomes
HEADER_CODES: dict[str, Code] = {
    "too_short": Code.FILE_TRUNCATED,
    "bad_length": Code.HEADER_BAD_LENGTH,
    "not_json": Code.HEADER_NOT_JSON,
    "bad_shape": Code.HEADER_BAD_SHAPE,
}
# the codes of a damaged safetensors header (a re-download mends each)
HEADER_DAMAGE: frozenset[Code] = frozenset(HEADER_CODES.values()) - {Code.FILE_TRUNCATED}


def header_code(reason: str) -> Code:
    """The finding code for a safetensors header problem (``HeaderError.reason``).

    >>> header_code("too_short")
    <Code.FILE_TRUNCATED: 'file_truncated'>
    """
    return HEADER_CODES.get(reason, Code.HEADER_BAD_SHAPE)


def as_code(value: Code | str) -> Code | str:
    """``value`` as a :class:`Code` when it is one's value, else unchanged (a report from elsewhere)."""
    if isinstance(value, Code):
        return value
    try:
        return Code(value)
    except ValueError:
        return value
