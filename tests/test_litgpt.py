"""Chapter 11's LitGPT helpers: its separate environment and pins, the data format, the
conversions both ways (logits parity and the round trip on the tiny model)."""

from __future__ import annotations

import importlib.metadata
import json
import re
import subprocess

import pytest
import torch
from packaging.requirements import Requirement
from packaging.version import Version

from helpers import litgpt, pins


@pytest.fixture(scope="module")
def lit_bin():
    """LitGPT's environment (``make test`` builds it; a missing one fails naming the fix)."""
    return litgpt._require()


# ---------------------------------------------------------------- pins and environment
def test_litgpt_pins_are_exact_and_stay_out_of_the_course_venv(tmp_path):
    lit = pins.litgpt_venv_packages()
    names = [p.split("==")[0].lower() for p in lit]
    assert {"torch", "litgpt", "huggingface-hub"} <= set(names)
    for pin in lit:
        assert re.fullmatch(r"[A-Za-z0-9_.-]+==[0-9][^\s=]*", pin), f"not an exact pin: {pin!r}"
    # the same torch as the course, so pip reuses the wheel it already has
    assert f"torch=={pins.read_pins()['torch']}" in lit
    assert "litgpt" not in pins.read_pins()
    assert "litgpt" not in pins.environment_yml()
    path = tmp_path / "requirements.txt"
    path.write_text("a==1\n# litgpt-venv: b==2\n # litgpt-venv: c==3\n# browser-test: d==4\n")
    assert pins.litgpt_venv_packages(path) == ["b==2"]
    assert pins.read_pins(path) == {"a": "1"}


def _requirement(python: str, package: str, dependency: str) -> Requirement:
    code = f"import importlib.metadata as m, json; print(json.dumps(m.requires({package!r})))"
    out = subprocess.run([python, "-c", code], capture_output=True, text=True, check=True)
    for line in json.loads(out.stdout):
        req = Requirement(line)
        if req.name.lower().replace("_", "-") == dependency and not req.marker:
            return req
    raise AssertionError(f"{package} does not require {dependency}")


def test_litgpt_cannot_join_the_course_venv(lit_bin):
    """The reason for a second environment: no huggingface-hub satisfies both."""
    lit_needs = _requirement(str(lit_bin / "python"), "litgpt", "huggingface-hub")
    hf_needs = next(
        Requirement(r)
        for r in importlib.metadata.requires("transformers")
        if Requirement(r).name.lower().replace("_", "-") == "huggingface-hub"
        and not Requirement(r).marker
    )
    uppers = [Version(s.version) for s in lit_needs.specifier if s.operator == "<"]
    lowers = [Version(s.version) for s in hf_needs.specifier if s.operator == ">="]
    assert uppers and lowers, (lit_needs, hf_needs)
    assert min(uppers) <= max(lowers), f"{lit_needs} and {hf_needs} now overlap: try one venv"
    assert litgpt.requires("litgpt", "huggingface-hub", lit_bin / "python") == str(
        lit_needs.specifier
    )
    assert litgpt.requires("transformers", "huggingface_hub") == str(hf_needs.specifier)
    with pytest.raises(LookupError, match="no requirement"):
        litgpt.requires("transformers", "no-such-package")
    hub_pin = next(p for p in pins.litgpt_venv_packages() if p.startswith("huggingface-hub=="))
    assert Version(hub_pin.split("==")[1]) in lit_needs.specifier
    assert Version(hub_pin.split("==")[1]) not in hf_needs.specifier


def test_litgpt_venv_has_the_pinned_versions(lit_bin):
    code = (
        "import importlib.metadata as m, json, sys; "
        "print(json.dumps({n: m.version(n) for n in sys.argv[1:]}))"
    )
    wanted = dict(p.split("==") for p in pins.litgpt_venv_packages())
    out = subprocess.run(
        [str(lit_bin / "python"), "-c", code, *wanted], capture_output=True, text=True, check=True
    )
    installed = {k: v.split("+")[0] for k, v in json.loads(out.stdout).items()}
    assert installed == wanted, "LitGPT's environment is stale: rm -rf .venv-litgpt && make litgpt"


def test_litgpt_processes_inherit_the_thread_count(lit_bin, monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert litgpt.torch_threads() == 1


def test_a_missing_environment_names_make_litgpt(tmp_path, monkeypatch):
    monkeypatch.setenv(litgpt.VENV_ENV, str(tmp_path / "nowhere"))
    assert not litgpt.available()
    with pytest.raises(litgpt.LitGPTMissing, match="make litgpt"):
        litgpt.litgpt("--help")


def test_printed_commands_run_as_printed_one_after_another(lit_bin, tmp_path, monkeypatch):
    import os

    (tmp_path / "work").mkdir()
    monkeypatch.chdir(tmp_path)  # the chapter's folders are relative to notebooks/
    first = litgpt.litgpt("convert_to_litgpt", "--help", cwd="work")
    second = litgpt.litgpt("merge_lora", "--help", cwd="work")
    assert first.command == "(cd work && litgpt convert_to_litgpt --help)"
    # both lines pasted into one shell, with LitGPT's environment active, run as they did
    env = {**os.environ, "PATH": f"{litgpt.venv_dir() / 'bin'}{os.pathsep}{os.environ['PATH']}"}
    script = f"set -e\n{first.command}\n{second.command}\n"
    again = subprocess.run(script, shell=True, env=env, capture_output=True, text=True)
    assert again.returncode == 0, again.stderr
    assert "checkpoint_dir" in again.stdout and again.stdout.count("usage:") == 2


def test_a_failing_command_says_what_failed(lit_bin):
    with pytest.raises(RuntimeError, match=r"no_such_command.*exit code"):
        litgpt.litgpt("no_such_command", timeout=300)


# ---------------------------------------------------------------- data
def test_a_yoda_row_becomes_a_litgpt_record(yoda):
    row = yoda["train"][0]
    record = litgpt.litgpt_record(row)
    assert record == {
        "instruction": row["english"],
        "output": row["yoda"],
        "sys_prompt": row["prompt"][0]["content"],
    }
    no_system = {"prompt": row["prompt"][1:], "completion": row["completion"]}
    assert "sys_prompt" not in litgpt.litgpt_record(no_system)


def test_export_writes_three_json_lists(tmp_path, yoda):
    paths = litgpt.export_yoda(tmp_path, n_val=7)
    data = {k: json.loads(p.read_text()) for k, p in paths.items()}
    assert [len(data[k]) for k in ("train", "val", "test")] == [1200, 7, 200]
    assert data["val"] == data["test"][:7]
    assert data["test"][3]["output"] == yoda["test"][3]["yoda"]


def test_the_chatml_prompt_is_the_chat_template(tiny, yoda):
    _, tokenizer = tiny
    row = yoda["test"][0]
    record = litgpt.litgpt_record(row)
    template = tokenizer.apply_chat_template(
        row["prompt"], tokenize=False, add_generation_prompt=True
    )
    assert litgpt.chatml_prompt(record["instruction"], record["sys_prompt"]) == template


def test_lora_parameter_count_matches_peft(tiny):
    from peft import get_peft_model

    from helpers import training

    model, _ = tiny
    config = model.config
    shapes = dict(
        n_layer=config.num_hidden_layers,
        n_embd=config.hidden_size,
        head_size=config.head_dim,
        n_head=config.num_attention_heads,
        n_query_groups=config.num_key_value_heads,
        intermediate_size=config.intermediate_size,
    )
    import copy

    peft_model = get_peft_model(copy.deepcopy(model), training.lora_config(r=4))
    trainable = sum(p.numel() for p in peft_model.parameters() if p.requires_grad)
    assert litgpt.lora_parameter_count(**shapes, r=4) == trainable
    only_qv = litgpt.lora_parameter_count(**shapes, r=4, key=False, projection=False, mlp=False)
    assert 0 < only_qv < trainable
    # SmolLM2-135M with chapter 00's r=16 on every linear layer: what litgpt finetune_lora prints
    real = dict(
        n_layer=30, n_embd=576, head_size=64, n_head=9, n_query_groups=3, intermediate_size=1536
    )
    assert litgpt.lora_parameter_count(**real, r=16) == 4_884_480


# ---------------------------------------------------------------- conversions (tiny model)
@pytest.fixture(scope="module")
def tiny_lit(tmp_path_factory, lit_bin):
    work = tmp_path_factory.mktemp("litgpt")
    hf = litgpt.hf_checkpoint("tiny-random-smollm2", work)
    return hf, litgpt.convert_shrunken(hf, work / "lit"), work


def test_litgpt_and_transformers_give_the_same_logits(tiny, tiny_lit):
    model, tokenizer = tiny
    _, lit, _ = tiny_lit
    ids = tokenizer("A short test of two stacks.")["input_ids"]
    with torch.no_grad():
        hf_logits = model(torch.tensor([ids])).logits[0]
    assert litgpt.max_abs_diff(litgpt.lit_logits(lit, ids), hf_logits) < 1e-4


def test_round_trip_back_to_transformers_keeps_logits_and_answers(tiny, tiny_lit):
    model, tokenizer = tiny
    hf, lit, work = tiny_lit
    run = litgpt.litgpt("convert_from_litgpt", lit, work / "back")
    assert run.command.startswith("litgpt convert_from_litgpt") and run.peak_rss_mb > 0
    back = litgpt.load_converted(hf, work / "back" / "model.pth")
    ids = tokenizer("Round trip.")["input_ids"]
    with torch.no_grad():
        assert (
            litgpt.max_abs_diff(back(torch.tensor([ids])).logits, model(torch.tensor([ids])).logits)
            == 0.0
        )
    prompt = litgpt.chatml_prompt("Hello there.", "Answer.")
    lit_answer = litgpt.lit_generate(lit, [prompt], max_new_tokens=6)[0]
    enc = tokenizer(prompt, return_tensors="pt")
    with torch.no_grad():
        out = back.generate(**enc, max_new_tokens=6, do_sample=False, eos_token_id=None)
    hf_answer = tokenizer.decode(out[0, enc["input_ids"].shape[1] :])
    assert lit_answer == hf_answer


def test_load_converted_refuses_a_checkpoint_of_another_shape(tiny_lit, tmp_path):
    hf, _, _ = tiny_lit
    torch.save({"model.embed_tokens.weight": torch.zeros(3, 3)}, tmp_path / "model.pth")
    with pytest.raises((RuntimeError,), match="does not fit|size mismatch"):
        litgpt.load_converted(hf, tmp_path / "model.pth")


# ---------------------------------------------------------------- measuring and pictures
def test_read_losses_takes_the_newest_csv_log(tmp_path):
    for version, loss in ((0, 9.0), (1, 2.5)):
        folder = tmp_path / f"logs/csv/version_{version}"
        folder.mkdir(parents=True)
        (folder / "metrics.csv").write_text(
            f"epoch,iter,loss,step\n1,1,{loss},1\n1,2,,2\n1,3,{loss / 2},3\n"
        )
    assert litgpt.read_losses(tmp_path) == [(1, 2.5), (3, 1.25)]
    with pytest.raises(FileNotFoundError, match="logger_name csv"):
        litgpt.read_losses(tmp_path / "empty")


def test_learning_rates_used_are_the_logged_ones_shifted_by_one_step(tmp_path):
    # LitGPT logs the rate after scheduler.step(): the rate of the next step
    folder = tmp_path / "logs/csv/version_0"
    folder.mkdir(parents=True)
    (folder / "metrics.csv").write_text(
        "iter,learning_rate,loss,step\n1,0.001,3.0,1\n2,0.002,2.0,2\n3,0.0015,1.0,3\n"
    )
    assert litgpt.learning_rates_used(tmp_path) == [0.0, 0.001, 0.002]
    assert litgpt.read_metric(tmp_path, "loss") == [(1, 3.0), (2, 2.0), (3, 1.0)]


def test_throughput_and_answers_are_read_from_litgpt_output():
    summary = (
        "| - Input Tokens              :    595\n| - Tokens w/ Prompt          :   1,299\n"
        "| - Total Tokens (w/ Padding) :   1532\n| - Training Time             :  45.81 s\n"
        "| - Tok/sec                   :  33.44 tok/s\n"
    )
    assert litgpt.throughput(summary) == {
        "tokens_with_prompt": 1299.0,
        "tokens_with_padding": 1532.0,
        "training_seconds": 45.81,
        "reported_tokens_per_second": 33.44,
    }
    with pytest.raises(ValueError, match="did the run finish"):
        litgpt.throughput("Epoch 1 | iter 1")
    printed = litgpt.chatml_prompt("Hi.", "Be brief.") + "Hello, I am.<|im_end|>"
    assert litgpt.answer_of(printed) == "Hello, I am."
    plain = "system\nBe brief.\nuser\nHi.\nassistant\nThe capital is Paris.\n"
    assert litgpt.answer_of(plain) == "The capital is Paris."


def test_peak_rss_sees_a_large_allocation():
    def allocate():
        block = torch.ones(64 * 2**20 // 4)  # 64 MiB
        return float(block.sum())

    result, peak = litgpt.peak_rss_mb(allocate)
    assert result == 64 * 2**20 // 4
    if peak is not None:  # Linux
        assert peak > 64


def test_round_trip_diagram_names_every_command():
    import matplotlib.pyplot as plt

    from helpers.diagrams import canvas
    from helpers.diagrams.litgpt import round_trip

    fig = round_trip()
    drawn = "\n".join(canvas.texts(fig))
    for command in ("convert_to_litgpt", "finetune_lora", "convert_from_litgpt"):
        assert command in drawn
    plt.close(fig)


def test_ensure_environment_builds_from_the_pins_and_names_a_failure(tmp_path, monkeypatch):
    assert litgpt.environment_pins() == pins.litgpt_venv_packages()
    calls = []

    def failing(step, **kwargs):
        calls.append(step)
        return subprocess.CompletedProcess(step, 1, "", "no network")

    monkeypatch.setenv(litgpt.VENV_ENV, str(tmp_path / "venv"))
    monkeypatch.setattr(litgpt.subprocess, "run", failing)
    with pytest.raises(litgpt.LitGPTMissing, match="make litgpt"):
        litgpt.ensure_environment()
    assert calls == [[litgpt.sys.executable, "-m", "venv", str(tmp_path / "venv")]]


def test_ensure_environment_keeps_an_existing_one(lit_bin, monkeypatch):
    monkeypatch.setattr(litgpt.subprocess, "run", lambda *a, **k: pytest.fail("rebuilt"))
    assert litgpt.ensure_environment() == lit_bin.parent
