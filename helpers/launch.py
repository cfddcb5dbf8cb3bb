"""Start a training job on several processes with ``torchrun`` or ``accelerate launch``.

The launchers start one Python process per rank and give each its place in the group
through the environment (``RANK``, ``LOCAL_RANK``, ``WORLD_SIZE``, ``MASTER_ADDR``,
``MASTER_PORT``). ``launch`` runs one as a subprocess and makes three things reliable
that a bare launch does not:

- **a timeout on the whole launch**: a rank that waits forever for a dead partner (a
  hang, the worst failure) is killed with its whole process group after `timeout` s;
- **the failing rank's error**: each rank of ``helpers.train`` writes its traceback to
  ``<out>.rank<N>.error``; ``LaunchError`` names the rank and ends with its traceback,
  not with the launcher's summary of "a child failed";
- **teardown**: ``helpers.train`` ends with a barrier and ``destroy_process_group``
  (gloo's teardown, left to the interpreter's exit, was seen to abort a finished run
  about once in 8 on this course's machines).

Ports: ``torchrun --standalone`` picks a free port itself; for ``accelerate launch``
a free port is chosen here, so two jobs on one machine do not collide. The command shown
to a learner (``shown``) passes ``--main_process_port 0`` instead, which asks accelerate
to pick a free port itself.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from . import repo
from .memory.sharding import check_zero_settings

LAUNCHERS = ("python", "torchrun", "accelerate")


class LaunchError(RuntimeError):
    """A launch that failed or timed out; the message names the rank and shows its error."""


@dataclass
class LaunchResult:
    """What a finished launch left: its command, exit code, output and the job's record."""

    command: list[str]
    returncode: int
    seconds: float
    output: str
    record: dict = field(default_factory=dict)


def free_port() -> int:
    """A TCP port that is free on this machine now (the OS picks it)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def accelerate_config(num_processes: int = 2, mixed_precision: str = "no") -> dict:
    """The ``accelerate launch`` config for `num_processes` processes on this machine.

    ``distributed_type: MULTI_GPU`` is accelerate's name for "several local processes
    started the torchrun way": on a machine without GPUs each process uses the CPU and
    the gloo backend. (``use_cpu: true`` would instead ask for accelerate's multi-CPU
    mode, which needs MPI and otherwise starts ONE process.)
    """
    return {
        "compute_environment": "LOCAL_MACHINE",
        "distributed_type": "MULTI_GPU",
        "num_machines": 1,
        "machine_rank": 0,
        "num_processes": num_processes,
        "mixed_precision": mixed_precision,
        "use_cpu": False,
        "rdzv_backend": "static",
        "same_network": True,
        "main_training_function": "main",
    }


def write_accelerate_config(path: str | Path, num_processes: int = 2, **kwargs) -> Path:
    """Write ``accelerate_config(...)`` as the YAML file ``accelerate launch`` reads."""
    import yaml

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    text = yaml.safe_dump(accelerate_config(num_processes, **kwargs), sort_keys=False)
    path.write_text(text)
    return path


def command(
    launcher: str,
    job: list[str],
    nproc: int = 2,
    *,
    module: str = "helpers.train",
    config_file: str | Path | None = None,
    port: int | None = None,
    out: str | Path | None = None,
) -> list[str]:
    """The command line that starts ``python -m <module> <job...>`` under `launcher`.

    `out`, when given, is added to `job` as ``--out <out>``: the JSON file rank 0 writes,
    which ``helpers.train`` requires (``launch`` always passes it).
    """
    if out is not None:
        job = [*job, "--out", str(out)]
    if launcher == "python":
        if nproc != 1:
            raise ValueError("launcher='python' starts one process: use nproc=1 or torchrun.")
        return [sys.executable, "-m", module, *job]
    # the launchers run as modules of this very Python: ``torchrun`` is
    # ``python -m torch.distributed.run``, ``accelerate launch`` is
    # ``python -m accelerate.commands.launch`` (no PATH lookup, no other environment)
    if launcher == "torchrun":
        run = [sys.executable, "-m", "torch.distributed.run"]
        return [*run, "--standalone", f"--nproc_per_node={nproc}", "-m", module, *job]
    if launcher == "accelerate":
        if config_file is None:
            raise ValueError("accelerate launch needs a config file: write_accelerate_config().")
        port = port or free_port()
        return [
            sys.executable,
            "-m",
            "accelerate.commands.launch",
            "--config_file",
            str(config_file),
            "--num_processes",
            str(nproc),
            "--main_process_port",
            str(port),
            "-m",
            module,
            *job,
        ]
    raise ValueError(f"launcher={launcher!r} is not one of {LAUNCHERS}.")


def child_env(nproc: int) -> dict[str, str]:
    """The environment of the launched processes: offline, and the cores shared out.

    Each process gets ``cores // nproc`` threads (at least 1): more threads than cores
    make every rank wait for the others. The folder holding this package goes first on
    ``PYTHONPATH``, so the ranks run the same ``helpers`` as the caller.
    """
    threads = os.environ.get("OMP_NUM_THREADS") or str(max(1, (os.cpu_count() or 1) // nproc))
    return repo.child_env(OMP_NUM_THREADS=threads, MKL_NUM_THREADS=threads, PYTHONUNBUFFERED="1")


def rank_errors(out: str | Path) -> dict[int, str]:
    """The tracebacks that the ranks of a job writing `out` left, by rank, first failure first.

    When one rank dies, its partners fail next, in their next collective ("Connection
    closed by peer"): the traceback written first is the cause, the others are echoes.
    """
    out = Path(out)
    files = sorted(out.parent.glob(f"{out.name}.rank*.error"), key=lambda f: f.stat().st_mtime_ns)
    return {int(f.name.rsplit(".rank", 1)[1].split(".")[0]): f.read_text() for f in files}


def _tail(text: str, lines: int = 15) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])


def launch(
    launcher: str,
    job: list[str],
    out: str | Path,
    nproc: int = 2,
    *,
    timeout: float = 300,
    module: str = "helpers.train",
    config_file: str | Path | None = None,
) -> LaunchResult:
    """Run `job` (the arguments of ``python -m <module>``) on `nproc` processes; wait for it.

    `out` is the JSON file rank 0 writes (``--out`` is added to `job`). Returns a
    ``LaunchResult`` with the record; raises ``LaunchError`` naming the failing rank and
    its traceback, or saying that the launch was killed after `timeout` seconds.
    """
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.unlink(missing_ok=True)
    for f in out.parent.glob(f"{out.name}.rank*.error"):
        f.unlink()
    cmd = command(launcher, job, nproc, module=module, config_file=config_file, out=out)
    start = time.perf_counter()
    proc = subprocess.Popen(
        cmd,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=child_env(nproc),
        start_new_session=True,  # its own process group: a timeout kills every rank
    )
    try:
        output, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        output, _ = proc.communicate()
        raise LaunchError(
            f"{launcher} with {nproc} processes was still running after {timeout:.0f} s and "
            f"was killed (every rank). A rank that waits for a partner that died hangs: look "
            f"for an error above the last lines of its output:\n{_tail(output)}"
        ) from None
    seconds = time.perf_counter() - start
    errors = rank_errors(out)
    if proc.returncode != 0 or errors:
        if errors:
            first, *others = errors
            detail = f"rank {first} failed first"
            if others:
                detail += f" (then rank {', '.join(map(str, others))}, having lost a partner)"
            detail += f":\n{_tail(errors[first])}"
        else:
            detail = f"no rank left a traceback; the launcher's output ends with:\n{_tail(output)}"
        raise LaunchError(f"{launcher} exited with code {proc.returncode}; {detail}")
    if not out.exists():
        raise LaunchError(
            f"{launcher} exited cleanly but rank 0 wrote no {out.name}; output:\n{_tail(output)}"
        )
    record = json.loads(out.read_text())
    return LaunchResult(cmd, proc.returncode, seconds, output, record)


def job_args(**options) -> list[str]:
    """``helpers.train`` arguments from keywords: ``job_args(steps=2, lm_head="trl")``."""
    args = []
    for key, value in options.items():
        if value is not None:
            args += [f"--{key.replace('_', '-')}", str(value)]
    return args


def multinode_commands(nnodes: int = 2, nproc_per_node: int = 8, host: str = "10.0.0.1") -> str:
    """The commands that start the same job on `nnodes` machines (shown, not run)."""
    job = "-m helpers.train --steps 100 --batch 4 --out losses.json"
    others = "1" if nnodes == 2 else f"1 to {nnodes - 1}"
    lines = [
        f"# on every machine (node rank 0 to {nnodes - 1}), the same command:",
        f"torchrun --nnodes={nnodes} --nproc_per_node={nproc_per_node} \\",
        f"    --rdzv-backend=c10d --rdzv-endpoint={host}:29500 --rdzv-id=yoda-sft \\",
        f"    {job}",
        "",
        "# or with fixed node ranks (MASTER_ADDR = the machine of node rank 0):",
        f"NODE_RANK=0  # on {host}; {others} on the other machine{'s' if nnodes > 2 else ''}",
        f"torchrun --nnodes={nnodes} --nproc_per_node={nproc_per_node} --node_rank=$NODE_RANK \\",
        f"    --master_addr={host} --master_port=29500 {job}",
        "",
        "# accelerate: the same, from each machine's config (or flags; NODE_RANK as above);",
        "# --multi_gpu is accelerate's local-processes mode, also for ranks on the CPU",
        f"accelerate launch --multi_gpu --num_machines {nnodes} \\",
        f"    --num_processes {nnodes * nproc_per_node} \\",
        f"    --machine_rank $NODE_RANK --main_process_ip {host} --main_process_port 29500 \\",
        f"    {job}",
    ]
    return "\n".join(lines)


SHORT_NAMES = {
    "-m torch.distributed.run": "torchrun",
    "-m accelerate.commands.launch": "accelerate launch",
}


def shown(cmd: list[str]) -> str:
    """`cmd` as a learner would type it: the launcher by name, runnable as printed.

    The free port that ``command`` chose for ``accelerate launch`` (different on every
    call) is shown as ``0``, which asks accelerate to pick a free port itself.
    """
    words = ["python", *cmd[1:]]
    if "--main_process_port" in words:
        words[words.index("--main_process_port") + 1] = "0"
    text = " ".join(words)
    for module, name in SHORT_NAMES.items():
        text = text.replace(f"python {module}", name, 1)
    return text


def support() -> tuple[bool, str]:
    """(whether this machine can run 2-process CPU jobs, why not / what it uses)."""
    try:
        import torch.distributed as dist
    except ImportError as err:  # pragma: no cover - torch always ships it on Linux/macOS
        return False, f"torch.distributed cannot be imported ({err})"
    if not dist.is_available():
        return False, "this torch build has no torch.distributed (install the official wheel)"
    if not dist.is_gloo_available():
        return False, "this torch build has no gloo backend, which CPU processes talk through"
    return True, "torch.distributed with the gloo backend"


def deepspeed_config(
    stage: int = 2, offload_optimizer: bool = False, offload_params: bool = False
) -> dict:
    """A DeepSpeed ZeRO config for ``TrainingArguments(deepspeed=...)`` (shown, not run here).

    ``"auto"`` values are filled in by transformers from the ``TrainingArguments``, so the
    batch size, accumulation and precision are set in one place. With the optimizer
    offloaded the config names the optimizer too: without an ``"optimizer"`` section the
    Trainer hands DeepSpeed torch's AdamW, which DeepSpeed refuses under ZeRO-Offload
    (``ZeRORuntimeException``: it wants its own CPU Adam); with one, DeepSpeed builds its CPU
    Adam and transformers fills the ``"auto"`` learning rate, betas and weight decay.
    """
    check_zero_settings(1, stage, offload_optimizer, offload_params)
    zero: dict = {"stage": stage, "overlap_comm": True, "contiguous_gradients": True}
    if offload_optimizer:
        zero["offload_optimizer"] = {"device": "cpu", "pin_memory": True}
    if offload_params:
        zero["offload_param"] = {"device": "cpu", "pin_memory": True}
    config: dict = {
        "train_micro_batch_size_per_gpu": "auto",
        "gradient_accumulation_steps": "auto",
        "gradient_clipping": "auto",
        "bf16": {"enabled": "auto"},
    }
    if offload_optimizer:
        auto = dict.fromkeys(("lr", "betas", "eps", "weight_decay"), "auto")
        config["optimizer"] = {"type": "AdamW", "params": auto}
    config["zero_optimization"] = zero
    return config


def deepspeed_status() -> str:
    """One line: whether DeepSpeed is installed here (found without importing it).

    It is kept out of the course's environment: it compiles a C++ helper on its first
    start (minutes) and, once installed, makes every ``Trainer`` import slower.
    """
    from importlib.metadata import PackageNotFoundError, version

    try:
        found = version("deepspeed")
    except PackageNotFoundError:
        return "DeepSpeed is not installed here: the run is skipped (the text above says why)."
    return f"DeepSpeed {found} is installed: TrainingArguments(deepspeed=config) will use it."
