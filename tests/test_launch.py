"""helpers.launch and helpers.train: commands, failures reported, and 2 processes = 1 process."""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import time

import pytest
import yaml

from helpers import launch

TINY = {"model": "tiny-random-smollm2", "max_length": 64, "bf16": "no", "lr": 2e-3}
TOLERANCE = 1e-4
"""Equivalence, fp32: the loss of every step of the 2-process and 1-process runs (losses
of about 10.8) agree within this; with the same examples in every step they differ only
by the order of floating-point sums (and by which of the two equal losses ran)."""


def test_commands_name_the_launcher_and_the_process_count(tmp_path):
    job = ["--steps", "2"]
    torchrun = launch.command("torchrun", job, 2)
    assert torchrun[:3] == [sys.executable, "-m", "torch.distributed.run"]
    assert torchrun[3:] == ["--standalone", "--nproc_per_node=2", "-m", "helpers.train", *job]
    assert launch.shown(torchrun).startswith("torchrun --standalone --nproc_per_node=2 -m")
    config = launch.write_accelerate_config(tmp_path / "accelerate.yaml", 2)
    accelerate = launch.command("accelerate", job, 2, config_file=config, port=29999)
    assert accelerate[1:5] == ["-m", "accelerate.commands.launch", "--config_file", str(config)]
    assert accelerate[accelerate.index("--num_processes") + 1] == "2"
    assert accelerate[accelerate.index("--main_process_port") + 1] == "29999"
    with pytest.raises(ValueError, match="config file"):
        launch.command("accelerate", job, 2)
    with pytest.raises(ValueError, match="one process"):
        launch.command("python", job, 2)
    with pytest.raises(ValueError, match="not one of"):
        launch.command("mpirun", job, 2)


def test_accelerate_config_asks_for_local_processes_not_mpi(tmp_path):
    path = launch.write_accelerate_config(tmp_path / "a.yaml", 3)
    config = yaml.safe_load(path.read_text())
    assert config["num_processes"] == 3
    assert config["distributed_type"] == "MULTI_GPU"  # torchrun-style local processes
    assert config["use_cpu"] is False  # True means accelerate's MPI path: one process here


def test_job_args_and_child_env():
    assert launch.job_args(steps=2, lm_head="trl", seed=None) == [
        "--steps",
        "2",
        "--lm-head",
        "trl",
    ]
    env = launch.child_env(2)
    assert env["HF_HUB_OFFLINE"] == "1"
    assert int(env["OMP_NUM_THREADS"]) >= 1
    assert env["PYTHONPATH"].split(os.pathsep)[0] == str(launch.Path(launch.__file__).parents[1])


def test_the_first_traceback_written_is_the_cause(tmp_path):
    out = tmp_path / "losses.json"
    echo, cause = tmp_path / "losses.json.rank0.error", tmp_path / "losses.json.rank1.error"
    cause.write_text("ValueError: the cause")
    echo.write_text("RuntimeError: Connection closed by peer")
    os.utime(cause, ns=(1, 1))
    assert list(launch.rank_errors(out)) == [1, 0]


def test_a_hanging_launch_is_killed_after_the_timeout(tmp_path):
    start = time.perf_counter()
    with pytest.raises(launch.LaunchError, match="still running after 3 s and was killed"):
        launch.launch("python", ["--hang-on-rank", "0"], tmp_path / "out.json", 1, timeout=3)
    assert time.perf_counter() - start < 30


def test_a_failing_rank_is_named_with_its_error_and_nothing_hangs(tmp_path):
    # rank 1 fails at once; rank 0 would wait for it forever: torchrun stops it
    with pytest.raises(launch.LaunchError) as err:
        launch.launch(
            "torchrun",
            launch.job_args(steps=2, batch=1, fail_on_rank=1, **TINY),
            tmp_path / "out.json",
            2,
            timeout=120,
        )
    message = str(err.value)
    assert "rank 1 failed first" in message
    assert "RuntimeError: rank 1 failed on purpose (--fail-on-rank)" in message


def test_two_processes_train_like_one_process_with_the_same_global_batch(tmp_path):
    """2 ranks x batch 2 = 1 process x batch 4 = 1 process x batch 2 x accumulation 2."""
    steps = launch.job_args(steps=3, **TINY)
    runs = {
        "ddp": launch.launch("torchrun", [*steps, "--batch", "2"], tmp_path / "ddp.json", 2),
        "big_batch": launch.launch("python", [*steps, "--batch", "4"], tmp_path / "b.json", 1),
        "accumulation": launch.launch(
            "python", [*steps, "--batch", "2", "--accumulation", "2"], tmp_path / "a.json", 1
        ),
    }
    records = {name: run.record for name, run in runs.items()}
    assert {r["global_batch"] for r in records.values()} == {4}
    ddp = records["ddp"]
    # which loss ran: DDP falls back to trl's loss, for the reason the trainer gives
    assert (ddp["world_size"], ddp["model_class"], ddp["backend"]) == (
        2,
        "DistributedDataParallel",
        "gloo",
    )
    assert ddp["loss_path"] == "trl"
    assert any("more than one process" in why for why in ddp["scored_head_blockers"])
    for name in ("big_batch", "accumulation"):
        assert records[name]["world_size"] == 1
        assert records[name]["loss_path"] == "scored"
        assert len(records[name]["losses"]) == len(ddp["losses"]) == 3
        diffs = [abs(a - b) for a, b in zip(records[name]["losses"], ddp["losses"], strict=True)]
        assert max(diffs) < TOLERANCE, (name, diffs)
    assert ddp["losses"][0] != ddp["losses"][-1]  # the weights did change between steps


def test_fsdp2_on_two_processes_halves_what_each_rank_holds(tmp_path):
    result = launch.launch(
        "torchrun",
        ["--model", "tiny-random-smollm2"],
        tmp_path / "fsdp.json",
        2,
        module="helpers.fsdp",
        timeout=300,
    )
    record = result.record
    full = record["full_parameter_bytes"]
    assert [r["rank"] for r in record["ranks"]] == [0, 1]
    for rank in record["ranks"]:
        assert rank["parameter_type"] == "DTensor"
        # dim-0 shards: each rank holds about half (a dimension of odd size rounds up)
        assert abs(rank["parameters"] - full / 2) <= 0.01 * full
        assert rank["gradients"] == rank["parameters"]
        assert rank["optimizer_states"] == 2 * rank["parameters"]  # AdamW's two averages
    assert sum(r["parameters"] for r in record["ranks"]) == full


def test_shown_commands_hide_the_machine_specific_parts(tmp_path):
    config = tmp_path / "a.yaml"
    cmd = launch.command("accelerate", ["--steps", "2"], 2, config_file=config, port=1234)
    text = launch.shown(cmd)
    assert text.startswith("accelerate launch --config_file")
    # the free port chosen for this call is shown as 0: accelerate then picks one itself
    assert "1234" not in text and "--main_process_port 0 " in text
    assert launch.shown(launch.command("python", [], 1)) == "python -m helpers.train"
    with_out = launch.command("python", ["--steps", "2"], 1, out="runs/a.json")
    assert launch.shown(with_out) == "python -m helpers.train --steps 2 --out runs/a.json"


def _launcher_and_job(text: str) -> tuple[str, argparse.Namespace, argparse.Namespace]:
    """Parse a printed command as the shell and the launcher would: (launcher, its
    arguments, the arguments ``helpers.train`` gets)."""
    from accelerate.commands.launch import launch_command_parser
    from torch.distributed.run import get_args_parser

    from helpers import train

    assert not set("<>|;&") & set(text), f"the shell would read {text!r} differently"
    words = shlex.split(text)
    if words[:2] == ["accelerate", "launch"]:
        launcher, args = "accelerate", launch_command_parser().parse_args(words[2:])
    elif words[0] == "torchrun":
        launcher, args = "torchrun", get_args_parser().parse_args(words[1:])
    else:
        pytest.fail(f"not a launcher command: {text!r}")
    assert (args.module, args.training_script) == (True, "helpers.train")
    return launcher, args, train.build_parser().parse_args(args.training_script_args)


def test_printed_commands_run_as_printed(tmp_path):
    """The commands chapter 09 prints parse with the launcher's parser and with
    helpers.train's own, --out included (without it, helpers.train refuses to start)."""
    job = launch.job_args(steps=8, lr=2e-3, bf16="no", batch=2)
    config = launch.write_accelerate_config(tmp_path / "a.yaml", 2)
    for launcher, kwargs in (("torchrun", {}), ("accelerate", {"config_file": config})):
        cmd = launch.command(launcher, job, 2, out="outputs/09_runs/x.json", **kwargs)
        name, args, job_args = _launcher_and_job(launch.shown(cmd))
        assert name == launcher
        assert (job_args.out, job_args.steps, job_args.batch) == ("outputs/09_runs/x.json", 8, 2)
        if launcher == "accelerate":
            assert args.main_process_port == 0  # accelerate picks a free port
    # the several-machine commands, with the node rank set the way they set it
    text = launch.multinode_commands(nnodes=2, nproc_per_node=8)
    assert "NODE_RANK=0" in text.split("--node_rank=$NODE_RANK")[0]
    joined = text.replace("\\\n", " ")  # the shell's line continuations
    commands = [
        line.replace("$NODE_RANK", "0")
        for line in joined.splitlines()
        if line.startswith(("torchrun", "accelerate"))
    ]
    assert len(commands) == 3
    for line in commands:
        launcher, args, job_args = _launcher_and_job(line)
        assert job_args.out == "losses.json"
        if launcher == "accelerate":
            # without it, accelerate on CPU-only machines starts its one-process MPI mode
            assert args.multi_gpu and args.num_machines == 2 and args.num_processes == 16


def test_deepspeed_config_follows_the_stage_and_refuses_nonsense():
    three = launch.deepspeed_config(3, offload_optimizer=True, offload_params=True)
    assert three["zero_optimization"]["stage"] == 3
    assert three["zero_optimization"]["offload_param"]["device"] == "cpu"
    assert "offload_optimizer" not in launch.deepspeed_config(2)["zero_optimization"]
    # ZeRO-Offload refuses the Trainer's torch AdamW: the config must name DeepSpeed's own
    assert three["optimizer"]["type"] == "AdamW"
    assert set(three["optimizer"]["params"].values()) == {"auto"}
    assert "optimizer" not in launch.deepspeed_config(2)
    with pytest.raises(ValueError, match="needs ZeRO stage 3"):
        launch.deepspeed_config(2, offload_params=True)


def test_the_backend_follows_the_device_the_ranks_train_on():
    from helpers import train

    assert train.DEVICE == "cpu"  # the job trains on CPU processes, on every machine
    assert train.ddp_backend("cpu", 2) == "gloo"
    assert train.ddp_backend("cuda", 8) == "nccl"  # NCCL moves CUDA tensors only
    assert train.ddp_backend("cpu", 1) is None and train.ddp_backend("cuda", 1) is None


def test_rank_0_writes_its_record_into_a_folder_it_creates(tmp_path):
    from helpers import train

    out = tmp_path / "fresh" / "out.json"  # a printed command, typed before any launch
    assert train.run_rank(out, lambda: {"losses": [1.0]}) == 0
    assert json.loads(out.read_text()) == {"losses": [1.0]}


def test_this_machine_supports_cpu_process_groups():
    ok, why = launch.support()
    assert ok, why


def test_deepspeed_status_says_what_it_found(monkeypatch):
    from importlib import metadata

    def missing(name):
        raise metadata.PackageNotFoundError(name)

    monkeypatch.setattr(metadata, "version", missing)
    assert launch.deepspeed_status().startswith("DeepSpeed is not installed here")
    monkeypatch.setattr(metadata, "version", lambda name: "0.19.8")
    assert launch.deepspeed_status().startswith("DeepSpeed 0.19.8 is installed")
