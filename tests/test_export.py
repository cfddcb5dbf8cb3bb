"""Exports on the tiny model: merge, ONNX with a KV cache (fp32 and 8-bit), GGUF, Modelfile."""

from __future__ import annotations

import types

import numpy as np
import pytest
import torch

import helpers
from helpers.export import gguf as gguf_export
from helpers.export import merge
from helpers.export import onnx as onnx_export


def fresh_tiny():
    return helpers.load_model("tiny-random-smollm2", device="cpu")


@pytest.fixture(scope="module")
def onnx_file(tiny, tmp_path_factory):
    model, _ = tiny
    return onnx_export.export(model, tmp_path_factory.mktemp("onnx") / "tiny.onnx")


PROMPT = "Turn into Yoda speech: The knight will guard the old bridge."


def test_onnx_cache_steps_match_a_full_pytorch_forward(tiny, onnx_file):
    model, tokenizer = tiny
    ids = tokenizer(PROMPT)["input_ids"]
    sess = onnx_export.session(onnx_file)
    with torch.no_grad():
        full = model(input_ids=torch.tensor([ids])).logits[0].numpy()
    keys, values = (t.numpy() for t in onnx_export.empty_cache(model.config))
    split = 5
    logits, keys, values = onnx_export.run(sess, [ids[:split]], keys, values)
    steps = [logits[0]]
    for token in ids[split:]:  # one token at a time through the cache
        logits, keys, values = onnx_export.run(sess, [[token]], keys, values)
        steps.append(logits[0])
    assert keys.shape[3] == len(ids)
    assert np.abs(np.concatenate(steps) - full).max() < 1e-4
    assert onnx_export.max_logit_difference(model, sess, ids) < 1e-4


def test_onnx_greedy_loop_gives_pytorch_tokens(tiny, onnx_file):
    model, tokenizer = tiny
    ids = tokenizer(PROMPT)["input_ids"]
    sess = onnx_export.session(onnx_file)
    got, per_token = onnx_export.greedy(sess, model.config, ids, 8)
    expected, _ = onnx_export.torch_greedy(model, ids, 8)
    reference = model.generate(torch.tensor([ids]), max_new_tokens=8, do_sample=False)
    assert got == expected == reference[0, len(ids) :].tolist()
    assert per_token > 0
    # stopping: with the first generated token as "end of sequence" the loop stops at once
    stopped, _ = onnx_export.greedy(sess, model.config, ids, 8, eos_token_id=got[0])
    assert stopped == got[:1]


def test_8bit_blocks_round_trip_within_half_a_step():
    rng = np.random.default_rng(0)
    weight = rng.normal(size=(200, 24)).astype(np.float32)  # K=200: the last block is padded
    blocks, scales = onnx_export.quantize_blocks(weight, block_size=64)
    assert blocks.shape == (24, 4, 64) and blocks.dtype == np.uint8 and scales.shape == (24, 4)
    back = onnx_export.dequantize_blocks(blocks, scales, 200)
    step = np.repeat(scales.T, 64, axis=0)[:200]
    assert np.all(np.abs(back - weight) <= step / 2 + 1e-7)


def test_int8_onnx_is_smaller_and_close(tiny, onnx_file, tmp_path):
    model, tokenizer = tiny
    q8 = onnx_export.quantize_int8(onnx_file, tmp_path / "tiny-int8.onnx")
    assert merge.folder_size(q8) < 0.8 * merge.folder_size(onnx_file)
    sess = onnx_export.session(q8)
    ops = {node.op_type for node in __import__("onnx").load(str(q8)).graph.node}
    assert "MatMulNBits" in ops
    diff = onnx_export.max_logit_difference(model, sess, tokenizer(PROMPT)["input_ids"])
    assert 0 < diff < 0.1


def test_gguf_round_trip_keeps_weights_tokenizer_and_template(tiny, tmp_path):
    model, tokenizer = tiny
    path = gguf_export.write_gguf(model, tokenizer, tmp_path / "tiny-f32.gguf", "F32")
    meta = gguf_export.read_metadata(
        path, ("tokenizer.ggml.eos_token_id", "tokenizer.chat_template", "llama.block_count")
    )
    assert meta["tokenizer.ggml.eos_token_id"] == tokenizer.convert_tokens_to_ids("<|im_end|>")
    assert meta["tokenizer.chat_template"] == tokenizer.chat_template
    assert meta["llama.block_count"] == model.config.num_hidden_layers
    back, back_tokenizer = gguf_export.load_gguf(path)
    ids = torch.tensor([tokenizer(PROMPT)["input_ids"]])
    with torch.no_grad():
        assert torch.equal(model(ids).logits, back(ids).logits)  # q/k permutation undone
    assert back_tokenizer(PROMPT)["input_ids"] == ids[0].tolist()
    assert back_tokenizer.eos_token == tokenizer.eos_token


def test_gguf_q8_0_is_smaller_and_close(tiny, tmp_path):
    model, tokenizer = tiny
    f32 = gguf_export.write_gguf(model, tokenizer, tmp_path / "a.gguf", "F32")
    q8 = gguf_export.write_gguf(model, tokenizer, tmp_path / "b.gguf", "Q8_0")
    assert gguf_export.tensor_types(q8) == {"Q8_0": 15, "F32": 5}  # 2-D weights vs norms
    assert merge.folder_size(q8) < 0.5 * merge.folder_size(f32)
    back, _ = gguf_export.load_gguf(q8)
    ids = torch.tensor([tokenizer(PROMPT)["input_ids"]])
    with torch.no_grad():
        assert 0 < (model(ids).logits - back(ids).logits).abs().max() < 0.1
    with pytest.raises(ValueError, match="file_type"):
        gguf_export.write_gguf(model, tokenizer, tmp_path / "c.gguf", "Q4_K")


def test_gguf_tokenizer_fields_match_the_published_smollm2_file(tiny):
    import gguf

    from helpers.models import _gguf_path, _spec

    reader = gguf.GGUFReader(str(_gguf_path(_spec("smollm2-135m-instruct"))))
    fields = gguf_export.tokenizer_fields(tiny[1])
    assert fields["tokens"] == reader.fields["tokenizer.ggml.tokens"].contents()
    assert fields["types"] == reader.fields["tokenizer.ggml.token_type"].contents()
    assert fields["merges"] == reader.fields["tokenizer.ggml.merges"].contents()


def test_modelfile_follows_the_chat_template(tiny):
    _, tokenizer = tiny
    text = gguf_export.ollama_modelfile(tokenizer, "yoda-q8_0.gguf")
    lines = text.splitlines()
    assert lines[0] == "FROM ./yoda-q8_0.gguf"
    assert 'PARAMETER stop "<|im_end|>"' in lines
    assert "PARAMETER temperature 0" in lines
    assert "{{- range .Messages }}<|im_start|>{{ .Role }}\n{{ .Content }}<|im_end|>\n" in text
    # Ollama passes the system prompt in .Messages too: rendering .System would repeat it
    assert ".System" not in text
    assert text.count('"""') == 4  # TEMPLATE and SYSTEM
    assert "SYSTEM" in text and "SmolLM" in text  # the template's default system prompt
    # rendering the Go template by hand gives what the tokenizer renders
    parts = gguf_export.template_parts(tokenizer)
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}]
    by_hand = "".join(
        f"{parts['prefix']}{m['role']}{parts['middle']}{m['content']}{parts['suffix']}"
        for m in messages
    )
    rendered = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    assert by_hand + parts["generation"] == rendered


def test_merge_equals_the_adapter_and_refuses_a_quantized_base(tmp_path):
    from peft import LoraConfig, get_peft_model

    model, tokenizer = fresh_tiny()
    config = LoraConfig(r=4, lora_alpha=8, target_modules="all-linear", init_lora_weights=False)
    torch.manual_seed(0)
    adapted = get_peft_model(model, config)
    adapted.save_pretrained(tmp_path / "adapter")
    ids = torch.tensor([tokenizer(PROMPT)["input_ids"]])
    with torch.no_grad():
        expected = adapted(ids).logits
    merged = merge.merge_adapter(fresh_tiny()[0], tmp_path / "adapter")
    assert not hasattr(merged, "peft_config")
    with torch.no_grad():
        assert (merged(ids).logits - expected).abs().max() < 1e-4
    deltas = merge.lora_deltas(tmp_path / "adapter")
    assert len(deltas) == 2 * 7
    name = "model.layers.0.self_attn.q_proj.weight"
    base = fresh_tiny()[0].state_dict()[name]
    assert torch.allclose(base + deltas[name], merged.state_dict()[name], atol=1e-6)
    out = merge.save_merged(merged, tokenizer, tmp_path / "merged")
    assert merge.has_only_safetensors(out)
    with pytest.raises(ValueError, match="full-precision"):
        merge.merge_adapter(types.SimpleNamespace(is_loaded_in_4bit=True), tmp_path / "adapter")


def test_a_small_update_is_rounded_away_by_4bit_merging():
    torch.manual_seed(0)
    weight = torch.randn(128, 256) * 0.05
    small = 1e-3 * torch.randn(128, 4) @ torch.randn(4, 256) * 0.1
    large = 50 * small
    lost, kept = merge.update_survival(weight, small), merge.update_survival(weight, large)
    assert lost["error"] > 0.9 and lost["kept"] < 0.1  # rounded away
    assert kept["error"] < 0.5 and kept["kept"] > 0.9
