"""The chapter-00 SFT job as a script, for the launchers: ``python -m helpers.train ...``.

Why a module of the package and not a notebook cell: ``torchrun`` and ``accelerate
launch`` start *new* Python processes, which need a file to run; a module inside
``helpers`` is installed with the course (also in Colab), tested like the rest of the
package, and found by ``python -m`` from any working folder.

The same file runs in one process (``python -m helpers.train``) or in several
(``torchrun --nproc_per_node 2 -m helpers.train``): ``Trainer`` reads the process group
that the launcher describes in the environment (``RANK``, ``WORLD_SIZE``, ...), wraps
the model in ``DistributedDataParallel`` and shards the batches.

The first process (rank 0) writes ``--out`` (JSON): the loss of every step, the world
size, the global batch and which loss ran (the course's scored head, or trl's). Every
process that fails writes its traceback to ``<out>.rank<N>.error``, which
``helpers.launch`` reports. At the end every process waits for the others (a barrier)
and closes the process group itself: left to the interpreter's exit, gloo's teardown
was seen to abort a finished run now and then.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import traceback
from pathlib import Path

from . import data


def build_parser() -> argparse.ArgumentParser:
    """The command line of the job (a fixed help width: the same text in every terminal)."""
    p = argparse.ArgumentParser(
        prog="python -m helpers.train",
        description=__doc__.split("\n")[0],
        formatter_class=lambda prog: argparse.HelpFormatter(prog, width=100),
    )
    p.add_argument("--model", default="smollm2-135m-instruct", help="a course model name")
    p.add_argument(
        "--quantization", choices=["4bit", "8bit"], help="quantize the base (default: fp32)"
    )
    p.add_argument("--steps", type=int, default=10, help="optimizer steps")
    p.add_argument("--batch", type=int, default=4, help="examples per process per micro-batch")
    p.add_argument("--accumulation", type=int, default=1, help="micro-batches per step")
    p.add_argument("--lr", type=float, default=2e-3, help="learning rate")
    p.add_argument("--lora-r", type=int, default=16, help="LoRA rank")
    p.add_argument("--max-length", type=int, default=128)
    p.add_argument("--lm-head", default="scored", choices=["scored", "trl"])
    p.add_argument("--bf16", default="auto", choices=["auto", "yes", "no"])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--fail-on-rank", type=int, default=None, help="(tests) this rank raises")
    p.add_argument("--hang-on-rank", type=int, default=None, help="(tests) this rank hangs")
    p.add_argument("--out", required=True, help="the JSON file rank 0 writes")
    return p


def parse_args(argv=None) -> argparse.Namespace:
    return build_parser().parse_args(argv)


DEVICE = "cpu"
"""Where the job trains, on every machine: the course's recipe runs on CPU processes."""


def ddp_backend(device: str, world_size: int) -> str | None:
    """The process-group backend for ranks whose tensors live on `device`.

    NCCL moves CUDA tensors between GPUs and cannot move CPU tensors; gloo moves CPU
    tensors. A single process has no group to join (``None``).
    """
    if world_size <= 1:
        return None
    return "nccl" if device == "cuda" else "gloo"


def rank() -> int:
    return int(os.environ.get("RANK", "0"))


def error_file(out: str | Path, rank_: int) -> Path:
    """Where rank `rank_` of a job writing `out` leaves its traceback."""
    return Path(f"{out}.rank{rank_}.error")


def train(args: argparse.Namespace) -> dict:
    """Train the recipe with ``args``; return the record rank 0 writes."""
    import torch

    from . import hardware, models, training  # torch-backed: `--help` stays instant

    torch.manual_seed(args.seed)
    model, tokenizer = models.load_model(args.model, args.quantization, device=DEVICE)
    train_set = data.load_dataset("yoda", "train")
    bf16 = {"auto": hardware.bf16_native(DEVICE), "yes": True, "no": False}[args.bf16]
    config = training.sft_config(
        str(Path(args.out).with_suffix("")) + "-run",
        max_steps=args.steps,
        per_device_train_batch_size=args.batch,
        gradient_accumulation_steps=args.accumulation,
        learning_rate=args.lr,
        max_length=args.max_length,
        seed=args.seed,
        device=DEVICE,
        quantization=args.quantization,
        bf16=bf16,
        logging_steps=1,
        disable_tqdm=True,
        # gloo for CPU tensors (NCCL would be the backend for CUDA tensors); set only when
        # a launcher started several processes (a single process has no group to join)
        ddp_backend=ddp_backend(DEVICE, int(os.environ.get("WORLD_SIZE", "1"))),
        ddp_find_unused_parameters=False,  # LoRA uses every adapter in every step
        ddp_timeout=300,  # a rank that waits this long for the others gives up (default 30 min)
        # the global batch's tokens divide the loss on every rank (the default; written
        # here because the chapter explains it)
        average_tokens_across_devices=True,
    )
    trainer = training.build_trainer(
        model,
        tokenizer,
        train_set,
        config,
        peft_config=training.lora_config(r=args.lora_r),
        lm_head=args.lm_head,
        batch_order="random",  # bucketed batches depend on the per-process batch size
    )
    start = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - start
    log = trainer.state.log_history
    world = trainer.args.world_size
    return {
        "losses": [e["loss"] for e in log if "loss" in e],
        "steps": [e["step"] for e in log if "loss" in e],
        "world_size": world,
        "per_device_batch": args.batch,
        "accumulation": args.accumulation,
        "global_batch": args.batch * args.accumulation * world,
        "loss_path": "scored" if training.uses_scored_head(trainer) else "trl",
        "scored_head_blockers": training.scored_head_blockers(trainer),
        "model_class": type(trainer.model_wrapped).__name__,
        "backend": trainer.args.ddp_backend if world > 1 else None,
        "bf16": bool(trainer.args.bf16),
        "train_seconds": seconds,
        "args": vars(args),
    }


def _teardown() -> None:
    """Wait for every rank, then close the process group (when there is one)."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        try:
            dist.barrier()
        finally:
            dist.destroy_process_group()


def run_rank(out: str | Path, job) -> int:
    """Run ``job()`` on this rank: rank 0 writes its record to ``out`` as JSON, a rank that
    fails writes its traceback beside it (what the launcher reports), then a clean teardown."""
    Path(out).parent.mkdir(parents=True, exist_ok=True)  # a command typed in a fresh folder
    error_file(out, rank()).unlink(missing_ok=True)
    try:
        record = job()
        if rank() == 0:
            Path(out).write_text(json.dumps(record, indent=1))
    except BaseException:
        error_file(out, rank()).write_text(traceback.format_exc())
        raise
    _teardown()
    return 0


def main(argv=None) -> int:
    args = parse_args(argv)

    def job():
        if args.hang_on_rank == rank():
            time.sleep(3600)  # what a deadlocked rank looks like from outside
        if args.fail_on_rank == rank():
            raise RuntimeError(f"rank {rank()} failed on purpose (--fail-on-rank)")
        return train(args)

    return run_rank(args.out, job)


if __name__ == "__main__":
    sys.exit(main())
