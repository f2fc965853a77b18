"""Quantized transformer files kept as they are in an assembled folder (GGUF, fp8 with ``--keep-fp8``).

Nothing is dequantized on disk: the file is hard-linked into ``transformer/`` (or
``transformer_2/``) when the output folder is on the same disk (no copy, no extra space), else
linked symbolically (the folder then needs the file where it is); with ``--move`` it is moved
(same disk only: never a silent copy). The plan says which. A move is a hard link while the
folder is written and the old name removed once the folder is complete (:func:`finish_moves`),
so a failure or Ctrl-C at any point leaves the file where it was. Beside it
goes a ``config.json`` written from our own tables (``core.fix.convert.keys.transformer_config``
on the file's tensor shapes), so diffusers never guesses the model. Usage (inside
:func:`core.fix.convert.plan_assembly` and :mod:`core.fix.convert.write`)::

    part = linked_part("transformer", Path("Wan2.2-TI2V-5B-Q4_K_M.gguf"), target)   # (Part, DitFacts)
    write_linked(partial_folder, part)
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from core.atomic import fsync_dir, same_disk
from core.check.dit import DitFacts, dit_facts_from_tensors, find_prefix
from core.check.filesource import LocalSource
from core.check.gguf_header import GGUFError, parse_gguf_header, quant_types_of, supported_types
from core.check.quantization import FP8_DTYPES, SCALE_SUFFIX, SCALED_MARK, fp8_findings
from core.check.safetensors_header import HeaderError, TensorInfo, read_header
from core.errors import WanError
from core.fix.convert.build import Component
from core.fix.convert.keys import transformer_config
from core.fix.convert.read import Part

LINKED = "linked"            # Part.kind of a file kept as it is, linked into the folder
MOVED = "moved"              # Part.kind of a file kept as it is, moved into the folder (--move)
KEPT = (LINKED, MOVED)
DIFFUSERS_VERSION = "0.42.1"


def is_quantized_file(path: Path) -> bool:
    """A .gguf, or a .safetensors holding fp8 weights (header only)."""
    if path.suffix.lower() == ".gguf":
        return True
    try:
        return any(t.dtype in FP8_DTYPES for t in read_header(path).tensors.values())
    except (HeaderError, OSError):
        return False


def fp8_scales_problem(path: Path) -> str | None:
    """The sentence (with its remedy) refusing an fp8 "scaled" transformer that lacks scales, else None.

    Kept in fp8 or converted to bf16, such a file gives noise: each unscaled weight is off by its scale.
    Usage: ``problem = fp8_scales_problem(Path("wan2.1_t2v_14B_fp8_scaled.safetensors"))``.
    """
    if path.suffix.lower() != ".safetensors":
        return None
    try:
        tensors = read_header(path).tensors
    except (HeaderError, OSError):
        return None                          # said by the part's own reader
    found = fp8_findings(tensors, path.name, "scaled" in path.name.lower())
    return f"{found[0].message} {found[0].remedy}" if found else None


def _tensors(path: Path, flag: str) -> tuple[dict[str, TensorInfo], str]:
    """The file's tensors (original names) and its format in words: GGUF and its main type (GGUF Q4_K), fp8 or
    fp8 scaled."""
    if path.suffix.lower() == ".gguf":
        src = LocalSource(str(path))
        try:
            header = parse_gguf_header(src, src.files[0].path, src.files[0].size)
        except GGUFError as exc:
            raise WanError(f"The file given as {flag} ({path.name}) {exc}.", "Download the .gguf file again.") from None
        if header.expected_file_size > src.files[0].size:
            raise WanError(f"The file given as {flag} ({path.name}) is cut short (an interrupted download).",
                           "Delete it and download it again.")
        bad = [t for t in quant_types_of(header) if t not in supported_types()]
        if bad:
            raise WanError(f"{path.name} stores weights as {', '.join(bad)}, which the installed diffusers cannot load.",
                           "Download another quantization (Q8_0, Q6_K, Q5_K_M, Q4_K_M or Q3_K_M).")
        return header.tensor_infos(), " ".join(["GGUF", *quant_types_of(header)[:1]])
    tensors = dict(read_header(path).tensors)
    scaled = any(n.endswith((SCALE_SUFFIX, SCALED_MARK)) for n in tensors)
    return tensors, "fp8 scaled" if scaled else "fp8"


def linked_part(role: str, path: Path, target: Path, move: bool = False) -> tuple[Part, DitFacts]:
    """The Part that keeps ``path`` as it is in ``target/role/`` (linked, or moved with ``move``), with its
    config; WanError when it is no Wan transformer, cannot be read, or cannot be moved there."""
    flag = "--" + role.replace("_", "-")
    tensors, fmt = _tensors(path, flag)
    facts = dit_facts_from_tensors(tensors)
    if facts is None or not facts.is_wan:
        raise WanError(f"The file given as {flag} is not a Wan transformer: {path.name}.",
                       "Name the Wan transformer file (.gguf or .safetensors) there.")
    prefix = find_prefix(tensors) or ""
    shapes = {n[len(prefix):]: t.shape for n, t in tensors.items() if n.startswith(prefix)}
    try:
        config = transformer_config(shapes, None)
    except (KeyError, ValueError) as exc:
        raise WanError(f"{path.name}: {exc if isinstance(exc, ValueError) else f'{exc} is missing'}",
                       "Check that the file is a whole Wan transformer.") from None
    config = {"_class_name": "WanTransformer3DModel", "_diffusers_version": DIFFUSERS_VERSION, **config}
    how = move_kind(path, target, flag) if move else link_kind(path, target)
    size = path.stat().st_size
    label = f"{path.name} ({fmt}, {size / 1e9:.2f} GB; {how})"
    short = "moved" if move else how.split(",")[0].split(" (")[0]      # hard-linked / linked symbolically
    return Part(role, MOVED if move else LINKED, (str(path.resolve()),), label, 0, config,
                note=f"kept as {fmt}, {short}"), facts


def link_kind(path: Path, target: Path) -> str:
    """How the file will appear in the folder: a hard link on the same disk, else a symbolic link."""
    return ("hard-linked, not copied: no extra disk space" if _same_disk(path, target) else
            "linked symbolically (another disk): keep the file where it is")


def move_kind(path: Path, target: Path, flag: str) -> str:
    """``--move``: the words for a move, or WanError when it would be a copy or cannot remove the old name."""
    if path.is_symlink():      # moving the file it points to would leave the user's link dangling
        raise WanError(f"{path.name} is a link to {path.resolve()}; --move moves files, not links.",
                       "Give the file itself with --move, or leave out --move to link it.")
    if not _same_disk(path, target):
        raise WanError(f"--move keeps {path.name} from being copied, but the output folder is on another disk than "
                       f"the file given as {flag}: moving it there would copy {path.stat().st_size / 1e9:.1f} GB.",
                       "Choose an output folder (--out) on the same disk as the file, or leave out --move to link "
                       "it (a symbolic link; keep the file where it is).")
    if not os.access(path.parent, os.W_OK):
        raise WanError(f"--move would take {path.name} out of {path.parent}, which you may not change.",
                       "Leave out --move to link the file instead, or move it yourself first.")
    return f"moved, not copied: it leaves {path.parent} once the folder is complete"


def _same_disk(path: Path, target: Path) -> bool:
    return same_disk(path, target.parent)


def linked_component(part: Part) -> Component:
    return Component(part.role, "diffusers", "WanTransformer3DModel", dict(part.config or {}), ())


def write_linked(folder: Path, part: Part) -> None:
    """``folder/role/config.json`` and the file, hard-linked (same disk) or linked symbolically.

    A file to move (``part.kind == MOVED``) is hard-linked too; :func:`finish_moves` removes its old name
    once the folder is complete. Where hard links are not possible it is left for finish_moves to rename.
    """
    source = Path(part.files[0])
    out = folder / part.role
    out.mkdir()
    (out / "config.json").write_text(json.dumps(part.config, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    try:
        os.link(source, out / source.name)
    except OSError:          # another disk (EXDEV), or a file system without hard links
        if part.kind != MOVED:
            os.symlink(source, out / source.name)


def finish_moves(target: Path, parts: tuple[Part, ...]) -> list[str]:
    """After the folder ``target`` is complete: each moved file's old name removed (or the file renamed in,
    where the disk has no hard links). Returns a sentence for each file that could not be moved (it is then
    in both places, or still only in the old one: never lost)."""
    problems = []
    for part in parts:
        if part.kind != MOVED:
            continue
        source = Path(part.files[0])
        placed = target / part.role / source.name
        try:
            if placed.exists() and os.path.samefile(placed, source):
                os.unlink(source)
            elif not placed.exists():
                os.rename(source, placed)
            fsync_dir(source.parent)
        except OSError as exc:
            problems.append(f"{source.name} could not be taken out of {source.parent} ({exc.strerror or exc}); "
                            f"the folder uses it from {placed}, and the old name can be deleted by hand.")
    return problems


def placed(target: Path, part: Part) -> str:
    """After the write: how the kept file of ``part`` is in the folder ``target``, read from the disk (moved,
    hard-linked or linked symbolically; a move whose old name could not be removed says so)."""
    source = Path(part.files[0])
    where = target / part.role / source.name
    if where.is_symlink():
        return f"{source.name} linked symbolically into {part.role}/ (keep it in {source.parent})"
    if part.kind == MOVED and not source.exists():
        return f"{source.name} moved into {part.role}/, not copied"
    if part.kind == MOVED:
        return f"{source.name} hard-linked into {part.role}/ but still in {source.parent} too (no extra space; " \
               "delete the old name by hand to finish the move)"
    return f"{source.name} hard-linked into {part.role}/, not copied (no extra disk space)"


def step(part: Part) -> str:
    verb = "Move" if part.kind == MOVED else "Keep"
    return f"{verb} {part.label} as it is into {part.role}/, with a config.json from the known Wan shapes " \
           "(WanTransformer3DModel)."

