"""Seeded mutations of the demo models' headers and configs, each checked by Model Check.

Run by ``tests/test_loadable_fuzz.py`` in a subprocess under a memory limit; nothing here
imports torch. For each mutation it writes a mutated copy of one demo model (unchanged files
are hard links), runs ``inspect`` on it, and prints one JSON line: the mutation, the
components it touched, ``loadable``, the seconds the check took, and any exception. Copies
that Model Check calls loadable are kept for the real loader to judge; the others are deleted.

    python tests/fuzz_loadable.py DEMO_DIR OUT_DIR SEED COUNT MEMORY_MB
"""

from __future__ import annotations

import json
import os
import random
import resource
import shutil
import struct
import sys
import time
import traceback
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

WEIGHTED = ("transformer", "vae", "text_encoder")
DTYPES = ("F32", "F16", "BF16", "F64", "I8", "XYZ", "F4", "U16")
WEIRD = (None, "x", 2.5, -1, 0, 10**30, True, [], [1], {"a": 1}, 10**4000)
CONFIG_KEYS = {
    "transformer": ("in_channels", "out_channels", "num_layers", "num_attention_heads", "attention_head_dim",
                    "ffn_dim", "text_dim", "freq_dim", "patch_size", "image_dim", "added_kv_proj_dim",
                    "cross_attn_norm", "rope_max_seq_len", "eps", "qk_norm", "pos_embed_seq_len"),
    "vae": ("base_dim", "z_dim", "dim_mult", "num_res_blocks", "temperal_downsample", "in_channels",
            "out_channels", "decoder_base_dim", "is_residual", "attn_scales", "dropout"),
    "text_encoder": ("d_model", "d_kv", "num_heads", "d_ff", "num_layers", "vocab_size",
                     "relative_attention_num_buckets", "feed_forward_proj", "layer_norm_epsilon"),
}


def read_st(path: Path) -> tuple[dict[str, Any], bytes]:
    raw = path.read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    return json.loads(raw[8:8 + n]), raw[8 + n:]


def pack(header: dict[str, Any], data: bytes, tensors: dict[str, bytes] | None = None) -> bytes:
    """A valid file: tensors laid out contiguously, each with its old bytes or zeros of its new size."""
    bits = {"F64": 64, "F32": 32, "F16": 16, "BF16": 16, "I8": 8, "U16": 16, "F4": 4, "XYZ": 32}
    out, offset = bytearray(), 0
    new: dict[str, Any] = {}
    for name, spec in header.items():
        if name == "__metadata__":
            new[name] = spec
            continue
        numel = 1
        for d in spec["shape"]:
            numel *= d
        size = numel * bits.get(spec["dtype"], 32) // 8
        old = (tensors or {}).get(name, b"")
        chunk = old if len(old) == size else bytes(size)
        new[name] = dict(spec, data_offsets=[offset, offset + size])
        out += chunk
        offset += size
    body = json.dumps(new).encode()
    return struct.pack("<Q", len(body)) + body + bytes(out)


def slices(header: dict[str, Any], data: bytes) -> dict[str, bytes]:
    return {n: data[s["data_offsets"][0]:s["data_offsets"][1]] for n, s in header.items() if n != "__metadata__"}


def mutate_weights(rng: random.Random, path: Path, other: Path) -> str:
    header, data = read_st(path)
    names = [n for n in header if n != "__metadata__"]
    parts = slices(header, data)
    kind = rng.choice(["drop", "rename", "shape", "dtype", "swap", "empty", "extra", "gap", "overlap", "cancel",
                       "bom", "meta", "badshape", "truncate", "flip", "length", "deep", "duplicate", "none"])
    name = rng.choice(names)
    raw = None
    if kind == "drop":
        del header[name]
    elif kind == "rename":
        header[name + rng.choice(["x", ".weight", "_"])] = header.pop(name)
    elif kind == "shape":
        shape = list(header[name]["shape"]) or [1]
        i = rng.randrange(len(shape))
        shape[i] = max(0, shape[i] + rng.choice([-1, 1, 2]))
        header[name]["shape"] = shape
    elif kind == "dtype":
        header[name]["dtype"] = rng.choice(DTYPES)
    elif kind == "swap":
        header, data = read_st(other)
        parts = slices(header, data)
    elif kind == "empty":
        header = {"__metadata__": {"format": "pt"}}
    elif kind == "none":
        pass
    if kind in ("drop", "rename", "shape", "dtype", "swap", "empty", "none"):
        raw = pack(header, data, parts)
    else:
        body = bytearray(json.dumps(header).encode())
        raw = struct.pack("<Q", len(body)) + bytes(body) + data
        if kind == "extra":
            raw += bytes(rng.choice([1, 4, 64]))
        elif kind in ("gap", "overlap"):
            spec = header[name]
            s, e = spec["data_offsets"]
            spec["data_offsets"] = [s + 4, e + 4] if kind == "gap" else [max(0, s - 4), e - 4]
        elif kind == "cancel":  # two tensors' sizes wrong in opposite directions: the total is right
            big = [n for n in names if len(header[n]["shape"]) == 1 and header[n]["shape"][0] > 1]
            if len(big) >= 2:
                a, b = rng.sample(big, 2)
                header[a]["shape"] = [header[a]["shape"][0] + 1]
                header[b]["shape"] = [header[b]["shape"][0] - 1]
        elif kind == "bom":
            body = b"\xef\xbb\xbf" + json.dumps(header).encode()
            raw = struct.pack("<Q", len(body)) + body + data
        elif kind == "meta":
            header["__metadata__"] = rng.choice([{"format": 1}, {"a": None}, [1], "x", {"a": {"b": "c"}}])
        elif kind == "badshape":
            header[name]["shape"] = rng.choice([["x", 3000000000], [[], 2**63], [2**62, 2**62], [-1], [1.5],
                                                 [10**4000], [True], None, [0] * 100])
        elif kind == "truncate":
            raw = raw[: rng.randrange(len(raw))]
        elif kind == "flip":
            b = bytearray(raw)
            i = rng.randrange(8, 8 + len(body))
            b[i] = rng.randrange(256)
            raw = bytes(b)
        elif kind == "length":
            raw = struct.pack("<Q", rng.choice([0, 1, len(body) - 1, len(body) + 1, 2**63, 2**40])) + raw[8:]
        elif kind == "deep":
            body = b'{"a":' + b"[" * 100_000 + b"]" * 100_000 + b"}"
            raw = struct.pack("<Q", len(body)) + body
        elif kind == "duplicate":
            text = json.dumps(header)
            body = (text[:-1] + ", " + json.dumps(name) + ": " + json.dumps(header[name]) + "}").encode()
            raw = struct.pack("<Q", len(body)) + body + data
        if kind in ("gap", "overlap", "cancel", "meta", "badshape"):
            body = json.dumps(header).encode()
            raw = struct.pack("<Q", len(body)) + body + data
    tmp = path.with_suffix(".tmp")
    tmp.write_bytes(raw)
    os.replace(tmp, path)
    return kind


def mutate_config(rng: random.Random, path: Path, role: str) -> str:
    config = json.loads(path.read_text())
    key = rng.choice(CONFIG_KEYS[role])
    roll = rng.random()
    if roll < 0.2:
        config.pop(key, None)
        kind = f"del {key}"
    elif roll < 0.5 and isinstance(config.get(key), int) and not isinstance(config.get(key), bool):
        config[key] += rng.choice([-1, 1, 8])
        kind = f"{key}{'+-'[config[key] < 0]}"
    else:
        value = rng.choice(WEIRD)
        config[key] = value
        kind = f"{key}={str(value)[:12]}"
    text = json.dumps(config)
    if rng.random() < 0.03:
        text = "[" * 50_000 + "]" * 50_000
        kind = "deep config"
    path.write_text(text)
    return kind


def mutate_index(rng: random.Random, path: Path) -> str:
    index = json.loads(path.read_text())
    key = rng.choice([k for k in index if not k.startswith("_")] + ["_class_name"])
    value = rng.choice(["x", ["diffusers"], [1, 2], ["diffusers", None], None, [None, "X"], ["transformers", "Nope"],
                        {"a": 1}, ["diffusers", "AutoencoderKLWan"], 0.5, True])
    index[key] = value
    path.write_text(json.dumps(index))
    return f"index {key}={str(value)[:24]}"


def copy_model(src: Path, dst: Path, writable: set[str]) -> None:
    """``dst`` with every file of ``src``: hard links, except copies of those in ``writable``."""
    for root, _, files in os.walk(src):
        rel = Path(root).relative_to(src)
        (dst / rel).mkdir(parents=True, exist_ok=True)
        for f in files:
            s, d = Path(root) / f, dst / rel / f
            if str(rel / f) in writable:
                shutil.copyfile(s, d)
            else:
                os.link(s, d)


def one(rng: random.Random, demo: Path, out: Path, index: int) -> dict[str, Any]:
    model = rng.choice(sorted(p.name for p in demo.iterdir() if p.is_dir()))
    src = demo / model
    dst = out / f"{index:04d}-{model}"
    roll = rng.random()
    role = rng.choice([r for r in WEIGHTED if (src / r).is_dir()])
    weights = sorted((src / role).glob("*.safetensors"))
    if roll < 0.6 and weights:
        target = weights[0].relative_to(src)
        other_role = rng.choice([r for r in WEIGHTED if r != role])
        other = sorted((src / other_role).glob("*.safetensors"))[0]
        copy_model(src, dst, {str(target)})
        kind = mutate_weights(rng, dst / target, other)
        touched = [role]
    elif roll < 0.92:
        target = Path(role) / "config.json"
        copy_model(src, dst, {str(target)})
        kind = mutate_config(rng, dst / target, role)
        touched = [role]
    else:
        copy_model(src, dst, {"model_index.json"})
        kind = mutate_index(rng, dst / "model_index.json")
        touched = ["pipeline"]
    from core.check.detect import inspect
    record: dict[str, Any] = {"i": index, "model": model, "folder": str(dst), "mutation": kind, "touched": touched}
    start = time.perf_counter()
    try:
        report = inspect(str(dst))
        record["loadable"] = report.loadable
        record["codes"] = sorted({str(f.code) for f in report.errors})
    except BaseException as exc:  # noqa: BLE001 - the point is to see every escape
        record["crash"] = f"{type(exc).__name__}: {exc}"[:300] + traceback.format_exc()[-600:]
        record["loadable"] = None
    record["seconds"] = round(time.perf_counter() - start, 3)
    if record.get("loadable") is not True:
        shutil.rmtree(dst, ignore_errors=True)
    return record


def main() -> None:
    demo, out, seed, count, memory_mb = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
    limit = memory_mb * 2**20
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    rng = random.Random(seed)
    out.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        print(json.dumps(one(rng, demo, out, i)), flush=True)


if __name__ == "__main__":
    main()
