"""FSDP2 (``torch.distributed.fsdp.fully_shard``) on N processes: what each rank holds.

``torchrun --nproc_per_node 2 -m helpers.fsdp --out fsdp.json`` loads the model on every
rank, shards it with ``fully_shard`` (each decoder layer, then the whole model), runs
a few AdamW steps of full fine-tuning on the Yoda data, and records, per rank, the
parameter, gradient and optimizer-state bytes that rank really holds (the local
shards of the ``DTensor`` parameters), next to the model's full size. Rank 0 writes
the JSON (``helpers.launch.launch(..., module="helpers.fsdp")`` runs it).

The same teardown as ``helpers.train``: a barrier, then ``destroy_process_group``.
"""

from __future__ import annotations

import argparse
import os
import sys

from . import data
from .train import run_rank


def _local_bytes(tensors) -> int:
    total = 0
    for t in tensors:
        t = t.to_local() if hasattr(t, "to_local") else t
        total += t.numel() * t.element_size()
    return total


def run(args: argparse.Namespace) -> dict | None:
    import torch
    import torch.distributed as dist
    from torch.distributed.fsdp import fully_shard

    from . import models  # torch-backed, like the imports above: `--help` stays instant

    dist.init_process_group("gloo")
    torch.manual_seed(0)
    model, tokenizer = models.load_model(args.model, device="cpu", dtype=torch.float32)
    model.train()
    full_bytes = _local_bytes(model.parameters())
    full_params = sum(p.numel() for p in model.parameters())
    for layer in model.model.layers:
        fully_shard(layer)
    fully_shard(model)
    held = _local_bytes(model.parameters())
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-5)
    rows = data.load_dataset("yoda", "train").select(range(64))
    world, me = dist.get_world_size(), dist.get_rank()
    losses = []
    for step in range(args.steps):
        # every rank takes its own examples of the step's global batch (as a sampler would)
        start = (step * world + me) * args.batch
        texts = [f"{r['english']} -> {r['yoda']}" for r in rows]
        batch = tokenizer(
            texts[start : start + args.batch], return_tensors="pt", padding=True, truncation=True
        )
        labels = batch["input_ids"].masked_fill(batch["attention_mask"] == 0, -100)
        loss = model(**batch, labels=labels).loss
        loss.backward()
        grads = _local_bytes(p.grad for p in model.parameters() if p.grad is not None)
        optimizer.step()
        optimizer.zero_grad()
        mean = loss.detach().clone()
        dist.all_reduce(mean)
        losses.append(mean.item() / world)
    states = [t for s in optimizer.state.values() for t in s.values() if torch.is_tensor(t)]
    mine = {
        "rank": me,
        "parameters": held,
        "gradients": grads,
        "optimizer_states": _local_bytes(t for t in states if t.dim() > 0),
        "parameter_type": type(next(model.parameters())).__name__,
    }
    everyone = [None] * world
    dist.all_gather_object(everyone, mine)
    return {
        "world_size": world,
        "full_parameter_bytes": full_bytes,
        "full_parameters": full_params,
        "ranks": everyone,
        "losses": losses,
    }


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m helpers.fsdp")
    p.add_argument("--model", default="tiny-random-smollm2")
    p.add_argument("--steps", type=int, default=2)
    p.add_argument("--batch", type=int, default=2, help="examples per rank")
    p.add_argument("--out", required=True)
    args = p.parse_args(argv)
    if "RANK" not in os.environ:
        p.error("start it with a launcher: torchrun --nproc_per_node 2 -m helpers.fsdp --out F")
    return run_rank(args.out, lambda: run(args))


if __name__ == "__main__":
    sys.exit(main())
