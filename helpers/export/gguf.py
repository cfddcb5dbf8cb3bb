"""GGUF, the single-file format of llama.cpp, Ollama and LM Studio, written with ``gguf``.

A GGUF file carries the weights *and* what a runtime needs to chat: the tokenizer
(tokens, merges, special ids), the chat template and the end-of-sequence token. Lose
those on the way and the exported model "never stops" or answers in the wrong format.
``write_gguf`` writes all of them from a transformers model and its tokenizer with the
pinned ``gguf`` package (llama.cpp's own Python writer); transformers reads the file
back (``load_gguf``), which is how the chapter proves nothing was lost.
"""

from __future__ import annotations

import json
from pathlib import Path
from unittest import mock

import numpy as np

FILE_TYPES = ("F32", "F16", "Q8_0")
"""The tensor types ``write_gguf`` writes (the ones transformers can read back exactly)."""


def _permute(weight: np.ndarray, heads: int) -> np.ndarray:
    """llama.cpp's rotary layout for q/k rows: pairs (i, i + d/2) become neighbours."""
    rows = weight.shape[0]
    return (
        weight.reshape(heads, 2, rows // heads // 2, *weight.shape[1:])
        .swapaxes(1, 2)
        .reshape(weight.shape)
    )


def tokenizer_fields(tokenizer) -> dict:
    """The tokenizer as GGUF stores a byte-level BPE (llama.cpp's "gpt2" model)."""
    data = json.loads(tokenizer.backend_tokenizer.to_str())
    if data["model"]["type"] != "BPE":
        raise ValueError(
            f"write_gguf handles byte-level BPE tokenizers; this one is {data['model']['type']}. "
            "Use llama.cpp's convert_hf_to_gguf.py for other tokenizers."
        )
    size = len(tokenizer)
    tokens = tokenizer.convert_ids_to_tokens(list(range(size)))
    special = set(tokenizer.all_special_ids) | {
        t["id"] for t in data.get("added_tokens", []) if t.get("special")
    }
    types = [3 if i in special else 1 for i in range(size)]  # 3 = CONTROL, 1 = NORMAL
    merges = [m if isinstance(m, str) else " ".join(m) for m in data["model"]["merges"]]
    return {"tokens": tokens, "types": types, "merges": merges}


def write_gguf(model, tokenizer, path: str | Path, file_type: str = "F16", name: str = "") -> Path:
    """Write a Llama-family transformers model (SmolLM2) as a GGUF file; returns the path.

    file_type: "F32", "F16" or "Q8_0" for the 2-D weights (norms stay F32, as llama.cpp
    keeps them). The tokenizer, its chat template and the BOS/EOS/PAD ids go in the metadata.
    """
    import gguf

    if file_type not in FILE_TYPES:
        raise ValueError(f"file_type must be one of {FILE_TYPES}, got {file_type!r}")
    config = model.config
    if config.model_type != "llama":
        raise ValueError(
            f"write_gguf maps Llama tensor names; got model_type {config.model_type!r}. "
            "Use llama.cpp's convert_hf_to_gguf.py for other architectures."
        )
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    n_layers = config.num_hidden_layers
    heads, kv_heads = config.num_attention_heads, config.num_key_value_heads
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // heads
    rope = getattr(config, "rope_parameters", None) or {}
    theta = rope.get("rope_theta", getattr(config, "rope_theta", 10000.0))
    ftype = {
        "F32": gguf.LlamaFileType.ALL_F32,
        "F16": gguf.LlamaFileType.MOSTLY_F16,
        "Q8_0": gguf.LlamaFileType.MOSTLY_Q8_0,
    }[file_type]

    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_name(name or "model")
    writer.add_block_count(n_layers)
    writer.add_context_length(config.max_position_embeddings)
    writer.add_embedding_length(config.hidden_size)
    writer.add_feed_forward_length(config.intermediate_size)
    writer.add_head_count(heads)
    writer.add_head_count_kv(kv_heads)
    writer.add_rope_freq_base(float(theta))
    writer.add_rope_dimension_count(head_dim)
    writer.add_layer_norm_rms_eps(config.rms_norm_eps)
    writer.add_vocab_size(config.vocab_size)
    writer.add_file_type(ftype)

    vocab = tokenizer_fields(tokenizer)
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre(
        "smollm" if "smollm" in str(config.name_or_path).lower() else "default"
    )
    writer.add_token_list(vocab["tokens"])
    writer.add_token_types(vocab["types"])
    writer.add_token_merges(vocab["merges"])
    writer.add_bos_token_id(tokenizer.bos_token_id)
    writer.add_eos_token_id(tokenizer.eos_token_id)
    writer.add_pad_token_id(tokenizer.pad_token_id)
    if tokenizer.unk_token_id is not None:
        writer.add_unk_token_id(tokenizer.unk_token_id)
    writer.add_add_bos_token(False)
    if tokenizer.chat_template:
        writer.add_chat_template(tokenizer.chat_template)

    names = gguf.get_tensor_name_map(gguf.MODEL_ARCH.LLAMA, n_layers)
    tied = getattr(config, "tie_word_embeddings", False)
    for key, tensor in model.state_dict().items():
        if tied and key == "lm_head.weight":
            continue  # llama.cpp reuses token_embd when output.weight is absent
        target = names.get_name(key, try_suffixes=(".weight", ".bias"))
        if target is None:
            raise ValueError(f"no GGUF name for tensor {key!r}")
        data = tensor.detach().float().cpu().numpy()
        if key.endswith("q_proj.weight"):
            data = _permute(data, heads)
        elif key.endswith("k_proj.weight"):
            data = _permute(data, kv_heads)
        if data.ndim == 1 or file_type == "F32":
            writer.add_tensor(target, data.astype(np.float32))
        elif file_type == "F16":
            writer.add_tensor(target, data.astype(np.float16))
        else:
            qtype = gguf.GGMLQuantizationType.Q8_0
            writer.add_tensor(target, gguf.quants.quantize(data, qtype), raw_dtype=qtype)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def read_metadata(path: str | Path, keys: tuple[str, ...] | None = None) -> dict:
    """Scalar and string metadata of a GGUF file (token lists are summarised by length)."""
    import gguf

    reader = gguf.GGUFReader(str(path))
    out = {}
    for key, field in reader.fields.items():
        if keys is not None and key not in keys:
            continue
        value = field.contents()
        out[key] = f"<{len(value)} items>" if isinstance(value, list) and len(value) > 16 else value
    return out


def tensor_types(path: str | Path) -> dict[str, int]:
    """How many tensors of each type (F32, F16, Q8_0, ...) the file holds."""
    import gguf

    counts: dict[str, int] = {}
    for tensor in gguf.GGUFReader(str(path)).tensors:
        counts[tensor.tensor_type.name] = counts.get(tensor.tensor_type.name, 0) + 1
    return counts


def load_gguf(path: str | Path):
    """Read a GGUF file back with transformers (de-quantized to fp32): (model, tokenizer)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    path = Path(path)
    tokenizer = AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
    # transformers' GGUF reader draws its own tqdm bar (not switched off by the call above):
    # timings on stderr that differ on every run
    with mock.patch("transformers.modeling_gguf_pytorch_utils.tqdm", lambda items, **_: items):
        model = AutoModelForCausalLM.from_pretrained(
            path.parent, gguf_file=path.name, dtype=torch.float32
        )
    model.eval()
    return model, tokenizer


def _render(tokenizer, messages, generation_prompt: bool) -> str:
    return tokenizer.apply_chat_template(
        messages, tokenize=False, add_generation_prompt=generation_prompt
    )


def template_parts(tokenizer) -> dict[str, str]:
    """Cut the tokenizer's chat template into the pieces a Go template needs.

    Rendered with marker texts, a template shows how it wraps one message
    (``prefix`` + role + ``middle`` + content + ``suffix``), what opens the assistant's turn
    (``generation``), and the system prompt it adds when none is given (``default_system``).
    """
    role, content = "ROLEMARK", "CONTENTMARK"
    one = _render(tokenizer, [{"role": "system", "content": content}], False)
    prefix, rest = one.split("system", 1)
    middle, suffix = rest.split(content, 1)
    system_only = [{"role": "system", "content": content}]
    with_prompt = _render(tokenizer, system_only, True)
    generation = with_prompt[len(one) :]
    default_system = ""
    plain = _render(tokenizer, [{"role": "user", "content": content}], False)
    head = plain.split(f"{prefix}user{middle}", 1)[0]
    if head.startswith(f"{prefix}system{middle}"):
        default_system = head[len(f"{prefix}system{middle}") : -len(suffix)]
    del role
    return {
        "prefix": prefix,
        "middle": middle,
        "suffix": suffix,
        "generation": generation,
        "default_system": default_system,
    }


def ollama_modelfile(tokenizer, gguf_file: str, *, temperature: float = 0.0) -> str:
    """An Ollama ``Modelfile`` for a GGUF file: FROM, TEMPLATE, SYSTEM, PARAMETER stop.

    The TEMPLATE (Go template syntax) is derived from the tokenizer's own chat template,
    and the stop parameter is the end-of-turn token, so Ollama formats prompts exactly as
    in training and stops where the model ends its answer. The TEMPLATE loops over
    ``.Messages`` only: Ollama puts the system prompt (the request's, or else SYSTEM) in
    ``.Messages`` as a system message *and* in ``.System``, so rendering ``.System`` as well
    would write it twice.
    """
    parts = template_parts(tokenizer)
    p, m, s = parts["prefix"], parts["middle"], parts["suffix"]
    template = (
        f"{{{{- range .Messages }}}}{p}{{{{ .Role }}}}{m}{{{{ .Content }}}}{s}{{{{ end }}}}"
        f"{parts['generation']}"
    )
    lines = [f"FROM ./{gguf_file}", f'TEMPLATE """{template}"""']
    if parts["default_system"]:
        lines.append(f'SYSTEM """{parts["default_system"]}"""')
    stops = [tokenizer.eos_token]
    end_of_turn = s.strip()
    if end_of_turn and end_of_turn not in stops:
        stops.append(end_of_turn)
    lines += [f'PARAMETER stop "{stop}"' for stop in stops]
    lines.append(f"PARAMETER temperature {temperature:g}")
    return "\n".join(lines) + "\n"
