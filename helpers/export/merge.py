"""Folding a LoRA adapter into the base weights, and why the base must not be 4-bit.

``merge_and_unload`` replaces every adapted ``W`` by ``W + (alpha / r) * B @ A`` and drops
the adapter: one plain checkpoint that any runtime loads (transformers, vLLM, TGI, and
the GGUF and ONNX converters). Merged into a *4-bit* base, the sum is rounded back to
the 4-bit grid, and most of the small LoRA update is rounded away:
``update_survival`` measures how much.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import torch

from ..models import is_quantized


def merge_adapter(base_model, adapter_dir: str | Path):
    """Load the adapter on ``base_model`` (fp32) and merge it in: a plain transformers model."""
    from peft import PeftModel

    if is_quantized(base_model):
        raise ValueError(
            "merge into a full-precision base: load it with quantization=None. Merged into "
            "4-bit or 8-bit weights, the LoRA update is rounded to the quantization grid "
            "(see helpers.export.merge.update_survival)."
        )
    model = PeftModel.from_pretrained(base_model, str(adapter_dir))
    return model.merge_and_unload().eval()


def lora_deltas(adapter_dir: str | Path) -> dict[str, torch.Tensor]:
    """Each adapted weight's update ``(alpha / r) * B @ A``, keyed by the base weight's name."""
    import json

    from safetensors.torch import load_file

    adapter_dir = Path(adapter_dir)
    config = json.loads((adapter_dir / "adapter_config.json").read_text())
    scale = config["lora_alpha"] / config["r"]
    tensors = load_file(str(adapter_dir / "adapter_model.safetensors"))
    deltas = {}
    for key, a in tensors.items():
        if ".lora_A." not in key:
            continue
        b = tensors[key.replace(".lora_A.", ".lora_B.")]
        name = key.replace("base_model.model.", "", 1).replace(".lora_A.weight", ".weight")
        deltas[name] = scale * (b.float() @ a.float())
    return deltas


def nf4_round_trip(weight: torch.Tensor, blocksize: int = 64) -> torch.Tensor:
    """``weight`` quantized to bitsandbytes NF4 (blocks of 64) and back: the 4-bit grid."""
    import bitsandbytes.functional as F

    packed, state = F.quantize_4bit(
        weight.float().contiguous(), blocksize=blocksize, quant_type="nf4"
    )
    return F.dequantize_4bit(packed, state).float()


def update_survival(base_weight: torch.Tensor, delta: torch.Tensor) -> dict[str, float]:
    """What is left of a LoRA update merged into the 4-bit version of ``base_weight``.

    The 4-bit model computes with ``Q(W)`` (``Q`` = NF4 round trip). With the adapter on,
    it computes ``Q(W) + delta``; merged into 4-bit, ``Q(Q(W) + delta)``. Returns
    ``kept`` (how much of the update survives in its own direction:
    <merged update, delta> / |delta|^2, 1 = all of it) and ``error``
    (|merged update - delta| / |delta|, 0 = exact).
    """
    grid = nf4_round_trip(base_weight)
    merged = nf4_round_trip(grid + delta)
    kept_update = merged - grid
    norm2 = float((delta * delta).sum())
    return {
        "kept": float((kept_update * delta).sum()) / norm2,
        "error": float((kept_update - delta).norm()) / norm2**0.5,
    }


def folder_size(path: str | Path) -> int:
    """Bytes of every file under ``path`` (a checkpoint folder or a single file)."""
    path = Path(path)
    if path.is_file():
        return path.stat().st_size
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def list_files(path: str | Path) -> list[tuple[str, int]]:
    """(name, bytes) of the files in a folder, sorted by name."""
    return sorted((f.name, f.stat().st_size) for f in Path(path).iterdir() if f.is_file())


def timed(fn, *args, **kwargs):
    """(result, seconds) of one call."""
    start = time.perf_counter()
    result = fn(*args, **kwargs)
    return result, time.perf_counter() - start


def save_merged(model, tokenizer, out: str | Path) -> Path:
    """Save the merged model as safetensors with its tokenizer (and chat template)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    return out


def has_only_safetensors(path: str | Path) -> bool:
    """True when the folder's weights are safetensors only (no pickle-based .bin/.pt)."""
    names = os.listdir(path)
    return any(n.endswith(".safetensors") for n in names) and not any(
        n.endswith((".bin", ".pt", ".pth", ".pkl")) for n in names
    )
