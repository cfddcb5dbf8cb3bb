"""Code that runs inside LitGPT's own environment (.venv-litgpt), never in the course's.

LitGPT cannot share the course's virtual environment (see helpers/litgpt.py), so the
course calls it as a subprocess: ``.venv-litgpt/bin/python helpers/litgpt_worker.py
TASK JSON``. This module imports only the standard library, torch and litgpt; it reads
its arguments as one JSON object and prints its result as one JSON line.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

# The HF config.json keys that decide the shapes of a Llama-style model, and LitGPT's names.
HF_TO_LIT_CONFIG = {
    "num_hidden_layers": "n_layer",
    "hidden_size": "n_embd",
    "num_attention_heads": "n_head",
    "num_key_value_heads": "n_query_groups",
    "head_dim": "head_size",
    "intermediate_size": "intermediate_size",
    "vocab_size": "vocab_size",
    "rms_norm_eps": "norm_eps",
    "max_position_embeddings": "block_size",
}
TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "generation_config.json",
    "config.json",
    "chat_template.jinja",
)


def lit_overrides(hf_config: dict) -> dict:
    """LitGPT Config fields that make a named config match this HF config's shapes."""
    out = {lit: hf_config[hf] for hf, lit in HF_TO_LIT_CONFIG.items() if hf in hf_config}
    out["padded_vocab_size"] = hf_config["vocab_size"]
    rope = hf_config.get("rope_parameters") or {}
    if "rope_theta" in rope or "rope_theta" in hf_config:
        out["rope_base"] = int(rope.get("rope_theta", hf_config.get("rope_theta")))
    return out


def convert(hf_dir: str, out_dir: str, name: str) -> dict:
    """Convert a HF Llama-style checkpoint into LitGPT's format with the named config's
    architecture and the shapes of the folder's own config.json (for a shrunken model,
    which ``litgpt convert_to_litgpt`` cannot do: it takes every shape from the name)."""
    import torch
    from litgpt import Config
    from litgpt.scripts.convert_hf_checkpoint import copy_weights_hf_llama
    from litgpt.utils import save_config
    from safetensors.torch import load_file

    hf, out = Path(hf_dir), Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    hf_config = json.loads((hf / "config.json").read_text())
    config = Config.from_name(name, **lit_overrides(hf_config))
    state, qkv = {}, {}
    copy_weights_hf_llama(config, qkv, state, load_file(str(hf / "model.safetensors")))
    torch.save(state, out / "lit_model.pth")
    save_config(config, out)
    for file in TOKENIZER_FILES:
        if (hf / file).exists() and not (out / file).exists():
            shutil.copy(hf / file, out / file)
    return {"checkpoint": str(out), "tensors": len(state)}


def _load(checkpoint_dir: str, file: str = "lit_model.pth"):
    import torch
    from litgpt import GPT, Config

    checkpoint = Path(checkpoint_dir)
    config = Config.from_file(checkpoint / "model_config.yaml")
    model = GPT(config)
    state = torch.load(checkpoint / file, map_location="cpu", weights_only=True)
    model.load_state_dict(state.get("model", state))
    return model.eval()


def logits(checkpoint_dir: str, token_ids: list[int], out: str) -> dict:
    """LitGPT's logits for one sequence of token ids, saved with torch.save to `out`."""
    import torch

    model = _load(checkpoint_dir)
    with torch.no_grad():
        result = model(torch.tensor([token_ids]))[0].float()
    torch.save(result, out)
    return {"shape": list(result.shape)}


def generate(checkpoint_dir: str, prompts: list[str], max_new_tokens: int) -> dict:
    """Greedy answers (temperature 0) for already-formatted prompts, with LitGPT's own
    generate function and KV cache; the answer stops at the tokenizer's end token."""
    import torch
    from litgpt.generate.base import generate as lit_generate
    from litgpt.tokenizer import Tokenizer

    model = _load(checkpoint_dir)
    tokenizer = Tokenizer(checkpoint_dir)
    answers = []
    for prompt in prompts:
        encoded = tokenizer.encode(prompt)
        model.max_seq_length = len(encoded) + max_new_tokens
        model.set_kv_cache(batch_size=1)
        with torch.no_grad():
            out = lit_generate(
                model,
                encoded,
                max_returned_tokens=len(encoded) + max_new_tokens,
                temperature=0.0,
                eos_id=tokenizer.eos_id,
            )
        model.clear_kv_cache()
        new = out[len(encoded) :]
        if len(new) and int(new[-1]) == tokenizer.eos_id:
            new = new[:-1]
        answers.append(tokenizer.decode(new))
    return {"answers": answers}


def prompt_style(name: str, prompt: str, sys_prompt: str | None = None) -> dict:
    """The text a LitGPT prompt style makes of one prompt."""
    from litgpt.prompts import PromptStyle

    style = PromptStyle.from_name(name)
    return {"text": style.apply(prompt, sys_prompt=sys_prompt)}


def threads() -> dict:
    """How many threads torch computes with in LitGPT's environment (for a fair comparison)."""
    import torch

    return {"torch_threads": torch.get_num_threads()}


TASKS = {
    "convert": convert,
    "logits": logits,
    "generate": generate,
    "prompt_style": prompt_style,
    "threads": threads,
}


def main(argv: list[str]) -> int:
    if len(argv) != 2 or argv[0] not in TASKS:
        print(f"usage: python helpers/litgpt_worker.py {{{','.join(TASKS)}}} JSON", file=sys.stderr)
        return 2
    result = TASKS[argv[0]](**json.loads(argv[1]))
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
