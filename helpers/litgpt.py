"""LitGPT from the course: its own environment, its commands, its data format, conversions.

LitGPT 0.5.13 requires ``huggingface-hub<1.4`` while transformers 5.23 needs
``>=1.3.1``-and-newer releases that the course pins, so pip's resolver cannot put both in
one environment (tests/test_litgpt.py asks the resolver). LitGPT therefore lives in its
own virtual environment, ``.venv-litgpt`` (``make litgpt`` builds it from the
``# litgpt-venv:`` pins in requirements.txt), and the course drives it as a learner
would: through the ``litgpt`` command line, plus small tasks run by
``helpers/litgpt_worker.py`` with that environment's Python (logits, greedy answers).
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from . import pins
from .data import load_dataset
from .repo import BRANCH, REPOSITORY, child_env, repo_root

LIT_NAME = "SmolLM2-135M-Instruct"
"""LitGPT's config name for the course's base model."""
HF_REPO_ID = f"HuggingFaceTB/{LIT_NAME}"
"""``litgpt convert_to_litgpt`` finds the config by the folder's last two names."""
PROMPT_STYLE = "smollm2"
VENV_NAME = ".venv-litgpt"
VENV_ENV = "COURSE_LITGPT_VENV"
"""Set to use a LitGPT environment somewhere else (its folder)."""
BUILD_HINT = "build it with `make litgpt` (about a minute; torch comes from pip's cache)"


class LitGPTMissing(RuntimeError):
    """LitGPT's own environment is not there."""


def venv_dir() -> Path:
    """Where LitGPT's environment is (or would be built)."""
    if os.environ.get(VENV_ENV):
        return Path(os.environ[VENV_ENV])
    root = repo_root()
    return (root if root else Path.cwd()) / VENV_NAME


def available() -> bool:
    """True when LitGPT's environment exists and has the ``litgpt`` command."""
    return (venv_dir() / "bin" / "litgpt").exists()


def _require() -> Path:
    if not available():
        raise LitGPTMissing(
            f"LitGPT's own environment is missing ({venv_dir()} has no bin/litgpt): {BUILD_HINT}. "
            "It is separate from the course's .venv because litgpt's pins conflict with "
            "transformers'."
        )
    return venv_dir() / "bin"


WORKER = Path(__file__).resolve().parent / "litgpt_worker.py"
"""The script LitGPT's interpreter runs (standard library, torch and litgpt only)."""
CPU_TORCH_INDEX = "https://download.pytorch.org/whl/cpu"


def environment_pins() -> list[str]:
    """The ``# litgpt-venv:`` pins: from this checkout's requirements.txt, or (an installed
    course, as in Colab) from the same file in the course's repository."""
    found = pins.litgpt_venv_packages()
    if found:
        return found
    import urllib.request  # only an installed course without a checkout downloads

    github = REPOSITORY.removeprefix("https://github.com/")
    url = f"https://raw.githubusercontent.com/{github}/{BRANCH}/requirements.txt"
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "requirements.txt"
        with urllib.request.urlopen(url, timeout=60) as response:
            path.write_bytes(response.read())
        found = pins.litgpt_venv_packages(path)
    if not found:
        raise LitGPTMissing(f"no `# litgpt-venv:` pins in {url}: {BUILD_HINT} from a clone")
    return found


BUILD_STEP_TIMEOUT = 1200
"""Seconds one step of building LitGPT's environment may take (torch's wheel is the big one:
a download of a few hundred MB, or a minute from pip's cache)."""


def ensure_environment() -> Path:
    """LitGPT's environment, built first if it is missing (what ``make litgpt`` does:
    a venv, torch from its pin, then the other pins). Without a checkout (Colab) torch
    comes from PyTorch's CPU index: the chapter runs LitGPT on the CPU, and the default
    Linux wheel is a CUDA build of several GB. Returns the environment's folder."""
    if available():
        return venv_dir()
    packages = environment_pins()
    torch_pin = [p for p in packages if p.startswith("torch==")]
    index = [] if repo_root() else ["--index-url", CPU_TORCH_INDEX]
    folder = venv_dir()
    python = str(folder / "bin" / "python")
    steps = [
        [sys.executable, "-m", "venv", str(folder)],
        [python, "-m", "pip", "install", "--quiet", *index, *torch_pin],
        [python, "-m", "pip", "install", "--quiet", *packages],
    ]
    for step in steps:
        try:
            done = subprocess.run(step, capture_output=True, text=True, timeout=BUILD_STEP_TIMEOUT)
        except subprocess.TimeoutExpired as stopped:
            output = stopped.stderr or stopped.stdout or b""
            output = output.decode(errors="replace") if isinstance(output, bytes) else output
            raise LitGPTMissing(
                f"building LitGPT's environment stopped after {BUILD_STEP_TIMEOUT} s at "
                f"`{shlex.join(step)}` (a slow or missing network?):\n{output.strip()[-2000:]}\n"
                f"{BUILD_HINT}"
            ) from None
        if done.returncode != 0:
            raise LitGPTMissing(
                f"building LitGPT's environment failed at `{shlex.join(step)}`:\n"
                f"{done.stderr.strip()[-2000:]}\n{BUILD_HINT}"
            )
    return folder


def _env() -> dict[str, str]:
    """LitGPT's processes: offline, and without this environment's packages on their path
    (the worker runs by its file's path, so it needs none of them)."""
    return child_env(
        imports_helpers=False, PYTHONWARNINGS=os.environ.get("PYTHONWARNINGS", "ignore")
    )


@dataclass
class Run:
    """One finished command: its arguments, output, wall time and peak resident memory."""

    args: list[str]
    stdout: str
    stderr: str
    seconds: float
    peak_rss_mb: float
    cwd: str | None = None

    @property
    def command(self) -> str:
        """The command as you would type it: ``litgpt`` run from the folder it ran in, in a
        subshell ``( cd ... && litgpt ... )`` so that several printed lines run one after the
        other from the same folder (``litgpt`` is on your PATH once LitGPT's environment is
        active: ``source .venv-litgpt/bin/activate`` in the course folder)."""
        if not self.args[0].endswith("litgpt"):
            return ""
        command = shlex.join(["litgpt", *self.args[1:]])
        return f"(cd {shlex.quote(self.cwd)} && {command})" if self.cwd else command


def _run(args: list[str], cwd: str | Path | None = None, timeout: float = 1800) -> Run:
    """Run `args`, wait for it, and measure it (peak RSS through wait4, this child only)."""
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        start = time.perf_counter()
        proc = subprocess.Popen(args, cwd=cwd, env=_env(), stdout=out, stderr=err)
        deadline = start + timeout
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            if time.perf_counter() > deadline:
                proc.kill()
                os.wait4(proc.pid, 0)
                raise TimeoutError(f"{shlex.join(args)} ran past {timeout:.0f} s")
            time.sleep(0.05)
        seconds = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0), err.seek(0)
        stdout, stderr = out.read(), err.read()
    if proc.returncode != 0:
        tail = "\n".join((stderr or stdout).strip().splitlines()[-15:])
        raise RuntimeError(
            f"`{shlex.join(args)}` failed with exit code {proc.returncode}:\n{tail}\n"
            f"If LitGPT itself is broken, rebuild its environment: rm -rf {venv_dir()} && "
            "make litgpt"
        )
    folder = None if cwd is None else str(cwd)
    return Run(args, stdout, stderr, seconds, usage.ru_maxrss / 1024, folder)


def litgpt(*args: str | Path, cwd: str | Path | None = None, timeout: float = 1800) -> Run:
    """Run ``litgpt ARGS...`` from LitGPT's environment; a failure raises with its last lines."""
    return _run([str(_require() / "litgpt"), *map(str, args)], cwd=cwd, timeout=timeout)


def worker(task: str, **kwargs) -> dict:
    """Run one ``helpers/litgpt_worker.py`` task in LitGPT's environment; its JSON result."""
    python = _require() / "python"
    # Isolated (-I): neither this environment's PYTHONPATH nor the script's own folder on the
    # path (run as `python helpers/litgpt_worker.py`, helpers/numbers.py would hide the
    # standard library's `numbers` from torch).
    start = (
        "import runpy, sys; sys.argv = sys.argv[1:]; "
        "runpy.run_path(sys.argv[0], run_name='__main__')"
    )
    run = _run(
        [str(python), "-I", "-W", "ignore", "-c", start, str(WORKER), task, json.dumps(kwargs)]
    )
    return json.loads(run.stdout.strip().splitlines()[-1])


def requires(package: str, dependency: str, python: str | Path | None = None) -> str:
    """The version range that `package` (installed for `python`, default: this one)
    declares for `dependency`, e.g. ``requires("litgpt", "huggingface-hub", lit_python)``."""
    code = "import importlib.metadata as m, json, sys; print(json.dumps(m.requires(sys.argv[1])))"
    command = [str(python or sys.executable), "-c", code, package]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=120)
    except subprocess.TimeoutExpired:
        raise LookupError(f"`{shlex.join(command)}` did not answer within 120 s") from None
    if done.returncode != 0:
        raise LookupError(f"`{shlex.join(command)}` failed:\n{done.stderr.strip()[-1500:]}")
    from packaging.requirements import Requirement

    wanted = dependency.lower().replace("_", "-")
    for line in json.loads(done.stdout) or []:
        req = Requirement(line)
        if req.name.lower().replace("_", "-") == wanted and not req.marker:
            return str(req.specifier)
    raise LookupError(f"{package} declares no requirement on {dependency}")


# ---------------------------------------------------------------- data
def litgpt_record(row: dict) -> dict:
    """One Yoda example (a row of ``load_dataset("yoda")``) as a record of LitGPT's JSON
    data module: the English sentence is the instruction, the Yoda sentence the output,
    and the example's own system message goes in ``sys_prompt``, which LitGPT's chat
    prompt styles use instead of their default one (SmolLM's "You are a helpful AI
    assistant..."), so that LitGPT trains on the very prompt trl trains on."""
    messages = list(row["prompt"]) + list(row["completion"])
    by_role = {m["role"]: m["content"] for m in messages}
    record = {"instruction": by_role["user"], "output": by_role["assistant"]}
    if by_role.get("system"):
        record["sys_prompt"] = by_role["system"]
    return record


def export_yoda(out_dir: str | Path, *, n_val: int = 20) -> dict[str, Path]:
    """Write the Yoda split as LitGPT reads it: ``train.json`` (all 1,200), ``val.json`` (the
    first `n_val` test sentences, for LitGPT's validation loss) and ``test.json`` (the whole
    test split, for the exact-match score). Returns the three paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    splits = load_dataset("yoda")
    records = {s: [litgpt_record(r) for r in splits[s]] for s in ("train", "test")}
    files = {"train": records["train"], "val": records["test"][:n_val], "test": records["test"]}
    paths = {}
    for name, rows in files.items():
        paths[name] = out / f"{name}.json"
        paths[name].write_text(json.dumps(rows, indent=1), encoding="utf-8")
    return paths


def chatml_prompt(instruction: str, sys_prompt: str) -> str:
    """LitGPT's ``smollm2`` (ChatML) prompt for one record, built here without LitGPT."""
    return (
        f"<|im_start|>system\n{sys_prompt}<|im_end|>\n"
        f"<|im_start|>user\n{instruction}<|im_end|>\n<|im_start|>assistant\n"
    )


# ---------------------------------------------------------------- checkpoints
def hf_checkpoint(model: str, work: str | Path) -> Path:
    """The course's cached HF checkpoint of `model`, linked under ``WORK/checkpoints/
    HuggingFaceTB/SmolLM2-135M-Instruct`` (the folder name LitGPT takes its config from);
    nothing is downloaded."""
    from .models import prepare_model

    source = Path(prepare_model(model))
    target = Path(work) / "checkpoints" / HF_REPO_ID
    target.mkdir(parents=True, exist_ok=True)
    for file in source.iterdir():
        link = target / file.name
        if file.is_file() and not link.exists():
            link.symlink_to(file.resolve())
    return target


def convert_shrunken(hf_dir: str | Path, out_dir: str | Path) -> Path:
    """LitGPT checkpoint of a shrunken SmolLM2 (like the course's 2-layer tiny model):
    the SmolLM2 config with the folder's own shapes (``litgpt convert_to_litgpt`` only
    knows the published shapes)."""
    return Path(
        worker("convert", hf_dir=str(hf_dir), out_dir=str(out_dir), name=LIT_NAME)["checkpoint"]
    )


def torch_threads() -> int:
    """The threads torch computes with in a LitGPT process started by this module.

    Its processes inherit this one's environment (``OMP_NUM_THREADS`` included), and
    ``finetune_lora`` on one CPU device leaves the count as torch sets it, so this is the
    count to compare with ``torch.get_num_threads()`` here.
    """
    return int(worker("threads")["torch_threads"])


def lit_logits(checkpoint_dir: str | Path, token_ids: list[int]):
    """LitGPT's logits (seq_len × vocab, float32) for one sequence of token ids."""
    import torch

    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "logits.pt"
        worker(
            "logits",
            checkpoint_dir=str(checkpoint_dir),
            token_ids=list(map(int, token_ids)),
            out=str(out),
        )
        return torch.load(out, weights_only=True)


def lit_generate(
    checkpoint_dir: str | Path, prompts: list[str], max_new_tokens: int = 32
) -> list[str]:
    """Greedy answers of a LitGPT checkpoint to formatted prompts (LitGPT's own generate)."""
    result = worker(
        "generate",
        checkpoint_dir=str(checkpoint_dir),
        prompts=list(prompts),
        max_new_tokens=max_new_tokens,
    )
    return result["answers"]


def load_converted(hf_dir: str | Path, model_pth: str | Path):
    """The HF model of `hf_dir`'s config with the weights ``litgpt convert_from_litgpt``
    wrote (``model.pth``); returns the model in eval mode. LitGPT writes ``lm_head.weight``
    as its own tensor; SmolLM2 ties it to the embeddings, and they are equal, so every key
    matches and the tie holds."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    config = AutoConfig.from_pretrained(hf_dir)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    state = torch.load(model_pth, map_location="cpu", weights_only=True)
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise RuntimeError(
            f"{model_pth} does not fit {hf_dir}'s model: missing {sorted(missing)[:5]}, "
            f"unexpected {sorted(unexpected)[:5]}; convert the checkpoint with the same "
            "config (litgpt convert_from_litgpt CHECKPOINT OUT)"
        )
    return model.eval()


def max_abs_diff(a, b) -> float:
    """Largest absolute difference between two tensors of the same shape."""
    if tuple(a.shape) != tuple(b.shape):
        raise ValueError(f"shapes differ: {tuple(a.shape)} vs {tuple(b.shape)}")
    return float((a.float() - b.float()).abs().max())


def lora_parameter_count(
    n_layer: int,
    n_embd: int,
    head_size: int,
    n_head: int,
    n_query_groups: int,
    intermediate_size: int,
    r: int,
    *,
    query=True,
    key=True,
    value=True,
    projection=True,
    mlp=True,
) -> int:
    """Trainable LoRA parameters under LitGPT's switches: r·(d_in + d_out) for each adapted
    matrix. LitGPT fuses q, k, v into one ``attn.qkv`` linear but gives each enabled part
    its own A and B (its ``lora_query``/``lora_key``/``lora_value``), ``attn.proj`` is
    ``lora_projection``, and ``lora_mlp`` covers fc_1, fc_2 and proj of the MLP."""
    q_out, kv_out = n_head * head_size, n_query_groups * head_size
    per_layer = 0
    per_layer += r * (n_embd + q_out) if query else 0
    per_layer += r * (n_embd + kv_out) if key else 0
    per_layer += r * (n_embd + kv_out) if value else 0
    per_layer += r * (q_out + n_embd) if projection else 0
    per_layer += (
        2 * r * (n_embd + intermediate_size) + r * (intermediate_size + n_embd) if mlp else 0
    )
    return n_layer * per_layer


def main(argv: list[str] | None = None) -> int:
    """``python -m helpers.litgpt``: say whether LitGPT's environment is ready."""
    if available():
        print(f"LitGPT environment ready: {venv_dir()}")
        return 0
    print(f"LitGPT environment missing: {venv_dir()}; {BUILD_HINT}", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())


# ---------------------------------------------------------------- measuring
def read_metric(out_dir: str | Path, column: str) -> list[tuple[int, float]]:
    """(step, value) of one column of the CSV log ``litgpt finetune_lora --logger_name csv``
    writes under OUT_DIR/logs/csv/version_*/metrics.csv (the newest version)."""
    import csv

    logs = sorted(Path(out_dir).glob("logs/csv/version_*/metrics.csv"))
    if not logs:
        raise FileNotFoundError(
            f"no metrics.csv under {out_dir}/logs/csv: run finetune_lora with --logger_name csv"
        )
    values = {}
    with open(logs[-1], encoding="utf-8") as f:
        for row in csv.DictReader(f):
            if row.get(column) and row.get("step"):
                values[int(float(row["step"]))] = float(row[column])
    return sorted(values.items())


def read_losses(out_dir: str | Path) -> list[tuple[int, float]]:
    """(step, training loss) from LitGPT's CSV log."""
    return read_metric(out_dir, "loss")


def learning_rates_used(out_dir: str | Path) -> list[float]:
    """The learning rate each optimizer step of ``finetune_lora`` ran with, steps 1, 2, ...

    LitGPT logs ``learning_rate`` after ``scheduler.step()``, that is the rate of the *next*
    step; its warm-up starts at 0 (``LambdaLR(step / warmup_steps)``), so the first step ran
    at 0. transformers logs the rate a step ran with, so this list lines up with
    ``[e["learning_rate"] for e in trainer.state.log_history if "loss" in e]``.
    """
    logged = [rate for _, rate in read_metric(out_dir, "learning_rate")]
    return [0.0, *logged[:-1]]


def throughput(stdout: str) -> dict[str, float]:
    """The token counts and training time ``litgpt finetune_lora`` prints at its end."""
    patterns = {
        "tokens_with_prompt": r"Tokens w/ Prompt\s*:\s*([\d,]+)",
        "tokens_with_padding": r"Total Tokens \(w/ Padding\)\s*:\s*([\d,]+)",
        "training_seconds": r"Training Time\s*:\s*([\d.]+)\s*s",
        # LitGPT's own rate: the padded token count over the training time
        "reported_tokens_per_second": r"Tok/sec\s*:\s*([\d.]+)\s*tok/s",
    }
    found = {}
    for key, pattern in patterns.items():
        match = re.search(pattern, stdout)
        if not match:
            raise ValueError(f"finetune_lora's summary has no {key!r}: did the run finish?")
        found[key] = float(match.group(1).replace(",", ""))
    return found


def answer_of(generated: str) -> str:
    """The assistant's answer in what ``litgpt generate`` prints: the whole text, prompt
    first, decoded without special tokens ("system\n...user\n...assistant\nANSWER")."""
    marker = "<|im_start|>assistant\n" if "<|im_start|>" in generated else "assistant\n"
    text = generated.rsplit(marker, 1)[-1]
    return text.split("<|im_end|>", 1)[0].strip()


def peak_rss_mb(function, *args, **kwargs):
    """(result, peak resident memory in MB of this process while `function` ran); the
    peak is None where Linux's counter cannot be reset (then it would include the past)."""
    from .memory.measure import proc_status_bytes, reset_peak_rss

    reset = reset_peak_rss()
    result = function(*args, **kwargs)
    peak = proc_status_bytes("VmHWM") if reset else None
    return result, (peak / 2**20 if peak else None)
