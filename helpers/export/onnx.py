"""ONNX export of a causal LM with a KV cache, and a greedy loop on onnxruntime.

``torch.onnx.export`` cannot trace transformers' ``Cache`` objects, so a small wrapper
takes the past keys and values as two stacked tensors ``[layers, batch, kv_heads, past,
head_dim]`` and returns the new ones stacked the same way. The legacy (TorchScript)
exporter is used: it needs nothing beyond torch and is several times faster here than
the dynamo exporter (which also needs the ``onnxscript`` package).
"""

from __future__ import annotations

import time
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

INPUTS = ("input_ids", "past_keys", "past_values")
OUTPUTS = ("logits", "present_keys", "present_values")


class StackedCacheLM(nn.Module):
    """A causal LM whose KV cache goes in and out as two plain tensors (exportable)."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, input_ids, past_keys, past_values):
        from transformers import DynamicCache

        cache = DynamicCache()
        for layer in range(past_keys.shape[0]):
            cache.update(past_keys[layer], past_values[layer], layer)
        past = past_keys.shape[3]
        seq = input_ids.shape[1]
        positions = torch.arange(seq, device=input_ids.device).unsqueeze(0) + past
        mask = torch.ones(input_ids.shape[0], past + seq, dtype=torch.long)
        out = self.model(
            input_ids=input_ids,
            attention_mask=mask,
            position_ids=positions,
            past_key_values=cache,
            use_cache=True,
        )
        cache = out.past_key_values
        keys = torch.stack([cache.layers[i].keys for i in range(len(cache.layers))])
        values = torch.stack([cache.layers[i].values for i in range(len(cache.layers))])
        return out.logits, keys, values


def empty_cache(config, batch: int = 1, length: int = 0, dtype=torch.float32):
    """Past keys and values of ``length`` positions (zeros), shaped as the wrapper expects."""
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    shape = (config.num_hidden_layers, batch, config.num_key_value_heads, length, head_dim)
    return torch.zeros(shape, dtype=dtype), torch.zeros(shape, dtype=dtype)


def export(model, path: str | Path, *, opset: int = 17) -> Path:
    """Write ``model`` (fp32, eval mode) as an ONNX graph with a KV cache; returns the path.

    Inputs: input_ids [batch, seq], past_keys/past_values [layers, batch, kv_heads, past,
    head_dim] (past may be 0 for the first call). Outputs: logits and the new stacked cache.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    model = model.eval()
    wrapper = StackedCacheLM(model)
    ids = torch.tensor([[1, 2, 3]])
    keys, values = empty_cache(model.config, length=2)
    axes = {
        "input_ids": {0: "batch", 1: "seq"},
        "past_keys": {1: "batch", 3: "past"},
        "past_values": {1: "batch", 3: "past"},
        "logits": {0: "batch", 1: "seq"},
        "present_keys": {1: "batch", 3: "total"},
        "present_values": {1: "batch", 3: "total"},
    }
    with warnings.catch_warnings(), torch.no_grad():
        # tracing warns about Python values it freezes (shapes it reads); the dynamic axes
        # above keep the ones that matter symbolic, and the round-trip test checks the graph
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        # torch >= 2.9 calls this path legacy; the course keeps it knowingly (seconds, not
        # minutes, and no onnxscript): see ACKNOWLEDGED in tools/drift.py and chapter 08
        warnings.filterwarnings(
            "ignore", message="You are using the legacy TorchScript-based ONNX export"
        )
        # ... and that path's own use of a logging helper torch deprecated
        warnings.filterwarnings("ignore", message="The feature will be removed")
        # gathers by position ids, which are never negative here; the parity tests (logits
        # step by step, greedy tokens) would catch a wrong graph
        warnings.filterwarnings("ignore", message="Exporting aten::index operator")
        torch.onnx.export(
            wrapper,
            (ids, keys, values),
            str(path),
            input_names=list(INPUTS),
            output_names=list(OUTPUTS),
            dynamic_axes=axes,
            opset_version=opset,
            dynamo=False,
        )
    return path


def session(path: str | Path, threads: int = 1):
    """An onnxruntime CPU session (one intra-op thread by default: stable timings)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 3  # errors only: keep notebook stderr clean
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def run(sess, input_ids, past_keys, past_values):
    """One forward pass on onnxruntime: (logits, present_keys, present_values) as numpy."""
    feed = {
        "input_ids": np.asarray(input_ids, dtype=np.int64),
        "past_keys": np.asarray(past_keys, dtype=np.float32),
        "past_values": np.asarray(past_values, dtype=np.float32),
    }
    return sess.run(list(OUTPUTS), feed)


def greedy(sess, config, prompt_ids, max_new_tokens: int, eos_token_id: int | None = None):
    """Greedy decoding on onnxruntime with the KV cache; returns (new token ids, s per token).

    The prompt goes in once (prefill); then one token per step, feeding back the cache.
    Stops after the end-of-sequence token (kept in the result) or ``max_new_tokens``.
    """
    keys, values = (t.numpy() for t in empty_cache(config))
    ids = np.asarray([list(prompt_ids)], dtype=np.int64)
    new: list[int] = []
    step_times = []
    for _ in range(max_new_tokens):
        start = time.perf_counter()
        logits, keys, values = run(sess, ids, keys, values)
        token = int(logits[0, -1].argmax())
        if new:  # the prefill step is not a per-token cost
            step_times.append(time.perf_counter() - start)
        new.append(token)
        if token == eos_token_id:
            break
        ids = np.asarray([[token]], dtype=np.int64)
    per_token = sum(step_times) / len(step_times) if step_times else float("nan")
    return new, per_token


@torch.no_grad()
def torch_greedy(model, prompt_ids, max_new_tokens: int, eos_token_id: int | None = None):
    """The same loop in PyTorch (same cache handling): (new token ids, s per token)."""
    wrapper = StackedCacheLM(model.eval())
    keys, values = empty_cache(model.config)
    ids = torch.tensor([list(prompt_ids)])
    new: list[int] = []
    step_times = []
    for _ in range(max_new_tokens):
        start = time.perf_counter()
        logits, keys, values = wrapper(ids, keys, values)
        token = int(logits[0, -1].argmax())
        if new:
            step_times.append(time.perf_counter() - start)
        new.append(token)
        if token == eos_token_id:
            break
        ids = torch.tensor([[token]])
    per_token = sum(step_times) / len(step_times) if step_times else float("nan")
    return new, per_token


def quantize_blocks(weight: np.ndarray, block_size: int = 128):
    """Symmetric 8-bit blocks of a MatMul weight ``[K, N]``, laid out as MatMulNBits wants.

    Each output column's K weights are cut into blocks of ``block_size`` (the last block
    zero-padded); a block keeps one fp32 scale = absmax / 127 and its weights as
    ``round(w / scale) + 128`` in uint8 (128 is MatMulNBits' default zero point for 8 bits).
    Returns (blocks [N, n_blocks, block_size] uint8, scales [N, n_blocks] fp32).
    """
    k, n = weight.shape
    n_blocks = -(-k // block_size)
    padded = np.zeros((n_blocks * block_size, n), dtype=np.float32)
    padded[:k] = weight
    cols = padded.T.reshape(n, n_blocks, block_size)
    scales = np.abs(cols).max(axis=2) / 127.0
    scales[scales == 0] = 1.0
    q = np.clip(np.rint(cols / scales[..., None]), -127, 127) + 128
    return q.astype(np.uint8), scales.astype(np.float32)


def dequantize_blocks(blocks: np.ndarray, scales: np.ndarray, k: int) -> np.ndarray:
    """The fp32 weight ``[K, N]`` that ``quantize_blocks`` stands for (to measure its error)."""
    n = blocks.shape[0]
    cols = (blocks.astype(np.float32) - 128) * scales[..., None]
    return cols.reshape(n, -1)[:, :k].T


def quantize_int8(src: str | Path, dst: str | Path, *, block_size: int = 128) -> Path:
    """Replace every MatMul by a constant weight with onnxruntime's 8-bit ``MatMulNBits``.

    Weight-only, blockwise, symmetric (``quantize_blocks``); activations stay fp32 and
    ``accuracy_level=4`` lets onnxruntime use int8 dot products where the CPU has them.
    Why not ``quantize_dynamic``: it quantizes the activations too, with one scale per
    tensor, and on some CPUs its u8/s8 kernels saturate; SmolLM2's answers turned to
    garbage. onnxruntime's own ``MatMulNBitsQuantizer`` does the same as this function but
    needs the extra ``onnx_ir`` package.
    """
    import onnx
    from onnx import helper, numpy_helper

    model = onnx.load(str(src))
    graph = model.graph
    weights = {init.name: init for init in graph.initializer}
    used = {}
    for node in graph.node:
        for name in node.input:
            used[name] = used.get(name, 0) + 1
    nodes, dropped, added = [], set(), []
    for node in graph.node:
        weight = weights.get(node.input[1]) if node.op_type == "MatMul" else None
        if weight is None or len(weight.dims) != 2:
            nodes.append(node)
            continue
        array = numpy_helper.to_array(weight)
        k, n = array.shape
        blocks, scales = quantize_blocks(array, block_size)
        base = node.input[1].replace(":", "_")
        added += [
            numpy_helper.from_array(blocks, f"{base}_q8"),
            numpy_helper.from_array(scales, f"{base}_scales"),
        ]
        nodes.append(
            helper.make_node(
                "MatMulNBits",
                [node.input[0], f"{base}_q8", f"{base}_scales"],
                list(node.output),
                name=f"{node.name}_q8",
                domain="com.microsoft",
                K=k,
                N=n,
                bits=8,
                block_size=block_size,
                accuracy_level=4,
            )
        )
        if used[node.input[1]] == 1:
            dropped.add(node.input[1])
    del graph.node[:]
    graph.node.extend(nodes)
    kept = [init for init in graph.initializer if init.name not in dropped]
    del graph.initializer[:]
    graph.initializer.extend(kept + added)
    if not any(op.domain == "com.microsoft" for op in model.opset_import):
        model.opset_import.append(helper.make_opsetid("com.microsoft", 1))
    dst = Path(dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(dst))
    return dst


def max_logit_difference(model, sess, input_ids) -> float:
    """Largest |PyTorch logit - onnxruntime logit| on one prompt (prefill, no cache)."""
    keys, values = empty_cache(model.config)
    with torch.no_grad():
        expected = model(input_ids=torch.tensor([list(input_ids)])).logits.numpy()
    got = run(sess, [list(input_ids)], keys.numpy(), values.numpy())[0]
    return float(np.abs(expected - got).max())
