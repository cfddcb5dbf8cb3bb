"""20 consecutive 2-process launches of the SFT job must all end cleanly (20/20).

torch + gloo was seen to abort at teardown about once in 8 finished runs ("terminate
called without an active exception"); helpers.train closes the process group itself
(barrier, then destroy_process_group) and helpers.launch bounds every launch with a
timeout. Each launch is as cheap as a launch can be (the tiny model, 2 steps of one
example per rank): what it costs is starting two Python processes that import torch,
transformers and trl (about 3 minutes in all on 2 quiet cores).
"""

from __future__ import annotations

import math

from helpers import launch

LAUNCHES = 20


def test_twenty_two_process_launches_in_a_row_all_succeed(tmp_path):
    job = launch.job_args(
        model="tiny-random-smollm2", steps=2, batch=1, max_length=32, bf16="no", lora_r=2
    )
    failures = []
    for i in range(LAUNCHES):
        out = tmp_path / f"run{i}.json"
        try:
            result = launch.launch("torchrun", job, out, 2, timeout=180)
        except launch.LaunchError as err:
            failures.append(f"launch {i}: {err}")
            continue
        record = result.record
        if record["world_size"] != 2 or not all(map(math.isfinite, record["losses"])):
            failures.append(f"launch {i}: wrong record {record}")
        if "terminate called" in result.output:
            failures.append(f"launch {i}: aborted at teardown:\n{result.output[-2000:]}")
    assert not failures, f"{len(failures)}/{LAUNCHES} launches failed:\n" + "\n".join(failures)
